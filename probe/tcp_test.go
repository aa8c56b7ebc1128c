package probe

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// listen starts a TCP listener on loopback that accepts and hangs up.
func listen(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// closedPort returns a loopback address on which nothing listens: the
// kernel answers a connect with a reset.
func closedPort(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		pc.Close()
		return addr
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// blackhole is a dial that never connects, like a peer that drops every
// packet.
func blackhole(ctx context.Context, network, addr string) (net.Conn, error) {
	<-ctx.Done()
	return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
}

// failDial returns a dial that fails at once with err.
func failDial(err error) func(context.Context, string, string) (net.Conn, error) {
	return func(_ context.Context, network, _ string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
}

func TestTCP(t *testing.T) {
	t.Parallel()
	open, closed := listen(t), closedPort(t, "tcp")
	tests := []struct {
		name   string
		addr   string
		dial   func(context.Context, string, string) (net.Conn, error) // nil: the real one
		expect Expect
		got    string
		ok     bool
		detail string
	}{
		{"open", open, nil, ExpectOpen, "open", true, "connected"},
		{"open is a hole", open, nil, ExpectClosed, "open", false, ""},
		{"refused is closed", closed, nil, ExpectClosed, "refused", true, "refused"},
		{"refused answered", closed, nil, ExpectUnreachable, "refused", false, "refused"},
		{"refused is not open", closed, nil, ExpectOpen, "refused", false, ""},
		{"timeout", "192.0.2.1:9", blackhole, ExpectUnreachable, "unreachable", true, "no answer within 30ms"},
		{"timeout is closed", "192.0.2.1:9", blackhole, ExpectClosed, "unreachable", true, "no answer within 50ms"},
		{"timeout is not open", "192.0.2.1:9", blackhole, ExpectOpen, "unreachable", false, "no answer within 50ms"},
		{"no route to host", "192.0.2.1:9", failDial(errHostUnreach), ExpectUnreachable, "unreachable", true, "no route to host"},
		{"network unreachable", "192.0.2.1:9", failDial(errNetUnreach), ExpectUnreachable, "unreachable", true, "unreachable"},
		{"address not available", "192.0.2.1:9", failDial(errAddrNotAvail), ExpectUnreachable, "unreachable", true, ""},
		{"other error", "192.0.2.1:9", failDial(errors.New("boom")), ExpectClosed, "error", false, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Check{Name: tt.name, Kind: KindTCP, Addr: tt.addr, Expect: tt.expect}
			r := Run(t.Context(), []Check{c}, Options{ConnectTimeout: 50 * time.Millisecond, Silence: 30 * time.Millisecond, dial: tt.dial})[0]
			if r.Got != tt.got || r.OK != tt.ok || !strings.Contains(r.Detail, tt.detail) {
				t.Fatalf("result = %+v, want got %s, ok %v, detail with %q", r, tt.got, tt.ok, tt.detail)
			}
			if r.Check != c {
				t.Fatalf("result's check = %+v, want %+v", r.Check, c)
			}
		})
	}
}
