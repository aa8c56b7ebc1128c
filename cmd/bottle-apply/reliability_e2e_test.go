package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
	"github.com/bottle-apply/bottle-apply/providers/docker"
)

// The labels every resource bottle-apply makes carries (see the README).
const (
	labelName = "io.bottle-apply.name"
	labelRole = "io.bottle-apply.role"
	labelHash = "io.bottle-apply.config-hash"
)

// relSpec writes the spec of a new bottle with the test's agent image and
// automatic subnets, and removes what the bottle leaves when the test ends.
func relSpec(t *testing.T, c *client.Client, dir, image string) (path, name string) {
	t.Helper()
	name = testenv.Name("rel")
	testenv.CleanupBottle(t, c, name)
	s := "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata:\n  name: " + name + "\nspec:\n  agent:\n    image: " + image +
		"\n    command: [\"sleep\", \"infinity\"]\n    env:\n      GREETING: hello\n"
	if dir == "" {
		dir = t.TempDir()
	}
	path = filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, name
}

// proc is one bottle-apply process.
type proc struct {
	cmd       *exec.Cmd
	cancel    context.CancelFunc
	out, errb bytes.Buffer
	done      chan struct{}
	err       error
}

// testCaches holds each test's cache directory (testCacheOf).
var testCaches sync.Map

// testCacheOf is the cache directory (XDG_CACHE_HOME) of t's runs, made
// at its first.
func testCacheOf(t *testing.T) string {
	if dir, ok := testCaches.Load(t.Name()); ok {
		return dir.(string)
	}
	dir, _ := testCaches.LoadOrStore(t.Name(), t.TempDir())
	return dir.(string)
}

// startBin starts the binary with a deadline; host, when not empty, is its
// DOCKER_HOST (the proxy), else it talks straight to the engine.
func startBin(t *testing.T, bin, host string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	r := &proc{cancel: cancel, done: make(chan struct{})}
	r.cmd = exec.CommandContext(ctx, bin, args...)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.errb
	r.cmd.WaitDelay = 10 * time.Second
	// Each test's runs keep a cache of their own: a run another test
	// killed, or one on other pools, does not change what they learned
	// of the engine's host between two of their applies.
	env := append(os.Environ(), "XDG_CACHE_HOME="+testCacheOf(t))
	if host != "" {
		env = slices.DeleteFunc(env, func(kv string) bool {
			return strings.HasPrefix(kv, "DOCKER_HOST=") || strings.HasPrefix(kv, "DOCKER_CONTEXT=")
		})
		env = append(env, "DOCKER_HOST="+host)
	}
	r.cmd.Env = env
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		r.err = r.cmd.Wait()
		cancel()
		close(r.done)
	}()
	return r
}

// kill SIGKILLs the process and waits (a while) for it to be gone.
func (r *proc) kill() {
	_ = r.cmd.Process.Kill()
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
	}
}

// wait returns the exit code, -1 when the process was killed by a signal.
func (r *proc) wait(t *testing.T) (code int, stdout, stderr string) {
	t.Helper()
	<-r.done
	var ee *exec.ExitError
	switch {
	case r.err == nil:
	case errors.As(r.err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run %s: %v", r.cmd.Path, r.err)
	}
	return code, r.out.String(), r.errb.String()
}

func runBin(t *testing.T, bin, host string, args ...string) (int, string, string) {
	t.Helper()
	return startBin(t, bin, host, args...).wait(t)
}

// bottleState is what the engine has of a bottle: the resources labelled
// with its name and those named like its resources.
type bottleState struct {
	nets []network.Summary
	ctrs []container.Summary
}

func lookBottle(t *testing.T, c *client.Client, name string) bottleState {
	t.Helper()
	ctx := context.Background()
	prefix := "bottle-" + name + "-"
	var s bottleState
	nets, err := c.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		if n.Labels[labelName] == name || strings.HasPrefix(n.Name, prefix) {
			s.nets = append(s.nets, n)
		}
	}
	ctrs, err := c.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ctrs {
		if x.Labels[labelName] == name || slices.ContainsFunc(x.Names, func(n string) bool { return strings.HasPrefix(n, "/"+prefix) }) {
			s.ctrs = append(s.ctrs, x)
		}
	}
	return s
}

func (s bottleState) String() string {
	var b strings.Builder
	for _, n := range s.nets {
		sub := ""
		if len(n.IPAM.Config) > 0 {
			sub = n.IPAM.Config[0].Subnet
		}
		fmt.Fprintf(&b, "\n  network %s id=%.12s role=%q hash=%.8q subnet=%s", n.Name, n.ID, n.Labels[labelRole], n.Labels[labelHash], sub)
	}
	for _, x := range s.ctrs {
		var on []string
		if x.NetworkSettings != nil {
			for nn := range x.NetworkSettings.Networks {
				on = append(on, nn)
			}
		}
		sort.Strings(on)
		fmt.Fprintf(&b, "\n  container %s id=%.12s role=%q hash=%.8q state=%s networks=%v", strings.Join(x.Names, ","), x.ID,
			x.Labels[labelRole], x.Labels[labelHash], x.State, on)
	}
	if b.Len() == 0 {
		return " nothing"
	}
	return b.String()
}

// checkBottle checks that the bottle is whole and alone: one network and
// one container per role, labelled, named after it, the containers running
// and attached as they should be, and nothing named like the bottle's
// resources without an owner. It returns the subnets of the two networks.
func checkBottle(t *testing.T, c *client.Client, name string) (internal, egress string, ok bool) {
	t.Helper()
	s := lookBottle(t, c, name)
	var problems []string
	roles := map[string]int{}
	netID := map[string]string{}
	for _, n := range s.nets {
		role := n.Labels[labelRole]
		if n.Labels[labelName] != name || n.Labels[labelHash] == "" {
			problems = append(problems, "network "+n.Name+" has no owner labels")
			continue
		}
		roles["network/"+role]++
		netID[role] = n.ID
		if n.Name != "bottle-"+name+"-"+role {
			problems = append(problems, fmt.Sprintf("network %s has role %q", n.Name, role))
		}
		if len(n.IPAM.Config) == 1 {
			if role == "internal" {
				internal = n.IPAM.Config[0].Subnet
			} else if role == "egress" {
				egress = n.IPAM.Config[0].Subnet
			}
		}
	}
	for _, x := range s.ctrs {
		role := x.Labels[labelRole]
		if x.Labels[labelName] != name || x.Labels[labelHash] == "" {
			problems = append(problems, "container "+strings.Join(x.Names, ",")+" has no owner labels")
			continue
		}
		roles["container/"+role]++
		if len(x.Names) != 1 || x.Names[0] != "/bottle-"+name+"-"+role {
			problems = append(problems, fmt.Sprintf("container %v has role %q", x.Names, role))
		}
		if x.State != "running" {
			problems = append(problems, fmt.Sprintf("container %s is %s (%s)", role, x.State, x.Status))
		}
		var on []string
		if x.NetworkSettings != nil {
			for _, ep := range x.NetworkSettings.Networks {
				switch ep.NetworkID {
				case netID["internal"]:
					on = append(on, "internal")
				case netID["egress"]:
					on = append(on, "egress")
				default:
					on = append(on, "other:"+ep.NetworkID)
				}
			}
		}
		sort.Strings(on)
		want := []string{"internal"}
		if role == "bundle" {
			want = []string{"egress", "internal"}
		}
		if !slices.Equal(on, want) {
			problems = append(problems, fmt.Sprintf("container %s is on networks %v, want %v", role, on, want))
		}
	}
	want := map[string]int{"network/internal": 1, "network/egress": 1, "container/bundle": 1, "container/agent": 1}
	for _, k := range []string{"network/internal", "network/egress", "container/bundle", "container/agent"} {
		if roles[k] != 1 {
			problems = append(problems, fmt.Sprintf("%d %s labelled for the bottle, want 1", roles[k], k))
		}
	}
	for k, n := range roles {
		if want[k] == 0 {
			problems = append(problems, fmt.Sprintf("%d unexpected %s", n, k))
		}
	}
	if len(problems) > 0 {
		t.Errorf("bottle %s: %s; the engine has:%s", name, strings.Join(problems, "; "), s)
		return internal, egress, false
	}
	return internal, egress, true
}

// checkGone checks that nothing of the bottle is left, labelled or named
// like it.
func checkGone(t *testing.T, c *client.Client, name string) bool {
	t.Helper()
	if s := lookBottle(t, c, name); len(s.nets)+len(s.ctrs) > 0 {
		t.Errorf("bottle %s: left after destroy:%s", name, s)
		return false
	}
	return true
}

// killPoint is one process killed at one Docker API call.
type killPoint struct {
	op      string // apply or destroy
	k       int
	mode    testenv.Mode
	fired   bool
	call    string // the call it was killed at
	failure string // what went wrong after it, if anything
}

// converge runs bottle-apply straight to the engine after a killed run and
// reports whether it exits 0. When it does not, the test fails, and, to say
// whether the failure lasts, one more run follows two seconds later.
func converge(t *testing.T, c *client.Client, bin, name, what string, kp *killPoint, args ...string) bool {
	t.Helper()
	code, out, errs := runBin(t, bin, "", args...)
	if code == 0 {
		return true
	}
	t.Errorf("%s: the next run exits %d\n%s\n%s\nthe engine has:%s", what, code, out, errs, lookBottle(t, c, name))
	kp.failure = "the next run exits " + strconv.Itoa(code) + ": " + lastLine(errs)
	time.Sleep(2 * time.Second)
	code, out, errs = runBin(t, bin, "", args...)
	if code != 0 {
		kp.failure += "; so does one more 2s later"
		t.Errorf("%s: one more run 2s later exits %d too\n%s\n%s", what, code, out, errs)
		return false
	}
	kp.failure += "; one more run 2s later exits 0"
	t.Logf("%s: one more run 2s later exits 0", what)
	return true
}

// runKilledAt runs bottle-apply through the proxy and SIGKILLs it at the
// k-th API call (before the engine sees it, or after the engine answered
// it), then waits until no call of it is left in the proxy. The engine may
// still be finishing a call the dead process made in parallel (a container
// removal, say): the next run starts right away, as a user's would.
func runKilledAt(t *testing.T, bin string, p *testenv.Proxy, k int, mode testenv.Mode, args ...string) (fired bool, call string) {
	t.Helper()
	p.Reset()
	var r *proc
	ready := make(chan struct{})
	p.KillAt(k, mode, func() {
		<-ready
		r.kill()
	})
	r = startBin(t, bin, p.Host(), args...)
	close(ready)
	code, out, errs := r.wait(t)
	if !p.WaitIdle(30 * time.Second) {
		t.Errorf("calls of the killed process still in flight after 30s")
	}
	calls := p.Calls()
	fired = p.Fired()
	if !fired && code != 0 {
		t.Errorf("bottle-apply %q through the proxy, not killed (it made %d calls), exit %d:\n%s\n%s", args, len(calls), code, out, errs)
	}
	if fired && code != -1 {
		t.Logf("killed at call %d but exit code %d", k, code)
	}
	if k <= len(calls) {
		call = calls[k-1]
	}
	return fired, call
}

// TestE2EKillAtEveryCall SIGKILLs bottle-apply at each Docker API call of a
// first apply and of a destroy, before the engine sees the call and after it
// answered, and checks that a plain run afterwards converges to exactly the
// bottle, with nothing duplicated and nothing left without an owner.
func TestE2EKillAtEveryCall(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := testenv.Docker(t)
	// A run killed while the host guard ran leaves its container; a
	// later run removes those a few minutes old, the test its own now.
	t.Cleanup(func() { removeHostGuards(t, c, start) })
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)

	// Each bottle of this test takes its automatic subnets from a pool of
	// its own (a /23 of testenv.SubnetsKillPoints), so that parallel
	// scenarios never collide on a range and each kill point hits the same
	// call sequence.
	var poolMu sync.Mutex
	nextPool := 0
	pool := func(t *testing.T) string {
		t.Helper()
		poolMu.Lock()
		defer poolMu.Unlock()
		s := testenv.NthSubnet(testenv.SubnetsKillPoints, 23, nextPool)
		if s == "" {
			t.Fatal("out of test subnet pools")
		}
		nextPool++
		return s
	}

	// Warm-up: the first apply of this binary makes the built-in bundle
	// image (streamed through the proxy when the engine lacks it), and exec
	// goes through the proxy's upgraded connections.
	p := testenv.StartProxy(t, "")
	path, name := relSpec(t, c, "", img)
	pl := pool(t)
	if code, out, errs := runBin(t, bin, p.Host(), "-f", path, "--subnet-pool", pl); code != 0 {
		t.Fatalf("warm-up apply through the proxy: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := runBin(t, bin, p.Host(), "exec", name, "--", "sh", "-c", "echo $GREETING"); code != 0 || out != "hello\n" {
		t.Fatalf("exec through the proxy: exit %d, stdout %q\n%s", code, out, errs)
	}
	if code, out, errs := runBin(t, bin, p.Host(), "-f", path, "--subnet-pool", pl, "--destroy"); code != 0 {
		t.Fatalf("warm-up destroy: exit %d\n%s\n%s", code, out, errs)
	}

	// Count the calls of a first apply and of a destroy. The apply goes
	// through a proxy of its own, as each scenario's does: a new engine
	// address, whose first apply asks the engine who it is (docker info).
	path, name = relSpec(t, c, "", img)
	pl = pool(t)
	p = testenv.StartProxy(t, "")
	if code, out, errs := runBin(t, bin, p.Host(), "-f", path, "--subnet-pool", pl); code != 0 {
		t.Fatalf("counting apply: exit %d\n%s\n%s", code, out, errs)
	}
	applyCalls := p.Calls()
	checkBottle(t, c, name)
	p.Reset()
	if code, out, errs := runBin(t, bin, p.Host(), "-f", path, "--subnet-pool", pl, "--destroy"); code != 0 {
		t.Fatalf("counting destroy: exit %d\n%s\n%s", code, out, errs)
	}
	destroyCalls := p.Calls()
	checkGone(t, c, name)
	t.Logf("first apply: %d calls: %q", len(applyCalls), applyCalls)
	t.Logf("destroy: %d calls: %q", len(destroyCalls), destroyCalls)
	if slices.ContainsFunc(applyCalls, func(s string) bool { return strings.HasPrefix(s, "POST /images/create") }) {
		t.Fatalf("the counting apply still made an image: %q", applyCalls)
	}
	nApply, nDestroy := len(applyCalls), len(destroyCalls)
	warm := time.Since(start)

	// One scenario per kill point k and mode: kill a first apply at call k,
	// converge, check; then, on the converged bottle, kill a destroy at call
	// k (while k is within a destroy's calls), destroy, check.
	var (
		mu     sync.Mutex
		points []killPoint
	)
	record := func(kp killPoint) {
		mu.Lock()
		defer mu.Unlock()
		points = append(points, kp)
	}
	t.Run("points", func(t *testing.T) {
		for k := 1; k <= nApply; k++ {
			for _, mode := range []testenv.Mode{testenv.Before, testenv.After} {
				t.Run(fmt.Sprintf("k%02d-%s", k, mode), func(t *testing.T) {
					t.Parallel()
					p := testenv.StartProxy(t, "")
					path, name := relSpec(t, c, "", img)
					pl := pool(t)
					apply := []string{"-f", path, "--subnet-pool", pl}
					destroy := append(slices.Clone(apply), "--destroy")

					fired, call := runKilledAt(t, bin, p, k, mode, apply...)
					kp := &killPoint{op: "apply", k: k, mode: mode, fired: fired, call: call}
					defer func() { record(*kp) }()
					what := fmt.Sprintf("apply killed %s call %d (%s)", mode, k, call)
					if !converge(t, c, bin, name, what, kp, apply...) {
						t.FailNow()
					}
					if _, _, ok := checkBottle(t, c, name); !ok {
						kp.failure = "the apply after it left the bottle wrong"
						t.Fatalf("%s, then applied again", what)
					}
					if code, out, errs := runBin(t, bin, "", apply...); code != 0 || !strings.HasPrefix(out, "No changes.") {
						kp.failure = "the third apply was not a no-op"
						t.Fatalf("%s: the third apply: exit %d\n%s\n%s", what, code, out, errs)
					}

					what = "after a converged apply"
					if k <= nDestroy {
						fired, call = runKilledAt(t, bin, p, k, mode, destroy...)
						kp := &killPoint{op: "destroy", k: k, mode: mode, fired: fired, call: call}
						defer func() { record(*kp) }()
						what = fmt.Sprintf("destroy killed %s call %d (%s)", mode, k, call)
						if !converge(t, c, bin, name, what, kp, destroy...) {
							t.FailNow()
						}
					} else if code, out, errs := runBin(t, bin, "", destroy...); code != 0 {
						t.Fatalf("destroy %s: exit %d\n%s\n%s", what, code, out, errs)
					}
					if !checkGone(t, c, name) {
						t.Fatalf("%s, then destroyed again", what)
					}
				})
			}
		}
	})

	sort.Slice(points, func(i, j int) bool {
		a, b := points[i], points[j]
		if a.op != b.op {
			return a.op < b.op
		}
		if a.k != b.k {
			return a.k < b.k
		}
		return a.mode < b.mode
	})
	covered := map[string]int{}
	var failed []string
	for _, kp := range points {
		if kp.fired {
			covered[kp.op]++
		}
		t.Logf("%-7s k=%2d %-6s fired=%-5v at %s", kp.op, kp.k, kp.mode, kp.fired, kp.call)
		if kp.failure != "" {
			failed = append(failed, fmt.Sprintf("%s killed %s call %d (%s): %s", kp.op, kp.mode, kp.k, kp.call, kp.failure))
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d kill points failed:\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
	t.Logf("kill points covered: apply %d of %d (%d calls x 2 modes), destroy %d of %d (%d calls x 2 modes); warm-up and counting %s, total %s",
		covered["apply"], 2*nApply, nApply, covered["destroy"], 2*nDestroy, nDestroy, warm.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// TestE2EConcurrentAppliesOfOneSpec races ten applies of one spec: all
// succeed and the bottle exists once.
func TestE2EConcurrentAppliesOfOneSpec(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	path, name := relSpec(t, c, "", img)
	runs := make([]*proc, 10)
	for i := range runs {
		runs[i] = startBin(t, bin, "", "-f", path)
	}
	for i, r := range runs {
		if code, out, errs := r.wait(t); code != 0 {
			t.Errorf("apply %d of 10: exit %d\n%s\n%s", i+1, code, out, errs)
		}
	}
	if _, _, ok := checkBottle(t, c, name); !ok {
		t.FailNow()
	}
	if code, out, errs := runBin(t, bin, "", "-f", path); code != 0 || !strings.HasPrefix(out, "No changes.") {
		t.Fatalf("the apply after the race: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := runBin(t, bin, "", "-f", path, "--destroy"); code != 0 {
		t.Fatalf("destroy: exit %d\n%s\n%s", code, out, errs)
	}
	checkGone(t, c, name)
	t.Logf("10 concurrent applies of one spec, then a check and a destroy: %s", time.Since(start).Round(time.Millisecond))
}

// TestE2EConcurrentAppliesOfTenSpecs races applies of ten bottles with
// automatic subnets: each gets its own ranges.
func TestE2EConcurrentAppliesOfTenSpecs(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	dir := t.TempDir()
	paths, names := make([]string, 10), make([]string, 10)
	for i := range paths {
		paths[i], names[i] = relSpec(t, c, dir, img)
	}
	// The ten race each other for automatic subnets in a pool of their own,
	// so that the other tests, which take theirs from the default pool, do
	// not have to race them too.
	const pool = testenv.SubnetsConcurrentApplies
	runs := make([]*proc, len(paths))
	for i, path := range paths {
		runs[i] = startBin(t, bin, "", "-f", path, "--subnet-pool", pool)
	}
	applied := make([]bool, len(runs))
	var failed []string
	for i, r := range runs {
		code, out, errs := r.wait(t)
		if applied[i] = code == 0; !applied[i] {
			failed = append(failed, names[i]+": "+lastLine(errs))
			t.Errorf("apply of %s: exit %d\n%s\n%s\nthe engine has:%s", names[i], code, out, errs, lookBottle(t, c, names[i]))
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d concurrent applies failed:\n  %s", len(failed), len(runs), strings.Join(failed, "\n  "))
	}
	type owned struct {
		prefix netip.Prefix
		what   string
	}
	var subnets []owned
	var shown []string
	for i, name := range names {
		if !applied[i] {
			continue
		}
		in, eg, ok := checkBottle(t, c, name)
		if !ok {
			continue
		}
		for _, s := range []struct{ sub, role string }{{in, "internal"}, {eg, "egress"}} {
			pfx, err := netip.ParsePrefix(s.sub)
			if err != nil {
				t.Errorf("bottle %s: %s subnet %q: %v", name, s.role, s.sub, err)
				continue
			}
			for _, o := range subnets {
				if o.prefix.Overlaps(pfx) {
					t.Errorf("%s %s of bottle %s overlaps %s (%s)", s.role, pfx, name, o.prefix, o.what)
				}
			}
			subnets = append(subnets, owned{pfx, s.role + " of " + name})
			shown = append(shown, s.role+" "+pfx.String())
		}
	}
	t.Logf("subnets: %s", strings.Join(shown, ", "))
	if code, out, errs := runBin(t, bin, "", "-f", dir, "--subnet-pool", pool, "--destroy"); code != 0 {
		t.Fatalf("destroy of the ten: exit %d\n%s\n%s", code, out, errs)
	}
	for _, name := range names {
		checkGone(t, c, name)
	}
	t.Logf("10 concurrent applies of 10 specs, then checks and a destroy: %s", time.Since(start).Round(time.Millisecond))
}

// TestE2EEngineRestartDuringApply restarts dockerd in the middle of an
// apply: the next apply converges, and a destroy leaves nothing, not even a
// process. It restarts the engine DOCKER_HOST names (see findDockerd): the
// local system dockerd, or Docker 29 in the network namespace of
// hack/engine. Opt-in: it stops every container on the engine, so it runs
// alone.
func TestE2EEngineRestartDuringApply(t *testing.T) {
	if os.Getenv("BOTTLE_APPLY_TEST_ENGINE_RESTART") != "1" {
		t.Skip("restarts the Docker engine, which disturbs every other test: set BOTTLE_APPLY_TEST_ENGINE_RESTART=1 and run it alone")
	}
	c := testenv.Docker(t)
	d := findDockerd(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	v, err := c.ServerVersion(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restarting %s: Docker %s (API %s)", d, v.Version, v.APIVersion)
	t.Cleanup(func() { d.ensure(t) })

	// SIGTERM right after the engine answered the first container create:
	// dockerd stops its containers (no live restore) and exits, and no
	// task is left, on 20.10 and on 29 alike. The interrupted apply finds
	// the engine gone and observes again; when the engine is back within
	// its retries (20.10 and 29.8 restart in 2-4s) it converges itself,
	// else the next apply does.
	t.Run("SIGTERM after the first container create", func(t *testing.T) {
		path, name := relSpec(t, c, "", img)
		p := testenv.StartProxy(t, "")
		var (
			mu         sync.Mutex
			restarted  time.Duration
			restartErr = errors.New("the apply made no container create call")
		)
		p.OnFirst("POST /containers/create", func() {
			mu.Lock()
			defer mu.Unlock()
			t0 := time.Now()
			restartErr = d.restart()
			restarted = time.Since(t0)
		})
		code, out, errs := runBin(t, bin, p.Host(), "-f", path)
		mu.Lock()
		defer mu.Unlock()
		if restartErr != nil {
			t.Fatalf("restart %s: %v", d, restartErr)
		}
		t.Logf("dockerd restarted in %s after the first container create; the interrupted apply exited %d:\n%s\n%s",
			restarted.Round(time.Millisecond), code, out, errs)
		r := convergesAfterRestart(t, c, bin, path, name)
		checkNoShims(t, r.ids, nil)
	})

	// The engine killed between making a container's task and recording
	// the container as running. What that leaves depends on the engine:
	//
	// 20.10 (its own containerd, which it starts) leaves the task: its
	// shim outlives the engine, and every later start of that container
	// answers "task <id>: already exists". The apply must replace the
	// container, not retry its start for ever (providers/docker:
	// unstartable); the shim stays until the test kills it.
	//
	// 29.8 (containerd apart, as hack/engine runs it) leaves no task at
	// this point: containerd outlives dockerd, sees dockerd's call to make
	// the task cancelled, and undoes it: the shim is gone before dockerd
	// is ("cleaning up dead shim" in containerd's log). The container is
	// left "created" and the next apply starts it. Killed a little later
	// (the task made, the start not recorded) the task and its shim do
	// outlive the restart, but the next start of the container
	// force-deletes the stale task and makes a new one (moby's
	// libcontainerd.ReplaceContainer). Either way no start meets "already
	// exists", the apply keeps the container it had made, and the destroy
	// leaves no shim.
	t.Run("SIGKILL as a container's task is made", func(t *testing.T) {
		path, name := relSpec(t, c, "", img)
		p := testenv.StartProxy(t, "")
		restarted := make(chan error, 1)
		var (
			stuck string
			left  killLeft
			// made: the bottle's containers made before the restart; on
			// 20.10 the kill may orphan the shim of any whose start was
			// in flight, not only the one the hook waited for.
			made []string
		)
		p.BeforeFirst(func(call string) bool {
			if !strings.HasPrefix(call, "POST /containers/") || !strings.HasSuffix(call, "/start") {
				return false
			}
			// One of the bottle's, not the host guard's short-lived one.
			id := strings.TrimSuffix(strings.TrimPrefix(call, "POST /containers/"), "/start")
			insp, err := c.ContainerInspect(context.Background(), id)
			return err == nil && strings.HasPrefix(insp.Name, "/"+bottle.ResourceName(name, ""))
		}, func(call string) {
			stuck = strings.TrimSuffix(strings.TrimPrefix(call, "POST /containers/"), "/start")
			go func() {
				var err error
				left, err = d.killAtTask(stuck)
				restarted <- err
			}()
		})
		t.Cleanup(func() {
			for _, id := range append(made, stuck) {
				if n := killShims(t, id); n > 0 {
					t.Logf("killed the shim of %.12s that the engine left (%d process(es)) and its children", id, n)
				}
			}
		})
		code, out, errs := runBin(t, bin, p.Host(), "-f", path)
		var err error
		select {
		case err = <-restarted:
		case <-time.After(2 * time.Minute):
			err = errors.New("the apply made no container start call, or the restart hangs")
		}
		if err != nil {
			t.Fatalf("kill and restart %s: %v", d, err)
		}
		t.Logf("dockerd killed as the task of %.12s was made (%s); the interrupted apply exited %d:\n%s\n%s", stuck, left, code, out, errs)
		if st, err := c.ContainerInspect(t.Context(), stuck); err != nil {
			t.Logf("after the restart, container %.12s: %v", stuck, err)
		} else {
			t.Logf("after the restart, container %.12s is %s", stuck, st.State.Status)
		}
		made = bottleContainers(t, c, name)
		r := convergesAfterRestart(t, c, bin, path, name)
		metTask := strings.Contains(errs+r.errs, "already exists")
		kept := slices.Contains(r.converged, stuck)
		t.Logf("an apply met the stale task (\"already exists\"): %v; the converged bottle kept container %.12s: %v", metTask, stuck, kept)
		fate := leavesTask(v.Version)
		switch fate {
		case taskBlocks:
			if !metTask {
				t.Errorf("no apply met the stuck task (\"already exists\"): the case this test is for did not happen")
			}
			if kept {
				t.Errorf("the converged bottle still has container %.12s, which the engine cannot start", stuck)
			}
		case taskCleared:
			if left.afterKill > 0 {
				t.Logf("the task of %.12s outlived the killed dockerd: its next start replaced it", stuck)
			}
			if metTask {
				t.Errorf("an apply met \"already exists\": Docker %s was expected to replace the stale task itself", v.Version)
			}
			if !kept {
				t.Errorf("the bottle's container %.12s was replaced: Docker %s was expected to start it again", stuck, v.Version)
			}
		default:
			t.Logf("Docker %s: not known whether the kill leaves a task that blocks later starts; the apply converged", v.Version)
		}
		// Where the engine leaves the task, its shim outlives the
		// container, and so may the shim of any other container whose
		// start was in flight at the kill (how many depends on timing):
		// the cleanup kills them. Nothing else may be left: no shim of a
		// container made after the restart.
		var except []string
		if fate != taskCleared {
			except = append(made, stuck)
		}
		checkNoShims(t, append(r.ids, stuck), except)
	})
}

// What the engine does with the task of a container whose start it was
// killed in (see the SIGKILL subtest).
type taskFate int

const (
	taskUnknown taskFate = iota // not checked on this version
	taskBlocks                  // left: every later start answers "already exists"
	taskCleared                 // undone by containerd, or replaced by the next start
)

// leavesTask says what Docker version v does with the task, as checked
// on 20.10 and 29.8; other versions are not known.
func leavesTask(v string) taskFate {
	major, _, _ := strings.Cut(v, ".")
	switch major {
	case "20":
		return taskBlocks
	case "29":
		return taskCleared
	}
	return taskUnknown
}

// afterRestart is what convergesAfterRestart saw.
type afterRestart struct {
	errs      string   // the converging apply's stderr
	ids       []string // every container of the bottle it saw
	converged []string // the containers of the converged bottle
}

// convergesAfterRestart checks that an apply after an engine restart
// converges, the next changes nothing, and destroy leaves nothing.
func convergesAfterRestart(t *testing.T, c *client.Client, bin, path, name string) afterRestart {
	t.Helper()
	var r afterRestart
	before := lookBottle(t, c, name)
	t.Logf("after the restart the engine has:%s", before)
	for _, x := range before.ctrs {
		r.ids = append(r.ids, x.ID)
	}
	code, out, errs := runBin(t, bin, "", "-f", path)
	if code != 0 {
		t.Fatalf("the apply after the restart: exit %d\n%s\n%s\nthe engine has:%s", code, out, errs, lookBottle(t, c, name))
	}
	r.errs = errs
	t.Logf("the apply after the restart:\n%s\n%s", out, errs)
	if _, _, ok := checkBottle(t, c, name); !ok {
		t.FailNow()
	}
	for _, x := range lookBottle(t, c, name).ctrs {
		r.converged = append(r.converged, x.ID)
		if !slices.Contains(r.ids, x.ID) {
			r.ids = append(r.ids, x.ID)
		}
	}
	if code, out, errs := runBin(t, bin, "", "-f", path); code != 0 || !strings.HasPrefix(out, "No changes.") {
		t.Fatalf("the third apply: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := runBin(t, bin, "", "-f", path, "--destroy"); code != 0 {
		t.Fatalf("destroy: exit %d\n%s\n%s", code, out, errs)
	}
	checkGone(t, c, name)
	return r
}

// checkNoShims fails the test when a runtime shim of one of the containers
// ids still runs, once they are destroyed (the engine reaps them within a
// few seconds), except for the container except.
func checkNoShims(t *testing.T, ids, except []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []string
		for _, id := range ids {
			if !slices.Contains(except, id) && len(shims(id)) > 0 {
				left = append(left, fmt.Sprintf("%.12s (pids %v)", id, shims(id)))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the shims of destroyed containers still run 10s after the destroy: %s", strings.Join(left, ", "))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killLeft counts the shims of the container that outlived its engine.
type killLeft struct {
	afterKill    int // once the killed dockerd is gone
	afterRestart int // once the restarted one answers
}

func (k killLeft) String() string {
	return fmt.Sprintf("its shim processes: %d once dockerd was gone, %d once it answered again", k.afterKill, k.afterRestart)
}

// shims returns the pids of the runtime shims of container id.
func shims(id string) []int {
	if id == "" {
		return nil
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, d := range dirs {
		raw, err := os.ReadFile(d)
		if err != nil || !bytes.Contains(raw, []byte("-id\x00"+id+"\x00")) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(d))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killShims kills the shims of container id that a killed engine left
// behind, and their children (the container's init, which never ran its
// command). It returns how many shims it killed.
func killShims(t *testing.T, id string) int {
	pids := shims(id)
	for _, pid := range pids {
		if out, err := exec.Command("pkill", "-KILL", "-P", strconv.Itoa(pid)).CombinedOutput(); err != nil && len(out) > 0 {
			t.Logf("pkill -P %d: %v: %s", pid, err, out)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return len(pids)
}

// dockerd is the engine this test restarts: the one DOCKER_HOST names.
type dockerd struct {
	// The engine of BOTTLE_APPLY_TEST_DOCKERD_PIDFILE, and the shell
	// command that starts it again (BOTTLE_APPLY_TEST_DOCKERD_START).
	pidfile, start string
	// Else the local system dockerd, and its arguments: it starts again
	// as hack/ensure-deps.sh started it.
	args []string
}

func (d *dockerd) String() string {
	if d.pidfile != "" {
		return "the dockerd of " + d.pidfile
	}
	return "the local system dockerd"
}

// cannotRun skips the test, saying why, unless CI is set: there it fails.
func cannotRun(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but %s", msg)
	}
	t.Skip(msg)
}

// findDockerd finds the dockerd that DOCKER_HOST names and how to start it
// again. hack/engine/run.sh names Docker 29 in its network namespace with
// BOTTLE_APPLY_TEST_DOCKERD_PIDFILE (its PID file) and
// BOTTLE_APPLY_TEST_DOCKERD_START (hack/engine/dockerd.sh start, which
// starts it in the mount and network namespaces of its containerd, with
// the arguments hack/engine/start.sh gave it). Without them, DOCKER_HOST
// must be the local system engine's socket: the test restarts the one
// dockerd of its network namespace, started with nohup as
// hack/ensure-deps.sh does, not by systemd. It skips when it cannot (fails
// under CI).
func findDockerd(t *testing.T) *dockerd {
	t.Helper()
	if os.Geteuid() != 0 {
		cannotRun(t, "restarting dockerd needs root")
	}
	if pf := os.Getenv("BOTTLE_APPLY_TEST_DOCKERD_PIDFILE"); pf != "" {
		d := &dockerd{pidfile: pf, start: os.Getenv("BOTTLE_APPLY_TEST_DOCKERD_START")}
		if d.start == "" {
			t.Fatalf("BOTTLE_APPLY_TEST_DOCKERD_PIDFILE=%s, but BOTTLE_APPLY_TEST_DOCKERD_START (the command that starts that dockerd again) is not set", pf)
		}
		if _, err := d.pid(); err != nil {
			t.Fatalf("BOTTLE_APPLY_TEST_DOCKERD_PIDFILE: %v", err)
		}
		return d
	}
	if h := os.Getenv("DOCKER_HOST"); h != "" && h != "unix:///var/run/docker.sock" {
		cannotRun(t, "DOCKER_HOST=%s is not the local system engine, and BOTTLE_APPLY_TEST_DOCKERD_PIDFILE and BOTTLE_APPLY_TEST_DOCKERD_START do not say how to restart it (hack/engine/run.sh sets them for its engine)", h)
	}
	pid, err := systemDockerd()
	if err != nil {
		cannotRun(t, "%v", err)
	}
	if cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); strings.Contains(string(cg), "docker.service") {
		cannotRun(t, "dockerd is a systemd service (docker.service): restart it with systemctl, not from this test")
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		cannotRun(t, "dockerd %d: %v", pid, err)
	}
	argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	return &dockerd{args: argv[1:]}
}

// systemDockerd finds the one dockerd process in this process's network
// namespace (a Docker 29 of hack/engine may run beside it, in its own).
func systemDockerd() (int, error) {
	out, err := exec.Command("pgrep", "-x", "dockerd").Output()
	if err != nil && len(out) > 0 {
		return 0, fmt.Errorf("pgrep -x dockerd: %v", err)
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return 0, fmt.Errorf("pgrep -x dockerd: %q", out)
		}
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); ns == self {
			pids = append(pids, pid)
		}
	}
	if len(pids) != 1 {
		return 0, fmt.Errorf("no single dockerd process to restart in this network namespace (pgrep -x dockerd: %q; here: %v)", out, pids)
	}
	return pids[0], nil
}

// pid is the PID of the running dockerd.
func (d *dockerd) pid() (int, error) {
	if d.pidfile == "" {
		return systemDockerd()
	}
	raw, err := os.ReadFile(d.pidfile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0, fmt.Errorf("%s: %q is no PID", d.pidfile, raw)
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "dockerd" {
		return 0, fmt.Errorf("%s: PID %d is not a running dockerd", d.pidfile, pid)
	}
	return pid, nil
}

// stop sends dockerd sig and waits (90s at most) until it has exited.
func (d *dockerd) stop(sig syscall.Signal) error {
	pid, err := d.pid()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("%v dockerd %d: %w", sig, pid, err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd %d did not exit within 90s of %v", pid, sig)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// restart stops dockerd with SIGTERM, waits for it to exit and starts it
// again.
func (d *dockerd) restart() error {
	if err := d.stop(syscall.SIGTERM); err != nil {
		return err
	}
	return d.startAgain()
}

// killAtTask waits until the runtime shim of container id runs (the
// engine is making its task), kills dockerd with SIGKILL at once, and
// starts it again. It counts the shims left on the way.
func (d *dockerd) killAtTask(id string) (killLeft, error) {
	var left killLeft
	deadline := time.Now().Add(30 * time.Second)
	for len(shims(id)) == 0 {
		if time.Now().After(deadline) {
			return left, fmt.Errorf("no shim of container %s within 30s", id)
		}
		time.Sleep(time.Millisecond)
	}
	if err := d.stop(syscall.SIGKILL); err != nil {
		return left, err
	}
	left.afterKill = len(shims(id))
	err := d.startAgain()
	left.afterRestart = len(shims(id))
	return left, err
}

// startAgain starts dockerd, in a session of its own, and waits until it
// answers.
func (d *dockerd) startAgain() error {
	if d.pidfile != "" {
		if out, err := exec.Command("sh", "-c", d.start).CombinedOutput(); err != nil {
			return fmt.Errorf("start dockerd (%s): %v: %s", d.start, err, out)
		}
		return waitEngine(60*time.Second, "")
	}
	line := "nohup dockerd"
	for _, a := range d.args {
		line += " '" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	const log = "/var/log/bottle-apply-dockerd.log"
	line += " >" + log + " 2>&1 &"
	cmd := exec.Command("setsid", "sh", "-c", line)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("start dockerd: %v: %s", err, out)
	}
	return waitEngine(60*time.Second, log)
}

// waitEngine waits until `docker info` answers; when it does not, the
// error ends with the last lines of dockerd's log, if given.
func waitEngine(d time.Duration, log string) error {
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := exec.CommandContext(ctx, "docker", "info").Run()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			err = fmt.Errorf("docker info does not answer after %s: %v", d, err)
			if log != "" {
				tail, _ := exec.Command("tail", "-n", "20", log).Output()
				err = fmt.Errorf("%w; dockerd's log ends with:\n%s", err, tail)
			}
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// ensure starts dockerd again when a failed test left it stopped.
func (d *dockerd) ensure(t *testing.T) {
	if waitEngine(5*time.Second, "") == nil {
		return
	}
	if _, err := d.pid(); err != nil {
		if err := d.startAgain(); err != nil {
			t.Errorf("the engine is down after the test and could not be started again: %v", err)
		}
		return
	}
	if err := waitEngine(60*time.Second, ""); err != nil {
		t.Errorf("the engine does not answer after the test: %v", err)
	}
}

// lastLine is the last line of a command's output.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// bottleContainers returns the IDs of the bottle's containers.
func bottleContainers(t *testing.T, c *client.Client, name string) []string {
	t.Helper()
	cs, err := c.ContainerList(t.Context(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", bottle.LabelName+"="+name))})
	if err != nil {
		t.Fatalf("list the containers of bottle %s: %v", name, err)
	}
	ids := make([]string, len(cs))
	for i := range cs {
		ids[i] = cs[i].ID
	}
	return ids
}

// removeHostGuards removes the host guard containers made since start
// that the runs the test killed left: those done for a while (another
// test's guard, just done, still has its output read by its run).
func removeHostGuards(t *testing.T, c *client.Client, start time.Time) {
	ctx := context.Background()
	const settled = 10 * time.Second
	for deadline := time.Now().Add(2 * settled); ; time.Sleep(time.Second) {
		cs, err := c.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", bottle.LabelRole+"="+docker.RoleHostGuard))})
		if err != nil {
			t.Errorf("list the host guards: %v", err)
			return
		}
		pending := 0
		for _, g := range cs {
			made := time.Unix(g.Created, 0)
			if g.State == "running" || made.Before(start.Add(-time.Second)) {
				continue
			}
			since := made
			if g.State == "exited" {
				if insp, err := c.ContainerInspect(ctx, g.ID); err == nil && insp.State != nil {
					if done, err := time.Parse(time.RFC3339Nano, insp.State.FinishedAt); err == nil {
						since = done
					}
				}
			}
			if time.Since(since) < settled {
				pending++
				continue
			}
			_ = c.ContainerRemove(ctx, g.ID, container.RemoveOptions{Force: true})
		}
		if pending == 0 || time.Now().After(deadline) {
			return
		}
	}
}
