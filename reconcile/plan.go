package reconcile

import (
	"fmt"
	"slices"
	"strings"
)

// Action is what a step does to its resource. The values are pinned: they
// appear in JSON output.
type Action int

// Actions.
const (
	NoOp    Action = 0
	Create  Action = 1
	Start   Action = 2
	Replace Action = 3
	Delete  Action = 4
)

var actionNames = [...]string{"NoOp", "Create", "Start", "Replace", "Delete"}

func (a Action) String() string {
	if a >= 0 && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Symbol is the terraform-style marker used when rendering the plan.
func (a Action) Symbol() string {
	switch a {
	case Create:
		return "+"
	case Start:
		return "~"
	case Replace:
		return "-/+"
	case Delete:
		return "-"
	}
	return " "
}

// MarshalText makes actions readable in JSON output.
func (a Action) MarshalText() ([]byte, error) { return []byte(strings.ToLower(a.String())), nil }

// Step is one action on one resource.
type Step struct {
	ID         int
	Action     Action
	ResourceID string
	// Resource is the desired resource, or the observed one for a Delete.
	Resource Resource
	// Observed is what exists now (nil for a Create).
	Observed *Resource
	// Reason is for humans only; nothing may branch on it.
	Reason    string
	DependsOn []int
}

// Plan is an ordered list of steps: parents before children. NoOp steps are
// kept so that dependencies stay visible.
type Plan struct {
	Steps []Step
	// Warnings name resources that were seen and deliberately left alone.
	Warnings []string
	// Kept are the persistent resources of the bottles in scope that are
	// not desired but stay, as the scope does not let them go: a destroy
	// without --volumes, a volume dropped from the spec.
	Kept []Resource
	// Pruned names the bottles of the scope's spec set that the plan
	// deletes whole as they left the specs (Scope.Prune), sorted.
	Pruned []string
}

// ChangedBottles names the bottles that some step changes, sorted.
func (p *Plan) ChangedBottles() []string {
	var out []string
	for _, s := range p.Steps {
		if s.Action != NoOp && !slices.Contains(out, s.Resource.Bottle) {
			out = append(out, s.Resource.Bottle)
		}
	}
	slices.Sort(out)
	return out
}

// Changes counts the steps that do something.
func (p *Plan) Changes() int {
	n := 0
	for i := range p.Steps {
		if p.Steps[i].Action != NoOp {
			n++
		}
	}
	return n
}

// Count returns how many steps have action a.
func (p *Plan) Count(a Action) int {
	n := 0
	for i := range p.Steps {
		if p.Steps[i].Action == a {
			n++
		}
	}
	return n
}

// String prints one terse line per step, for tests and debug logs.
func (p *Plan) String() string {
	var b strings.Builder
	for i := range p.Steps {
		s := &p.Steps[i]
		fmt.Fprintf(&b, "#%d %s %s", s.ID, s.ResourceID, s.Action)
		if s.Reason != "" {
			fmt.Fprintf(&b, ", %s", s.Reason)
		}
		if len(s.DependsOn) > 0 {
			b.WriteString(", after")
			for _, d := range s.DependsOn {
				fmt.Fprintf(&b, " #%d", d)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}
