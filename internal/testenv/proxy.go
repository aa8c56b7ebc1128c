package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Mode says when a fault hook of the Proxy fires, relative to the call it
// is set on.
type Mode int

const (
	// Before fires when the call arrives, before the upstream sees it.
	Before Mode = iota + 1
	// After fires once the upstream has answered the call (its whole
	// response, unless the connection was upgraded), before the response
	// is delivered to the client.
	After
)

func (m Mode) String() string {
	switch m {
	case Before:
		return "before"
	case After:
		return "after"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Proxy is a Docker API proxy on a unix socket that records the calls made
// through it, with when each came and how long it took, and can inject
// faults: run a function (kill the client, restart the engine) at a given
// call, and drop that call's connection. Point a client at it with
// DOCKER_HOST=p.Host(). It forwards streamed bodies (image import and pull
// progress) as they come and upgraded connections (exec and attach). Tests
// start it with StartProxy; hack/bench measures through it.
type Proxy struct {
	path string
	srv  *http.Server
	tr   *http.Transport
	rp   *httputil.ReverseProxy

	mu       sync.Mutex
	calls    []*Call
	hooks    []*hook
	inflight int

	forwarded atomic.Int64 // requests sent upstream, for the proxy's own tests
}

// Call is one call through the proxy.
type Call struct {
	Name  string        // "METHOD /path", without the /v1.xx prefix
	Start time.Time     // when it came
	Dur   time.Duration // until its response was delivered (or dropped)
}

// hook runs f at the n-th call, or at the first call starting with prefix.
type hook struct {
	n      int
	prefix string
	match  func(call string) bool
	mode   Mode
	f      func()
	fcall  func(call string) // instead of f: sees the call
	drop   bool
	done   bool
}

func (h *hook) matches(n int, call string) bool {
	if h.done {
		return false
	}
	if h.match != nil {
		return h.match(call)
	}
	if h.prefix != "" {
		return strings.HasPrefix(call, h.prefix)
	}
	return h.n == n
}

type hooksKey struct{}

// errDrop makes the error handler drop the client's connection.
var errDrop = errors.New("testenv proxy: dropping the connection")

// DockerSocket is the path of the engine's unix socket: DOCKER_HOST's when
// it is a unix:// address, else /var/run/docker.sock. It fails when
// DOCKER_HOST names an engine that is not on a unix socket.
func DockerSocket() (string, error) {
	h := os.Getenv("DOCKER_HOST")
	switch {
	case h == "":
		return "/var/run/docker.sock", nil
	case strings.HasPrefix(h, "unix://"):
		return strings.TrimPrefix(h, "unix://"), nil
	}
	return "", fmt.Errorf("DOCKER_HOST=%s: the Docker API proxy forwards to a unix socket only", h)
}

// StartProxy starts a proxy in front of the engine's unix socket upstream
// (when empty: DockerSocket) and stops it when the test ends. It skips the
// test when DOCKER_HOST names an engine that is not on a unix socket.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	if upstream == "" {
		var err error
		if upstream, err = DockerSocket(); err != nil {
			t.Skip(err)
		}
	}
	dir := t.TempDir()
	if len(dir) > 80 { // sun_path holds 108 bytes on Linux, 104 on macOS
		short, err := os.MkdirTemp("", "bap-proxy-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(short) })
		dir = short
	}
	p, err := NewProxy(filepath.Join(dir, "docker.sock"), upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// NewProxy starts a proxy listening on the unix socket path (short: a
// sun_path holds 104 bytes on macOS) in front of the engine's unix socket
// upstream. Close stops it.
func NewProxy(path, upstream string) (*Proxy, error) {
	upstream = strings.TrimPrefix(upstream, "unix://")
	p := &Proxy{path: path}
	p.tr = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", upstream)
		},
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64, // a directory of bottles applies them in parallel
		IdleConnTimeout:     30 * time.Second,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "docker"
			pr.Out.Host = pr.In.Host
		},
		Transport:      countingTransport{p},
		FlushInterval:  -1,
		ModifyResponse: p.afterHooks,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, errDrop) {
				drop(w)
				return
			}
			http.Error(w, "testenv proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	_ = p.srv.Close()
	p.tr.CloseIdleConnections()
}

type countingTransport struct{ p *Proxy }

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.p.forwarded.Add(1)
	return c.p.tr.RoundTrip(r)
}

// Host is the proxy's address for DOCKER_HOST: unix://PATH.
func (p *Proxy) Host() string { return "unix://" + p.path }

// Calls returns the calls since the last Reset or Take, in the order they
// arrived, as "METHOD /path" with the /v1.xx prefix stripped.
func (p *Proxy) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.calls))
	for i, c := range p.calls {
		out[i] = c.Name
	}
	return out
}

// Take returns the calls since the last Reset or Take, in the order they
// arrived (a call still in flight has no Dur yet), and forgets them, so
// that call numbers start again from 1. Unlike Reset, it keeps the hooks.
func (p *Proxy) Take() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Call, len(p.calls))
	for i, c := range p.calls {
		out[i] = *c
	}
	p.calls = nil
	return out
}

// Reset forgets the calls counted so far, so that call numbers start again
// from 1, and the hooks that have not fired.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = nil
	p.hooks = nil
}

// KillAt calls kill at the n-th call (counting from 1 since the last
// Reset): with Before, as it arrives, and the upstream never sees it; with
// After, once the upstream has answered it. Then it drops that call's
// connection without a response. Kill typically is cmd.Process.Kill (and
// waits for the process to be gone).
func (p *Proxy) KillAt(n int, mode Mode, kill func()) {
	p.addHook(&hook{n: n, mode: mode, f: kill, drop: true})
}

// OnCall runs f once the upstream has answered the n-th call (counting from
// 1 since the last Reset), before the response goes on to the client, which
// then gets it unchanged.
func (p *Proxy) OnCall(n int, f func()) {
	p.addHook(&hook{n: n, mode: After, f: f})
}

// OnFirst is OnCall at the first call (after this one is set) whose
// "METHOD /path" starts with prefix, e.g. "POST /containers/create".
func (p *Proxy) OnFirst(prefix string, f func()) {
	p.addHook(&hook{prefix: prefix, mode: After, f: f})
}

// BeforeFirst runs f as the first call (after this one is set) that match
// accepts arrives, with the call's "METHOD /path", then forwards the call
// as usual.
func (p *Proxy) BeforeFirst(match func(call string) bool, f func(call string)) {
	p.addHook(&hook{match: match, mode: Before, fcall: f})
}

func (p *Proxy) addHook(h *hook) {
	if h.mode != Before && h.mode != After {
		panic(fmt.Sprintf("testenv proxy: bad mode %v", h.mode))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hooks = append(p.hooks, h)
}

// Fired reports whether every hook set since the last Reset has run.
func (p *Proxy) Fired() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.hooks {
		if !h.done {
			return false
		}
	}
	return true
}

// WaitIdle waits until no call is in flight through the proxy, at most d,
// and reports whether it is idle.
func (p *Proxy) WaitIdle(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		p.mu.Lock()
		n := p.inflight
		p.mu.Unlock()
		if n == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StripVersion drops the /v1.xx API version prefix of a path.
func StripVersion(path string) string {
	if len(path) > 2 && strings.HasPrefix(path, "/v") && path[2] >= '0' && path[2] <= '9' {
		if i := strings.Index(path[1:], "/"); i > 0 {
			return path[i+1:]
		}
	}
	return path
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	call := r.Method + " " + StripVersion(r.URL.Path)
	p.mu.Lock()
	// Taken under the lock, the start times run in the order of the calls.
	rec := &Call{Name: call, Start: time.Now()}
	p.inflight++
	p.calls = append(p.calls, rec)
	n := len(p.calls)
	var before, after []*hook
	for _, h := range p.hooks {
		if h.matches(n, call) {
			h.done = true
			if h.mode == Before {
				before = append(before, h)
			} else {
				after = append(after, h)
			}
		}
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		rec.Dur = time.Since(rec.Start)
		p.inflight--
		p.mu.Unlock()
	}()
	dropIt := false
	for _, h := range before {
		if h.fcall != nil {
			h.fcall(call)
		} else {
			h.f()
		}
		dropIt = dropIt || h.drop
	}
	if dropIt {
		drop(w)
		return
	}
	if len(after) > 0 {
		r = r.WithContext(context.WithValue(r.Context(), hooksKey{}, after))
	}
	p.rp.ServeHTTP(w, r)
}

// afterHooks runs the After hooks of a call once the upstream has answered
// it: for a response that is not an upgraded connection, once its whole
// body has come.
func (p *Proxy) afterHooks(resp *http.Response) error {
	hooks, _ := resp.Request.Context().Value(hooksKey{}).([]*hook)
	if len(hooks) == 0 {
		return nil
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			return err
		}
	}
	dropIt := false
	for _, h := range hooks {
		h.f()
		dropIt = dropIt || h.drop
	}
	if dropIt {
		return errDrop
	}
	return nil
}

// drop closes the client's connection without a response.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}
