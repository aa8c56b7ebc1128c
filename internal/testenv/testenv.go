// Package testenv gives integration and end-to-end tests a real Docker
// engine, a static bottle-apply binary with the bottle-bundle builds it
// ships, a local agent image and unique names, and cleans up after them.
package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
)

// Docker returns a client for the engine of the environment. With no
// engine answering it skips the test, unless CI is set: there it fails.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("talks to a Docker engine: skipped under -short")
	}
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = c.Ping(ctx)
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but no Docker engine answers: %v", err)
		}
		t.Skipf("no Docker engine answers (%v); start dockerd to run this test", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Counter counts the Docker API calls made through a client, by method and
// path.
type Counter struct {
	mu    sync.Mutex
	calls []string
	base  http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (c *Counter) RoundTrip(r *http.Request) (*http.Response, error) {
	call := r.Method + " " + StripVersion(r.URL.Path)
	c.mu.Lock()
	c.calls = append(c.calls, call)
	c.mu.Unlock()
	return c.base.RoundTrip(r)
}

// Reset forgets the calls counted so far and returns them.
func (c *Counter) Reset() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	return out
}

// Writes returns the calls that are not GET or HEAD.
func Writes(calls []string) []string {
	var out []string
	for _, c := range calls {
		if !strings.HasPrefix(c, "GET ") && !strings.HasPrefix(c, "HEAD ") {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

// CountingDocker returns a client whose calls the counter sees.
func CountingDocker(t testing.TB) (*client.Client, *Counter) {
	t.Helper()
	plain := Docker(t)
	cnt := &Counter{base: plain.HTTPClient().Transport}
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation(),
		client.WithHTTPClient(&http.Client{Transport: cnt}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, cnt
}

// Name returns a unique DNS-label name starting with prefix.
func Name(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// builds are the programs the tests build, each once per test process,
// in one directory: the key is the file name.
var builds struct {
	mu   sync.Mutex
	dir  string
	done map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

// buildOnce builds, the first time it is asked for name, the module's
// package pkg statically into sub/name of the test process's build
// directory, with env added (GOOS, GOARCH), and returns its path.
func buildOnce(sub, name, pkg string, env ...string) (string, error) {
	builds.mu.Lock()
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "bottle-apply-test-bin-")
		if err != nil {
			builds.mu.Unlock()
			return "", err
		}
		builds.dir, builds.done = dir, map[string]*build{}
	}
	key := filepath.Join(sub, name)
	b := builds.done[key]
	if b == nil {
		b = &build{}
		builds.done[key] = b
	}
	dir := filepath.Join(builds.dir, sub)
	builds.mu.Unlock()
	b.once.Do(func() {
		b.path = filepath.Join(dir, name)
		b.err = buildStatic(pkg, b.path, env...)
	})
	return b.path, b.err
}

// Binary builds a static bottle-apply once per test process and returns its
// path. Beside it is the linux build of bottle-bundle for this machine's
// architecture, as make build leaves them in bin/: the built-in bundle
// image and the probe for the local engine. A build for another
// architecture (BundleBinary) never lands there, so that the built-in
// bundle image's tag, which names every build beside bottle-apply, stays
// the same for the whole test process.
func Binary(t testing.TB) string {
	t.Helper()
	if _, err := buildOnce("", bundlebin.Name(runtime.GOARCH), "./cmd/bottle-bundle", "GOOS=linux", "GOARCH="+runtime.GOARCH); err != nil {
		t.Fatal(err)
	}
	bin, err := buildOnce("", "bottle-apply", "./cmd/bottle-apply")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// BundleBinary builds the static linux bottle-bundle for goarch once per
// test process, as make build does, and returns its path. The builds of
// every architecture asked for share a directory (bundlebin.Dir of the
// path), apart from Binary's.
func BundleBinary(t testing.TB, goarch string) string {
	t.Helper()
	bin, err := buildOnce("bundles", bundlebin.Name(goarch), "./cmd/bottle-bundle", "GOOS=linux", "GOARCH="+goarch)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// buildStatic builds the module's package pkg, statically linked, into out,
// with env added to the environment.
func buildStatic(pkg, out string, env ...string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = moduleRoot()
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s go build %s: %v\n%s", strings.Join(env, " "), pkg, err, b)
	}
	return nil
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// ModuleRoot is the repository's top directory.
func ModuleRoot() string { return moduleRoot() }

// AgentImage imports a small local image (static busybox, FROM scratch)
// under a unique tag, and removes it when the test ends. No registry is
// needed.
func AgentImage(t testing.TB, c *client.Client) string {
	t.Helper()
	bb, err := Busybox()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but %v", err)
		}
		t.Skip(err)
	}
	ref := "bottle-apply-test/agent:" + Name("t")
	if err := ImportBusybox(context.Background(), c, bb, ref); err != nil {
		t.Fatal(err)
	}
	removeImage(t, c, ref)
	return ref
}

// removeImage removes the image ref when the test ends.
func removeImage(t testing.TB, c *client.Client, ref string) {
	t.Cleanup(func() {
		_, _ = c.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true, PruneChildren: true})
	})
}

// Busybox finds a static busybox, which an image FROM scratch can run: on
// PATH, else /bin/busybox or /usr/bin/busybox.
func Busybox() (string, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
			if _, err2 := os.Stat(p); err2 == nil {
				bb, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return "", errors.New("no busybox is installed (apt-get install busybox-static)")
	}
	f, err := elf.Open(bb)
	if err != nil {
		return "", fmt.Errorf("busybox: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked; an image FROM scratch needs a static busybox (apt-get install busybox-static)", bb)
		}
	}
	return bb, nil
}

// ImportBusybox makes a FROM-scratch image holding busybox and its applets'
// links.
func ImportBusybox(ctx context.Context, c *client.Client, busybox, ref string) error {
	return importBusybox(ctx, c, busybox, ref)
}

// importBusybox is ImportBusybox with more Dockerfile changes.
func importBusybox(ctx context.Context, c *client.Client, busybox, ref string, changes ...string) error {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	return importImage(ctx, c, ref, append([]string{`ENV PATH=/bin`, `CMD ["/bin/sh"]`}, changes...), func(tw *tar.Writer) {
		for _, d := range []string{"bin/", "tmp/", "workspace/"} {
			_ = tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch})
		}
		_ = tw.WriteHeader(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin)), ModTime: epoch})
		_, _ = tw.Write(bin)
		for _, a := range []string{"sh", "sleep", "cat", "env", "nc", "ls", "echo", "true", "false", "id", "ip"} {
			_ = tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", ModTime: epoch})
		}
	})
}

// epoch is the time of every file in an image the tests import.
var epoch = time.Unix(0, 0)

// importImage imports, FROM scratch, the files write puts in a tar as the
// image ref, with the Dockerfile changes.
func importImage(ctx context.Context, c *client.Client, ref string, changes []string, write func(*tar.Writer)) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write(tw)
	if err := tw.Close(); err != nil {
		return err
	}
	rc, err := c.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, ref, image.ImportOptions{Changes: changes})
	if err != nil {
		return fmt.Errorf("import %s: %w", ref, err)
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// CleanupBottle removes, when the test ends, every container and network of
// the bottle (labelled with its name, or named like its resources) and its
// labelled volumes.
func CleanupBottle(t testing.TB, c *client.Client, bottle string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, f := range []filters.Args{
			filters.NewArgs(filters.Arg("label", "io.bottle-apply.name="+bottle)),
			filters.NewArgs(filters.Arg("name", "^/?bottle-"+bottle+"-")),
		} {
			cs, _ := c.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
			for _, x := range cs {
				_ = c.ContainerRemove(ctx, x.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
			}
		}
		for _, f := range []filters.Args{
			filters.NewArgs(filters.Arg("label", "io.bottle-apply.name="+bottle)),
			filters.NewArgs(filters.Arg("name", "^bottle-"+bottle+"-")),
		} {
			ns, _ := c.NetworkList(ctx, network.ListOptions{Filters: f})
			for _, n := range ns {
				_ = c.NetworkRemove(ctx, n.ID)
			}
		}
		// Named volumes, which a destroy keeps.
		vs, _ := c.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "io.bottle-apply.name="+bottle))})
		for _, v := range vs.Volumes {
			_ = c.VolumeRemove(ctx, v.Name, true)
		}
	})
}

// Leftovers lists the containers and networks labelled with the bottle's
// name.
func Leftovers(t testing.TB, c *client.Client, bottle string) []string {
	t.Helper()
	ctx := context.Background()
	f := filters.NewArgs(filters.Arg("label", "io.bottle-apply.name="+bottle))
	var out []string
	cs, err := c.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range cs {
		out = append(out, "container "+strings.Join(x.Names, ","))
	}
	ns, err := c.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		out = append(out, "network "+n.Name)
	}
	return out
}

// TestServerImage builds the testserver program (static) into an image
// FROM scratch, once per call, and returns its reference.
func TestServerImage(t testing.TB, c *client.Client) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "testserver")
	if err := buildStatic("./internal/testenv/testserver", bin); err != nil {
		t.Fatal(err)
	}
	return programImage(t, c, "bottle-apply-test/server:"+Name("t"), bin, nil)
}

// programImage imports the program bin, FROM scratch, as the image ref
// whose entrypoint it is (at the root, under its own name), with an empty
// /tmp and the Dockerfile changes, and removes the image when the test
// ends.
func programImage(t testing.TB, c *client.Client, ref, bin string, changes []string) string {
	t.Helper()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(bin)
	changes = append([]string{`ENTRYPOINT ["/` + name + `"]`}, changes...)
	err = importImage(context.Background(), c, ref, changes, func(tw *tar.Writer) {
		_ = tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch})
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), ModTime: epoch})
		_, _ = tw.Write(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	removeImage(t, c, ref)
	return ref
}

// HoleyBundleImage builds bottle-bundle for this machine's architecture
// with the bottleholes tag and the holes named (see bundle/holes.go:
// host, sni, dns-types) linked in, imports it FROM scratch as a bundle
// image (entrypoint /bottle-bundle, an empty /tmp) with the environment
// env (KEY=VALUE), and removes the image when the test ends. Only tests
// can make such a bundle: released builds have no holes to open.
func HoleyBundleImage(t testing.TB, c *client.Client, holes string, env ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bottle-bundle")
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "bottleholes",
		"-ldflags", "-X github.com/bottle-apply/bottle-apply/bundle.openHoles="+holes, "-o", bin, "./cmd/bottle-bundle")
	cmd.Dir = moduleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build a bundle with holes %s: %v\n%s", holes, err, out)
	}
	var changes []string
	for _, e := range env {
		changes = append(changes, "ENV "+e)
	}
	return programImage(t, c, "bottle-apply-test/holey-bundle:"+Name("t"), bin, changes)
}
