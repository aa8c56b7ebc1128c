package reconcile

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// Diff compares desired with observed resources and returns the plan that
// makes reality match. It is pure: no I/O, no clock, deterministic output.
//
// Observed resources that are managed and belong to one of the bottles in
// scope but are not desired are deleted. A resource that is not managed by
// bottle-apply but has the name of a desired one is an error wrapping
// ErrNotManaged: nothing is planned for it. Unmanaged resources that carry
// a bottle's name label are reported in Plan.Warnings and left alone.
// Scope.All changes nothing here: the resources of bottles outside
// Scope.Bottles are never in scope, whatever was observed, but through
// scope.Prune.
//
// With scope.Prune, the managed bottles of that spec set that are not in
// scope are deleted whole, with the reason "not in spec set S". A bottle
// applied with a set while its resources carry another is an error
// wrapping ErrOtherSet.
func Diff(desired, observed []Resource, scope Scope) (*Plan, error) {
	plan := &Plan{}
	own, err := sortOwnership(desired, observed, scope, plan)
	if err != nil {
		return nil, err
	}
	stepOf, err := planDesired(plan, desired, own)
	if err != nil {
		return nil, err
	}
	warnUnset(plan)
	planDeletes(plan, own, stepOf)
	plan.Pruned = slices.Sorted(maps.Keys(own.pruned))
	return plan, nil
}

// ownership is what the first phase of a diff makes of the observed
// resources: ours by ID, and ours to delete.
type ownership struct {
	byID  map[string]*Resource // managed, in scope, one per ID
	index map[string]*Resource // the same, kept whole for decide
	extra []*Resource          // managed, in scope, but duplicates
	// removePersistent is the scope's RemovePersistent.
	removePersistent bool
	// wanted are the bottles with desired resources; pruned the bottles
	// of the set scope.Prune that are deleted whole.
	wanted map[string]bool
	pruned map[string]bool
	prune  string

	desiredNames map[string]string // provider-kind/name -> ID
	inUse        map[string]bool   // engine IDs something is attached to
}

// add takes o as the resource of its ID, or as a duplicate of the one
// already there.
func (own *ownership) add(o *Resource) {
	id := o.ID()
	prev, dup := own.byID[id]
	if !dup {
		own.byID[id] = o
		return
	}
	// Keep the one with the expected name, then the one something is
	// attached to, then the one with the lower engine ID, so that every
	// run drops the same one.
	keep, drop := prev, o
	if better(o, prev, own.desiredNames[nameKey(o)] == id, own.desiredNames[nameKey(prev)] == id, own.inUse) {
		keep, drop = o, prev
	}
	own.byID[id] = keep
	own.extra = append(own.extra, drop)
}

// gone reports whether bottle b is deleted whole: pruned, or with nothing
// desired of it (destroy).
func (own *ownership) gone(b string) bool { return own.pruned[b] || !own.wanted[b] }

// sortOwnership is the diff's first phase: it keeps the managed resources
// of the bottles in scope, one per ID (the others of an ID are
// duplicates), and those of the bottles to prune; it refuses unmanaged
// namesakes of desired resources and bottles of another spec set, and
// warns of unmanaged resources that carry a bottle's name.
func sortOwnership(desired, observed []Resource, scope Scope, plan *Plan) (*ownership, error) {
	inScope := make(map[string]bool, len(scope.Bottles))
	for _, b := range scope.Bottles {
		inScope[b] = true
	}
	own := &ownership{
		byID: make(map[string]*Resource, len(observed)), removePersistent: scope.RemovePersistent,
		wanted: map[string]bool{}, pruned: map[string]bool{}, prune: scope.Prune,
		desiredNames: make(map[string]string, len(desired)), inUse: map[string]bool{},
	}
	wantSet := map[string]string{} // bottle -> the set it is applied with
	for i := range desired {
		d := &desired[i]
		own.desiredNames[nameKey(d)] = d.ID()
		own.wanted[d.Bottle] = true
		if d.Set != "" {
			wantSet[d.Bottle] = d.Set
		}
	}
	for i := range observed {
		for _, id := range observed[i].Attached {
			own.inUse[id] = true
		}
	}
	var conflicts []error
	otherSet := map[string]bool{} // bottles refused for their set
	outside := map[string][]*Resource{}
	for i := range observed {
		o := &observed[i]
		if !o.Managed {
			if id, ok := own.desiredNames[nameKey(o)]; ok {
				conflicts = append(conflicts, fmt.Errorf("%s %s %q (wanted for %s): %w; "+
					"remove or rename it, or give the bottle another name",
					o.Provider, o.Kind, o.Name, id, ErrNotManaged))
			} else if inScope[o.Bottle] {
				plan.Warnings = append(plan.Warnings, fmt.Sprintf(
					"%s %s %q has the name or label of bottle %q but is not managed by bottle-apply (no labels, or an empty config hash): left alone",
					o.Provider, o.Kind, o.Name, o.Bottle))
			}
			continue
		}
		if !inScope[o.Bottle] {
			if scope.Prune != "" {
				outside[o.Bottle] = append(outside[o.Bottle], o)
			}
			continue
		}
		// A persistent resource is never replaced, so it keeps the set it
		// was made with: it says nothing of where the bottle is now.
		if want := wantSet[o.Bottle]; want != "" && o.Set != "" && o.Set != want && !o.Persistent && !otherSet[o.Bottle] {
			otherSet[o.Bottle] = true
			conflicts = append(conflicts, fmt.Errorf("bottle %q is applied with --set %s but its resources are of spec set %q: %w; "+
				"a prune of %s would delete it. If it moves to %s, destroy it (its named volumes are kept) and apply it again with --set %s; "+
				"if another spec set has a bottle of that name, rename one of them",
				o.Bottle, want, o.Set, ErrOtherSet, o.Set, want, want))
		}
		own.add(o)
	}
	prunable(outside, own, plan)
	sort.Strings(plan.Warnings) // the engine lists in no particular order
	if len(conflicts) > 0 {
		slices.SortFunc(conflicts, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return nil, errors.Join(conflicts...)
	}
	own.index = maps.Clone(own.byID)
	return own, nil
}

// prunable takes the managed resources of the bottles out of scope that
// are of the set to prune: one of their resources carries it, and none
// carries another. A bottle with resources of two sets is left alone,
// with a warning.
func prunable(outside map[string][]*Resource, own *ownership, plan *Plan) {
	for _, b := range slices.Sorted(maps.Keys(outside)) {
		var sets []string
		for _, o := range outside[b] {
			if o.Set != "" && !slices.Contains(sets, o.Set) {
				sets = append(sets, o.Set)
			}
		}
		if !slices.Contains(sets, own.prune) {
			continue
		}
		if len(sets) > 1 {
			slices.Sort(sets)
			plan.Warnings = append(plan.Warnings, fmt.Sprintf(
				"bottle %q is not in the specs but its resources are of spec sets %s: not pruned; destroy it by name if it is no longer wanted",
				b, strings.Join(sets, ", ")))
			continue
		}
		own.pruned[b] = true
		for _, o := range outside[b] {
			own.add(o)
		}
	}
}

// warnUnset warns of the bottles applied with a set that none of their
// resources will carry after the plan: what exists cannot be relabelled,
// so a prune of the set leaves them alone until they are recreated.
func warnUnset(plan *Plan) {
	set := map[string]string{}
	carries := map[string]bool{}
	for i := range plan.Steps {
		s := &plan.Steps[i]
		r := &s.Resource
		if r.Set == "" || r.Persistent {
			continue
		}
		set[r.Bottle] = r.Set
		if s.Action == Create || s.Action == Replace || (s.Observed != nil && s.Observed.Set == r.Set) {
			carries[r.Bottle] = true
		}
	}
	bySet := map[string][]string{}
	for b, s := range set {
		if !carries[b] {
			bySet[s] = append(bySet[s], b)
		}
	}
	for _, s := range slices.Sorted(maps.Keys(bySet)) {
		bs := bySet[s]
		slices.Sort(bs)
		plan.Warnings = append(plan.Warnings, fmt.Sprintf(
			"%s %s no spec set yet (what exists cannot be relabelled): a prune of %s will not remove %s until %s recreated, e.g. by destroy and apply --set %s",
			plural(len(bs), "bottle", "bottles")+" "+strings.Join(bs, ", "), plural(len(bs), "carries", "carry"), s,
			plural(len(bs), "it", "them"), plural(len(bs), "it is", "they are"), s))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// planDesired is the diff's second phase: a step for each desired
// resource, parents first, with what to do and why. What it matches is
// taken out of own.byID; what is left there is not desired.
func planDesired(plan *Plan, desired []Resource, own *ownership) (map[string]*Step, error) {
	order, err := topoOrder(desired)
	if err != nil {
		return nil, err
	}
	stepOf := make(map[string]*Step, len(desired)+len(own.extra))
	for _, d := range order {
		id := d.ID()
		s := Step{ID: len(plan.Steps) + 1, ResourceID: id, Resource: *d}
		if o, ok := own.byID[id]; ok {
			s.Observed = o
			delete(own.byID, id)
		}
		s.Action, s.Reason = decide(d, s.Observed, stepOf, own.index)
		for _, dep := range d.DependsOn {
			if p, ok := stepOf[dep]; ok {
				s.DependsOn = append(s.DependsOn, p.ID)
			}
		}
		slices.Sort(s.DependsOn)
		plan.Steps = append(plan.Steps, s)
		stepOf[id] = &plan.Steps[len(plan.Steps)-1]
	}
	return stepOf, nil
}

// planDeletes is the diff's last phase: a delete for each managed resource
// that is not desired and for each duplicate, dependents first.
func planDeletes(plan *Plan, own *ownership, stepOf map[string]*Step) {
	extra := own.extra
	for _, o := range own.byID {
		extra = append(extra, o)
	}
	var gone []*Resource
	for _, o := range extra {
		if _, isDup := stepOf[o.ID()]; o.Persistent && !isDup && !(own.removePersistent && own.gone(o.Bottle)) {
			plan.Kept = append(plan.Kept, *o)
			continue
		}
		gone = append(gone, o)
	}
	slices.SortFunc(plan.Kept, func(a, b Resource) int { return strings.Compare(a.ID(), b.ID()) })
	dels := deleteOrder(gone)
	delStep := make(map[*Resource]int, len(dels))
	dependents := make(map[string][]*Resource)
	for _, o := range dels {
		for _, dep := range o.DependsOn {
			dependents[dep] = append(dependents[dep], o)
		}
	}
	for _, o := range dels {
		s := Step{ID: len(plan.Steps) + 1, Action: Delete, ResourceID: o.ID(), Resource: *o, Observed: o}
		s.Reason = "not in spec"
		if own.pruned[o.Bottle] {
			s.Reason = "not in spec set " + own.prune
		}
		if _, isDup := stepOf[s.ResourceID]; isDup {
			s.ResourceID += "@" + shortID(o.EngineID)
			s.Reason = "duplicate of " + o.ID()
		}
		// A delete waits for the deletes of what depends on it.
		for _, other := range dependents[o.ID()] {
			if sid, ok := delStep[other]; ok {
				s.DependsOn = append(s.DependsOn, sid)
			}
		}
		delStep[o] = s.ID
		plan.Steps = append(plan.Steps, s)
	}
}

// decide picks the action for one desired resource and says why.
func decide(d, o *Resource, stepOf map[string]*Step, observed map[string]*Resource) (Action, string) {
	if o == nil {
		return Create, "not found"
	}
	if d.Persistent && o.Persistent {
		// Never replaced: that would throw the user's data away. What it
		// is made from does not change; its labels may be older.
		return NoOp, ""
	}
	var reasons []string
	if o.Hash != d.Hash {
		reasons = append(reasons, changedInputs(d.Inputs, o.Inputs))
	}
	if r := imageChanged(d.ImageID, o.ImageID); r != "" {
		reasons = append(reasons, r)
	}
	for _, parent := range d.BoundTo {
		ps, ok := stepOf[parent]
		if !ok {
			continue
		}
		switch ps.Action {
		case Create:
			reasons = append(reasons, fmt.Sprintf("%s %s is recreated", ps.Resource.Kind, ps.Resource.Name))
		case Replace:
			reasons = append(reasons, fmt.Sprintf("%s %s is replaced", ps.Resource.Kind, ps.Resource.Name))
		default:
			if po := observed[parent]; po != nil && o.Attached != nil && o.Attached[parent] != po.EngineID {
				reasons = append(reasons, fmt.Sprintf("not attached to %s %s", ps.Resource.Kind, ps.Resource.Name))
			}
		}
	}
	// Attached to something the spec does not give it (a network added by
	// hand, another bottle's): a way around the bottle's walls.
	var extra []string
	for k := range o.Attached {
		if !slices.Contains(d.BoundTo, k) {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		reasons = append(reasons, "also attached to "+strings.Join(extra, ", "))
	}
	if o.State == StateFailed {
		if o.Failure != "" {
			reasons = append(reasons, o.Failure)
		} else {
			reasons = append(reasons, "failed")
		}
	}
	if len(reasons) > 0 {
		return Replace, strings.Join(reasons, "; ")
	}
	switch o.State {
	case StateStopped, StateCreated:
		if o.Status != "" {
			return Start, o.State.String() + " (" + o.Status + ")"
		}
		return Start, o.State.String()
	}
	return NoOp, ""
}

// imageChanged says that the image a resource runs has new content under
// the same reference: "" when the IDs agree or either is unknown (an image
// the engine does not have is no reason to replace what runs).
func imageChanged(want, have string) string {
	if want == "" || have == "" || want == have {
		return ""
	}
	return "image changed (" + shortImageID(have) + " → " + shortImageID(want) + ")"
}

// shortImageID is an image ID cut to the 12 hex digits people see in
// docker images, with its algorithm: "sha256:abcdef123456…".
func shortImageID(id string) string {
	alg, hex, ok := strings.Cut(id, ":")
	if !ok {
		alg, hex = "", id
	} else {
		alg += ":"
	}
	if len(hex) > 12 {
		hex = hex[:12] + "…"
	}
	return alg + hex
}

// changedInputs names the inputs whose digests differ, sorted.
func changedInputs(want, have map[string]string) string {
	var names []string
	for k, v := range want {
		if have[k] != v {
			names = append(names, k)
		}
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return "configuration changed"
	}
	sort.Strings(names)
	return strings.Join(names, ", ") + " changed"
}

// topoOrder sorts resources so that every resource comes after the ones it
// depends on: grouped by bottle, then by depth (networks before
// containers), then by ID, so that plans are deterministic and read well.
func topoOrder(rs []Resource) ([]*Resource, error) {
	byID := make(map[string]*Resource, len(rs))
	for i := range rs {
		id := rs[i].ID()
		if _, dup := byID[id]; dup {
			return nil, fmt.Errorf("internal: two desired resources with ID %s", id)
		}
		byID[id] = &rs[i]
	}
	depth := make(map[string]int, len(rs))
	const visiting = -1
	var visit func(id string) (int, error)
	visit = func(id string) (int, error) {
		if d, ok := depth[id]; ok {
			if d == visiting {
				return 0, fmt.Errorf("internal: dependency cycle at %s", id)
			}
			return d, nil
		}
		depth[id] = visiting
		d := 0
		for _, dep := range byID[id].DependsOn {
			if _, ok := byID[dep]; !ok {
				continue
			}
			pd, err := visit(dep)
			if err != nil {
				return 0, err
			}
			d = max(d, pd+1)
		}
		depth[id] = d
		return d, nil
	}
	out := make([]*Resource, 0, len(rs))
	for i := range rs {
		if _, err := visit(rs[i].ID()); err != nil {
			return nil, err
		}
		out = append(out, &rs[i])
	}
	byBottle := func(a, b *Resource) int {
		if a.Bottle != b.Bottle {
			return strings.Compare(a.Bottle, b.Bottle)
		}
		if da, db := depth[a.ID()], depth[b.ID()]; da != db {
			return da - db
		}
		return strings.Compare(a.ID(), b.ID())
	}
	slices.SortFunc(out, byBottle)
	// A dependency across bottles would break the grouping: order by depth
	// first then.
	seen := make(map[string]bool, len(out))
	for _, r := range out {
		for _, dep := range r.DependsOn {
			if _, ok := byID[dep]; ok && !seen[dep] {
				slices.SortFunc(out, func(a, b *Resource) int {
					if da, db := depth[a.ID()], depth[b.ID()]; da != db {
						return da - db
					}
					return byBottle(a, b)
				})
				return out, nil
			}
		}
		seen[r.ID()] = true
	}
	return out, nil
}

// deleteOrder sorts resources so that dependents come before what they
// depend on (reverse topological order), deterministically.
func deleteOrder(rs []*Resource) []*Resource {
	sort.Slice(rs, func(i, j int) bool {
		if a, b := rs[i].ID(), rs[j].ID(); a != b {
			return a < b
		}
		return rs[i].EngineID < rs[j].EngineID
	})
	byID := make(map[string][]*Resource, len(rs))
	for _, r := range rs {
		byID[r.ID()] = append(byID[r.ID()], r)
	}
	depth := make(map[*Resource]int, len(rs))
	var d func(r *Resource, seen int) int
	d = func(r *Resource, seen int) int {
		if v, ok := depth[r]; ok {
			return v
		}
		best := 0
		if seen < len(rs) { // guards against cycles in observed labels
			for _, dep := range r.DependsOn {
				for _, p := range byID[dep] {
					best = max(best, d(p, seen+1)+1)
				}
			}
		}
		depth[r] = best
		return best
	}
	for _, r := range rs {
		d(r, 0)
	}
	sort.SliceStable(rs, func(i, j int) bool { return depth[rs[i]] > depth[rs[j]] })
	return rs
}

func nameKey(r *Resource) string { return r.Provider + "-" + r.Kind + "/" + r.Name }

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// better reports whether duplicate a should be kept over b.
func better(a, b *Resource, aNamed, bNamed bool, inUse map[string]bool) bool {
	if aNamed != bNamed {
		return aNamed
	}
	if inUse[a.EngineID] != inUse[b.EngineID] {
		return inUse[a.EngineID]
	}
	return a.EngineID < b.EngineID
}
