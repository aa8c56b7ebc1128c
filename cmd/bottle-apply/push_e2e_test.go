package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	ggcrremote "github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// bundle push puts the built-in image of the builds beside the binary in
// an in-process registry and says where, as JSON; a registry that wants a
// login, and a binary without builds, fail saying what to do.
func TestE2EBundlePush(t *testing.T) {
	t.Parallel()
	bin := testenv.Binary(t)
	// No credentials of the user's: an empty docker CLI config.
	env := []string{"DOCKER_CONFIG=" + t.TempDir()}
	host := testenv.ServeHTTP(t, registry.New(registry.Logger(log.New(io.Discard, "", 0))))

	code, out, errs := runCLI(t, bin, "", env, "bundle", "push", host+"/x/bundle", "--insecure", "-o", "json")
	if code != 0 {
		t.Fatalf("bundle push: exit %d\n%s\n%s", code, out, errs)
	}
	var doc struct {
		Ref       string   `json:"ref"`
		Digest    string   `json:"digest"`
		Platforms []string `json:"platforms"`
		Pinned    string   `json:"pinned"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("bundle push -o json: %v\n%s", err, out)
	}
	builds, err := bundlebin.Dir(filepath.Dir(bin)).All()
	if err != nil {
		t.Fatal(err)
	}
	builtin, err := bundleimage.Ref(builds)
	if err != nil {
		t.Fatal(err)
	}
	_, tag, _ := strings.Cut(builtin, ":")
	if doc.Ref != host+"/x/bundle:"+tag || doc.Pinned != host+"/x/bundle@"+doc.Digest || !strings.HasPrefix(doc.Digest, "sha256:") ||
		!slices.Equal(doc.Platforms, []string{"linux/" + runtime.GOARCH}) {
		t.Errorf("bundle push -o json = %+v; want the tag %s and the platform linux/%s", doc, tag, runtime.GOARCH)
	}
	ref, err := name.ParseReference(doc.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := ggcrremote.Head(ref, ggcrremote.WithContext(t.Context())); err != nil || d.Digest.String() != doc.Digest {
		t.Errorf("the registry has %s at %v (%v), want %s", doc.Ref, d, err, doc.Digest)
	}
	if !strings.Contains(errs, "pushing the built-in bundle image") {
		t.Errorf("no progress on stderr:\n%s", errs)
	}

	// Text: the pinned reference first, then where it goes.
	code, out, errs = runCLI(t, bin, "", env, "bundle", "push", host+"/x/bundle:v1", "--insecure")
	if code != 0 || !strings.HasPrefix(out, host+"/x/bundle@"+doc.Digest+"\n") || !strings.Contains(out, "spec.bundle.image") {
		t.Errorf("bundle push (text): exit %d\n%s\n%s", code, out, errs)
	}

	// A registry that wants a login.
	locked := testenv.ServeHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
	}))
	code, out, errs = runCLI(t, bin, "", env, "bundle", "push", locked+"/x/bundle", "--insecure", "-o", "json")
	if code != 1 || out != "" || !strings.Contains(errs, "log in with docker login "+locked) {
		t.Errorf("bundle push to a registry that answers 401: exit %d\n%s\n%s", code, out, errs)
	}

	// A bottle-apply without its builds.
	alone := filepath.Join(t.TempDir(), "bottle-apply")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(alone, data, 0o755); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI(t, alone, "", env, "bundle", "push", host+"/x/bundle", "--insecure")
	if code != 1 || !strings.Contains(errs, "no bottle-bundle build beside bottle-apply") || !strings.Contains(errs, "make build") {
		t.Errorf("bundle push without builds: exit %d\n%s", code, errs)
	}
}
