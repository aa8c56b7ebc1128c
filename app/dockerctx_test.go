package app

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDockerHostFromContext(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_HOST", "")
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("DOCKER_CONTEXT", "")
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if h, err := dockerHostFromContext(); h != "" || err != nil {
		t.Fatalf("no config: %q %v", h, err)
	}
	write(filepath.Join(dir, "config.json"), `{"currentContext":"remote"}`)
	if _, err := dockerHostFromContext(); err == nil || !strings.Contains(err.Error(), `docker context "remote" not found`) {
		t.Fatalf("missing context: %v", err)
	}
	sum := sha256.Sum256([]byte("remote"))
	write(filepath.Join(dir, "contexts", "meta", hex.EncodeToString(sum[:]), "meta.json"),
		`{"Name":"remote","Endpoints":{"docker":{"Host":"ssh://me@box","SkipTLSVerify":false}}}`)
	if h, err := dockerHostFromContext(); h != "ssh://me@box" || err != nil {
		t.Fatalf("current context: %q %v", h, err)
	}
	t.Setenv("DOCKER_CONTEXT", "default")
	if h, err := dockerHostFromContext(); h != "" || err != nil {
		t.Fatalf("DOCKER_CONTEXT=default: %q %v", h, err)
	}
	t.Setenv("DOCKER_HOST", "tcp://1.2.3.4:2375")
	if h, err := dockerHostFromContext(); h != "" || err != nil {
		t.Fatalf("DOCKER_HOST wins: %q %v", h, err)
	}
}
