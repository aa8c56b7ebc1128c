// Package verify is the isolation self-test: it copies the probe into a
// bottle's agent, runs the standard checks there, and makes the verdict
// on the host from what the probe saw.
package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/bundle"
	"github.com/bottle-apply/bottle-apply/probe"
	"github.com/bottle-apply/bottle-apply/providers/docker"
	"github.com/bottle-apply/bottle-apply/spec"
)

// Report is the self-test of one bottle.
type Report struct {
	Bottle     string         `json:"bottle"`
	OK         bool           `json:"ok"`
	Results    []probe.Result `json:"results,omitempty"`
	Holes      []string       `json:"holes,omitempty"`
	Error      string         `json:"error,omitempty"`
	DurationMS int64          `json:"durationMs"`
}

// ErrHoles says that a self-test found the isolation open somewhere, or
// could not run.
var ErrHoles = errors.New("the isolation self-test failed")

// probeArgv runs the probe copied to path in an agent. The standard checks
// expect silence from the host's addresses: a live peer on the same host
// answers within milliseconds, so half a second of silence is a clear
// verdict. The copy deletes itself.
func probeArgv(path string) []string {
	return []string{path, "probe", "-remove-self", "-connect-timeout", "500ms", "-dns-timeout", "500ms"}
}

// bundleReadyWait bounds the wait for a new bundle's daemons to listen.
const bundleReadyWait = 10 * time.Second

// Bottles runs the self-test in the agent of each bottle, at most a
// few at a time, and returns one report per bottle in their order. The
// error names every hole found and every bottle that could not be tested.
func Bottles(ctx context.Context, dp *docker.Provider, bottles []spec.Bottle) ([]Report, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable for the probe: %w", err)
	}
	reports := make([]Report, len(bottles))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i := range bottles {
		g.Go(func() error {
			started := time.Now()
			r := verifyBottle(gctx, dp, exe, &bottles[i])
			r.DurationMS = time.Since(started).Milliseconds()
			reports[i] = r
			return nil
		})
	}
	_ = g.Wait()
	var msgs []string
	for _, r := range reports {
		switch {
		case r.Error != "":
			msgs = append(msgs, fmt.Sprintf("bottle %s: the self-test could not run: %s", r.Bottle, r.Error))
		case len(r.Holes) > 0:
			msgs = append(msgs, fmt.Sprintf("bottle %s: %d hole(s):\n  - %s", r.Bottle, len(r.Holes), strings.Join(r.Holes, "\n  - ")))
		}
	}
	if len(msgs) > 0 {
		return reports, fmt.Errorf("%w\n%s\nthe bottles are as the spec says, but their confinement is not proven: fix what is named above, then run bottle-apply --verify", ErrHoles, strings.Join(msgs, "\n"))
	}
	return reports, nil
}

// verifyBottle copies the probe into the bottle's agent and runs the
// standard checks there.
func verifyBottle(ctx context.Context, dp *docker.Provider, exe string, b *spec.Bottle) Report {
	name := b.Metadata.Name
	r := Report{Bottle: name}
	fail := func(err error) Report {
		r.Error = err.Error()
		return r
	}
	if b.Spec.Backend != spec.BackendDocker {
		// The agent is a microVM: the probe would go through smolvm's cp
		// and exec, which this build does not drive yet.
		return fail(fmt.Errorf("the self-test runs in docker agents only; this bottle's backend is %s", b.Spec.Backend))
	}
	addrs, err := dp.Addresses(ctx, name)
	if err != nil {
		return fail(err)
	}
	target := probe.Target{
		BundleIP: addrs.BundleIP, ProxyPort: bottle.ProxyPort, DNSPort: bottle.DNSPort,
		InternalPorts: []int{bundle.StatusPort},
		Daemons:       b.Spec.Bundle.Daemons, Allow: b.Spec.Bundle.Egress.Allow, AllowCIDRs: b.Spec.Network.AllowCIDRs,
	}
	for _, a := range []string{addrs.InternalGateway, addrs.EgressGateway} {
		if a != "" {
			target.HostAddrs = append(target.HostAddrs, a)
		}
	}
	checks, err := probe.Standard(target)
	if err != nil {
		return fail(err)
	}
	// The probe goes in while the bundle's daemons come up.
	var probePath string
	g, gctx := errgroup.WithContext(ctx)
	if b.Spec.Bundle.Image == "" && len(b.Spec.Bundle.Daemons) > 0 {
		g.Go(func() error { return waitBundleReady(gctx, dp, name) })
	}
	g.Go(func() (err error) {
		probePath, err = dp.InstallProbe(gctx, name, exe)
		return err
	})
	if err := g.Wait(); err != nil {
		return fail(err)
	}
	in, err := json.Marshal(checks)
	if err != nil {
		return fail(err)
	}
	var out, errOut bytes.Buffer
	code, err := dp.Exec(ctx, name, docker.ExecOptions{Cmd: probeArgv(probePath), Interactive: true},
		docker.Stdio{In: bytes.NewReader(in), Out: &out, Err: &errOut})
	if err != nil {
		return fail(err)
	}
	if err := json.Unmarshal(out.Bytes(), &r.Results); err != nil || len(r.Results) != len(checks) {
		return fail(fmt.Errorf("the probe in the agent exited %d without a result (%s); does the agent's image run static linux/%s programs?",
			code, strings.TrimSpace(lastOutputLine(errOut.String())), goarch()))
	}
	for i := range r.Results {
		// The verdict is made here, from what the probe saw, for the
		// checks sent: never taken from the agent's side.
		res := &r.Results[i]
		if res.Check != checks[i] {
			return fail(fmt.Errorf("the probe in the agent answered for other checks than it was given (result %d: %q)", i+1, res.Name))
		}
		res.OK = res.Expect.Accepts(res.Got)
		if !res.OK {
			r.Holes = append(r.Holes, fmt.Sprintf("%s: %s (got %s, want %s%s)", res.Hole, res.Name, res.Got, res.Expect, detail(res.Detail)))
		}
	}
	r.OK = len(r.Holes) == 0
	return r
}

func detail(d string) string {
	if d == "" {
		return ""
	}
	return ": " + d
}

func lastOutputLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// waitBundleReady asks the bundle program, inside the bundle, until its
// daemons listen.
func waitBundleReady(ctx context.Context, dp *docker.Provider, bottleName string) error {
	ctx, cancel := context.WithTimeout(ctx, bundleReadyWait)
	defer cancel()
	var last string
	for {
		var out, errOut bytes.Buffer
		code, err := dp.ExecBundle(ctx, bottleName, docker.ExecOptions{Cmd: []string{docker.BundleBinaryPath, "bundle", "status"}},
			docker.Stdio{Out: &out, Err: &errOut})
		if err == nil && code == 0 {
			return nil
		}
		last = strings.TrimSpace(lastOutputLine(errOut.String() + out.String()))
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the bundle's daemons are not ready after %s (%s); see bottle-apply logs %s and docker logs %s",
				bundleReadyWait, last, bottleName, bottle.ResourceName(bottleName, bottle.RoleBundle))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Print writes the verdict of each report for humans.
func Print(w io.Writer, reports []Report) {
	for _, r := range reports {
		switch {
		case r.Error != "":
			fmt.Fprintf(w, "Verify %s: could not run: %s\n", r.Bottle, r.Error)
		case r.OK:
			fmt.Fprintf(w, "Verify %s: %d checks passed in %s.\n",
				r.Bottle, len(r.Results), (time.Duration(r.DurationMS) * time.Millisecond).String())
		default:
			fmt.Fprintf(w, "Verify %s: %d of %d checks FAILED:\n", r.Bottle, len(r.Holes), len(r.Results))
			for _, h := range r.Holes {
				fmt.Fprintf(w, "  - %s\n", h)
			}
		}
	}
}

func goarch() string { return runtime.GOARCH }
