package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/providers/docker"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// local reports whether the engine runs on this machine, where a host
// directory of a spec is the path the engine mounts: a unix socket, or
// TCP on a loopback address.
func (e endpoint) local() bool {
	u, err := url.Parse(e.Host)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "unix", "npipe":
		return true
	case "tcp", "http", "https":
		host := u.Hostname()
		if host == "localhost" {
			return true
		}
		ip := net.ParseIP(host)
		return ip != nil && ip.IsLoopback()
	}
	return false
}

// checkHostDirs refuses the host directories of docker agents on an
// engine that is not on this machine: bottle-apply checked the paths here,
// and the engine would mount whatever its own host has there. A smolvm
// machine runs here, whatever the engine of its bundle.
func (ps *Providers) checkHostDirs(bottles []bottle.Bottle) error {
	if ps.endpoint.local() {
		return nil
	}
	var errs []error
	for i := range bottles {
		b := &bottles[i]
		if b.Spec.Backend == spec.BackendSmolvm {
			continue // smolvm mounts this machine's directories, whatever the engine
		}
		for j, v := range b.Spec.Agent.Volumes {
			if v.Named() {
				continue
			}
			errs = append(errs, fmt.Errorf("%s: bottle %s: spec.agent.volumes[%d]: host directory %q cannot be used with the engine at %s (%s): "+
				"it would be a path on the engine's host, which bottle-apply cannot check; use a named volume (e.g. work:%s) and bottle-apply cp, "+
				"or run bottle-apply on the engine's host",
				b.Source.File, b.Metadata.Name, j, v.Source, ps.endpoint.Host, ps.endpoint.Source, v.Target))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w\nnothing was changed", errors.Join(errs...))
	}
	return nil
}

// warnSensitive logs each host directory that needed allowSensitive.
func warnSensitive(ctx context.Context, bottles []bottle.Bottle) {
	for i := range bottles {
		for _, w := range spec.SensitiveVolumes(bottles[i].Bottle) {
			zerolog.Ctx(ctx).Warn().Str("bottle", bottles[i].Metadata.Name).Msg(w)
		}
	}
}

// startedAgents names the bottles whose docker agent container a run
// created, started or replaced: with tried, also those whose step failed.
func startedAgents(run *reconcile.Result, bottles []bottle.Bottle, tried bool) []string {
	var out []string
	for i := range bottles {
		b := &bottles[i]
		if b.Spec.Backend != spec.BackendDocker {
			continue
		}
		id := (&reconcile.Resource{Provider: docker.ProviderName, Kind: docker.KindContainer, Bottle: b.Metadata.Name, Role: bottle.RoleAgent}).ID()
		for _, s := range run.Steps {
			if s.ResourceID == id && (s.Err == "" || tried) && s.Action != reconcile.NoOp && s.Action != reconcile.Delete {
				out = append(out, b.Metadata.Name)
				break
			}
		}
	}
	return out
}

// deadAgents explains a run that did not converge because agents it
// started kept exiting (each round starts them again): their exit codes
// and last lines. It is nil when every agent runs.
func (ps *Providers) deadAgents(ctx context.Context, run *reconcile.Result, bottles []bottle.Bottle) error {
	if run == nil {
		return nil
	}
	names := startedAgents(run, bottles, true)
	if len(names) == 0 {
		return nil
	}
	// Within 0: a running agent has survived already, a dead one says why.
	return ps.docker.AwaitRunning(ctx, names, 0)
}

// awaitAgents waits, at most o.ReadyWait, until every agent the run
// started has stayed running, and fails naming each that exited, with its
// exit code and its last lines.
func (ps *Providers) awaitAgents(ctx context.Context, o *Options, names []string) error {
	if o.ReadyWait <= 0 || len(names) == 0 {
		return nil
	}
	started := time.Now()
	err := ps.docker.AwaitRunning(ctx, names, o.ReadyWait)
	zerolog.Ctx(ctx).Debug().Strs("bottles", names).Dur("took", time.Since(started)).Msg("agents stayed running")
	return err
}
