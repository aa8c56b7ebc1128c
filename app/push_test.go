package app

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// anonymous is a keychain without credentials: the tests never read the
// user's.
var anonymous = authn.NewMultiKeychain()

func TestPushTarget(t *testing.T) {
	t.Parallel()
	const tag = "0123456789ab"
	const digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	tests := []struct {
		name, ref string
		insecure  bool
		want      string // Name() of the target
		wantErr   string
	}{
		{name: "repository gets the built-in tag", ref: "registry.example.com/team/bundle", want: "registry.example.com/team/bundle:" + tag},
		{name: "a port is no tag", ref: "registry.example.com:5000/bundle", want: "registry.example.com:5000/bundle:" + tag},
		{name: "insecure", ref: "registry.example.com:5000/bundle:v1", insecure: true, want: "registry.example.com:5000/bundle:v1"},
		{name: "loopback with a port", ref: "127.0.0.1:5000/x/bundle", insecure: true, want: "127.0.0.1:5000/x/bundle:" + tag},
		{name: "docker hub", ref: "me/bundle", want: "index.docker.io/me/bundle:" + tag},
		{name: "tag as given", ref: "registry.example.com/team/bundle:v1", want: "registry.example.com/team/bundle:v1"},
		{name: "latest as given", ref: "registry.example.com:5000/bundle:latest", want: "registry.example.com:5000/bundle:latest"},
		{name: "digest as given", ref: "registry.example.com/bundle@" + digest, want: "registry.example.com/bundle@" + digest},
		{name: "scheme", ref: "https://registry.example.com/bundle", wantErr: "want a repository without a scheme"},
		{name: "upper case", ref: "registry.example.com/Bundle", wantErr: "want REGISTRY/REPOSITORY"},
		{name: "bad digest", ref: "registry.example.com/bundle@sha256:xyz", wantErr: "want REGISTRY/REPOSITORY"},
		{name: "empty", ref: "", wantErr: "want REGISTRY/REPOSITORY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := pushTarget(tt.ref, tag, tt.insecure)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("pushTarget(%q) = %v, %v; want an error containing %q", tt.ref, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Name() != tt.want {
				t.Fatalf("pushTarget(%q) = %v, %v; want %s", tt.ref, got, err, tt.want)
			}
			wantScheme := "https"
			if tt.insecure || strings.HasPrefix(tt.ref, "127.0.0.1:") {
				wantScheme = "http" // loopback is plain HTTP anyway
			}
			if scheme := got.Context().Scheme(); scheme != wantScheme {
				t.Errorf("pushTarget(%q, insecure %v) scheme = %s, want %s", tt.ref, tt.insecure, scheme, wantScheme)
			}
		})
	}
}

// realBuilds builds bottle-bundle for amd64 and arm64, as make build does.
func realBuilds(t *testing.T) map[string]string {
	t.Helper()
	return map[string]string{"amd64": testenv.BundleBinary(t, "amd64"), "arm64": testenv.BundleBinary(t, "arm64")}
}

func TestPushBundleReadBack(t *testing.T) {
	t.Parallel()
	builds := realBuilds(t)
	paths := []string{builds["arm64"], builds["amd64"]}
	host := testenv.ServeHTTP(t, registry.New(registry.Logger(stdlog.New(io.Discard, "", 0))))

	res, err := pushBundle(t.Context(), paths, "v9", host+"/x/bundle", PushOptions{Insecure: true}, anonymous)
	if err != nil {
		t.Fatal(err)
	}
	builtin, _ := bundleimage.Ref(paths)
	_, tag, _ := strings.Cut(builtin, ":")
	if res.Ref != host+"/x/bundle:"+tag || res.Pinned != host+"/x/bundle@"+res.Digest ||
		!slices.Equal(res.Platforms, []string{"linux/amd64", "linux/arm64"}) || !strings.HasPrefix(res.Digest, "sha256:") {
		t.Fatalf("result = %+v", res)
	}

	// Read it back, by its pinned reference.
	ref, err := name.ParseReference(res.Pinned)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 2 {
		t.Fatalf("index: %s with %d manifests, want an OCI index of 2", im.MediaType, len(im.Manifests))
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, d := range im.Manifests {
		goarch := d.Platform.Architecture
		if d.Platform.OS != "linux" || machines[goarch] == elf.EM_NONE {
			t.Errorf("manifest for %s/%s", d.Platform.OS, goarch)
			continue
		}
		img, err := remote.Image(ref.Context().Digest(d.Digest.String()), remote.WithContext(t.Context()))
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cf.Config.Entrypoint, []string{"/bottle-bundle"}) || cf.Config.Labels[bottle.LabelVersion] != "v9" || cf.Architecture != goarch {
			t.Errorf("linux/%s config: entrypoint %q, labels %v, architecture %s", goarch, cf.Config.Entrypoint, cf.Config.Labels, cf.Architecture)
		}
		files := layerFiles(t, img)
		bin, ok := files["bottle-bundle"]
		if !ok {
			t.Fatalf("linux/%s: no /bottle-bundle in the layer", goarch)
		}
		ef, err := elf.NewFile(bytes.NewReader(bin.data))
		if err != nil || ef.Machine != machines[goarch] {
			t.Errorf("linux/%s: /bottle-bundle is not an ELF executable for %s: %v", goarch, machines[goarch], err)
		}
		want, _ := os.ReadFile(builds[goarch])
		if !bytes.Equal(bin.data, want) || bin.hdr.Mode != 0o755 {
			t.Errorf("linux/%s: /bottle-bundle (mode %o) is not the build %s", goarch, bin.hdr.Mode, builds[goarch])
		}
		if tmp, ok := files["tmp/"]; !ok || tmp.hdr.Typeflag != tar.TypeDir || tmp.hdr.Mode != 0o1777 {
			t.Errorf("linux/%s: no /tmp 1777 in the layer", goarch)
		}
	}

	// Pushing again, from the builds in the other order, is the same image.
	again, err := pushBundle(t.Context(), []string{builds["amd64"], builds["arm64"]}, "v9", host+"/x/bundle", PushOptions{Insecure: true}, anonymous)
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != res.Digest {
		t.Errorf("a second push made %s, the first %s", again.Digest, res.Digest)
	}
}

// fakeBuilds gives the paths of fake bottle-bundle builds, one per machine.
func fakeBuilds(t *testing.T, machines ...elf.Machine) []string {
	t.Helper()
	builds, err := testenv.FakeBundleBuilds(t, machines...).All()
	if err != nil {
		t.Fatal(err)
	}
	return builds
}

// A REF with a digest pushes the image there when it is the image's, and
// refuses, pushing nothing, when it is another.
func TestPushBundleAtDigest(t *testing.T) {
	t.Parallel()
	builds := fakeBuilds(t, elf.EM_X86_64, elf.EM_AARCH64)
	host := testenv.ServeHTTP(t, registry.New(registry.Logger(stdlog.New(io.Discard, "", 0))))
	idx, _, err := bundleimage.Index(builds, "v9")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	res, err := pushBundle(t.Context(), builds, "v9", host+"/x/bundle@"+d.String(), PushOptions{Insecure: true}, anonymous)
	if err != nil || res.Digest != d.String() || res.Ref != host+"/x/bundle@"+d.String() || res.Pinned != res.Ref {
		t.Fatalf("push at its own digest: %+v, %v", res, err)
	}
	other := host + "/y/bundle@sha256:" + strings.Repeat("1", 64)
	if _, err := pushBundle(t.Context(), builds, "v9", other, PushOptions{Insecure: true}, anonymous); err == nil || !strings.Contains(err.Error(), "is "+d.String()+", not sha256:1111") {
		t.Errorf("push at another digest: %v", err)
	}
	if ref, _ := name.ParseReference(other); ref == nil {
		t.Fatalf("bad ref %s", other)
	} else if _, err := remote.Head(ref, remote.WithContext(t.Context())); err == nil {
		t.Error("the push at another digest put something there")
	}
}

type tarFile struct {
	hdr  *tar.Header
	data []byte
}

// layerFiles reads the files of an image's one layer.
func layerFiles(t *testing.T, img v1.Image) map[string]tarFile {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
		t.Errorf("layer media type %s, want %s", mt, types.OCILayer)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]tarFile{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		} else if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = tarFile{h, data}
	}
}

// A registry that wants credentials the keychain does not have: the error
// names the registry and says to log in to it.
func TestPushBundleUnauthorized(t *testing.T) {
	t.Parallel()
	builds := fakeBuilds(t, elf.EM_X86_64)
	host := testenv.ServeHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
	}))
	_, err := pushBundle(t.Context(), builds, "v9", host+"/x/bundle", PushOptions{Insecure: true}, anonymous)
	if err == nil || !strings.Contains(err.Error(), "push the built-in bundle image to "+host+"/x/bundle:") ||
		!strings.Contains(err.Error(), host+" refused the push as unauthorized") || !strings.HasSuffix(err.Error(), "log in with docker login "+host+" (bottle-apply uses the docker CLI's credentials)") {
		t.Errorf("push to a registry that answers 401: %v", err)
	}
}

func TestPushError(t *testing.T) {
	t.Parallel()
	tag, _ := name.NewTag("registry.example.com/team/bundle:v1")
	hub, _ := name.NewTag("me/bundle:v1")
	tests := []struct {
		name   string
		target name.Reference
		err    error
		want   string
	}{
		{"unauthorized", tag, &transport.Error{StatusCode: 401}, "; log in with docker login registry.example.com ("},
		{"unauthorized on docker hub", hub, &transport.Error{StatusCode: 401}, "; log in with docker login ("},
		{"denied", tag, &transport.Error{StatusCode: 403, Errors: []transport.Diagnostic{{Code: transport.DeniedErrorCode}}},
			"registry.example.com denied the push to team/bundle: DENIED: ; check that the account of docker login registry.example.com may push there"},
		{"no repository", tag, fmt.Errorf("put: %w", &transport.Error{StatusCode: 404, Errors: []transport.Diagnostic{{Code: transport.NameUnknownErrorCode}}}),
			"registry.example.com has no repository team/bundle"},
		{"plain http", tag, errors.New(`Get "https://registry.example.com/v2/": http: server gave HTTP response to HTTPS client`),
			"registry.example.com answers plain HTTP, not HTTPS: Get \"https://registry.example.com/v2/\": http: server gave HTTP response to HTTPS client; pass --insecure to push over HTTP"},
		{"untrusted certificate", tag, errors.New("Get \"https://registry.example.com/v2/\": tls: failed to verify certificate: x509: certificate signed by unknown authority"),
			"the TLS certificate of registry.example.com is not trusted"},
		{"other", tag, errors.New("boom"), "push the built-in bundle image to registry.example.com/team/bundle:v1: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := pushError(tt.target, false, tt.err)
			if !strings.Contains(err.Error(), tt.want) || !errors.Is(err, tt.err) {
				t.Errorf("pushError = %v\nwant it to contain %q and wrap %v", err, tt.want, tt.err)
			}
		})
	}
}

// The push's progress is logged, at most once an interval, until the
// updates end.
func TestPushProgressLogged(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	updates := make(chan v1.Update, 3)
	updates <- v1.Update{Total: 4e6, Complete: 1e6}
	updates <- v1.Update{Total: 4e6, Complete: 4e6}
	updates <- v1.Update{Error: errors.New("boom")}
	close(updates)
	logProgress(&log, "reg/x:t", updates, 0)
	want := `{"level":"info","ref":"reg/x:t","progress":"1.0 of 4.0 MB","message":"pushing"}` + "\n" +
		`{"level":"info","ref":"reg/x:t","progress":"4.0 of 4.0 MB","message":"pushing"}` + "\n"
	if buf.String() != want {
		t.Errorf("progress logged:\n%s\nwant\n%s", buf.String(), want)
	}
}
