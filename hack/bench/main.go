// Command bench measures bottle-apply side by side with docker compose v2
// on the local Docker engine: the wall time, the Docker API calls and the
// peak memory of each CLI run, for a bottle and its compose peer
// (/work/shared/bench/peer-compose.yml), and how bottle-apply scales with
// the number of bottles. When BOTTLE_APPLY_TEST_KUBECONFIG names a cluster
// (export $(hack/k8s/env.sh)), it also times no-op applies of 1 and of 20
// bottles there and counts their calls to the API server. For a destroy it also times the least any client
// could take: the same bottle removed by raw API calls from the bench's own
// process (the "destroy floor" rows). `make bench` runs it:
//
//	go run ./hack/bench [-rounds 5] [-out bench-results/latest.json] [-kubernetes-only]
//
// Set COMPOSE_BIN to use a given docker compose binary; otherwise compose
// v2.40.3 is built once from its module source into the user cache.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

func main() {
	rounds := flag.Int("rounds", 5, "measured rounds of each case")
	out := flag.String("out", "bench-results/latest.json", "where the JSON report is written")
	kubeOnly := flag.Bool("kubernetes-only", false, "measure the kubernetes section alone (no docker engine cases, no compose)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *rounds, *out, *kubeOnly)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// loadavg is the machine's 1, 5 and 15 minute load averages: the
// measurements are only as quiet as the machine.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// sample is one measured CLI run.
type sample struct {
	Wall   time.Duration
	RSSKiB int64
	Start  time.Time
	Calls  []testenv.Call
}

// result holds the samples of one case: A is bottle-apply, B compose.
type result struct {
	Name string
	A, B []sample
}

type bench struct {
	ctx      context.Context
	dc       *client.Client
	px       *testenv.Proxy
	raw      *client.Client // the floors' client, through the proxy
	ba       string         // bottle-apply binary
	compose  string         // compose binary, "" when there is none
	env      []string       // both tools' environment: DOCKER_HOST is the proxy
	baEnv    []string       // bottle-apply's extras
	prefix   string         // every bottle name and the compose project start with it
	project  string
	lastFile string // the compose file of the project's latest up
	pairSpec string // the pair bottle's latest spec
	dirs     []string
	results  []*result
}

func run(ctx context.Context, rounds int, outPath string, kubeOnly bool) error {
	if rounds < 1 {
		return errors.New("-rounds must be at least 1")
	}
	started := time.Now()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return errors.New("run from the repository root: go run ./hack/bench")
	}
	peer, err := os.ReadFile(filepath.Join(root, "..", "shared", "bench", "peer-compose.yml"))
	if err != nil {
		return fmt.Errorf("the compose peer: %w", err)
	}
	upstream, err := testenv.DockerSocket()
	if err != nil {
		return err
	}
	dc, err := client.NewClientWithOpts(client.WithHost("unix://"+upstream), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer dc.Close()
	sv, err := dc.ServerVersion(ctx)
	if err != nil {
		return fmt.Errorf("no Docker engine answers at %s: %w", upstream, err)
	}
	work, err := os.MkdirTemp("", "bab-") // short: it holds the proxy's socket
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	logf("building bottle-apply")
	ba, err := buildBottleApply(ctx, root, work)
	if err != nil {
		return err
	}
	comp := compose{Err: "-kubernetes-only"}
	if !kubeOnly {
		comp = findCompose(ctx, work)
	}
	if comp.Err != "" && !kubeOnly {
		logf("NO DOCKER COMPOSE: %s\nbench: measuring bottle-apply alone; ratios are n/a", comp.Err)
	}
	removeImage, err := ensureImage(ctx, dc)
	if err != nil {
		return err
	}
	defer removeImage()
	builds, _ := bundlebin.Dir(filepath.Dir(ba)).All()
	bundleRef, _ := bundleimage.Ref(builds)
	_, err = dc.ImageInspect(ctx, bundleRef)
	hadBundle := err == nil

	px, err := testenv.NewProxy(filepath.Join(work, "docker.sock"), upstream)
	if err != nil {
		return err
	}
	defer px.Close()
	id := make([]byte, 3)
	_, _ = rand.Read(id)
	b := &bench{ctx: ctx, dc: dc, px: px, ba: ba, prefix: "bench-" + hex.EncodeToString(id)}
	if comp.Err == "" {
		b.compose = comp.Bin
	}
	b.project = b.prefix
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_HOST=") && !strings.HasPrefix(kv, "DOCKER_CONTEXT=") {
			b.env = append(b.env, kv)
		}
	}
	b.env = append(b.env, "DOCKER_HOST="+px.Host())
	b.baEnv = []string{"XDG_STATE_HOME=" + filepath.Join(work, "state")} // its locks
	defer func() {
		b.cleanup()
		if !hadBundle {
			if _, err := dc.ImageRemove(context.Background(), bundleRef, image.RemoveOptions{}); err != nil {
				logf("could not remove the bundle image %s: %v", bundleRef, err)
			}
		}
	}()

	load := [2]string{loadavg()}
	if !kubeOnly {
		if err := b.pair(work, peer, rounds); err != nil {
			return err
		}
		for _, n := range []int{1, 5, 20} {
			if err := b.scale(work, n, rounds); err != nil {
				return err
			}
		}
	}
	kd, err := b.kube(root, work, rounds, bundleRef)
	if err != nil {
		return err
	}
	if kd.Skipped != "" {
		logf("no kubernetes section: %s", kd.Skipped)
	}
	load[1] = loadavg()
	took := time.Since(started)
	if kubeOnly {
		rep := &reportDoc{Started: started, DurationS: took.Seconds(), Rounds: rounds, Engine: sv.Version, LoadAvg: load, Compose: comp, Kubernetes: kd}
		printKube(os.Stdout, kd, rounds)
		return writeJSON(outPath, rep)
	}
	rep := b.report(rounds, took, sv.Version, comp)
	rep.LoadAvg = load
	rep.Kubernetes = kd
	printReport(os.Stdout, rep)
	if err := writeJSON(outPath, rep); err != nil {
		return err
	}
	fmt.Printf("\nJSON: %s; the run took %s (bundle image %s already there: %v).\n", outPath, took.Round(time.Second), bundleRef, hadBundle)
	return nil
}

// exec runs one CLI process through the proxy and measures it.
func (b *bench) exec(bin string, args ...string) (sample, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = b.env
	if bin == b.ba {
		cmd.Env = append(slices.Clip(b.env), b.baEnv...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	b.takeCalls() // forget stray calls
	s := sample{Start: time.Now()}
	err := cmd.Run()
	s.Wall = time.Since(s.Start)
	s.Calls = b.takeCalls()
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.RSSKiB = ru.Maxrss
		}
	}
	if err != nil {
		return s, fmt.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out.Bytes())
	}
	return s, nil
}

// takeCalls waits (a little) for the calls in flight through the proxy to
// end, then returns and forgets the calls made so far.
func (b *bench) takeCalls() []testenv.Call {
	b.px.WaitIdle(2 * time.Second)
	return b.px.Take()
}

func (b *bench) get(name string) *result {
	for _, r := range b.results {
		if r.Name == name {
			return r
		}
	}
	r := &result{Name: name}
	b.results = append(b.results, r)
	return r
}

// pair measures a bottle against its compose peer, A then B for each case,
// after an unmeasured warm-up round (it builds the bundle image if missing
// and warms the page cache for both binaries).
func (b *bench) pair(work string, peer []byte, rounds int) error {
	files := map[string]string{}
	for _, g := range []string{"hello", "bonjour"} {
		files["spec-"+g] = filepath.Join(work, "bottle-"+g+".yaml")
		files["compose-"+g] = filepath.Join(work, "compose-"+g+".yaml")
		cf, err := composeFile(peer, b.project, g)
		if err != nil {
			return err
		}
		if err := os.WriteFile(files["compose-"+g], cf, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(files["spec-"+g], bottleSpec(b.prefix, "192.168.232.0/24", g), 0o644); err != nil {
			return err
		}
	}
	cases := []struct {
		name, spec, file string
		a, b             []string
		sub              string // bottle-apply's subcommand, before -f
	}{
		// compose neither tests what it made nor waits to see its
		// containers stay up: bottle-apply skips its self-test and its
		// readiness wait here, and the case after the pairs measures them
		// (firstVerified).
		{"first apply", "spec-hello", "compose-hello", []string{"--no-verify", "--ready-wait", "0"}, []string{"up", "-d"}, ""},
		{"no-op apply", "spec-hello", "compose-hello", nil, []string{"up", "-d"}, ""},
		// status reads what a no-op apply reads: the same calls.
		{"status", "spec-hello", "compose-hello", nil, []string{"ps", "-a"}, "status"},
		{"env change", "spec-bonjour", "compose-bonjour", []string{"--no-verify", "--ready-wait", "0"}, []string{"up", "-d"}, ""},
		{"destroy", "spec-bonjour", "compose-bonjour", []string{"--destroy"}, []string{"down"}, ""},
	}
	for r := 0; r <= rounds; r++ {
		if r == 0 {
			logf("warm-up round")
		} else {
			logf("round %d/%d: bottle %s vs compose project %s", r, rounds, b.prefix, b.project)
		}
		for _, c := range cases {
			b.pairSpec = files[c.spec]
			args := append([]string{"-f", files[c.spec]}, c.a...)
			if c.sub != "" {
				args = append([]string{c.sub}, args...)
			}
			sa, err := b.exec(b.ba, args...)
			if err != nil {
				return err
			}
			res := b.get(c.name)
			if r > 0 {
				res.A = append(res.A, sa)
			}
			if b.compose == "" {
				continue
			}
			b.lastFile = files[c.file]
			sb, err := b.exec(b.compose, append([]string{"-p", b.project, "-f", files[c.file]}, c.b...)...)
			if err != nil {
				return err
			}
			if r > 0 {
				res.B = append(res.B, sb)
			}
		}
		// The first apply with the isolation self-test in the agent, then
		// bottle-apply's default, which also watches the agent stay up
		// (--ready-wait, overlapped with the self-test).
		for _, c := range []struct {
			name string
			args []string
		}{{firstVerified, []string{"--ready-wait", "0"}}, {firstDefault, nil}} {
			b.pairSpec = files["spec-hello"]
			sv, err := b.exec(b.ba, append([]string{"-f", files["spec-hello"]}, c.args...)...)
			if err != nil {
				return err
			}
			if r > 0 {
				res := b.get(c.name)
				res.A = append(res.A, sv)
			}
			if _, err := b.exec(b.ba, "-f", files["spec-hello"], "--destroy"); err != nil {
				return err
			}
		}
		// The floors: the same bottle, made again by bottle-apply, removed
		// by raw calls from this process.
		for _, o := range floorOrders {
			b.pairSpec = files["spec-bonjour"]
			if _, err := b.exec(b.ba, "-f", files["spec-bonjour"]); err != nil {
				return err
			}
			s, err := b.floor(b.prefix, o)
			if err != nil {
				return err
			}
			if r > 0 {
				b.get(o.name).A = append(b.get(o.name).A, s)
			}
		}
	}
	// A floor compares with the compose down of the same rounds, the
	// default first apply with the compose up -d.
	for _, o := range floorOrders {
		b.get(o.name).B = b.get("destroy").B
	}
	b.get(firstVerified).B = b.get("first apply").B
	b.get(firstDefault).B = b.get("first apply").B
	return nil
}

// firstVerified is the case of bottle-apply's default first apply: with
// the isolation self-test, which compose has no counterpart of.
const firstVerified = "first apply, with the self-test"

// firstDefault is the first apply as it runs by default: the self-test,
// and the readiness wait (--ready-wait 2s) beside it.
const firstDefault = "first apply, default (self-test and readiness wait)"

// scale measures bottle-apply alone on n bottles with automatic subnets.
func (b *bench) scale(work string, n, rounds int) error {
	dir := filepath.Join(work, fmt.Sprintf("scale-%d", n))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	b.dirs = append(b.dirs, dir)
	for i := range n {
		name := fmt.Sprintf("%s-n%d-%02d", b.prefix, n, i)
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), bottleSpec(name, "", "hello"), 0o644); err != nil {
			return err
		}
	}
	first, noop := b.get(fmt.Sprintf("scale %d: first apply", n)), b.get(fmt.Sprintf("scale %d: no-op apply", n))
	status := b.get(fmt.Sprintf("scale %d: status", n))
	for r := 1; r <= rounds; r++ {
		logf("scale %d bottles, round %d/%d", n, r, rounds)
		for _, res := range []*result{first, noop} {
			s, err := b.exec(b.ba, "-f", dir, "--no-verify", "--ready-wait", "0")
			if err != nil {
				return err
			}
			res.A = append(res.A, s)
		}
		// status -f of the same bottles: the no-op apply's calls.
		s, err := b.exec(b.ba, "status", "-f", dir)
		if err != nil {
			return err
		}
		status.A = append(status.A, s)
		if _, err := b.exec(b.ba, "-f", dir, "--destroy"); err != nil {
			return err
		}
	}
	return nil
}

// cleanup removes what the bench made, with the tools first, then by label
// whatever they left (and says so).
func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.ctx = ctx
	if b.compose != "" && b.lastFile != "" {
		if _, err := b.exec(b.compose, "-p", b.project, "-f", b.lastFile, "down", "-v", "--remove-orphans"); err != nil {
			logf("cleanup: %v", err)
		}
	}
	for _, f := range append([]string{b.pairSpec}, b.dirs...) {
		if f == "" {
			continue
		}
		if _, err := b.exec(b.ba, "-f", f, "--destroy", "--volumes"); err != nil {
			logf("cleanup: %v", err)
		}
	}
	const composeProject = "com.docker.compose.project"
	ours := func(labels map[string]string) bool {
		return strings.HasPrefix(labels[bottle.LabelName], b.prefix) || labels[composeProject] == b.project
	}
	for _, key := range []string{bottle.LabelName, composeProject} {
		lf := filters.NewArgs(filters.Arg("label", key))
		cs, _ := b.dc.ContainerList(ctx, container.ListOptions{All: true, Filters: lf})
		for _, c := range cs {
			if ours(c.Labels) {
				logf("cleanup: removing leftover container %s", strings.Join(c.Names, ","))
				_ = b.dc.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
			}
		}
		ns, _ := b.dc.NetworkList(ctx, network.ListOptions{Filters: lf})
		for _, n := range ns {
			if ours(n.Labels) {
				logf("cleanup: removing leftover network %s", n.Name)
				_ = b.dc.NetworkRemove(ctx, n.ID)
			}
		}
		vs, _ := b.dc.VolumeList(ctx, volume.ListOptions{Filters: lf})
		for _, v := range vs.Volumes {
			if ours(v.Labels) {
				logf("cleanup: removing leftover volume %s", v.Name)
				_ = b.dc.VolumeRemove(ctx, v.Name, true)
			}
		}
	}
	if b.raw != nil {
		b.raw.Close()
	}
}
