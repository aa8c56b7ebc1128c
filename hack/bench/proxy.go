package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"sort"
	"strings"
	"sync"
	"time"
)

// call is one Docker API call seen by the proxy: "METHOD /path" without the
// /v1.xx prefix, when it arrived and how long the engine took to answer it.
type call struct {
	Call  string
	Start time.Time
	Dur   time.Duration
}

// proxy is a reverse proxy on a unix socket in front of the engine's
// socket that records every call made through it. Point a CLI at it with
// DOCKER_HOST=unix://<path>.
type proxy struct {
	path string
	srv  *http.Server

	mu       sync.Mutex
	calls    []*call
	inflight int
}

func startProxy(path, upstream string) (*proxy, error) {
	p := &proxy{path: path}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", upstream)
		},
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "docker"
			pr.Out.Host = pr.In.Host
		},
		Transport:     tr,
		FlushInterval: -1,
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	p.srv = &http.Server{ReadHeaderTimeout: 30 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{Call: r.Method + " " + stripVersion(r.URL.Path), Start: time.Now()}
		p.mu.Lock()
		p.calls = append(p.calls, c)
		p.inflight++
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
		p.mu.Lock()
		c.Dur = time.Since(c.Start)
		p.inflight--
		p.mu.Unlock()
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *proxy) host() string { return "unix://" + p.path }

func (p *proxy) close() { _ = p.srv.Close() }

// take waits (a little) for the calls in flight to finish, then returns and
// forgets the calls recorded so far, in order of arrival.
func (p *proxy) take() []call {
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		p.mu.Lock()
		if p.inflight == 0 || time.Now().After(deadline) {
			break
		}
		p.mu.Unlock()
	}
	defer p.mu.Unlock()
	out := make([]call, len(p.calls))
	for i, c := range p.calls {
		out[i] = *c
	}
	p.calls = nil
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// stripVersion drops the /v1.xx API version prefix of a path.
func stripVersion(path string) string {
	if len(path) > 2 && strings.HasPrefix(path, "/v") && path[2] >= '0' && path[2] <= '9' {
		if i := strings.Index(path[1:], "/"); i > 0 {
			return path[i+1:]
		}
	}
	return path
}
