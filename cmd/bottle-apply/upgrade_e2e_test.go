package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// upgradeFrom is the release the upgrade test starts from: the last commit
// before the architecture refactor (app/, verify/, view/, bottle/, guest/),
// which had to keep every label and config hash byte-identical.
const upgradeFrom = "315e48f9c433d0cd9cabb89e61cdc8a4c0850bee"

// upgradeSecretVar is the variable of bottle-apply's environment the
// upgrade test's secretEnv reads.
const upgradeSecretVar = "BOTTLE_UPGRADE_E2E_KEY"

// TestE2EUpgradeReplacesForDefaults applies representative bottles with
// the bottle-apply of upgradeFrom, built from this repository's history,
// then checks exactly what the current binary plans for them: the labels
// and config hashes the old binary wrote are the ones the new one computes,
// but for the "defaults" input (the agent's memory and pids limits and
// NODE_USE_ENV_PROXY, the bundle's IP forwarding off), which every agent
// and bundle made before it lacks, and for what bundles now refuse (the
// subnet pool, "deniedRanges", and the host's addresses,
// "hostAddresses"). So the first apply after the upgrade replaces each
// agent for "defaults changed" and each bundle for those three, and for
// nothing else (any other input that moved would be named too), and the
// next apply changes nothing.
//
// The built-in bundle image is named after the builds it is made of, so a
// new bottle-apply also replaces built-in bundles for their image. The
// bottles whose plan must be the defaults alone therefore name a bundle
// image of their own, the same for both binaries; one more bottle keeps
// the built-in bundle, and its bundle is replaced for "defaults,
// deniedRanges, hostAddresses, image changed"; the new binary's self-test
// must pass on the old bundle first.
func TestE2EUpgradeReplacesForDefaults(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	oldBin := buildAtCommit(t, upgradeFrom)
	newBin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)

	// Images go after the bottles: cleanups run last-registered first. The
	// old binary's built-in image is known once it has made it.
	var oldBuiltin string
	t.Cleanup(func() {
		if oldBuiltin != "" {
			removeImage(c, oldBuiltin)
		}
	})
	bundleImg := "bottle-apply-test/bundle:" + testenv.Name("t")
	importBundleImage(t, c, oldBin, bundleImg)

	// The set replaced for the defaults alone: the examples' shapes, with
	// the pinned bundle.
	var pinned, bottles []string // spec files; the bottles' names
	add := func(file string, edits ...string) string {
		t.Helper()
		path, name := example(t, c, file, img)
		editFile(t, path, append([]string{"  bundle:\n", "  bundle:\n    image: " + bundleImg + "\n"}, edits...)...)
		pinned, bottles = append(pinned, path), append(bottles, name)
		return name
	}
	hello := add("hello.yaml")
	add("egress.yaml", "  network:\n", "  network:\n    allowCIDRs: [10.99.0.0/16, 192.168.77.0/24]\n")
	sized := add("hello.yaml", "      GREETING: hello\n", "      GREETING: hello\n    cpus: 1\n    memory: 128\n")
	add("hello.yaml", "      GREETING: hello\n", "      GREETING: hello\n"+
		"    secretEnv:\n      API_KEY:\n        valueFrom: {env: "+upgradeSecretVar+"}\n")
	builtinPath, builtinName := example(t, c, "egress.yaml", img)
	bottles = append(bottles, builtinName)

	// Both binaries share the state directory, hence the secrets' HMAC key.
	env := []string{"XDG_STATE_HOME=" + t.TempDir(), upgradeSecretVar + "=" + randomSecret(t)}
	var pinnedArgs, allArgs []string
	for _, p := range pinned {
		pinnedArgs = append(pinnedArgs, "-f", p)
	}
	allArgs = append(append(allArgs, pinnedArgs...), "-f", builtinPath)

	start := time.Now()
	code, out, errs := runCLI(t, oldBin, "", env, append(allArgs, "--no-verify")...)
	if code != 0 {
		t.Fatalf("apply with the old binary: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if want := fmt.Sprintf("Apply complete: %d created", 4*len(bottles)); !strings.Contains(out, want) {
		t.Fatalf("apply with the old binary: stdout lacks %q:\n%s", want, out)
	}
	t.Logf("the old binary applied %d bottles in %s", len(bottles), time.Since(start).Round(time.Millisecond))
	oldBuiltin = bundleImageOf(t, c, builtinName)

	// The new binary's plan: first a dry run, which names what differs
	// without touching it: each agent and bundle, for the defaults alone.
	code, out, errs = runCLI(t, newBin, "", env, append(pinnedArgs, "--dry-run", "--detailed-exitcode", "-o", "json")...)
	doc := parseUpgradeDoc(t, out)
	var want []string
	for _, name := range bottles[:len(pinned)] {
		want = append(want, "replace docker-container:"+name+"/agent: defaults changed",
			"replace docker-container:"+name+"/bundle: defaults, deniedRanges, hostAddresses changed")
	}
	if changes := doc.changes(); code != 2 || !doc.Changed || !sameSet(changes, want) || len(doc.Plan.Steps) != 4*len(pinned) {
		t.Fatalf("the new binary's plan after the old one's apply: exit %d, changed=%v, %d steps, changes:\n  %s\nwant exit 2, changed, %d steps, changes:\n  %s\nstderr:\n%s",
			code, doc.Changed, len(doc.Plan.Steps), strings.Join(changes, "\n  "), 4*len(pinned), strings.Join(want, "\n  "), errs)
	}
	// The apply does it. The pinned bundle image holds the old bundle
	// program, whose DNS holes the self-test would name (as it does below
	// for the built-in bottle's old bundle): not tested here.
	code, out, errs = runCLI(t, newBin, "", env, append(pinnedArgs, "--no-verify")...)
	if want := fmt.Sprintf("Apply complete: 0 created, 0 started, %d replaced, 0 deleted", 2*len(pinned)); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("the new binary's first apply after the old one's: exit %d, want 0 and %q\nstdout:\n%s\nstderr:\n%s", code, want, out, errs)
	}
	// The agents have the default limits, or the spec's.
	for name, wantMem := range map[string]int64{hello: 8 << 30, sized: 128 << 20} {
		insp, err := c.ContainerInspect(t.Context(), containerID(t, c, "bottle-"+name+"-agent"))
		if err != nil {
			t.Fatal(err)
		}
		if h := insp.HostConfig; h.Memory != wantMem || h.PidsLimit == nil || *h.PidsLimit != 4096 {
			t.Errorf("agent of %s after the upgrade: memory %d, pids %v; want %d and 4096", name, h.Memory, h.PidsLimit, wantMem)
		}
	}
	// Then nothing more to do, in text and in JSON.
	code, out, errs = runCLI(t, newBin, "", env, append(pinnedArgs, "--detailed-exitcode")...)
	if code != 0 || !strings.HasPrefix(out, "No changes.") {
		t.Fatalf("the new binary's second apply: exit %d (want 0 and \"No changes.\")\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	code, out, errs = runCLI(t, newBin, "", env, append(pinnedArgs, "--detailed-exitcode", "-o", "json")...)
	doc = parseUpgradeDoc(t, out)
	if code != 0 || doc.Changed || len(doc.Steps) != 0 || len(doc.changes()) != 0 {
		t.Fatalf("the new binary's JSON apply: exit %d, changed=%v, %d steps run (want 0, false, 0)\nstdout:\n%s\nstderr:\n%s",
			code, doc.Changed, len(doc.Steps), out, errs)
	}

	// The built-in bundle: replaced for the defaults and its image, the
	// agent for the defaults.
	code, out, errs = runCLI(t, newBin, "", env, "-f", builtinPath, "--dry-run", "--detailed-exitcode", "-o", "json")
	doc = parseUpgradeDoc(t, out)
	changes := doc.changes()
	want = []string{"replace docker-container:" + builtinName + "/agent: defaults changed",
		"replace docker-container:" + builtinName + "/bundle: defaults, deniedRanges, hostAddresses, image changed"}
	if code != 2 || len(doc.Plan.Steps) != 4 || !sameSet(changes, want) {
		t.Fatalf("the new binary's plan for a built-in bundle: exit %d, %d steps, changes %q; want exit 2, 4 steps, %q\nstderr:\n%s",
			code, len(doc.Plan.Steps), changes, want, errs)
	}

	// The new binary's self-test works on the old bundle, before any apply
	// replaces it: its probe is the new bottle-bundle, and it does not wait
	// for a status command that the old image does not have. It names the
	// holes that the old bundle has and the new one closes (issue 12): its
	// DNS daemon forwards a TXT query, and an over-long label, under a
	// wildcard rule.
	code, out, errs = runCLI(t, newBin, "", env, "-f", builtinPath, "--verify")
	if code != 1 || !strings.Contains(out, "forwards TXT queries under a wildcard rule") ||
		!strings.Contains(out, "forwards names with labels longer than the limit") {
		t.Fatalf("the new binary's --verify of a bundle the old one made: exit %d, want 1 naming the old bundle's DNS holes\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	// Its apply replaces the bundle, with its own built-in image, and the
	// agent, and tests the bottle.
	agentID := containerID(t, c, "bottle-"+builtinName+"-agent")
	code, out, errs = runCLI(t, newBin, "", env, "-f", builtinPath)
	if code != 0 || !strings.Contains(out, "Apply complete: 0 created, 0 started, 2 replaced, 0 deleted") {
		t.Fatalf("the new binary's apply of the built-in bundle: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if id := containerID(t, c, "bottle-"+builtinName+"-agent"); id == agentID {
		t.Errorf("the agent made before the defaults was not replaced")
	}
	if img := bundleImageOf(t, c, builtinName); img == oldBuiltin || !strings.HasPrefix(img, bundleimage.Repo+":") {
		t.Errorf("the bundle runs %s after the new binary's apply, want a new built-in image (the old one was %s)", img, oldBuiltin)
	}

	// The new binary destroys what the old one made, all of it.
	code, out, errs = runCLI(t, newBin, "", env, append(allArgs, "--destroy")...)
	if want := fmt.Sprintf("Destroy complete: 0 created, 0 started, 0 replaced, %d deleted", 4*len(bottles)); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("destroy with the new binary: exit %d, want 0 and %q\nstdout:\n%s\nstderr:\n%s", code, want, out, errs)
	}
	for _, name := range bottles {
		if left := testenv.Leftovers(t, c, name); len(left) != 0 {
			t.Errorf("left after the new binary's destroy: %q", left)
		}
	}
}

// sameSet reports whether got and want hold the same strings, as many
// times each, in any order: a plan's order is the renderer's business.
func sameSet(got, want []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want)))
}

// upgradeDoc is the part of the JSON result the upgrade test reads.
type upgradeDoc struct {
	Changed bool `json:"changed"`
	Plan    struct {
		Steps []struct {
			Action   string `json:"action"`
			Resource string `json:"resource"`
			Reason   string `json:"reason"`
		} `json:"steps"`
	} `json:"plan"`
	Steps []json.RawMessage `json:"steps"`
}

// changes lists the plan's steps that are not no-ops, with their reasons.
func (d upgradeDoc) changes() []string {
	var out []string
	for _, s := range d.Plan.Steps {
		if s.Action != "noop" {
			out = append(out, s.Action+" "+s.Resource+": "+s.Reason)
		}
	}
	return out
}

func parseUpgradeDoc(t *testing.T, out string) upgradeDoc {
	t.Helper()
	var d upgradeDoc
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	return d
}

// editFile replaces, once each, the pairs old, new of edits in the file,
// failing if an old is not there.
func editFile(t *testing.T, path string, edits ...string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(s, edits[i]) {
			t.Fatalf("%s has no %q to edit", path, edits[i])
		}
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildAtCommit builds the static bottle-apply of commit, taken from this
// repository's history with git archive, with the test's Go and module
// cache, and returns its path. Without git or without the commit (a
// shallow clone, a source archive) it skips the test, saying why, unless
// CI is set: there it fails.
func buildAtCommit(t *testing.T, commit string) string {
	t.Helper()
	root := testenv.ModuleRoot()
	unavailable := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but %s", msg)
		}
		t.Skip(msg)
	}
	git, err := exec.LookPath("git")
	if err != nil {
		unavailable("git is not installed, so the bottle-apply of %s cannot be built: %v", commit[:7], err)
	}
	if out, err := exec.Command(git, "-C", root, "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		why := strings.TrimSpace(string(out))
		if shallow, _ := exec.Command(git, "-C", root, "rev-parse", "--is-shallow-repository").Output(); strings.TrimSpace(string(shallow)) == "true" {
			why = "the clone is shallow (git fetch --unshallow)"
		}
		unavailable("commit %s is not in the history of %s, so its bottle-apply cannot be built: %s", commit, root, why)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	src := filepath.Join(t.TempDir(), "src")
	archive := exec.CommandContext(ctx, git, "-C", root, "archive", "--format=tar", commit)
	var stderr bytes.Buffer
	archive.Stderr = &stderr
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := archive.Start(); err != nil {
		t.Fatal(err)
	}
	xerr := extractTar(pipe, src)
	_, _ = io.Copy(io.Discard, pipe)
	if err := archive.Wait(); err != nil || xerr != nil {
		t.Fatalf("git archive %s: %v %v\n%s", commit, err, xerr, stderr.String())
	}

	bin := filepath.Join(t.TempDir(), "bottle-apply-"+commit[:7])
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-X main.version="+commit[:7], "-o", bin, "./cmd/bottle-apply")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	start := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build the bottle-apply of %s: %v\n%s", commit, err, out)
	}
	t.Logf("built the bottle-apply of %s in %s", commit[:7], time.Since(start).Round(time.Millisecond))
	return bin
}

// extractTar writes the directories, files and symlinks of a tar stream
// under dir.
func extractTar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("%q leaves the archive's directory", h.Name)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			err = writeFrom(p, os.FileMode(h.Mode)&0o777, tr)
		case tar.TypeSymlink:
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.Symlink(h.Linkname, p)
			}
		}
		if err != nil {
			return err
		}
	}
}

func writeFrom(path string, mode os.FileMode, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// importBundleImage imports, as ref, a bundle image of one's own made of
// the static bottle-apply bin: the shape of the built-in one under a name
// that does not depend on the binary using it. It is removed when the test
// ends.
func importBundleImage(t *testing.T, c *client.Client, bin, ref string) {
	t.Helper()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	_ = tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch})
	_ = tw.WriteHeader(&tar.Header{Name: "bottle-apply", Mode: 0o755, Size: int64(len(data)), ModTime: epoch})
	_, _ = tw.Write(data)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	removeImageAtEnd(t, c, ref)
	rc, err := c.ImageImport(t.Context(), image.ImportSource{Source: &buf, SourceName: "-"}, ref,
		image.ImportOptions{Changes: []string{`ENTRYPOINT ["/bottle-apply", "bundle"]`}})
	if err != nil {
		t.Fatalf("import %s: %v", ref, err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatalf("import %s: %v", ref, err)
	}
}

// removeImageAtEnd removes the image ref when the test ends, if no
// container uses it any more.
func removeImageAtEnd(t *testing.T, c *client.Client, ref string) {
	t.Cleanup(func() { removeImage(c, ref) })
}

// removeImage removes the image ref, if no container uses it any more.
func removeImage(c *client.Client, ref string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = c.ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true})
}

// bundleImageOf returns the image the bottle's bundle container was made
// of.
func bundleImageOf(t *testing.T, c *client.Client, bottleName string) string {
	t.Helper()
	insp, err := c.ContainerInspect(t.Context(), containerID(t, c, "bottle-"+bottleName+"-bundle"))
	if err != nil {
		t.Fatal(err)
	}
	return insp.Config.Image
}
