package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/ca"
	"github.com/bottle-apply/bottle-apply/internal/xdg"
	"github.com/bottle-apply/bottle-apply/spec"
)

// resolveCAs gives each bottle with credentials its CA: the one kept in
// the state directory for this engine (or cluster) and bottle, or a new
// one, kept when save is set (an apply that is not a dry run, under the
// bottles' locks). A new CA where an agent already runs replaces the agent
// (its hash holds the CA's fingerprint), and the log says why.
func (ps *Providers) resolveCAs(ctx context.Context, bottles []bottle.Bottle, save bool) error {
	var errs []error
	for i := range bottles {
		b := &bottles[i]
		b.CA = nil
		if len(b.Spec.Bundle.Egress.Credentials) == 0 {
			continue
		}
		hosts := credentialHosts(b)
		c, made, err := ps.loadCA(ctx, b, hosts, save)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		b.CA = c
		if made && save {
			zerolog.Ctx(ctx).Info().Str("bottle", b.Metadata.Name).Strs("hosts", hosts).
				Msg("made the bottle's CA for its credentials (none was kept for these hosts on this engine): an agent made with another CA is replaced to trust it")
		}
	}
	return errors.Join(errs...)
}

// loadCA is the CA kept for bottle b under its engine or cluster (a
// bottle of the same name on another one is another bottle), or a new
// one, kept when save is set: made reports a new one. --verify's
// self-test asks it without save (Providers.keptCA).
func (ps *Providers) loadCA(ctx context.Context, b *bottle.Bottle, hosts []string, save bool) (*bottle.CA, bool, error) {
	key, err := ps.engineKey(ctx, b)
	if err != nil {
		return nil, false, err
	}
	dir := xdg.CADir(key, b.Metadata.Name)
	if dir == "" {
		return nil, false, errors.New("bottle-apply keeps the CA of a bottle with credentials in its state directory, and it has none: set HOME or XDG_STATE_HOME; nothing was changed")
	}
	c, made, err := ca.Load(dir, b.Metadata.Name, hosts, time.Now(), save)
	if err != nil {
		return nil, false, fmt.Errorf("bottle %s: the CA of spec.bundle.egress.credentials: %w", b.Metadata.Name, err)
	}
	return c, made, nil
}

// credentialHosts are the distinct hosts of a bottle's credentials, in
// the spec's order: what its CA may vouch for.
func credentialHosts(b *bottle.Bottle) []string {
	var hosts []string
	seen := map[string]bool{}
	for _, c := range b.Spec.Bundle.Egress.Credentials {
		h := spec.NormalizeHost(c.Host)
		if !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	return hosts
}
