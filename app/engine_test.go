package app

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestEnginePlatformAndLockKey(t *testing.T) {
	t.Parallel()
	for arch, want := range map[string]string{
		"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "s390x": "s390x", "ppc64le": "ppc64le", "riscv64": "riscv64", "sparc64": "sparc64",
	} {
		if p := (Engine{OS: "linux", Arch: arch}).Platform(); p != "linux/"+want {
			t.Errorf("Platform of %s = %q, want linux/%s", arch, p, want)
		}
	}
	// Two addresses of one engine take one lock; an engine without an
	// ID is known by its address.
	a := Engine{Endpoint: "unix:///var/run/docker.sock", ID: "X7QK:2C3Q"}
	b := Engine{Endpoint: "ssh://me@box", ID: "X7QK:2C3Q"}
	if a.LockKey() != b.LockKey() {
		t.Errorf("lock keys of one engine differ: %q, %q", a.LockKey(), b.LockKey())
	}
	if n := (Engine{Endpoint: "tcp://box:2376"}); n.LockKey() != "endpoint:tcp://box:2376" {
		t.Errorf("lock key without an ID = %q", n.LockKey())
	}
}

func TestEngineRecord(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "docker.sock")
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	unix := "unix://" + sock
	now := time.Now()
	cases := []struct {
		name     string
		rec      engineRecord
		endpoint string
		at       time.Time
		ok       bool
	}{
		{"fresh", engineRecord{Endpoint: "ssh://me@box", ID: "a", Checked: now}, "ssh://me@box", now.Add(time.Hour), true},
		{"a day old", engineRecord{Endpoint: "ssh://me@box", ID: "a", Checked: now}, "ssh://me@box", now.Add(25 * time.Hour), false},
		{"from the future", engineRecord{Endpoint: "ssh://me@box", ID: "a", Checked: now.Add(time.Hour)}, "ssh://me@box", now, false},
		{"another address", engineRecord{Endpoint: "ssh://me@box", ID: "a", Checked: now}, "ssh://me@other", now, false},
		{"no ID", engineRecord{Endpoint: "ssh://me@box", Checked: now}, "ssh://me@box", now, false},
		{"the same socket", engineRecord{Endpoint: unix, ID: "a", Checked: now, Socket: socketTime(unix)}, unix, now, true},
		{"a socket made anew", engineRecord{Endpoint: unix, ID: "a", Checked: now, Socket: socketTime(unix).Add(-time.Second)}, unix, now, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, tc.name, "engine.json")
			if err := saveEngineRecord(path, tc.rec); err != nil {
				t.Fatal(err)
			}
			got, ok := loadEngineRecord(path, tc.endpoint, tc.at)
			if ok != tc.ok || (ok && got.ID != tc.rec.ID) {
				t.Fatalf("case %d: loadEngineRecord = %+v, %v; want %v", i, got, ok, tc.ok)
			}
		})
	}
	if _, ok := loadEngineRecord(filepath.Join(dir, "none.json"), "ssh://me@box", now); ok {
		t.Error("a record where there is none")
	}
	if _, ok := loadEngineRecord("", "ssh://me@box", now); ok {
		t.Error("a record without a cache directory")
	}
}
