package docker

import (
	"archive/tar"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

	// Save writes a docker-save archive.
	archive := filepath.Join(t.TempDir(), "sub", "image.tar")
	if err := p.Save(t.Context(), ref, archive); err != nil {
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
	pullRef, stop, err := p.Serve(t.Context(), ref)
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
