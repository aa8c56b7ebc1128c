package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A started machine sees its -v mounts: cp and exec (relative to /) reach
// the host directory, a :ro mount refuses cp, and status shows the mounts
// under "fake".
func TestMounts(t *testing.T) {
	t.Parallel()
	for _, v := range dialects {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, v)
			rw, ro, src := t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(src, []byte("hello"), 0o600); err != nil {
				t.Fatal(err)
			}
			f.must(createArgs(v, "m", "-v", rw+":/work", "-v", ro+":/ref:ro")...)
			f.must("machine", "start", "--name", "m")
			f.must("machine", "cp", src, "m:/work/a/f")
			if b, err := os.ReadFile(filepath.Join(rw, "a", "f")); err != nil || string(b) != "hello" {
				t.Errorf("cp into the mount: %q, %v", b, err)
			}
			f.must("machine", "exec", "--name", "m", "-w", "/", "--", "mkdir", "-p", "./work/b")
			if fi, err := os.Stat(filepath.Join(rw, "b")); err != nil || !fi.IsDir() {
				t.Errorf("exec mkdir in the mount: %v", err)
			}
			r := f.run("machine", "cp", src, "m:/ref/f")
			if r.code != 1 || !strings.Contains(r.stderr, "Read-only file system") {
				t.Errorf("cp into a read-only mount: exit %d, %q", r.code, r.stderr)
			}
			fk := f.machine("m")["fake"].(map[string]any)
			want := []any{
				map[string]any{"tag": "smolvm0", "source": rw, "target": "/work", "readonly": false},
				map[string]any{"tag": "smolvm1", "source": ro, "target": "/ref", "readonly": true},
			}
			if !reflect.DeepEqual(fk["mounts"], want) {
				t.Errorf("fake.mounts = %#v, want %#v", fk["mounts"], want)
			}
			// Restarting attaches the mounts again; deleting the machine
			// leaves the host directories alone.
			f.must("machine", "stop", "--name", "m")
			f.must("machine", "start", "--name", "m")
			f.must(deleteArgs(v, "m", "-f")...)
			if _, err := os.Stat(filepath.Join(rw, "a", "f")); err != nil {
				t.Errorf("delete removed the host directory's content: %v", err)
			}
		})
	}
}

// cp --mode/--uid/--gid (1.9) set the upload's mode and owner.
func TestCpOwner(t *testing.T) {
	t.Parallel()
	f := newFake(t, v193)
	src := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(src, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.must(createArgs(v193, "m")...)
	f.must("machine", "start", "--name", "m")
	uid, gid := os.Getuid(), os.Getgid()
	f.must("machine", "cp", "--mode", "0640", "--uid", strconv.Itoa(uid), "--gid", strconv.Itoa(gid), src, "m:/etc/x")
	fi, err := os.Stat(filepath.Join(f.root("m"), "etc", "x"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o640 || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("upload: %v %d:%d, want -rw-r----- %d:%d", fi.Mode(), st.Uid, st.Gid, uid, gid)
	}
	if r := newFake(t, v080).run("machine", "cp", "--mode", "0640", src, "m:/x"); r.code != 2 {
		t.Errorf("0.8 cp --mode: exit %d, want a usage error", r.code)
	}
}
