package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	pathpkg "path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/client"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

func TestIntegrationImageExport(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	p := newProvider(c, Options{})
	ref := testenv.AgentImage(t, c)

	id, err := p.ImageID(t.Context(), ref)
	if err != nil || !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("ImageID(%s) = %q, %v", ref, id, err)
	}
	if id, err := p.ImageID(t.Context(), "bottle-apply-test/absent:none"); id != "" || err != nil {
		t.Fatalf("ImageID of a missing image = %q, %v; want \"\", nil", id, err)
	}

	// Save writes a docker-save archive, of the engine's platform (asked
	// for on engines from API 1.48).
	archive := filepath.Join(t.TempDir(), "sub", "image.tar")
	if err := p.Save(t.Context(), ref, "linux/"+runtime.GOARCH, archive); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
	}
	if !names["manifest.json"] {
		t.Fatalf("the archive has no manifest.json: %v", names)
	}

	// Serve makes it pullable from a loopback registry until stopped.
	pullRef, stop, err := p.Serve(t.Context(), ref, "linux/"+runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pullRef, "127.0.0.1:") {
		stop()
		t.Fatalf("pull reference %q is not on loopback", pullRef)
	}
	host, rest, _ := strings.Cut(pullRef, "/")
	repo, tag, _ := strings.Cut(rest, ":")
	manifest := func() (int, error) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+host+"/v2/"+repo+"/manifests/"+tag, nil)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := manifest(); err != nil || code != http.StatusOK {
		stop()
		t.Fatalf("GET manifest of %s = %d, %v", pullRef, code, err)
	}
	stop()
	if _, err := manifest(); err == nil {
		t.Fatalf("the registry still answers after stop")
	}
}

// TestSaveAsksForThePlatformFromAPI148 checks the request Save makes: the
// platform rides along only where the engine's API takes it (1.48, Docker
// 28), and older engines get the request they accept.
func TestSaveAsksForThePlatformFromAPI148(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		api, platform, want string
	}{
		{"1.41", "linux/arm64", ""},
		{"1.47", "linux/arm64", ""},
		{"1.48", "linux/arm64", `{"architecture":"arm64","os":"linux"}`},
		{"1.56", "linux/amd64", `{"architecture":"amd64","os":"linux"}`},
		{"1.56", "", ""},
	} {
		t.Run(tc.api+" "+tc.platform, func(t *testing.T) {
			t.Parallel()
			var got []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !strings.HasSuffix(r.URL.Path, "/images/get") {
					http.NotFound(w, r)
					return
				}
				got = r.URL.Query()["platform"]
				_, _ = io.WriteString(w, "tar")
			}))
			defer srv.Close()
			c, err := client.NewClientWithOpts(client.WithHost("tcp://"+srv.Listener.Addr().String()), client.WithVersion(tc.api))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := newProvider(c, Options{}).Save(t.Context(), "agent:1", tc.platform, filepath.Join(t.TempDir(), "a.tar")); err != nil {
				t.Fatal(err)
			}
			var want []string
			if tc.want != "" {
				want = []string{tc.want}
			}
			if !slices.Equal(got, want) {
				t.Errorf("platform = %q on API %s, want %q", got, tc.api, want)
			}
		})
	}
}

// TestIntegrationSaveIsSelfContained saves, of the engine's platform, an
// image of which the engine holds one platform's content out of two (what
// a pull of a multi-platform image leaves on the containerd image store),
// and checks that the archive is self-contained: every blob its index.json
// and manifest.json name, and the indexes and manifests they lead to, is
// in it. Docker 29 saves such an image, when not asked for a platform, with
// an index naming the other platform's manifest and leaving its blob out
// (the engines issue, item 2); Save asks for the platform from API 1.48.
// Docker 20.10's classic store keeps one platform of what it loads and
// saves it whole.
func TestIntegrationSaveIsSelfContained(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	ctx := t.Context()
	p := newProvider(c, Options{})
	ref := "bottle-apply-test/save:" + testenv.Name("t")
	t.Cleanup(func() {
		_, _ = c.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true, PruneChildren: true})
	})

	// Load, without a registry, the two-platform image: an OCI layout whose
	// index has this machine's platform with its content and another
	// platform without (its manifest, config and layers left out, as a
	// pull of this platform leaves them). The archive holds a docker-save
	// manifest.json too, of this platform, which is what classic stores
	// (Docker 20.10) load.
	other := "arm64"
	if runtime.GOARCH == other {
		other = "amd64"
	}
	archive := twoPlatformArchive(t, ref, "linux/"+runtime.GOARCH, "linux/"+other)
	resp, err := c.ImageLoad(ctx, bytes.NewReader(archive), client.ImageLoadWithQuiet(true))
	if err != nil {
		t.Fatalf("load the two-platform image %s: %v", ref, err)
	}
	err = readMessages(ctx, resp.Body, ref, "load")
	resp.Body.Close()
	if err != nil {
		t.Fatalf("load the two-platform image %s: %v", ref, err)
	}

	sv, err := c.ServerVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store := "classic image store (" + info.Driver + ")"
	containerdStore := false
	for _, kv := range info.DriverStatus {
		if len(kv) == 2 && kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1" {
			containerdStore = true
			store = "containerd image store"
		}
	}
	engine := fmt.Sprintf("Docker %s (API %s, %s)", sv.Version, c.ClientVersion(), store)
	t.Logf("engine: %s", engine)

	// On the containerd image store the image must be the case under test:
	// two platforms, the other one's content absent. Otherwise this test
	// would pass without testing anything.
	if containerdStore && versions.GreaterThanOrEqualTo(c.ClientVersion(), "1.48") {
		img, err := c.ImageInspect(ctx, ref, client.ImageInspectWithManifests(true))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range img.Manifests {
			pl := "?"
			if m.Descriptor.Platform != nil {
				pl = m.Descriptor.Platform.OS + "/" + m.Descriptor.Platform.Architecture
			}
			got = append(got, fmt.Sprintf("%s available=%t", pl, m.Available))
		}
		slices.Sort(got)
		want := []string{"linux/" + other + " available=false", "linux/" + runtime.GOARCH + " available=true"}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("on %s the loaded image %s has the manifests %q, want %q: the test no longer builds the image it is about", engine, ref, got, want)
		}
	}

	path := filepath.Join(t.TempDir(), "image.tar")
	platform := "linux/" + runtime.GOARCH
	if err := p.Save(ctx, ref, platform, path); err != nil {
		t.Fatal(err)
	}
	files := readArchive(t, path)
	if missing := archiveGaps(files); len(missing) > 0 {
		t.Fatalf("Save(%s, %q) on %s wrote an archive that is not self-contained; it names and does not hold:\n  %s\nit holds: %s",
			ref, platform, engine, strings.Join(missing, "\n  "), strings.Join(slices.Sorted(maps.Keys(files)), ", "))
	}

	// And it is the image asked for, of the platform asked for.
	var mf []struct {
		Config   string
		RepoTags []string
	}
	if err := json.Unmarshal(files["manifest.json"], &mf); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(mf) != 1 || !slices.Contains(mf[0].RepoTags, ref) {
		t.Fatalf("manifest.json = %s, want one image tagged %s", files["manifest.json"], ref)
	}
	var cfg struct{ OS, Architecture string }
	if err := json.Unmarshal(files[mf[0].Config], &cfg); err != nil {
		t.Fatalf("config %s: %v", mf[0].Config, err)
	}
	if got := cfg.OS + "/" + cfg.Architecture; got != platform {
		t.Fatalf("the saved image's config is of %s, want %s", got, platform)
	}
}

// twoPlatformArchive returns a tar that docker load takes: an OCI image
// layout naming ref, whose index has an image of have (a small random
// layer, all its blobs present) and one of absent (none of its blobs, not
// even its manifest), with a docker-save manifest.json of have's image.
func twoPlatformArchive(t *testing.T, ref, have, absent string) []byte {
	t.Helper()
	platformImage := func(platform string) (v1.Image, *v1.Platform) {
		pl, err := v1.ParsePlatform(platform)
		if err != nil {
			t.Fatal(err)
		}
		layer, err := random.Layer(512, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = pl.OS, pl.Architecture
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		return img, pl
	}
	img, havePl := platformImage(have)
	otherImg, absentPl := platformImage(absent)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: havePl}},
		mutate.IndexAddendum{Add: otherImg, Descriptor: v1.Descriptor{Platform: absentPl}})

	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) {
		t.Helper()
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	blob := func(b []byte) string {
		sum := sha256.Sum256(b)
		name := "blobs/sha256/" + hex.EncodeToString(sum[:])
		add(name, b)
		return name
	}
	rawIdx := must(idx.RawManifest())
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	sum := sha256.Sum256(rawIdx)
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIImageIndex,
			Size:      int64(len(rawIdx)),
			Digest:    v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])},
			Annotations: map[string]string{
				"io.containerd.image.name":          "docker.io/" + ref,
				"org.opencontainers.image.ref.name": ref[strings.LastIndex(ref, ":")+1:],
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	add("index.json", index)
	blob(rawIdx)
	blob(must(img.RawManifest()))
	config := blob(must(img.RawConfigFile()))
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var layerNames []string
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		layerNames = append(layerNames, blob(must(b, err)))
	}
	add("manifest.json", must(json.Marshal([]map[string]any{{"Config": config, "RepoTags": []string{ref}, "Layers": layerNames}})))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readArchive returns the regular files of the tar at path, by name.
func readArchive(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s in %s: %v", h.Name, path, err)
		}
		files[pathpkg.Clean(h.Name)] = b
	}
}

// archiveGaps returns what an image archive (docker save: manifest.json,
// and index.json with blobs/ from Docker 25) names and does not hold, one
// line each: the blobs index.json names, the indexes and manifests among
// them (and their configs and layers) followed down, each under
// blobs/<algorithm>/<hex> with that digest, and the config and layer paths
// of manifest.json.
func archiveGaps(files map[string][]byte) []string {
	var gaps []string
	mf, ok := files["manifest.json"]
	if !ok {
		gaps = append(gaps, "manifest.json")
	} else {
		var entries []struct {
			Config string
			Layers []string
		}
		if err := json.Unmarshal(mf, &entries); err != nil {
			gaps = append(gaps, fmt.Sprintf("manifest.json does not parse: %v", err))
		}
		for i, e := range entries {
			for _, name := range append([]string{e.Config}, e.Layers...) {
				if _, ok := files[pathpkg.Clean(name)]; !ok {
					gaps = append(gaps, fmt.Sprintf("manifest.json[%d] → %s", i, name))
				}
			}
		}
	}
	type descriptor struct {
		MediaType string            `json:"mediaType"`
		Digest    string            `json:"digest"`
		Platform  *ocispec.Platform `json:"platform"`
	}
	type node struct {
		Manifests []descriptor `json:"manifests"`
		Config    *descriptor  `json:"config"`
		Layers    []descriptor `json:"layers"`
	}
	var walk func(where string, b []byte)
	walk = func(where string, b []byte) {
		var n node
		if err := json.Unmarshal(b, &n); err != nil {
			gaps = append(gaps, fmt.Sprintf("%s does not parse: %v", where, err))
			return
		}
		children := n.Manifests
		if n.Config != nil {
			children = append(append(children, *n.Config), n.Layers...)
		}
		for _, d := range children {
			what := d.Digest + " (" + d.MediaType
			if d.Platform != nil {
				what += ", " + d.Platform.OS + "/" + d.Platform.Architecture
			}
			what += ")"
			algo, hexDigest, _ := strings.Cut(d.Digest, ":")
			name := "blobs/" + algo + "/" + hexDigest
			blob, ok := files[name]
			if !ok {
				gaps = append(gaps, fmt.Sprintf("%s → %s: no %s", where, what, name))
				continue
			}
			if sum := sha256.Sum256(blob); algo == "sha256" && hex.EncodeToString(sum[:]) != hexDigest {
				gaps = append(gaps, fmt.Sprintf("%s → %s: %s has the digest sha256:%x", where, what, name, sum))
				continue
			}
			switch d.MediaType {
			case ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
				"application/vnd.docker.distribution.manifest.list.v2+json",
				"application/vnd.docker.distribution.manifest.v2+json":
				walk(where+" → "+what, blob)
			}
		}
	}
	if idx, ok := files["index.json"]; ok {
		walk("index.json", idx)
	}
	return gaps
}
