package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/place"
)

// `bottle-bundle place` fails, exit code 1 and a message naming what is
// wrong, on a missing or bad manifest; 2 on extra arguments.
func TestPlaceRefusesABadManifest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		args     []string
		manifest string // "" leaves BOTTLE_PLACE unset
		code     int
		want     string
	}{
		{"unset", []string{"place"}, "", 1, "bottle-bundle: place: BOTTLE_PLACE is not set"},
		{"not JSON", []string{"place"}, `{"files":[`, 1, "bottle-bundle: place: BOTTLE_PLACE: read the manifest"},
		{"an unknown field", []string{"place"}, `{"files":[{"content":"x"}]}`, 1, `unknown field "content"`},
		{"\"..\" in dst", []string{"place"},
			`{"files":[{"src":"/bottle-files/src/f0","dst":"/home/agent/../../etc/shadow","mode":384,"uid":0,"gid":0,"volume":"/home/agent"}]}`,
			1, `bottle-bundle: place: BOTTLE_PLACE: invalid manifest: files[0].dst: "/home/agent/../../etc/shadow" is not clean`},
		{"extra arguments", []string{"place", "now"}, `{}`, 2, "usage: bottle-bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			getenv := func(k string) string {
				if k == place.Env {
					return tc.manifest
				}
				return ""
			}
			var out, errOut bytes.Buffer
			if code := run(t.Context(), tc.args, nil, &out, &errOut, getenv); code != tc.code {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tc.code, errOut.String())
			}
			if !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("stderr %q does not say %q", errOut.String(), tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q, want nothing", out.String())
			}
		})
	}
}

// A good manifest puts the file in place and gives the root away.
func TestPlace(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("giving files to other owners needs root")
	}
	base := t.TempDir()
	src, vol := filepath.Join(base, "src"), filepath.Join(base, "home")
	for _, d := range []string{src, vol} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "f0"), []byte("[user]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := place.Manifest{
		Files: []place.File{{Path: "/home/agent/.config/git/config", Src: filepath.Join(src, "f0"),
			Dst: filepath.Join(vol, ".config/git/config"), Mode: 0o600, UID: 1000, GID: 1000, Volume: vol}},
		Chown: []place.Chown{{Path: vol, UID: 1000, GID: 1000}},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == place.Env {
			return string(raw)
		}
		return ""
	}
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"place"}, nil, &out, &errOut, getenv); code != 0 {
		t.Fatalf("exit code %d; stderr: %s", code, errOut.String())
	}
	if got, err := os.ReadFile(m.Files[0].Dst); err != nil || string(got) != "[user]\n" {
		t.Fatalf("placed file holds %q, %v", got, err)
	}
	if want := "files placed: 1, volume roots given away: 1\n"; out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
}
