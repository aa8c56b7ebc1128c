package smolvm

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// TestFakeRebuiltImage: against the fake smolvm, in both dialects (labels
// from 1.8, records before), a machine made of a local image is replaced
// when the image is rebuilt under its tag, saying both IDs, and made of
// the new content (its own archive or pack); nothing rebuilt is no change.
func TestFakeRebuiltImage(t *testing.T) {
	t.Parallel()
	const newID = "sha256:a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	for _, v := range []string{"0.8.0", "1.9.3"} {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			f := newFakeSmolvm(t, v)
			ids := map[string]string{"agent:1": imageID}
			var events []string
			f.p = New(ExecRunner{}, Options{Binary: f.bin, CacheDir: f.cache, StateDir: f.state, Version: "test",
				Images: &fakeImages{ids: ids, events: &events}})
			// Before 1.9 a local image is packed from a loopback registry,
			// which the fake cannot pull from: the packs are made already.
			for _, id := range []string{imageID, newID} {
				dir := filepath.Join(f.cache, "packs", contentKey(id))
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				packs(t, filepath.Join(dir, "agent"))()
			}
			bs := []bottle.Bottle{*testBottle("hello")}
			run := func(what string) *reconcile.Result {
				t.Helper()
				res, err := reconcile.Run(t.Context(), []reconcile.Provider{f.p}, bs, reconcile.Options{})
				if err != nil || !res.Converged {
					t.Fatalf("%s: %v", what, err)
				}
				return res
			}
			madeOf := func() string {
				t.Helper()
				rs, err := f.p.Observe(t.Context(), reconcile.Scope{Bottles: []string{"hello"}})
				if err != nil || len(rs) != 1 {
					t.Fatalf("observe: %v, %v", rs, err)
				}
				return rs[0].ImageID
			}

			run("first apply")
			if got := madeOf(); got != imageID {
				t.Errorf("machine made of %q, want %q", got, imageID)
			}
			if res := run("apply with nothing rebuilt"); res.Plan.Changes() != 0 {
				t.Errorf("apply with nothing rebuilt planned:\n%s", res.Plan)
			}

			ids["agent:1"] = newID
			res := run("apply after the rebuild")
			want := "#1 smolvm-machine:hello/agent Replace, image changed (sha256:0f1e2d3c4b5a… → sha256:a1b2c3d4e5f6…)\n"
			if got := res.Plan.String(); got != want {
				t.Errorf("plan after the rebuild:\n%swant\n%s", got, want)
			}
			if got := madeOf(); got != newID {
				t.Errorf("machine made of %q after the rebuild, want %q", got, newID)
			}
			if v == "1.9.3" {
				mustExist(t, filepath.Join(f.cache, "images", contentKey(newID)+".tar"))
			}
			if res := run("apply after the replace"); res.Plan.Changes() != 0 {
				t.Errorf("apply after the replace planned:\n%s", res.Plan)
			}
		})
	}
}
