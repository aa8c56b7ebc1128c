package docker

import (
	"archive/tar"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/client"

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
