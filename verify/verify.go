// Package verify is the isolation self-test: it copies the probe into a
// bottle's agent through its guest.Guest, runs the standard checks there,
// and makes the verdict on the host from what the probe saw. It knows no
// provider: app hands it a Subject per bottle.
package verify

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bottle-apply/bottle-apply/guest"
	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
	"github.com/bottle-apply/bottle-apply/probe"
)

// Report is the self-test of one bottle.
type Report struct {
	Bottle  string         `json:"bottle"`
	OK      bool           `json:"ok"`
	Results []probe.Result `json:"results,omitempty"`
	Holes   []string       `json:"holes,omitempty"`
	Error   string         `json:"error,omitempty"`
	// Skipped says why the bottle got no verdict (its backend cannot be
	// tested this way), with OK false and no error.
	Skipped    string `json:"skipped,omitempty"`
	DurationMS int64  `json:"durationMs"`
}

// ErrHoles says that a self-test found the isolation open somewhere, or
// could not run.
var ErrHoles = errors.New("the isolation self-test failed")

// Subject is one bottle to test.
type Subject struct {
	Bottle string
	// Err, when set, says why the bottle could not be made ready for the
	// test (no agent, no bundle address): its report holds it.
	Err error
	// Skip, when set, says why the bottle cannot be tested: it gets a
	// report that says so instead of a verdict, and nothing else is used.
	Skip string
	// Agent is where the probe runs.
	Agent guest.Guest
	// Probe is the probe program on the host: a static linux executable
	// for the agent's architecture (which need not be the host's), run in
	// the agent as `<path> probe ...`.
	Probe string
	// Target is what the checks expect of the bottle.
	Target probe.Target
	// Bundle and ReadyCmd, when both set, are asked (ReadyCmd run in the
	// bundle until it exits 0) while the probe is copied in, so that a
	// bundle that just started has its daemons listening.
	Bundle   guest.Guest
	ReadyCmd []string
	// Hint is said when the bundle does not get ready: where to look.
	Hint string
	// HoleHint is said after the holes found, when there are any: what
	// such holes mean on the subject's backend.
	HoleHint string
	// ProbeDir is where the probe goes in the agent; "" is ProbeDir. A
	// guest whose copies run as the agent's user (kubernetes: no engine
	// writes for it) needs a directory that user may write.
	ProbeDir string
	// AwaitReach, when set, is how long the agent's way to its egress
	// proxy is tried (the standard check of the proxy's front port, run
	// alone) until it answers, before the checks run. On a cluster the
	// network catches up with a new bundle pod (the Service's endpoints,
	// the NetworkPolicy's rules) a moment after the pod is ready; past
	// the bound the checks run all the same, and say what they find.
	AwaitReach time.Duration
	// GuardCmd, with Bundle, asks the bundle whether the host answers
	// past its proxy (the host guard's rule missing): exit status
	// GuardMissing is a hole, 0 none, anything else says nothing (a
	// bundle program too old to know the command).
	GuardCmd []string
}

// GuardMissing is the exit status of Subject.GuardCmd when the host
// answered.
const GuardMissing = 3

// ProbeDir is where the probe is copied in an agent, at a new name each
// time, so that a copy that the agent had changed is never run.
const ProbeDir = "/.bottle-apply"

// probeArgv runs the probe copied to path in an agent. The standard checks
// expect silence from the host's addresses only: a live peer on the same
// host answers within milliseconds, so the probe's default silence of
// 100ms is a clear verdict, and the whole run takes little more. The copy
// deletes itself.
func probeArgv(path string) []string {
	return []string{path, "probe", "-remove-self"}
}

// bundleReadyWait bounds the wait for a new bundle's daemons to listen.
const bundleReadyWait = 10 * time.Second

// Run tests each subject, at most a few at a time, and returns one report
// per subject in their order. The error names every hole found and every
// bottle that could not be tested.
func Run(ctx context.Context, subjects []Subject) ([]Report, error) {
	reports := make([]Report, len(subjects))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i := range subjects {
		g.Go(func() error {
			started := time.Now()
			r := One(gctx, &subjects[i])
			r.DurationMS = time.Since(started).Milliseconds()
			reports[i] = r
			return nil
		})
	}
	_ = g.Wait()
	var msgs []string
	for i, r := range reports {
		switch {
		case r.Error != "":
			msgs = append(msgs, fmt.Sprintf("bottle %s: the self-test could not run: %s", r.Bottle, r.Error))
		case len(r.Holes) > 0:
			msg := fmt.Sprintf("bottle %s: %d hole(s):\n  - %s", r.Bottle, len(r.Holes), strings.Join(r.Holes, "\n  - "))
			if h := subjects[i].HoleHint; h != "" {
				msg += "\n  " + h
			}
			msgs = append(msgs, msg)
		}
	}
	if len(msgs) > 0 {
		return reports, fmt.Errorf("%w\n%s\nthe bottles are as the spec says, but their confinement is not proven: fix what is named above, then run bottle-apply --verify", ErrHoles, strings.Join(msgs, "\n"))
	}
	return reports, nil
}

// One copies the subject's probe into its agent and runs the standard
// checks there.
func One(ctx context.Context, s *Subject) Report {
	r := Report{Bottle: s.Bottle}
	if s.Skip != "" {
		r.Skipped = s.Skip
		return r
	}
	fail := func(err error) Report {
		r.Error = err.Error()
		return r
	}
	if s.Err != nil {
		return fail(s.Err)
	}
	target := s.Target
	if target.Nonce == "" {
		target.Nonce = nonce()
	}
	checks, err := probe.Standard(target)
	if err != nil {
		return fail(err)
	}
	// The probe goes in while the bundle's daemons come up.
	var probePath string
	g, gctx := errgroup.WithContext(ctx)
	if s.Bundle != nil && len(s.ReadyCmd) > 0 {
		g.Go(func() error { return waitReady(gctx, s) })
	}
	g.Go(func() (err error) {
		probePath, err = install(gctx, s.Agent, s.Probe, cmp.Or(s.ProbeDir, ProbeDir))
		return err
	})
	if err := g.Wait(); err != nil {
		return fail(err)
	}
	if s.AwaitReach > 0 {
		awaitReach(ctx, s, probePath, checks)
	}
	in, err := json.Marshal(checks)
	if err != nil {
		return fail(err)
	}
	// The bundle knocks on the host while the probe runs.
	guardHole := make(chan string, 1)
	go func() { guardHole <- checkGuard(ctx, s) }()
	var out, errOut bytes.Buffer
	code, err := s.Agent.Exec(ctx, guest.ExecOptions{Cmd: probeArgv(probePath), Interactive: true},
		guest.Stdio{In: bytes.NewReader(in), Out: &out, Err: &errOut})
	if err != nil {
		return fail(err)
	}
	if err := json.Unmarshal(out.Bytes(), &r.Results); err != nil || len(r.Results) != len(checks) {
		return fail(fmt.Errorf("the probe in %s exited %d without a result (%s); does the agent's image run static linux/%s programs?",
			s.Agent, code, strings.TrimSpace(lastOutputLine(errOut.String())), bundlebin.Arch(s.Probe)))
	}
	for i := range r.Results {
		// The verdict is made here, from what the probe saw, for the
		// checks sent: never taken from the agent's side.
		res := &r.Results[i]
		if res.Check != checks[i] {
			return fail(fmt.Errorf("the probe in %s answered for other checks than it was given (result %d: %q)", s.Agent, i+1, res.Name))
		}
		res.OK = res.Expect.Accepts(res.Got)
		if !res.OK {
			r.Holes = append(r.Holes, fmt.Sprintf("%s: %s (got %s, want %s%s)", res.Hole, res.Name, res.Got, res.Expect, detail(res.Detail)))
		}
	}
	if h := <-guardHole; h != "" {
		r.Holes = append(r.Holes, h)
	}
	r.OK = len(r.Holes) == 0
	return r
}

// checkGuard runs the subject's GuardCmd in its bundle and returns the
// hole it found, or "".
func checkGuard(ctx context.Context, s *Subject) string {
	if s.Bundle == nil || len(s.GuardCmd) == 0 {
		return ""
	}
	var out bytes.Buffer
	code, err := s.Bundle.Exec(ctx, guest.ExecOptions{Cmd: s.GuardCmd}, guest.Stdio{Out: &out, Err: io.Discard})
	if err != nil || code != GuardMissing {
		return ""
	}
	return "the agent can reach the host through the bundle wherever the bundle's own list does not cover it (a bridge or an address made since it started): " +
		strings.TrimSpace(lastOutputLine(out.String())) + "; an apply that starts a bundle installs the rule again"
}

// install copies the probe into the agent under dir, at a new name, and
// returns its path there.
func install(ctx context.Context, agent guest.Guest, bin, dir string) (string, error) {
	if bin == "" {
		return "", fmt.Errorf("internal: no probe program for %s", agent)
	}
	if err := bundlebin.Check(bin, ""); err != nil {
		return "", err
	}
	dst := path.Join(dir, "probe-"+nonce())
	if err := agent.CopyIn(ctx, bin, dst); err != nil {
		return "", fmt.Errorf("copy the probe program into %s: %w", agent, err)
	}
	return dst, nil
}

// nonce is 16 random lower-case hex digits.
func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
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

// awaitReach runs the check of the egress proxy's front port alone, with
// the probe copied in (which stays for the run that follows), until the
// agent reaches the proxy or s.AwaitReach has passed. A bottle without
// the egress daemon has no such check, and nothing is awaited.
func awaitReach(ctx context.Context, s *Subject, probePath string, checks []probe.Check) {
	i := slices.IndexFunc(checks, func(c probe.Check) bool {
		return c.Kind == probe.KindTCP && c.Expect == probe.ExpectOpen
	})
	if i < 0 {
		return
	}
	in, err := json.Marshal(checks[i : i+1])
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.AwaitReach)
	defer cancel()
	for {
		var out bytes.Buffer
		_, err := s.Agent.Exec(ctx, guest.ExecOptions{Cmd: []string{probePath, "probe"}, Interactive: true},
			guest.Stdio{In: bytes.NewReader(in), Out: &out, Err: io.Discard})
		var rs []probe.Result
		if err == nil && json.Unmarshal(out.Bytes(), &rs) == nil && len(rs) == 1 && rs[0].Got == string(probe.ExpectOpen) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitReady runs the subject's ReadyCmd in its bundle until it exits 0.
func waitReady(ctx context.Context, s *Subject) error {
	ctx, cancel := context.WithTimeout(ctx, bundleReadyWait)
	defer cancel()
	var last string
	for {
		var out, errOut bytes.Buffer
		code, err := s.Bundle.Exec(ctx, guest.ExecOptions{Cmd: s.ReadyCmd}, guest.Stdio{Out: &out, Err: &errOut})
		if err == nil && code == 0 {
			return nil
		}
		last = strings.TrimSpace(lastOutputLine(errOut.String() + out.String()))
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the bundle's daemons are not ready after %s (%s)%s", bundleReadyWait, last, s.Hint)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
