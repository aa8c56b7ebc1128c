package app

import (
	"errors"
	"os"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/xdg"
	"github.com/bottle-apply/bottle-apply/secret"
)

// resolveSecrets reads the secrets the bottles name (spec.agent.secretEnv)
// from bottle-apply's environment and from files next to their specs, the
// files they put in their agents (spec.agent.files), and the credentials
// and trust files of their bundles (spec.bundle.egress.credentials,
// trust), and digests them with the user's key, made on first use under
// the state directory ($XDG_STATE_HOME, or ~/.local/state). Without any of
// them it reads and writes nothing. Its errors never hold a secret's value.
func resolveSecrets(bottles []bottle.Bottle) error {
	var key []byte
	for i := range bottles {
		a, e := &bottles[i].Spec.Agent, &bottles[i].Spec.Bundle.Egress
		if len(a.SecretEnv) == 0 && len(a.Files) == 0 && len(e.Credentials) == 0 && len(e.Trust) == 0 {
			continue
		}
		var err error
		if key, err = secret.LoadKey(xdg.StateHome()); err != nil {
			return err
		}
		break
	}
	return errors.Join(secret.Resolve(bottles, key, os.Getenv), secret.ResolveFiles(bottles, key),
		secret.ResolveCredentials(bottles, key, os.Getenv))
}
