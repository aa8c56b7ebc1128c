package bundle

import (
	"sync"
	"time"

	"github.com/bottle-apply/bottle-apply/spec"
)

// Refusals are logged one by one only up to a rate: an agent that floods
// the proxy or the DNS daemon with refusals must not push the audit trail
// out of the bundle's rotated log (Docker's json-file keeps 3 files of
// 10 MB). Refusals alike (the same key: daemon, client address, host,
// port, method or query type, status and reason) are logged one by one
// perKey times a window; the rest are counted, and when the window ends
// (on a timer, with or without a later refusal, and at shutdown) one line
// per key says how many more there were. A shared bucket of full lines
// bounds what many different keys can write: beyond it a refusal of a new
// key counts towards one line per daemon. Allowed decisions go through a
// gate of their own, with the same limits: a lookup or request repeated
// as fast as the agent can is a flood too.
//
// With the defaults, a flood of one kind writes at most 6 lines a second
// and a flood of ever new hosts at most about 42 (20 full lines, as many
// summaries, one per daemon beyond the bucket).
const (
	refusalWindow = time.Second
	// refusalsPerKey are logged one by one per key and window.
	refusalsPerKey = 5
	// refusalBurst and refusalRate are the bucket of full refusal lines:
	// a self-test's or a build's burst of refusals is logged whole; a
	// sustained flood gets refusalRate full lines a second.
	refusalBurst = 100
	refusalRate  = 20
)

// summary stands for more refusals like line that were not logged one by
// one in a window; a line with no reason stands for refusals of every kind
// of its daemon that the bucket left out.
type summary struct {
	line line
	more int
}

// refusalGate decides which refusals are logged in full. Its windows are
// one second from the first refusal after a quiet spell.
type refusalGate struct {
	now       func() time.Time
	afterFunc func(time.Duration, func()) (stop func() bool)
	emit      func([]summary) // writes a closed window's summaries

	mu     sync.Mutex
	open   bool
	end    time.Time
	gen    uint64
	stop   func() bool
	keys   map[line]*keyCount
	order  []line         // keys in order of first sight, for the summaries
	over   map[string]int // daemon: refusals of keys the bucket left out
	tokens float64
	filled time.Time // when tokens was last refilled
	closed bool
}

type keyCount struct{ logged, more int }

func newRefusalGate(now func() time.Time, emit func([]summary)) *refusalGate {
	if now == nil {
		now = time.Now
	}
	return &refusalGate{
		now: now, emit: emit,
		afterFunc: func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop },
		keys:      map[line]*keyCount{}, over: map[string]int{},
		tokens: refusalBurst, filled: now(),
	}
}

// admit reports whether the refusal l (its key: see line.key) is logged in
// full; done holds the summaries of a window that ended before it, to be
// written first.
func (g *refusalGate) admit(l line) (full bool, done []summary) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return true, nil
	}
	now := g.now()
	if g.open && !now.Before(g.end) {
		done = g.closeWindow()
	}
	if !g.open {
		g.open, g.end = true, now.Add(refusalWindow)
		g.gen++
		gen := g.gen
		g.stop = g.afterFunc(refusalWindow, func() { g.expire(gen) })
	}
	g.refill(now)
	k := l.key()
	c := g.keys[k]
	switch {
	case c != nil && c.logged < refusalsPerKey && g.tokens >= 1:
		c.logged++
		g.tokens--
		return true, done
	case c != nil:
		c.more++
	case g.tokens >= 1:
		g.keys[k] = &keyCount{logged: 1}
		g.order = append(g.order, k)
		g.tokens--
		return true, done
	default:
		g.over[l.daemon]++
	}
	return false, done
}

func (g *refusalGate) refill(now time.Time) {
	if d := now.Sub(g.filled); d > 0 {
		g.tokens = min(refusalBurst, g.tokens+d.Seconds()*refusalRate)
		g.filled = now
	}
}

// expire ends window gen when its timer fires, unless a refusal ended it
// already.
func (g *refusalGate) expire(gen uint64) {
	g.mu.Lock()
	var done []summary
	if g.open && g.gen == gen {
		done = g.closeWindow()
	}
	g.mu.Unlock()
	if len(done) > 0 {
		g.emit(done)
	}
}

// close ends the window now and logs every refusal that comes later in
// full: nothing counted is left unwritten at shutdown.
func (g *refusalGate) close() {
	g.mu.Lock()
	var done []summary
	if g.open {
		done = g.closeWindow()
	}
	g.closed = true
	g.mu.Unlock()
	if len(done) > 0 {
		g.emit(done)
	}
}

// closeWindow returns the window's summaries and starts afresh; g.mu is
// held.
func (g *refusalGate) closeWindow() []summary {
	var out []summary
	for _, k := range g.order {
		if c := g.keys[k]; c.more > 0 {
			out = append(out, summary{line: k, more: c.more})
		}
	}
	for _, d := range []string{spec.DaemonEgress, spec.DaemonDNS} {
		if n := g.over[d]; n > 0 {
			out = append(out, summary{line: line{daemon: d}, more: n})
		}
	}
	if g.stop != nil {
		g.stop()
	}
	g.open, g.stop, g.order = false, nil, nil
	clear(g.keys)
	clear(g.over)
	return out
}
