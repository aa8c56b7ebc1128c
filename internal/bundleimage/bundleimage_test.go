package bundleimage_test

import (
	"debug/elf"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

func TestBundleImageRef(t *testing.T) {
	t.Parallel()
	amd := testenv.FakeBundleBuilds(t, elf.EM_X86_64)
	both := testenv.FakeBundleBuilds(t, elf.EM_X86_64, elf.EM_AARCH64)
	ref := func(paths ...string) string {
		t.Helper()
		r, err := bundleimage.Ref(paths)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(r, bundleimage.Repo+":") || len(r) != len(bundleimage.Repo)+1+12 {
			t.Fatalf("ref %q", r)
		}
		return r
	}
	a, _ := amd.Path("amd64")
	b1, _ := both.Path("amd64")
	b2, _ := both.Path("arm64")
	if ref(a) != ref(b1) {
		t.Error("the same build in another directory names another image")
	}
	if ref(b1, b2) != ref(b2, b1) {
		t.Error("the order of the builds changes the image")
	}
	if ref(b1, b2) == ref(b1) {
		t.Error("a build more does not change the image")
	}
	if _, err := bundleimage.Ref(nil); err == nil {
		t.Error("a ref without any build")
	}
}
