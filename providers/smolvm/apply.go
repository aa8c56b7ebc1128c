package smolvm

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// Apply implements reconcile.Provider: it carries out one Create, Start or
// Delete of a machine and decides nothing.
func (p *Provider) Apply(ctx context.Context, s reconcile.Step) error {
	r := &s.Resource
	if r.Kind == kindVolume {
		return p.applyVolume(s)
	}
	if r.Kind != kindMachine {
		return fmt.Errorf("internal: the smolvm provider cannot %s a %s", s.Action, r.Kind)
	}
	switch s.Action {
	case reconcile.Create:
		cfg, ok := r.Config.(machineConfig)
		if !ok {
			return fmt.Errorf("internal: %s has no machine config", r.ID())
		}
		return redactSecrets(p.createMachine(ctx, cfg), cfg.Secrets)
	case reconcile.Start:
		name := r.Name
		if s.Observed != nil {
			name = s.Observed.Name
		}
		cfg, _ := r.Config.(machineConfig) // same hash: the machine holds these secrets
		return redactSecrets(p.startMachine(ctx, name), cfg.Secrets)
	case reconcile.Delete:
		// The first half of a Replace carries the desired form: make sure
		// its image is ready before the old machine goes.
		if cfg, ok := r.Config.(machineConfig); ok {
			v, err := p.Available(ctx)
			if err != nil {
				return err
			}
			if _, err := p.ensureImage(ctx, v, cfg.Image); err != nil {
				return fmt.Errorf("%w; machine %s was left as it is", err, r.Name)
			}
		}
		if s.Observed != nil {
			r = s.Observed
		}
		return p.deleteMachine(ctx, r)
	}
	return fmt.Errorf("internal: the smolvm provider cannot %s a %s", s.Action, r.Kind)
}

// applyVolume creates a named volume's directory, or deletes it (only a
// destroy --volumes plans that: a volume is persistent).
func (p *Provider) applyVolume(s reconcile.Step) error {
	r := &s.Resource
	switch s.Action {
	case reconcile.Create:
		cfg, ok := r.Config.(volumeConfig)
		if !ok {
			return fmt.Errorf("internal: %s has no volume config", r.ID())
		}
		return p.createVolume(cfg)
	case reconcile.Delete:
		if s.Observed != nil {
			r = s.Observed
		}
		return p.deleteVolume(r)
	}
	return fmt.Errorf("internal: the smolvm provider cannot %s a %s", s.Action, r.Kind)
}

// redactSecrets hides the values of secrets in err's message: the argv
// that RunError shows is redacted already (Redact), but smolvm's own output
// might repeat a value. errors.Is and errors.As still see the error.
func redactSecrets(err error, values []string) error {
	if err == nil || len(values) == 0 {
		return err
	}
	return &redactedError{err: err, values: values}
}

type redactedError struct {
	err    error
	values []string
}

func (e *redactedError) Error() string {
	msg := e.err.Error()
	for _, v := range e.values {
		if v != "" {
			msg = strings.ReplaceAll(msg, v, redacted)
		}
	}
	return msg
}

func (e *redactedError) Unwrap() error { return e.err }

// createMachine makes the image available, creates the machine, claims it
// (labels from 1.8, a record before) and starts it.
func (p *Provider) createMachine(ctx context.Context, cfg machineConfig) error {
	v, err := p.Available(ctx)
	if err != nil {
		return err
	}
	src, err := p.ensureImage(ctx, v, cfg.Image)
	if err != nil {
		return err
	}
	log := zerolog.Ctx(ctx)
	if len(cfg.Cmd) > 0 && !v.AtLeast(v1Workload) {
		log.Warn().Str("machine", cfg.Name).Str("smolvm", v.String()).
			Msg("smolvm before 1.9 cannot set a machine's command: the image's own command runs instead of spec.agent.command")
	}
	vols, err := p.mountArgs(cfg)
	if err != nil {
		return err
	}
	labels, rec := cfg.Labels, cfg.Record
	if src.id != "" {
		labels = maps.Clone(labels)
		labels[labelImageID], rec.ImageID = src.id, src.id
	}
	err = p.cli.create(ctx, v, createOpts{
		Name: cfg.Name, From: src.from, Image: src.image,
		AllowCIDRs: cfg.AllowCIDRs, Env: cfg.Env, CPUs: cfg.CPUs, MemoryMiB: cfg.MemoryMiB,
		Workdir: cfg.Workdir, Labels: labels, Cmd: cfg.Cmd, Volumes: vols,
	})
	if err != nil {
		if isAlreadyExists(err) {
			// Made meanwhile, by a concurrent run or by hand: the next
			// round sees which.
			return fmt.Errorf("create machine %s: %w (%w)", cfg.Name, err, reconcile.ErrRetry)
		}
		return fmt.Errorf("create machine %s: %w", cfg.Name, err)
	}
	log.Debug().Str("machine", cfg.Name).Str("route", src.route).Msg("machine created")
	if !v.AtLeast(v1Labels) {
		if err := p.writeRecord(rec); err != nil {
			return fmt.Errorf("claim machine %s: %w; bottle-apply will not touch it without its record: remove it (%s) and apply again",
				cfg.Name, err, PrettyCommand(append([]string{p.opts.Binary}, deleteArgs(v, cfg.Name)...)))
		}
	}
	if len(cfg.Files) == 0 && cfg.CACert == nil {
		return p.startMachine(ctx, cfg.Name)
	}
	// smolvm cp needs a running machine. A machine of ours always holds
	// its files: if they cannot be written, it goes, and the next apply
	// makes it again (a later Start would not write them).
	err = p.startMachine(ctx, cfg.Name)
	files := cfg.Files
	if err == nil && cfg.CACert != nil {
		roots, from := p.imageRoots(ctx, cfg.Name)
		log.Debug().Str("machine", cfg.Name).Str("roots", from).Msg("the bottle's CA joins the agent's CA bundle")
		files = append(slices.Clone(files), bottle.CAFiles(cfg.CACert, roots)...)
	}
	if err == nil {
		err = p.copyFiles(ctx, v, cfg.Name, files)
	}
	if err != nil {
		r := &reconcile.Resource{Kind: kindMachine, Name: cfg.Name, Managed: true}
		if derr := p.deleteMachine(ctx, r); derr != nil {
			return fmt.Errorf("%w; removing the machine without its files failed too: %w", err, derr)
		}
		return fmt.Errorf("%w; machine %s was removed, as it could not get its spec.agent.files: the next apply creates it again", err, cfg.Name)
	}
	return nil
}

// mountArgs are the -v values of a machine: its named volumes' directories
// must exist (the volume steps come first) and be ours.
func (p *Provider) mountArgs(cfg machineConfig) ([]string, error) {
	var errs []error
	vols := volumeArgs(cfg.Mounts, func(vol string) string {
		dir, err := p.volumeDir(cfg.Bottle, vol)
		if err != nil {
			errs = append(errs, err)
			return ""
		}
		data := filepath.Join(dir, volumeDataSubdir)
		if rec, err := readVolumeRecord(dir, cfg.Bottle, vol); rec == nil || err != nil {
			errs = append(errs, fmt.Errorf("create machine %s: volume %s is not ready (%s has no bottle-apply record)", cfg.Name, vol, dir))
		} else if fi, err := os.Stat(data); err != nil || !fi.IsDir() {
			// Removed by hand: a volume is never replaced, so say how to
			// start it again, empty.
			errs = append(errs, fmt.Errorf("create machine %s: the data directory of volume %s (%s) is missing; "+
				"remove %s and apply again to start the volume empty", cfg.Name, vol, data, dir))
		} else if err := giveData(data, cfg.User); err != nil {
			// On every create, as the docker provider does: also when the
			// run that made the volume stopped before its machine.
			errs = append(errs, fmt.Errorf("create machine %s: give volume %s to the agent's user: %w", cfg.Name, vol, err))
		}
		return data
	})
	// A host directory must still be the one the spec's checks passed: a
	// path whose parts became symlinks since would be mounted wherever
	// they lead.
	for _, m := range cfg.Mounts {
		if m.Host == "" {
			continue
		}
		if err := spec.RecheckHostPath(m.Host); err != nil {
			errs = append(errs, fmt.Errorf("create machine %s: %w", cfg.Name, err))
		}
	}
	return vols, errors.Join(errs...)
}

func (p *Provider) startMachine(ctx context.Context, name string) error {
	err := p.cli.start(ctx, name)
	if err == nil {
		return nil
	}
	if hint, ok := hypervisorProblem(err); ok {
		return fmt.Errorf("start machine %s: smolvm cannot run a VM on this host: %w; to fix it, %s; "+
			"the machine exists but is not running, and the next apply starts it", name, err, hint)
	}
	if isNotFound(err) {
		// Deleted meanwhile: the next round creates it.
		return fmt.Errorf("start machine %s: %w (%w)", name, err, reconcile.ErrRetry)
	}
	return fmt.Errorf("start machine %s: %w", name, err)
}

// deleteMachine stops the machine (0.8.0's delete does not, and would
// orphan its VMM), deletes it and drops its record. A machine already gone
// is fine. A stop that fails otherwise does not prevent the delete: a
// failed machine may not stop cleanly.
func (p *Provider) deleteMachine(ctx context.Context, r *reconcile.Resource) error {
	if !r.Managed {
		return fmt.Errorf("internal: refusing to delete machine %s: %w", r.Name, reconcile.ErrNotManaged)
	}
	v, err := p.Available(ctx)
	if err != nil {
		return err
	}
	stopErr := p.cli.stop(ctx, r.Name)
	if stopErr != nil && (isNotRunning(stopErr) || isNotFound(stopErr)) {
		stopErr = nil
	}
	if stopErr != nil {
		zerolog.Ctx(ctx).Warn().Err(stopErr).Str("machine", r.Name).Msg("stop failed; deleting anyway")
	}
	if err := p.cli.delete(ctx, v, r.Name); err != nil && !isNotFound(err) {
		if stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop first: %w", stopErr))
		}
		return fmt.Errorf("delete machine %s: %w", r.Name, err)
	}
	return p.removeRecord(r.Name)
}
