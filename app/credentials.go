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
		// Per engine and bottle: a bottle of the same name on another
		// engine or cluster is another bottle.
		key, err := ps.engineKey(ctx, b)
		if err != nil {
			return err
		}
		dir := xdg.CADir(key, b.Metadata.Name)
		if dir == "" {
			return errors.New("bottle-apply keeps the CA of a bottle with credentials in its state directory, and it has none: set HOME or XDG_STATE_HOME; nothing was changed")
		}
		hosts := credentialHosts(b)
		c, made, err := ca.Load(dir, b.Metadata.Name, hosts, time.Now(), save)
		if err != nil {
			errs = append(errs, fmt.Errorf("bottle %s: the CA of spec.bundle.egress.credentials: %w", b.Metadata.Name, err))
			continue
		}
		b.CA = c
		if made && save {
			zerolog.Ctx(ctx).Info().Str("bottle", b.Metadata.Name).Str("dir", dir).Strs("hosts", hosts).
				Msg("made the bottle's CA for its credentials (none was kept for these hosts on this engine): an agent made with another CA is replaced to trust it")
		}
	}
	return errors.Join(errs...)
}

// loadKeptCA is the CA kept for bottle b on its engine, for --verify's
// self-test: it makes none, and made reports that none fits (see
// Providers.keptCA).
func (ps *Providers) loadKeptCA(ctx context.Context, b *bottle.Bottle, hosts []string) (*bottle.CA, bool, error) {
	key, err := ps.engineKey(ctx, b)
	if err != nil {
		return nil, false, err
	}
	dir := xdg.CADir(key, b.Metadata.Name)
	if dir == "" {
		return nil, true, nil
	}
	return ca.Load(dir, b.Metadata.Name, hosts, time.Now(), false)
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
