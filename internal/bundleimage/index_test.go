package bundleimage_test

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// files reads the files of an image's one layer: their headers and, for
// regular files, their content.
func files(t testing.TB, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		hdrs[h.Name] = h
		if data[h.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
	return hdrs, data
}

func TestBundleImageIndex(t *testing.T) {
	t.Parallel()
	dir := testenv.FakeBundleBuilds(t, elf.EM_AARCH64, elf.EM_X86_64)
	builds, err := dir.All()
	if err != nil {
		t.Fatal(err)
	}
	idx, platforms, err := bundleimage.Index(builds, "v9")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(platforms, want) {
		t.Errorf("platforms = %q, want %q", platforms, want)
	}
	if mt, _ := idx.MediaType(); mt != types.OCIImageIndex {
		t.Errorf("index media type = %s", mt)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("index has %d manifests, want 2", len(im.Manifests))
	}
	for i, goarch := range []string{"amd64", "arm64"} {
		d := im.Manifests[i]
		if d.Platform == nil || d.Platform.OS != "linux" || d.Platform.Architecture != goarch || d.MediaType != types.OCIManifestSchema1 {
			t.Errorf("manifest %d: %+v, want an OCI manifest for linux/%s", i, d, goarch)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != "linux" || cf.Architecture != goarch || !slices.Equal(cf.Config.Entrypoint, bundleimage.Entrypoint) ||
			cf.Config.Labels[bottle.LabelVersion] != "v9" || cf.Created.Unix() != 0 {
			t.Errorf("linux/%s config: %+v", goarch, cf)
		}
		hdrs, data := files(t, img)
		build, _ := dir.Path(goarch)
		want, _ := os.ReadFile(build)
		if h := hdrs["bottle-bundle"]; h == nil || h.Mode != 0o755 || !bytes.Equal(data["bottle-bundle"], want) {
			t.Errorf("linux/%s: /bottle-bundle is not the build: %+v", goarch, h)
		}
		if h := hdrs["tmp/"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o1777 {
			t.Errorf("linux/%s: /tmp is %+v, want a directory 1777", goarch, h)
		}
	}

	// The same builds, copied elsewhere, make the same index; another
	// version another.
	again := testenv.FakeBundleBuilds(t, elf.EM_X86_64, elf.EM_AARCH64)
	b2, _ := again.All()
	idx2, _, err := bundleimage.Index(b2, "v9")
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := idx.Digest()
	d2, _ := idx2.Digest()
	if d1 != d2 {
		t.Errorf("the same builds make two indexes: %s, %s", d1, d2)
	}
	idx3, _, _ := bundleimage.Index(b2, "v10")
	if d3, _ := idx3.Digest(); d3 == d1 {
		t.Error("another version makes the same index")
	}
}

func TestBundleImageIndexRefusesBadBuilds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	misnamed := filepath.Join(dir, bundlebin.Name("arm64"))
	data, _ := os.ReadFile(testenv.WriteELF(t, elf.EM_X86_64, false))
	if err := os.WriteFile(misnamed, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bundleimage.Index([]string{misnamed}, "v1"); err == nil || !strings.Contains(err.Error(), "is for EM_X86_64, not linux/arm64") {
		t.Errorf("Index of a misnamed build: %v", err)
	}
	if _, _, err := bundleimage.Index(nil, "v1"); !errors.Is(err, bundlebin.ErrNoBuild) {
		t.Errorf("Index of no build: %v, want ErrNoBuild", err)
	}
}
