package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/providers/docker"
	"github.com/bottle-apply/bottle-apply/providers/kubernetes"
	"github.com/bottle-apply/bottle-apply/providers/smolvm"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// A bottle's state in status, and the states of its agent and bundle.
const (
	StateRunning  = "running"
	StateDegraded = "degraded" // some part runs, some does not
	StateStopped  = "stopped"  // parts exist, none runs
	StateMissing  = "missing"  // nothing of it exists
	StateFailed   = "failed"
)

// Its sync with its spec, with -f.
const (
	SyncInSync  = "in sync"
	SyncDrifted = "drifted"
	SyncMissing = "missing"
	SyncUnknown = "unknown"
)

// StatusResult is what status found: one row per bottle.
type StatusResult struct {
	// Specs is set when the bottles came from specs (-f): each has a sync.
	Specs   bool
	Bottles []BottleStatus
	// Warnings name the backends that could not be reached and were
	// skipped.
	Warnings []string
}

// BottleStatus is one bottle as status shows it.
type BottleStatus struct {
	Name    string
	Backend string // docker, smolvm or kubernetes; "" when nothing says
	State   string // running, degraded, stopped or missing
	// Agent and Bundle are their parts' states: running, stopped,
	// "exited (CODE)", failed, missing, or the engine's word.
	Agent, Bundle string
	Subnet        string // the internal network's
	BundleAddress string
	// Created is when its oldest resource was made (zero when missing).
	Created time.Time
	Volumes []VolumeStatus
	// Sync, InSync and Reasons are set with specs: Sync is SyncInSync,
	// SyncDrifted, SyncMissing or "unknown (why)"; Reasons are the plan's
	// steps that would bring it back.
	Sync    string
	InSync  bool
	Reasons []string
	// Resources are the bottle's managed resources, by ID.
	Resources []ResourceStatus
}

// VolumeStatus is a named volume of a bottle and whether it exists.
type VolumeStatus struct {
	Name    string
	Present bool
}

// ResourceStatus is one observed resource of a bottle.
type ResourceStatus struct {
	Role, Kind, Name string
	Provider         string
	State, Status    string
	Created          time.Time
}

// NotRunning reports whether a listed bottle is not in sync (with specs)
// or not running (without): --detailed-exitcode exits 2 then.
func (r *StatusResult) NotRunning() bool {
	for _, b := range r.Bottles {
		if r.Specs && !b.InSync || !r.Specs && b.State != StateRunning {
			return true
		}
	}
	return false
}

// Status lists the bottles bottle-apply manages: those of the specs with
// their sync (o.Files), else every one the backends hold, narrowed to
// names when given. It changes nothing, takes no lock, and costs one list
// per resource kind, as a no-op apply does. Without specs, kubernetes is
// asked only when o.Kubeconfig or o.KubeContext is set, and a backend that
// cannot be reached is skipped with a warning when another answered.
func Status(ctx context.Context, o *Options, in io.Reader, names []string) (*StatusResult, error) {
	ps, err := NewProviders(o)
	if err != nil {
		return nil, err
	}
	if len(o.Files) > 0 {
		return ps.statusOfSpecs(ctx, o, in, names)
	}
	return ps.statusOfAll(ctx, o, names)
}

// BottleNames lists the names of the bottles the backends hold, for shell
// completion: the same listing as status, its errors dropped.
func BottleNames(ctx context.Context, o *Options) []string {
	ps, err := NewProviders(o)
	if err != nil {
		return nil
	}
	res, err := ps.statusOfAll(ctx, o, nil)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(res.Bottles))
	for _, b := range res.Bottles {
		out = append(out, b.Name)
	}
	return out
}

// statusOfAll observes every backend with Scope.All (or the names), each
// on its own so that one that cannot be reached does not hide the others.
func (ps *Providers) statusOfAll(ctx context.Context, o *Options, names []string) (*StatusResult, error) {
	scope := reconcile.Scope{Bottles: names, All: len(names) == 0}
	asked := []reconcile.Provider{ps.docker, ps.smolvm}
	if o.Kubeconfig != "" || o.KubeContext != "" {
		ps.kube.ConnectTo(o.KubeContext)
		asked = append(asked, ps.kube)
	}
	obs := make([][]reconcile.Resource, len(asked))
	errs := make([]error, len(asked))
	var g errgroup.Group
	for i, p := range asked {
		g.Go(func() error {
			obs[i], errs[i] = p.Observe(ctx, scope)
			if errs[i] == nil && p == reconcile.Provider(ps.smolvm) && ps.smolvm.Missing() {
				errs[i] = smolvm.ErrNotInstalled
			}
			return nil
		})
	}
	_ = g.Wait()
	res := &StatusResult{}
	var observed []reconcile.Resource
	answered := 0
	for i := range asked {
		if errs[i] != nil {
			continue
		}
		answered++
		observed = append(observed, obs[i]...)
	}
	if answered == 0 {
		var all []error
		for i, p := range asked {
			all = append(all, fmt.Errorf("observe %s: %w", p.Name(), errs[i]))
		}
		return nil, errors.Join(all...)
	}
	for i, p := range asked {
		if errors.Is(errs[i], smolvm.ErrNotInstalled) {
			// smolvm is listed when it is on PATH: its absence is the
			// common case, not news.
			zerolog.Ctx(ctx).Debug().Err(errs[i]).Msg("smolvm not listed")
			continue
		}
		if errs[i] != nil {
			w := fmt.Sprintf("%s skipped: %v", p.Name(), errs[i])
			res.Warnings = append(res.Warnings, w)
			zerolog.Ctx(ctx).Warn().Str("provider", p.Name()).Err(errs[i]).Msg("backend skipped")
		}
	}
	byBottle := groupByBottle(observed)
	if len(names) == 0 {
		names = slices.Sorted(maps.Keys(byBottle))
	}
	for _, name := range names {
		res.Bottles = append(res.Bottles, summarize(name, byBottle[name]))
	}
	return res, nil
}

// statusOfSpecs plans the specs' bottles against what exists, read-only,
// and says of each whether it is in sync.
func (ps *Providers) statusOfSpecs(ctx context.Context, o *Options, in io.Reader, names []string) (*StatusResult, error) {
	specs, err := spec.Load(o.Files, in)
	if err != nil {
		return nil, fmt.Errorf("invalid spec:\n%w", err)
	}
	bottles := bottle.NewAll(specs)
	if len(names) > 0 {
		var narrowed []bottle.Bottle
		for _, n := range names {
			i := slices.IndexFunc(bottles, func(b bottle.Bottle) bool { return b.Metadata.Name == n })
			if i < 0 {
				return nil, fmt.Errorf("bottle %s is not in the specs given with -f: check its name, or drop -f to list every bottle", n)
			}
			narrowed = append(narrowed, bottles[i])
		}
		bottles = narrowed
	}
	if err := ps.use(bottles); err != nil {
		return nil, err
	}
	// Why a bottle's sync cannot be told, by name: such a bottle is
	// observed but not planned.
	unknown := unresolved(bottles)
	scope := reconcile.Scope{}
	for _, b := range bottles {
		scope.Bottles = append(scope.Bottles, b.Metadata.Name)
	}
	if ps.usesDocker() {
		// The bundles' config holds the host's addresses: known from
		// the last apply on this engine, else not known (learning them
		// takes a container).
		eng, err := ps.Engine(ctx)
		if err != nil {
			return nil, err
		}
		ps.host.setEngine(eng.ID)
		if !ps.docker.LearnCachedHost() {
			for _, b := range bottles {
				if b.Spec.Backend != spec.BackendKubernetes && unknown[b.Metadata.Name] == "" {
					unknown[b.Metadata.Name] = "the engine host's addresses are not recorded yet: an apply records them"
				}
			}
		}
	}
	// The CAs as kept, or as an apply would make them (and replace the
	// agents for): nothing is written.
	if err := ps.resolveCAs(ctx, bottles, false); err != nil {
		return nil, err
	}
	observed, err := reconcile.ObserveAll(ctx, ps.all, scope)
	if err != nil {
		return nil, err
	}
	if ps.smolvm.Missing() {
		for _, b := range bottles {
			if b.Spec.Backend == spec.BackendSmolvm && unknown[b.Metadata.Name] == "" {
				unknown[b.Metadata.Name] = "smolvm not found on PATH"
			}
		}
	}
	var plannable []bottle.Bottle
	for _, b := range bottles {
		if unknown[b.Metadata.Name] == "" {
			plannable = append(plannable, b)
		}
	}
	plan, err := reconcile.PlanObserved(ps.all, plannable, observed, scope, false)
	if err != nil {
		return nil, err
	}
	res := &StatusResult{Specs: true}
	byBottle := groupByBottle(observed)
	for _, b := range bottles {
		name := b.Metadata.Name
		st := summarize(name, byBottle[name])
		st.Backend = string(b.Spec.Backend)
		st.Volumes = specVolumes(b, byBottle[name])
		switch {
		case unknown[name] != "":
			st.Sync = SyncUnknown + " (" + unknown[name] + ")"
		case st.State == StateMissing:
			st.Sync = SyncMissing
		default:
			for _, s := range plan.Steps {
				if s.Resource.Bottle == name && s.Action != reconcile.NoOp {
					st.Reasons = append(st.Reasons, fmt.Sprintf("%s %s: %s", s.Action, s.ResourceID, s.Reason))
				}
			}
			st.Sync, st.InSync = SyncDrifted, len(st.Reasons) == 0
			if st.InSync {
				st.Sync = SyncInSync
			}
		}
		res.Bottles = append(res.Bottles, st)
	}
	return res, nil
}

// unresolved resolves each bottle's secrets and files on its own, and
// returns why for those whose sources are absent: their sync is unknown,
// not an error. Nothing it returns holds a value.
func unresolved(bottles []bottle.Bottle) map[string]string {
	why := map[string]string{}
	for i := range bottles {
		b := &bottles[i]
		err := resolveSecrets(bottles[i : i+1])
		if err == nil {
			continue
		}
		var missing []string
		for _, name := range slices.Sorted(maps.Keys(b.Spec.Agent.SecretEnv)) {
			if !slices.ContainsFunc(b.Secrets, func(s bottle.Secret) bool { return s.Name == name }) {
				missing = append(missing, name)
			}
		}
		switch {
		case len(missing) == 1:
			why[b.Metadata.Name] = "secret " + missing[0] + " not available"
		case len(missing) > 1:
			why[b.Metadata.Name] = "secrets " + strings.Join(missing, ", ") + " not available"
		default:
			msg, _, _ := strings.Cut(err.Error(), "\n")
			why[b.Metadata.Name] = strings.TrimPrefix(msg, "bottle "+b.Metadata.Name+": ")
		}
	}
	return why
}

// groupByBottle sorts the managed resources by bottle. It is pure.
func groupByBottle(rs []reconcile.Resource) map[string][]reconcile.Resource {
	out := map[string][]reconcile.Resource{}
	for _, r := range rs {
		if r.Managed && r.Bottle != "" {
			out[r.Bottle] = append(out[r.Bottle], r)
		}
	}
	for _, v := range out {
		slices.SortFunc(v, func(a, b reconcile.Resource) int { return strings.Compare(a.ID(), b.ID()) })
	}
	return out
}

// workload reports whether r is an agent or a bundle that runs, rather
// than a network, a service or a volume.
func workload(r *reconcile.Resource) bool {
	switch r.Provider + "/" + r.Kind {
	case docker.ProviderName + "/" + docker.KindContainer,
		smolvm.ProviderName + "/" + smolvm.KindMachine,
		kubernetes.ProviderName + "/" + kubernetes.KindDeployment,
		kubernetes.ProviderName + "/" + kubernetes.KindStatefulSet:
		return true
	}
	return false
}

// exited reads the exit code from docker's "Exited (137) 3 minutes ago".
var exited = regexp.MustCompile(`^Exited \((-?\d+)\)`)

// partState is the state of the bottle's agent or bundle. It is pure.
func partState(rs []reconcile.Resource, role string) (state string, running bool) {
	var found *reconcile.Resource
	for i := range rs {
		r := &rs[i]
		if r.Role != role || !workload(r) {
			continue
		}
		if found == nil || r.State == reconcile.StateRunning {
			found = r
		}
	}
	switch {
	case found == nil:
		return StateMissing, false
	case found.State == reconcile.StateRunning:
		return StateRunning, true
	case found.State == reconcile.StateFailed:
		return StateFailed, false
	case found.State == reconcile.StateStopped || found.State == reconcile.StateCreated:
		if m := exited.FindStringSubmatch(found.Status); m != nil {
			return "exited (" + m[1] + ")", false
		}
		return StateStopped, false
	case found.Status != "":
		return strings.ToLower(found.Status), false
	}
	return found.State.String(), false
}

// summarize makes a bottle's row from its managed resources: running when
// agent and bundle run, degraded when some part runs and another does
// not, stopped when parts exist but none runs, missing when nothing
// exists. It is pure.
func summarize(name string, rs []reconcile.Resource) BottleStatus {
	st := BottleStatus{Name: name}
	var agentUp, bundleUp bool
	st.Agent, agentUp = partState(rs, bottle.RoleAgent)
	st.Bundle, bundleUp = partState(rs, bottle.RoleBundle)
	anyUp := false
	for i := range rs {
		r := &rs[i]
		if workload(r) && r.State == reconcile.StateRunning {
			anyUp = true
		}
		if !r.Created.IsZero() && (st.Created.IsZero() || r.Created.Before(st.Created)) {
			st.Created = r.Created
		}
		if st.Subnet == "" && r.Role == bottle.RoleInternal {
			st.Subnet = r.Summary["subnet"]
		}
		if st.BundleAddress == "" && r.Role == bottle.RoleBundle {
			st.BundleAddress = r.Summary["ip"]
		}
		if r.Persistent && !(r.Provider == kubernetes.ProviderName && r.Kind == kubernetes.KindNamespace) {
			st.Volumes = append(st.Volumes, VolumeStatus{Name: r.Role, Present: true})
		}
		if workload(r) && r.Role == bottle.RoleAgent || st.Backend == "" {
			st.Backend = r.Provider
		}
		st.Resources = append(st.Resources, ResourceStatus{Role: r.Role, Kind: r.Kind, Name: r.Name, Provider: r.Provider,
			State: r.State.String(), Status: r.Status, Created: r.Created})
	}
	switch {
	case len(rs) == 0:
		st.State = StateMissing
	case agentUp && bundleUp:
		st.State = StateRunning
	case anyUp:
		st.State = StateDegraded
	default:
		st.State = StateStopped
	}
	return st
}

// specVolumes are the named volumes of the spec, each present or not.
func specVolumes(b bottle.Bottle, rs []reconcile.Resource) []VolumeStatus {
	var out []VolumeStatus
	for _, v := range b.Spec.Agent.Volumes {
		if !v.Named() {
			continue
		}
		present := slices.ContainsFunc(rs, func(r reconcile.Resource) bool { return r.Persistent && r.Role == v.Source })
		out = append(out, VolumeStatus{Name: v.Source, Present: present})
	}
	return out
}
