package verify

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/guest"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
	"github.com/bottle-apply/bottle-apply/probe"
)

// fakeGuest records what the self-test does to a guest. Running the probe
// reads the checks it is given and writes the report answer makes of them,
// as the probe would: a canned report, without any network.
type fakeGuest struct {
	name   string
	answer func([]probe.Check) []probe.Result
	// ready, in a bundle: the exit codes of the ready command, in turn
	// (the last one repeats).
	ready []int

	mu      sync.Mutex
	copied  []string // "src -> dst"
	execs   [][]string
	execErr error
}

func (g *fakeGuest) String() string { return g.name }

func (g *fakeGuest) CopyIn(_ context.Context, src, dst string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.copied = append(g.copied, src+" -> "+dst)
	return nil
}

func (g *fakeGuest) CopyOut(context.Context, string, string) error {
	return errors.New("the self-test copies nothing out")
}

func (g *fakeGuest) Exec(_ context.Context, o guest.ExecOptions, stdio guest.Stdio) (int, error) {
	g.mu.Lock()
	g.execs = append(g.execs, o.Cmd)
	n := len(g.execs)
	g.mu.Unlock()
	if g.execErr != nil {
		return 0, g.execErr
	}
	if g.ready != nil {
		return g.ready[min(n, len(g.ready))-1], nil
	}
	if g.answer == nil {
		io.WriteString(stdio.Err, "exec /.bottle-apply/probe: exec format error\n")
		return 126, nil
	}
	var checks []probe.Check
	if err := json.NewDecoder(stdio.In).Decode(&checks); err != nil {
		return 2, err
	}
	b, _ := json.Marshal(g.answer(checks))
	stdio.Out.Write(b)
	return 0, nil
}

// asExpected answers every check with the outcome it wants: a bottle
// without a hole.
func asExpected(checks []probe.Check) []probe.Result {
	out := make([]probe.Result, len(checks))
	for i, c := range checks {
		got := string(c.Expect)
		switch c.Expect {
		case probe.ExpectClosed:
			got = "refused"
		case probe.ExpectFails:
			got = "nxdomain"
		}
		out[i] = probe.Result{Check: c, Got: got, OK: true}
	}
	return out
}

// answering changes the outcome of the checks whose name contains part.
func answering(part, got string, claimOK bool) func([]probe.Check) []probe.Result {
	return func(checks []probe.Check) []probe.Result {
		out := asExpected(checks)
		for i := range out {
			if strings.Contains(out[i].Name, part) {
				out[i].Got, out[i].OK = got, claimOK
			}
		}
		return out
	}
}

var target = probe.Target{
	BundleIP: "10.213.4.2", ProxyPort: 8888, DNSPort: 53, InternalPorts: []int{9901},
	Daemons: []string{"egress", "dns"}, Allow: []string{"api.example.com", "*.example.org"},
	HostAddrs: []string{"10.213.4.1", "10.213.5.97"},
}

func TestOne(t *testing.T) {
	t.Parallel()
	bin := testenv.WriteELF(t, elf.EM_X86_64, false)
	checks, err := probe.Standard(target)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		subject   Subject
		wantOK    bool
		wantHoles []string // each a part of one hole, in order
		wantErr   string
		wantSkip  string
		noCalls   bool
	}{
		{name: "no hole", subject: Subject{Agent: &fakeGuest{answer: asExpected}}, wantOK: true},
		{
			name:      "the host answers on a gateway",
			subject:   Subject{Agent: &fakeGuest{answer: answering("the gateway 10.213.4.1:9", "refused", false)}},
			wantHoles: []string{"the agent can reach the host", "(got refused, want unreachable)"},
		},
		{
			// The agent's side may lie: the verdict is made on the host.
			name:      "a probe that claims a hole is fine",
			subject:   Subject{Agent: &fakeGuest{answer: answering("the gateway 10.213.4.1:9", "open", true)}},
			wantHoles: []string{"(got open, want unreachable)"},
		},
		{
			name: "a probe that answers for other checks",
			subject: Subject{Agent: &fakeGuest{answer: func(cs []probe.Check) []probe.Result {
				out := asExpected(cs)
				out[0].Name = "something easier"
				return out
			}}},
			wantErr: "answered for other checks than it was given (result 1",
		},
		{
			name:    "a probe that cannot run",
			subject: Subject{Agent: &fakeGuest{name: "the agent of bottle b"}},
			wantErr: "the probe in the agent of bottle b exited 126 without a result (exec /.bottle-apply/probe: exec format error); does the agent's image run static linux/amd64 programs?",
		},
		{
			name:    "no exec at all",
			subject: Subject{Agent: &fakeGuest{execErr: errors.New("container is not running")}},
			wantErr: "container is not running",
		},
		{
			name:     "a backend that cannot be verified",
			subject:  Subject{Skip: "not verifiable with this smolvm", Agent: &fakeGuest{answer: asExpected}},
			wantSkip: "not verifiable with this smolvm", noCalls: true,
		},
		{
			name:    "a bottle not ready for the test",
			subject: Subject{Err: errors.New("bottle b has no internal network: apply its spec first"), Agent: &fakeGuest{answer: asExpected}},
			wantErr: "bottle b has no internal network", noCalls: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := tt.subject
			s.Bottle, s.Target, s.Probe = "b", target, bin
			r := One(t.Context(), &s)
			if r.OK != tt.wantOK || r.Skipped != tt.wantSkip || !strings.Contains(r.Error, tt.wantErr) || (tt.wantErr == "") != (r.Error == "") {
				t.Fatalf("report = %+v\nwant OK %v, skipped %q, error containing %q", r, tt.wantOK, tt.wantSkip, tt.wantErr)
			}
			if len(r.Holes) != min(len(tt.wantHoles), 1) {
				t.Fatalf("holes = %q, want one holding %q", r.Holes, tt.wantHoles)
			}
			for _, part := range tt.wantHoles {
				if !strings.Contains(r.Holes[0], part) {
					t.Errorf("hole %q lacks %q", r.Holes[0], part)
				}
			}
			g := s.Agent.(*fakeGuest)
			if tt.noCalls {
				if len(g.copied)+len(g.execs) > 0 {
					t.Errorf("the agent was used: copied %q, ran %q", g.copied, g.execs)
				}
				return
			}
			// The probe went in under ProbeDir at a new name, and that copy ran.
			if len(g.copied) != 1 || !strings.HasPrefix(g.copied[0], bin+" -> "+ProbeDir+"/probe-") {
				t.Fatalf("copied %q, want the probe into %s", g.copied, ProbeDir)
			}
			dst := strings.TrimPrefix(g.copied[0], bin+" -> ")
			if len(g.execs) != 1 || !slices.Equal(g.execs[0], probeArgv(dst)) {
				t.Errorf("ran %q, want %q", g.execs, probeArgv(dst))
			}
			if r.Error == "" && len(r.Results) != len(checks) {
				t.Errorf("%d results, want one per standard check (%d)", len(r.Results), len(checks))
			}
		})
	}
}

func TestOneNewNameEachTime(t *testing.T) {
	t.Parallel()
	bin := testenv.WriteELF(t, elf.EM_X86_64, false)
	var txt []string // the TXT names asked under the wildcard rule
	g := &fakeGuest{answer: func(cs []probe.Check) []probe.Result {
		for _, c := range cs {
			if c.QType == "TXT" {
				txt = append(txt, c.Target)
			}
		}
		return asExpected(cs)
	}}
	s := Subject{Bottle: "b", Target: target, Agent: g, Probe: bin}
	One(t.Context(), &s)
	One(t.Context(), &s)
	if len(g.copied) != 2 || g.copied[0] == g.copied[1] {
		t.Errorf("copies %q: want two, to different names", g.copied)
	}
	if len(txt) != 2 || txt[0] == txt[1] || !strings.HasSuffix(txt[0], ".example.org") {
		t.Errorf("TXT queries for %q: want two, for new names under example.org", txt)
	}
}

func TestOneRefusesADynamicProbe(t *testing.T) {
	t.Parallel()
	bin := testenv.WriteELF(t, elf.EM_X86_64, true)
	g := &fakeGuest{answer: asExpected}
	r := One(t.Context(), &Subject{Bottle: "b", Target: target, Agent: g, Probe: bin})
	if !strings.Contains(r.Error, "dynamically linked") || len(g.copied) != 0 {
		t.Errorf("report %+v, copied %q: want a refusal before any copy", r, g.copied)
	}
}

// Each subject brings the probe for its agent's platform: a docker agent
// gets the engine's, a microVM the host's.
func TestRunCopiesEachSubjectsProbe(t *testing.T) {
	t.Parallel()
	amd, arm := testenv.WriteELF(t, elf.EM_X86_64, false), testenv.WriteELF(t, elf.EM_AARCH64, false)
	ga, gb, gc := &fakeGuest{answer: asExpected}, &fakeGuest{name: "the agent of bottle b"}, &fakeGuest{answer: asExpected}
	reports, _ := Run(t.Context(), []Subject{
		{Bottle: "a", Target: target, Agent: ga, Probe: amd},
		{Bottle: "b", Target: target, Agent: gb, Probe: arm},
		{Bottle: "c", Target: target, Agent: gc},
	})
	if len(ga.copied) != 1 || !strings.HasPrefix(ga.copied[0], amd+" -> ") || len(gb.copied) != 1 || !strings.HasPrefix(gb.copied[0], arm+" -> ") {
		t.Errorf("copied %q and %q, want each subject's own probe", ga.copied, gb.copied)
	}
	if want := "does the agent's image run static linux/arm64 programs?"; !strings.Contains(reports[1].Error, want) {
		t.Errorf("report of b: %q, want it to name the probe's architecture: %q", reports[1].Error, want)
	}
	if want := "internal: no probe program for"; !strings.Contains(reports[2].Error, want) || len(gc.copied) != 0 {
		t.Errorf("report of a subject without a probe: %q (copied %q), want %q", reports[2].Error, gc.copied, want)
	}
}

func TestOneWaitsForTheBundle(t *testing.T) {
	t.Parallel()
	bin := testenv.WriteELF(t, elf.EM_X86_64, false)
	bundle := &fakeGuest{ready: []int{1, 1, 0}}
	s := Subject{Bottle: "b", Target: target, Agent: &fakeGuest{answer: asExpected}, Probe: bin,
		Bundle: bundle, ReadyCmd: []string{"/bottle-bundle", "status"}}
	if r := One(t.Context(), &s); !r.OK {
		t.Fatalf("report %+v", r)
	}
	if len(bundle.execs) != 3 || !slices.Equal(bundle.execs[2], s.ReadyCmd) {
		t.Errorf("the bundle ran %q, want the ready command until it exits 0 (3 times)", bundle.execs)
	}
}

func TestRunNamesEveryHole(t *testing.T) {
	t.Parallel()
	bin := testenv.WriteELF(t, elf.EM_X86_64, false)
	subjects := []Subject{
		{Bottle: "good", Target: target, Agent: &fakeGuest{answer: asExpected}, Probe: bin},
		{Bottle: "open", Target: target, Agent: &fakeGuest{answer: answering("the gateway 10.213.5.97:9", "refused", false)}, Probe: bin},
		{Bottle: "smol", Skip: "not verifiable with this smolvm"},
		{Bottle: "broken", Err: errors.New("no agent")},
	}
	reports, err := Run(t.Context(), subjects)
	if !errors.Is(err, ErrHoles) {
		t.Fatalf("Run error = %v, want ErrHoles", err)
	}
	for _, want := range []string{"bottle open: 1 hole(s)", "bottle broken: the self-test could not run: no agent"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "good") || strings.Contains(err.Error(), "smol") {
		t.Errorf("error %q names a bottle without a hole", err)
	}
	for i, r := range reports {
		if r.Bottle != subjects[i].Bottle {
			t.Errorf("report %d is of %s, want %s: reports keep the subjects' order", i, r.Bottle, subjects[i].Bottle)
		}
	}
	if _, err := Run(t.Context(), subjects[:1]); err != nil {
		t.Errorf("one good bottle: %v", err)
	}
}

// The bundle's guard check is a hole when it exits GuardMissing, and says
// nothing otherwise (0, or a bundle program that does not know it).
func TestOneAsksTheBundleAboutTheGuard(t *testing.T) {
	t.Parallel()
	bin := testenv.WriteELF(t, elf.EM_X86_64, false)
	for _, tt := range []struct {
		code int
		hole bool
	}{{0, false}, {GuardMissing, true}, {2, false}, {1, false}} {
		bundle := &fakeGuest{ready: []int{0, tt.code}}
		s := Subject{Bottle: "b", Target: target, Agent: &fakeGuest{answer: asExpected}, Probe: bin,
			Bundle: bundle, ReadyCmd: []string{"/bottle-bundle", "status"}, GuardCmd: []string{"/bottle-bundle", "guardcheck"}}
		r := One(t.Context(), &s)
		found := slices.ContainsFunc(r.Holes, func(h string) bool { return strings.Contains(h, "the agent can reach the host through the bundle") })
		if found != tt.hole || r.OK == tt.hole {
			t.Errorf("guard check exiting %d: report %+v, want a hole %v", tt.code, r, tt.hole)
		}
		if !slices.ContainsFunc(bundle.execs, func(c []string) bool { return slices.Equal(c, s.GuardCmd) }) {
			t.Errorf("guard check exiting %d: the bundle ran %q, not the guard check", tt.code, bundle.execs)
		}
	}
}

// TestOneInterception: the interception checks go to the probe with the
// bottle's CA, a credentialed host that is not intercepted is a hole named
// for it, and a probe that swapped the CA of a check answered for another
// check.
func TestOneInterception(t *testing.T) {
	t.Parallel()
	bin := testenv.WriteELF(t, elf.EM_X86_64, false)
	caPEM, err := os.ReadFile("../probe/testdata/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	credentialed := target
	credentialed.Credentialed, credentialed.CA = []string{"api.example.com"}, caPEM
	tests := []struct {
		name      string
		answer    func([]probe.Check) []probe.Result
		wantHoles []string
		wantErr   string
	}{
		{"intercepted", asExpected, nil, ""},
		{"not intercepted", answering("a credentialed host", "not-intercepted", true),
			[]string{"the bundle does not add the credential for api.example.com", "(got not-intercepted, want intercepted"}, ""},
		{"another CA", func(cs []probe.Check) []probe.Result {
			out := asExpected(cs)
			for i := range out {
				if strings.Contains(out[i].Name, "a credentialed host") {
					out[i].CA = "-----BEGIN CERTIFICATE-----\nsomething the agent holds\n-----END CERTIFICATE-----\n"
				}
			}
			return out
		}, nil, "answered for other checks than it was given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var sent []probe.Check
			agent := &fakeGuest{answer: func(cs []probe.Check) []probe.Result { sent = cs; return tt.answer(cs) }}
			s := Subject{Bottle: "b", Target: credentialed, Probe: bin, Agent: agent}
			r := One(t.Context(), &s)
			n := 0
			for _, c := range sent {
				if c.Kind == probe.KindProxyIntercept {
					n++
					if c.CA != string(caPEM) {
						t.Errorf("check %q went to the probe with CA %q, want the bottle's", c.Name, c.CA)
					}
				}
			}
			if n == 0 {
				t.Fatalf("no interception check went to the probe: %+v", sent)
			}
			if !strings.Contains(r.Error, tt.wantErr) || (tt.wantErr == "") != (r.Error == "") || len(r.Holes) != min(len(tt.wantHoles), 1) {
				t.Fatalf("report = %+v\nwant error with %q, holes with %q", r, tt.wantErr, tt.wantHoles)
			}
			for _, part := range tt.wantHoles {
				if !strings.Contains(r.Holes[0], part) {
					t.Errorf("hole %q lacks %q", r.Holes[0], part)
				}
			}
			if r.OK != (tt.wantErr == "" && len(tt.wantHoles) == 0) {
				t.Errorf("OK = %v", r.OK)
			}
		})
	}
}

// TestOneAwaitsReach: with AwaitReach, the front port's check runs alone
// until the agent reaches the proxy, and the checks run then; without it,
// the probe runs once. A proxy that never answers within the bound still
// gets the checks, which name the hole.
func TestOneAwaitsReach(t *testing.T) {
	t.Parallel()
	bin := testenv.WriteELF(t, elf.EM_X86_64, false)
	// unreachableFor answers the front port unreachable the first n runs
	// of the probe.
	unreachableFor := func(n int) func([]probe.Check) []probe.Result {
		var mu sync.Mutex
		runs := 0
		return func(checks []probe.Check) []probe.Result {
			mu.Lock()
			runs++
			r := runs
			mu.Unlock()
			if r <= n {
				return answering("the egress proxy at ", "unreachable", false)(checks)
			}
			return asExpected(checks)
		}
	}
	for _, tt := range []struct {
		name      string
		await     time.Duration
		down      int
		wantOK    bool
		wantExecs int // probe runs in the agent
	}{
		{"no wait", 0, 0, true, 1},
		{"reached at once", 10 * time.Second, 0, true, 2},
		{"reached on the third try", 10 * time.Second, 2, true, 4},
		{"never reached", 600 * time.Millisecond, 1000, false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			agent := &fakeGuest{answer: unreachableFor(tt.down)}
			s := Subject{Bottle: "b", Target: target, Agent: agent, Probe: bin, AwaitReach: tt.await}
			r := One(t.Context(), &s)
			if r.OK != tt.wantOK {
				t.Fatalf("report OK %v, want %v: %+v", r.OK, tt.wantOK, r.Holes)
			}
			agent.mu.Lock()
			defer agent.mu.Unlock()
			if tt.wantExecs > 0 && len(agent.execs) != tt.wantExecs {
				t.Errorf("the agent ran the probe %d times, want %d: %q", len(agent.execs), tt.wantExecs, agent.execs)
			}
			if last := agent.execs[len(agent.execs)-1]; !slices.Contains(last, "-remove-self") {
				t.Errorf("the last run %q is not the checks' run, which removes the probe", last)
			}
		})
	}
}
