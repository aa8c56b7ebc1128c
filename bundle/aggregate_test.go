package bundle

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeTimers stands in for time.AfterFunc: the test fires the timers.
type fakeTimers struct {
	mu      sync.Mutex
	fs      []func()
	stopped []bool
}

func (ft *fakeTimers) afterFunc(_ time.Duration, f func()) func() bool {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	i := len(ft.fs)
	ft.fs, ft.stopped = append(ft.fs, f), append(ft.stopped, false)
	return func() bool {
		ft.mu.Lock()
		defer ft.mu.Unlock()
		was := !ft.stopped[i]
		ft.stopped[i] = true
		return was
	}
}

// fire runs timer i as time.AfterFunc would, stopped or not: a timer
// that fires as it is stopped still runs.
func (ft *fakeTimers) fire(i int) {
	ft.mu.Lock()
	f := ft.fs[i]
	ft.mu.Unlock()
	f()
}

func (ft *fakeTimers) count() int {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return len(ft.fs)
}

// gateLog is a decisionLog on a fake clock and fake timers.
type gateLog struct {
	*decisionLog
	buf    *logBuffer
	st     *statusState
	timers *fakeTimers
	now    time.Time
}

func newGateLog() *gateLog {
	g := &gateLog{buf: &logBuffer{}, st: &statusState{}, timers: &fakeTimers{}, now: time.Unix(1e9, 0)}
	g.decisionLog = newDecisionLog(newLogger(g.buf, "hello"), g.st, func() time.Time { return g.now })
	g.gate.afterFunc, g.allowGate.afterFunc = g.timers.afterFunc, g.timers.afterFunc
	return g
}

// account checks that the lines stand for sent refusals exactly (each
// full line one, each summary its More) and returns the lines.
func (g *gateLog) account(t *testing.T, sent int) []Decision {
	t.Helper()
	ds := g.buf.decisions()
	n := 0
	for _, d := range ds {
		if d.Allowed() {
			continue
		}
		if d.More > 0 {
			n += d.More
		} else {
			n++
		}
	}
	if n != sent {
		t.Fatalf("the lines stand for %d refusals, want %d:\n%s", n, sent, g.buf)
	}
	if got := g.st.deny.Load(); got != int64(sent) {
		t.Fatalf("status counts %d denials, want %d", got, sent)
	}
	return ds
}

// Refusals alike: five lines a second, then one line for the rest when
// the window's timer fires, with no refusal after it.
func TestRefusalGatePerKey(t *testing.T) {
	t.Parallel()
	g := newGateLog()
	for range 12 {
		g.egress("CONNECT", "denied.test", 443, "", "no rule allows denied.test:443")
	}
	if n := len(g.buf.decisions()); n != refusalsPerKey {
		t.Fatalf("%d lines before the window ends, want %d", n, refusalsPerKey)
	}
	g.now = g.now.Add(time.Second)
	g.timers.fire(0)
	ds := g.account(t, 12)
	if len(ds) != refusalsPerKey+1 {
		t.Fatalf("%d lines, want %d", len(ds), refusalsPerKey+1)
	}
	s := ds[refusalsPerKey]
	if s.More != 7 || s.Host != "denied.test" || s.Port != 443 || s.Method != "CONNECT" || s.Decision != "deny" ||
		s.Reason != "7 more like this in the last second: no rule allows denied.test:443" {
		t.Errorf("summary %+v", s)
	}
	// A new window: full lines again.
	for range 3 {
		g.egress("CONNECT", "denied.test", 443, "", "no rule allows denied.test:443")
	}
	if n := len(g.account(t, 15)); n != refusalsPerKey+4 {
		t.Errorf("%d lines, want %d", n, refusalsPerKey+4)
	}
}

// A refusal after the window's end ends it, its summary first; the old
// timer, firing late, writes nothing more.
func TestRefusalGateWindowEndedByRefusal(t *testing.T) {
	t.Parallel()
	g := newGateLog()
	for range 8 {
		g.dns("x.denied.test", "TXT", "", "no rule covers x.denied.test")
	}
	g.now = g.now.Add(1500 * time.Millisecond)
	g.dns("x.denied.test", "TXT", "", "no rule covers x.denied.test")
	ds := g.account(t, 9)
	if len(ds) != refusalsPerKey+2 || ds[refusalsPerKey].More != 3 || ds[refusalsPerKey].QType != "TXT" ||
		ds[refusalsPerKey].Message != MessageDNSDecision || ds[refusalsPerKey+1].More != 0 {
		t.Fatalf("lines %+v, want 5 full, a summary of 3, a full one", ds)
	}
	g.timers.fire(0)
	if n := len(g.account(t, 9)); n != refusalsPerKey+2 {
		t.Errorf("the first window's timer wrote again: %d lines", n)
	}
}

// Many kinds at once: the bucket's full lines, then one line per daemon
// for the rest; refusals from one address over many connections are one
// kind.
func TestRefusalGateBucket(t *testing.T) {
	t.Parallel()
	g := newGateLog()
	for i := range 150 {
		g.egress("CONNECT", fmt.Sprintf("r%d.denied.test", i), 443, "", "no rule")
	}
	g.dns("d.denied.test", "A", "", "no rule")
	g.timers.fire(0)
	ds := g.account(t, 151)
	if len(ds) != refusalBurst+2 {
		t.Fatalf("%d lines, want %d", len(ds), refusalBurst+2)
	}
	for i, d := range ds[refusalBurst:] {
		daemon := []string{"egress", "dns"}[i]
		if d.More != []int{50, 1}[i] || d.Host != "" || d.Daemon != daemon ||
			!strings.HasPrefix(d.Reason, fmt.Sprintf("%d more refusals in the last second", d.More)) {
			t.Errorf("summary %+v", d)
		}
	}
	// A second later the bucket holds refusalRate lines.
	g.now = g.now.Add(time.Second)
	for i := range 30 {
		g.refused(fmt.Sprintf("127.0.0.1:%d", 40000+i), http.StatusBadRequest, "", "", 0, "the request line is not METHOD TARGET HTTP/VERSION")
	}
	g.close()
	ds = g.account(t, 181)[refusalBurst+2:]
	if len(ds) != refusalsPerKey+1 || ds[refusalsPerKey].More != 25 || ds[refusalsPerKey].Client != "127.0.0.1" ||
		ds[refusalsPerKey].Status != 400 || ds[0].Client != "127.0.0.1:40000" {
		t.Errorf("lines %+v, want 5 full with their ports, and 25 more from 127.0.0.1", ds)
	}
}

// Shutdown writes the open window's summary; later refusals are logged in
// full. Allowed decisions are never aggregated.
func TestRefusalGateClose(t *testing.T) {
	t.Parallel()
	g := newGateLog()
	for range 50 {
		g.egress("GET", "allowed.test", 80, "allowed.test:*", "")
	}
	for range 7 {
		g.egress("GET", "denied.test", 80, "", "no rule")
	}
	g.close()
	for range 7 {
		g.egress("GET", "denied.test", 80, "", "no rule")
	}
	ds := g.account(t, 14)
	// Allowed decisions alike are summed up too, through a gate of their
	// own: 5 allowed, 5 refused, at close the refusals' summary (2) and the
	// allowed ones' (45), then 7 refused in full.
	if len(ds) != 2*refusalsPerKey+2+7 {
		t.Fatalf("%d lines, want 5 allowed, 5 refused, two summaries, 7 refused:\n%s", len(ds), g.buf)
	}
	if d := ds[2*refusalsPerKey]; d.Allowed() || d.More != 2 {
		t.Errorf("first summary %+v, want the 2 more refusals", d)
	}
	if d := ds[2*refusalsPerKey+1]; !d.Allowed() || d.More != 50-refusalsPerKey || d.Rule != "allowed.test:*" {
		t.Errorf("second summary %+v, want the %d more allowed, with their rule", d, 50-refusalsPerKey)
	}
	if got := g.st.allow.Load(); got != 50 {
		t.Errorf("status counts %d allowed, want 50", got)
	}
	if n := g.timers.count(); n != 2 {
		t.Errorf("%d windows opened, want 2 (one a gate)", n)
	}
}

// floodStats counts a flood's lines in the log.
func floodStats(ds []Decision) (lines, full, more int) {
	for _, d := range ds {
		if d.Allowed() {
			continue
		}
		lines++
		if d.More > 0 {
			more += d.More
		} else {
			full++
		}
	}
	return lines, full, more
}

// duplicateHost sends a request with two Host headers on a connection of
// its own and expects the server's 400; it may run on any goroutine.
func duplicateHost(proxy string) error {
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		return fmt.Errorf("answered %s, want 400", resp.Status)
	}
	return nil
}

// An agent floods the proxy with 10 000 refusals of one kind, then 10 000
// of ever new hosts: the log stays small, and its lines account for every
// refusal, by the window's timer without a refusal after it, and at
// shutdown. The status endpoint counts each. Not parallel: the flood
// would starve the timing of other tests (a 300 ms sniff timeout).
func TestEgressRefusalFlood(t *testing.T) {
	b := startBundle(t, baseConfig(newResolver(nil), "allowed.test:*"))
	const n = 10000
	// Pre-handler refusals, each on a connection of its own.
	start := time.Now()
	var wg sync.WaitGroup
	per := n / 16
	for range 16 {
		wg.Go(func() {
			for range per {
				if err := duplicateHost(b.proxy); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	// The window's timer writes the summary: no refusal follows.
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines, full, more := floodStats(b.log.decisions())
		if full+more == n {
			bound := refusalsPerKey*int(math.Ceil(elapsed.Seconds())+1) + int(math.Ceil(elapsed.Seconds())+1)
			t.Logf("%d refusals of one kind in %v: %d lines (%d full), %d bytes of log", n, elapsed.Round(time.Millisecond), lines, full, len(b.log.String()))
			if lines > bound {
				t.Errorf("%d lines for %d refusals in %v, want at most %d", lines, n, elapsed, bound)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lines stand for %d refusals, want %d", full+more, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := len(b.log.decisions())
	bytesBefore := len(b.log.String())

	// Policy denials of ever new hosts, pipelined on one connection.
	c := dialProxy(t, b.proxy)
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	start = time.Now()
	go func() {
		w := bufio.NewWriter(c)
		for i := range n {
			fmt.Fprintf(w, "GET http://r%d.denied.test/ HTTP/1.1\r\nHost: r%d.denied.test\r\n\r\n", i, i)
		}
		_ = w.Flush()
	}()
	for i := range n {
		resp, err := http.ReadResponse(c.r, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("response %d: %s, want 403", i, resp.Status)
		}
	}
	elapsed = time.Since(start)
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
	ds := b.log.decisions()
	lines, full, more := floodStats(ds[before:])
	t.Logf("%d refusals of new hosts in %v: %d lines (%d full), %d bytes of log", n, elapsed.Round(time.Millisecond), lines, full, len(b.log.String())-bytesBefore)
	if full+more != n {
		t.Errorf("the lines stand for %d refusals, want %d", full+more, n)
	}
	secs := int(math.Ceil(elapsed.Seconds())) + 1
	if bound := refusalBurst + secs*(2*refusalRate+2); lines > bound {
		t.Errorf("%d lines for %d refusals in %v, want at most %d", lines, n, elapsed, bound)
	}
	if got := b.log.String(); len(got) > 256<<10 {
		t.Errorf("%d bytes of log for %d refusals", len(got), 2*n)
	}
}

// The DNS daemon's refusals go through the same gate: 300 queries for an
// unlisted name are 5 lines and a summary.
func TestDNSRefusalFlood(t *testing.T) {
	t.Parallel()
	b, _ := startEgressAndDNS(t)
	const n = 300
	for range n {
		if r := query(t, b.dns, "x.denied.test", dns.TypeA); r.Rcode != dns.RcodeRefused {
			t.Fatalf("DNS of an unlisted name = %s, want REFUSED", dns.RcodeToString[r.Rcode])
		}
	}
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
	lines, full, more := floodStats(b.log.decisions())
	if full+more != n || lines > 4*(refusalsPerKey+1) {
		t.Errorf("%d lines standing for %d refusals (%d full), want %d in a few lines:\n%s", lines, full+more, full, n, b.log)
	}
}

// A flood of allowed lookups cannot flush the trail either: the same
// name asked 10 000 times comes to a few lines that account for each.
func TestAllowedFloodIsSummedUp(t *testing.T) {
	t.Parallel()
	g := newGateLog()
	const sent = 10000
	for range sent {
		g.dns("allowed.test", "A", "allowed.test:*", "")
	}
	g.close()
	ds := g.buf.decisions()
	n := 0
	for _, d := range ds {
		if !d.Allowed() {
			t.Fatalf("an allowed lookup logged as %+v", d)
		}
		if d.More > 0 {
			n += d.More
		} else {
			n++
		}
	}
	if n != sent || len(ds) > refusalsPerKey+1 {
		t.Fatalf("%d lines standing for %d lookups, want at most %d lines for %d", len(ds), n, refusalsPerKey+1, sent)
	}
	if got := g.st.allow.Load(); got != sent {
		t.Fatalf("status counts %d allowed, want %d", got, sent)
	}
}
