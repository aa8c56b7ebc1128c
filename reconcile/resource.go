// Package reconcile turns desired and observed resources into a plan and runs
// it: observe, a pure diff, an executor that carries no decision logic, and
// the loop that repeats them until reality matches the spec.
//
// It knows providers only through the Provider interface.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// ErrOtherSet marks a bottle applied with a spec set while its resources
// say it is of another: nothing is planned for it, as a prune of the other
// set would delete it.
var ErrOtherSet = errors.New("bottle belongs to another spec set")

// ErrNotManaged marks a resource that has a name bottle-apply wants but lacks
// bottle-apply's labels. Such a resource is never modified or deleted.
var ErrNotManaged = errors.New("resource exists but is not managed by bottle-apply")

// State is what a provider observed of a resource's lifecycle.
type State int

// States. Present is for resources without a run state (networks).
const (
	StateUnknown State = iota
	StatePresent
	StateRunning
	StateStopped
	StateCreated
	StateFailed
)

var stateNames = [...]string{"unknown", "present", "running", "stopped", "created", "failed"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Resource is one object a provider manages: a network, a container, a VM.
// Providers fill the desired form from the spec and the observed form from
// reality; the diff compares the two by ID.
type Resource struct {
	// Provider, Kind, Bottle and Role make up the ID:
	// "docker-network:hello/internal".
	Provider string
	Kind     string
	Bottle   string
	Role     string

	// Name is the engine-level name, such as "bottle-hello-internal".
	Name string

	// Hash is the config hash of the normalized spec fragment the resource
	// is (or was) made from. Inputs holds a short digest per input field so
	// that the diff can say which input changed; values never appear.
	Hash   string
	Inputs map[string]string

	// Set is the spec set of the resource's bottle (bottle.LabelSet), ""
	// for none. It is in no hash: a set added to what exists replaces
	// nothing.
	Set string

	// DependsOn lists the IDs of resources that must exist before this one
	// (and be deleted after it).
	DependsOn []string
	// BoundTo lists the IDs of resources this one is physically attached to:
	// recreating one of them forces this one to be replaced too.
	BoundTo []string

	// Observed only.
	Managed  bool              // carries bottle-apply's labels and a hash
	EngineID string            // the engine's ID
	State    State             // lifecycle state
	Status   string            // the engine's own words for the state
	Attached map[string]string // for containers: bound-to resource ID -> engine ID it is attached to
	// Failure says why a resource in StateFailed cannot go on as it is
	// (the plan's reason to replace it); "failed" when empty.
	Failure string
	// Created is when the engine made it, zero when it does not say.
	// The diff never reads it (no clock in a plan): it is for status.
	Created time.Time

	// Summary holds a few human-facing attributes (image, subnet, ip) for the
	// plan. Providers must never put secret values here.
	Summary map[string]string
	// Keeps and Discards say, for the plan of a replace, what goes on as
	// it was and what is lost with the old resource.
	Keeps, Discards string
	// ImageID is the content ID ("sha256:…") of the image the resource
	// runs: in the desired form, what its image reference names now where
	// the provider can tell (empty when it cannot, as for an image not
	// present locally); in the observed form, the image it was made from
	// (empty when unknown). When both are known and differ, the image was
	// rebuilt under the same reference and the resource is replaced.
	ImageID string
	// Persistent marks a resource that holds the user's data, such as a
	// named volume. It is never replaced, and when it leaves the spec, or
	// its bottle is destroyed, it is kept (Plan.Kept) unless the scope
	// says RemovePersistent.
	Persistent bool

	// Config is the provider's own desired configuration; reconcile never
	// looks inside it.
	Config any `json:"-"`
}

// ID identifies a resource across desired and observed state.
func (r *Resource) ID() string {
	return r.Provider + "-" + r.Kind + ":" + r.Bottle + "/" + r.Role
}

// Scope says which bottles an observation covers.
type Scope struct {
	Bottles []string
	// All observes every resource bottle-apply manages on the backend,
	// not only the Bottles'; unmanaged namesakes of the Bottles are still
	// returned, claimed by their bottle. It widens observation only: the
	// diff owns, and may delete, the resources of the Bottles alone (and,
	// under Prune, those of the set's bottles), so a plan made with All
	// touches nothing of another bottle.
	All bool
	// RemovePersistent lets the plan delete the persistent resources of
	// the bottles it deletes whole (destroy --volumes, a prune with
	// --volumes); otherwise they are kept. A persistent resource dropped
	// from the spec of a bottle that stays is always kept.
	RemovePersistent bool
	// Prune names a spec set: the managed bottles of that set that are not
	// among Bottles are deleted too (apply --set S --prune). A bottle is
	// of the set when one of its managed resources carries it and none
	// carries another; bottles without a set are never pruned.
	Prune string
}

// Provider manages one backend's resources.
//
// A plan takes four steps of every provider. Observe reads reality only.
// Resolve makes the choices the provider owns for the bottles, from what
// exists (a free subnet, the bundle's address), filling in only what is
// still empty; every provider resolves before any translates, and one with
// nothing to choose does nothing. Desired is pure: it translates resolved
// bottles into resources. Apply carries out one step and makes no
// decisions of its own.
type Provider interface {
	Name() string
	Observe(ctx context.Context, scope Scope) ([]Resource, error)
	Resolve(bottles []*bottle.Bottle, observed []Resource) error
	Desired(bottles []*bottle.Bottle, observed []Resource) ([]Resource, error)
	Apply(ctx context.Context, step Step) error
}
