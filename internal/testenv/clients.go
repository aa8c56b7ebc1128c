package testenv

import (
	"archive/tar"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/internal/xdg"
)

// HostCABundle is where Debian keeps its CA bundle: the client image has
// the host's, as a Debian image has its own.
const HostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// lddPath matches the absolute paths ldd prints, loader included.
var lddPath = regexp.MustCompile(`(/\S+)\s+\(0x`)

// NodeBinary is a Node that honours HTTPS_PROXY (22.21 and later):
// $BOTTLE_TEST_NODE, else the one hack/ensure-deps.sh caches; "" when
// there is none.
func NodeBinary() string {
	// xdg.CacheDir is $XDG_CACHE_HOME or ~/.cache, as ensure-deps.sh has
	// it; a test's TestMain may point XDG_CACHE_HOME elsewhere, hence
	// ~/.cache too.
	try := []string{os.Getenv("BOTTLE_TEST_NODE"), xdg.CacheDir("node", "bin", "node")}
	if home, err := os.UserHomeDir(); err == nil {
		try = append(try, filepath.Join(home, ".cache", xdg.App, "node", "bin", "node"))
	}
	for _, p := range try {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// ClientImage imports an agent image with real HTTP clients, made of this
// machine's own files (no registry is needed): static busybox (sh, sleep,
// grep...), Debian's curl with the shared libraries ldd names, the
// host's CA bundle at HostCABundle, httpget (a plain Go client, see
// internal/testenv/httpget) and, where NodeBinary finds one, node on
// PATH. It removes the image when the test ends. Without busybox or curl
// it skips, and fails under CI.
func ClientImage(t testing.TB, c *client.Client) string {
	t.Helper()
	need := func(err error) {
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("CI is set but %v", err)
			}
			t.Skip(err)
		}
	}
	bb, err := Busybox()
	need(err)
	curl, err := exec.LookPath("curl")
	need(err)
	files := map[string]string{"bin/busybox": bb, "usr/bin/curl": curl, strings.TrimPrefix(HostCABundle, "/"): HostCABundle}
	dynamic := []string{curl}
	if node := NodeBinary(); node != "" {
		files["usr/bin/node"] = node
		dynamic = append(dynamic, node)
	}
	for _, bin := range dynamic {
		out, err := exec.Command("ldd", bin).Output()
		need(err)
		for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
			files[strings.TrimPrefix(m[1], "/")] = m[1]
		}
	}
	httpget := filepath.Join(t.TempDir(), "httpget")
	if err := buildStatic("./internal/testenv/httpget", httpget); err != nil {
		t.Fatal(err)
	}
	files["bin/httpget"] = httpget
	ref := "bottle-apply-test/clients:" + Name("t")
	err = importImage(context.Background(), c, ref, []string{`ENV PATH=/bin:/usr/bin`, `CMD ["/bin/sh"]`}, func(tw *tar.Writer) {
		dirs := map[string]bool{}
		for name := range files {
			for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
				dirs[d] = true
			}
		}
		dirs["tmp"], dirs["root"] = true, true
		for _, d := range sortedKeys(dirs) {
			_ = tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch})
		}
		for _, name := range sortedKeys(files) {
			// ReadFile follows a library's symbolic links: the image holds
			// the file under the name the loader asks for.
			data, err := os.ReadFile(files[name])
			if err != nil {
				t.Errorf("client image: %v", err)
				return
			}
			_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), ModTime: epoch})
			_, _ = tw.Write(data)
		}
		for _, a := range []string{"sh", "sleep", "cat", "env", "grep", "ls", "echo", "true", "find", "wc"} {
			_ = tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", ModTime: epoch})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	removeImage(t, c, ref)
	return ref
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
