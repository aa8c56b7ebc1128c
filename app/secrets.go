package app

import (
	"errors"
	"os"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/xdg"
	"github.com/bottle-apply/bottle-apply/secret"
)

// resolveSecrets reads the secrets the bottles name (spec.agent.secretEnv)
// from bottle-apply's environment and from files next to their specs, and
// the files they put in their agents (spec.agent.files),
// digests them with the user's key, made on first use under the state
// directory ($XDG_STATE_HOME, or ~/.local/state). Without secrets it reads
// and writes nothing. Its errors never hold a secret's value.
func resolveSecrets(bottles []bottle.Bottle) error {
	var key []byte
	for i := range bottles {
		if len(bottles[i].Spec.Agent.SecretEnv) == 0 && len(bottles[i].Spec.Agent.Files) == 0 {
			continue
		}
		var err error
		if key, err = secret.LoadKey(xdg.StateHome()); err != nil {
			return err
		}
		break
	}
	return errors.Join(secret.Resolve(bottles, key, os.Getenv), secret.ResolveFiles(bottles, key))
}
