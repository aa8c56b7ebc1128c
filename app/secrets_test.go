package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/spec"
)

// TestResolveSecretsStateDir checks the wiring of resolveSecrets: the key
// under $XDG_STATE_HOME, values from the process's environment, and no key
// at all without secrets. Not parallel: it sets the environment.
func TestResolveSecretsStateDir(t *testing.T) {
	state, dir := t.TempDir(), t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	t.Setenv("BOTTLE_UNIT_API_KEY", "sk-unit-value")
	plain := filepath.Join(dir, "plain.yaml")
	withSecret := filepath.Join(dir, "secret.yaml")
	doc := "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata: {name: NAME}\nspec:\n  agent:\n    image: alpine\n"
	if err := os.WriteFile(plain, []byte(strings.Replace(doc, "NAME", "plain", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(withSecret, []byte(strings.Replace(doc, "NAME", "secret", 1)+
		"    secretEnv: {API_KEY: {valueFrom: {env: "+"BOTTLE_UNIT_API_KEY"+"}}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(state, "bottle-apply", "secret.key")
	bottles, err := spec.Load([]string{plain}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := resolveSecrets(bottle.NewAll(bottles)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Errorf("a key was made without secrets: %v", err)
	}
	bottles, err = spec.Load([]string{plain, withSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	resolved := bottle.NewAll(bottles)
	if err := resolveSecrets(resolved); err != nil {
		t.Fatal(err)
	}
	if s := resolved[1].Secrets; len(s) != 1 || s[0].Value != "sk-unit-value" || len(s[0].Digest) != 24 {
		t.Errorf("secrets %v", s)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v", fi, err)
	}
}
