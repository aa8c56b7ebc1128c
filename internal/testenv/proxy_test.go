package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestProxyStripVersion(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/v1.41/containers/json": "/containers/json",
		"/v1.41/_ping":           "/_ping",
		"/_ping":                 "/_ping",
		"/version":               "/version",
		"/volumes/x":             "/volumes/x",
		"/v1.41/volumes/x":       "/volumes/x",
		"":                       "",
		"/v1.41":                 "/v1.41",
	} {
		if got := StripVersion(in); got != want {
			t.Errorf("StripVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// proxyClient talks to the proxy with a new connection per request, so
// that a dropped connection is never retried by the transport.
func proxyClient(t *testing.T, p *Proxy) func(path string) (int, string, error) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", strings.TrimPrefix(p.Host(), "unix://"))
		},
	}}
	return func(path string) (int, string, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://docker"+path, nil)
		if err != nil {
			return 0, "", err
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
}

func TestProxyCountsCalls(t *testing.T) {
	t.Parallel()
	Docker(t)
	p := StartProxy(t, "")
	if !strings.HasPrefix(p.Host(), "unix://") {
		t.Fatalf("Host() = %q", p.Host())
	}
	get := proxyClient(t, p)
	if code, body, err := get("/_ping"); err != nil || code != 200 || body != "OK" {
		t.Fatalf("GET /_ping: %d %q %v", code, body, err)
	}
	for _, path := range []string{"/v1.41/version", "/version"} {
		code, body, err := get(path)
		var v struct{ APIVersion string }
		if err != nil || code != 200 || json.Unmarshal([]byte(body), &v) != nil || v.APIVersion == "" {
			t.Fatalf("GET %s: %d %q %v", path, code, body, err)
		}
	}
	if got, want := p.Calls(), []string{"GET /_ping", "GET /version", "GET /version"}; !slices.Equal(got, want) {
		t.Fatalf("calls = %q, want %q", got, want)
	}
	p.Reset()
	if got := p.Calls(); len(got) != 0 {
		t.Fatalf("after Reset: %q", got)
	}
	if _, _, err := get("/_ping"); err != nil {
		t.Fatal(err)
	}
	if got := p.Calls(); !slices.Equal(got, []string{"GET /_ping"}) {
		t.Fatalf("after Reset and a ping: %q", got)
	}
	if n := p.forwarded.Load(); n != 4 {
		t.Fatalf("forwarded %d requests, want 4", n)
	}
	if !p.WaitIdle(5 * time.Second) {
		t.Fatal("the proxy is not idle")
	}
}

func TestProxyKillAt(t *testing.T) {
	t.Parallel()
	Docker(t)
	for _, tc := range []struct {
		mode                  Mode
		seenAtKill, seenAtEnd int64 // requests the upstream has seen
	}{
		{Before, 1, 2},
		{After, 2, 3},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			p := StartProxy(t, "")
			get := proxyClient(t, p)
			victim := exec.Command("sleep", "60")
			if err := victim.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- victim.Wait() }()
			t.Cleanup(func() { _ = victim.Process.Kill() })
			var seen atomic.Int64
			seen.Store(-1)
			p.KillAt(2, tc.mode, func() {
				seen.Store(p.forwarded.Load())
				_ = victim.Process.Kill()
			})
			if _, _, err := get("/_ping"); err != nil {
				t.Fatalf("call 1: %v", err)
			}
			if p.Fired() {
				t.Fatal("fired at call 1")
			}
			code, body, err := get("/version")
			if err == nil {
				t.Fatalf("call 2 was answered (%d %q); want its connection dropped", code, body)
			}
			if !p.Fired() {
				t.Fatal("the kill hook did not fire at call 2")
			}
			select {
			case err := <-exited:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("victim ended with %v, want SIGKILL", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the victim was not killed")
			}
			if n := seen.Load(); n != tc.seenAtKill {
				t.Fatalf("the upstream had seen %d requests at the kill, want %d", n, tc.seenAtKill)
			}
			// The hook fires once; the proxy goes on forwarding.
			if code, body, err := get("/_ping"); err != nil || code != 200 || body != "OK" {
				t.Fatalf("call 3: %d %q %v", code, body, err)
			}
			if n := p.forwarded.Load(); n != tc.seenAtEnd {
				t.Fatalf("the upstream saw %d requests, want %d", n, tc.seenAtEnd)
			}
			if got, want := p.Calls(), []string{"GET /_ping", "GET /version", "GET /_ping"}; !slices.Equal(got, want) {
				t.Fatalf("calls = %q, want %q", got, want)
			}
		})
	}
}

func TestProxyOnCall(t *testing.T) {
	t.Parallel()
	Docker(t)
	p := StartProxy(t, "")
	get := proxyClient(t, p)
	var (
		mu sync.Mutex
		at []int64
	)
	record := func(offset int64) func() {
		return func() {
			mu.Lock()
			defer mu.Unlock()
			at = append(at, offset+p.forwarded.Load())
		}
	}
	p.OnCall(2, record(0))
	p.OnFirst("GET /version", record(100))
	for i, path := range []string{"/_ping", "/_ping", "/v1.41/version", "/version"} {
		if code, _, err := get(path); err != nil || code != 200 {
			t.Fatalf("call %d (%s): %d %v; an OnCall hook must not drop it", i+1, path, code, err)
		}
	}
	// Both run once the upstream has answered, once each.
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(at, []int64{2, 103}) || !p.Fired() {
		t.Fatalf("hooks ran at %v, want [2 103]", at)
	}
}

func TestProxyTake(t *testing.T) {
	t.Parallel()
	Docker(t)
	p := StartProxy(t, "")
	get := proxyClient(t, p)
	p.OnCall(3, func() {})
	for _, path := range []string{"/_ping", "/v1.41/version"} {
		if _, _, err := get(path); err != nil {
			t.Fatal(err)
		}
	}
	if !p.WaitIdle(5 * time.Second) {
		t.Fatal("the proxy is not idle")
	}
	got := p.Take()
	var names []string
	for i, c := range got {
		names = append(names, c.Name)
		if c.Start.IsZero() || c.Dur <= 0 {
			t.Errorf("call %d: start %v, dur %v", i+1, c.Start, c.Dur)
		}
		// In order of their start. Not "after the last one's end": its
		// end is taken once its response has reached the client, which
		// may send the next call first (CI saw it under load).
		if i > 0 && c.Start.Before(got[i-1].Start) {
			t.Errorf("call %d started before call %d", i+1, i)
		}
	}
	if want := []string{"GET /_ping", "GET /version"}; !slices.Equal(names, want) {
		t.Fatalf("Take() = %q, want %q", names, want)
	}
	if got := p.Take(); len(got) != 0 {
		t.Fatalf("a second Take: %v", got)
	}
	// Take forgets the calls, so numbering starts again, and keeps the hooks.
	for range 3 {
		if _, _, err := get("/_ping"); err != nil {
			t.Fatal(err)
		}
	}
	if !p.Fired() {
		t.Fatal("the hook set before Take did not fire at the third call after it")
	}
}

func TestDockerSocket(t *testing.T) {
	for _, tc := range []struct{ host, want, err string }{
		{"", "/var/run/docker.sock", ""},
		{"unix:///run/user/1000/docker.sock", "/run/user/1000/docker.sock", ""},
		{"tcp://127.0.0.1:2375", "", "DOCKER_HOST=tcp://127.0.0.1:2375: the Docker API proxy forwards to a unix socket only"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			t.Setenv("DOCKER_HOST", tc.host)
			got, err := DockerSocket()
			if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
				t.Fatalf("DockerSocket() = %q, %v; want %q, %q", got, err, tc.want, tc.err)
			}
		})
	}
}
