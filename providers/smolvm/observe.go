package smolvm

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// Observe implements reconcile.Provider with one `machine ls --json`. It returns the machines
// bottle-apply manages, and unmanaged ones that bear a desired name or a
// bottle's label, so that the diff can refuse to touch them and say so.
//
// The ls lists every machine whatever the scope, so scope.All costs
// nothing more: it lifts the early return, and the volumes of every bottle
// in the state directory are read (observeVolumes).
//
// Without a smolvm binary there is nothing to observe: it returns nothing,
// and Desired then fails for smolvm bottles.
func (p *Provider) Observe(ctx context.Context, scope reconcile.Scope) ([]reconcile.Resource, error) {
	if len(scope.Bottles) == 0 && !scope.All {
		return nil, nil
	}
	// No version probe here: a no-op apply costs one ls. The version is
	// detected when a machine is to be created or deleted.
	// Named volumes are directories of the state directory: no smolvm
	// call, and there even without smolvm.
	vols, err := p.observeVolumes(scope)
	if err != nil {
		return nil, err
	}
	ms, err := p.cli.ls(ctx)
	p.mu.Lock()
	p.missing = err != nil && couldNotRun(err)
	p.mu.Unlock()
	if err != nil {
		if couldNotRun(err) {
			zerolog.Ctx(ctx).Debug().Err(err).Msg("no smolvm machines to observe")
			return vols, nil
		}
		return nil, fmt.Errorf("list smolvm machines: %w", err)
	}
	recs := map[string]*record{}
	for _, m := range ms {
		if m.Labels[bottle.LabelName] != "" || !strings.HasPrefix(m.Name, bottle.NamePrefix) {
			continue
		}
		rec, err := p.readRecord(m.Name)
		if err != nil {
			return nil, err
		}
		if rec != nil {
			recs[m.Name] = rec
		}
	}
	out := observed(ms, recs, scope)
	// A machine goes before its bottle's volumes (destroy --volumes):
	// which ones it mounts is in no label, so all of them.
	for i := range out {
		if !out[i].Managed {
			continue
		}
		for _, v := range vols {
			if v.Bottle == out[i].Bottle && v.Managed {
				out[i].DependsOn = append(out[i].DependsOn, v.ID())
			}
		}
	}
	return append(out, vols...), nil
}

// observed turns machines into resources. A machine is managed when its
// labels, or else its record, name a bottle, a role and a non-empty hash.
// Managed machines are returned whatever the scope (scope.All changes
// nothing here); unmanaged ones only when they carry a bottle's label or
// the name of one of scope.Bottles. It is pure.
func observed(ms []machine, recs map[string]*record, scope reconcile.Scope) []reconcile.Resource {
	namesakes := make(map[string]string, len(scope.Bottles))
	for _, b := range scope.Bottles {
		namesakes[bottle.ResourceName(b, bottle.RoleAgent)] = b
	}
	var out []reconcile.Resource
	for _, m := range ms {
		r := reconcile.Resource{Provider: ProviderName, Kind: kindMachine, Name: m.Name, EngineID: m.Name}
		if l := m.Labels; l[bottle.LabelName] != "" {
			r.Bottle, r.Role, r.Hash, r.Inputs = l[bottle.LabelName], l[bottle.LabelRole], l[bottle.LabelHash], reconcile.DecodeInputs(l[bottle.LabelInputs])
			r.Set, r.ImageID = l[bottle.LabelSet], l[labelImageID]
		} else if rec := recs[m.Name]; rec != nil && strings.HasPrefix(m.Name, bottle.NamePrefix) {
			r.Bottle, r.Role, r.Hash, r.Inputs, r.Set = rec.Bottle, rec.Role, rec.Hash, rec.Inputs, rec.Set
			r.ImageID = rec.ImageID
		}
		r.Managed = bottle.Owned(r.Bottle, r.Role, r.Hash)
		if !r.Managed {
			// Keep a bottle's namesake (the diff refuses to replace it)
			// and what carries a bottle's label (it warns); skip the rest.
			if b, ok := namesakes[m.Name]; ok && r.Bottle == "" {
				r.Bottle = b
			}
			if r.Bottle == "" {
				continue
			}
			r.Hash, r.Inputs, r.ImageID = "", nil, ""
		} else {
			r.DependsOn = []string{
				dockerID(dockerNetwork, r.Bottle, bottle.RoleInternal),
				dockerID(dockerContainer, r.Bottle, bottle.RoleBundle),
			}
		}
		r.State, r.Status = machineState(m.State)
		if m.CreatedAt > 0 {
			r.Created = time.Unix(m.CreatedAt, 0)
		}
		if m.Image != "" {
			r.Summary = map[string]string{"image": m.Image}
		}
		out = append(out, r)
	}
	return out
}

// machineState maps smolvm's states. Created and stopped machines get
// started; failed and unreachable (VMM alive, agent dead) ones replaced;
// frozen (1.3+, a fork base) ones left alone. Status keeps smolvm's word
// where the state does not say it.
func machineState(s string) (reconcile.State, string) {
	var st reconcile.State
	switch s {
	case "running":
		st = reconcile.StateRunning
	case "created":
		st = reconcile.StateCreated
	case "stopped":
		st = reconcile.StateStopped
	case "failed", "unreachable":
		st = reconcile.StateFailed
	default: // "frozen", and states this version does not know
		st = reconcile.StateUnknown
	}
	if s == st.String() {
		return st, ""
	}
	return st, s
}
