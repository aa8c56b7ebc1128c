package probe

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestWaitConfined: the wait ends after the silent rounds once the
// policy drops the knocks, and fails naming what answered when it never
// does.
func TestWaitConfined(t *testing.T) {
	t.Parallel()
	fast := Confinement{Addrs: []string{"10.0.0.1:10250"}, Within: 300 * time.Millisecond, Every: time.Millisecond, Silence: time.Millisecond, Rounds: 3}
	for _, tc := range []struct {
		name     string
		answerN  int32 // knocks answered before the policy holds; -1: always
		answer   error
		wantErr  string
		minKnock int32
	}{
		{"enforced at once", 0, nil, "", 3},
		{"enforced after a while", 5, nil, "", 8},
		{"a policy that rejects holds", -1, syscall.ECONNREFUSED, "", 3},
		{"never enforced", -1, nil, "10.0.0.1:10250 (connected)", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var knocks atomic.Int32
			c := fast
			c.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				n := knocks.Add(1)
				if tc.answerN < 0 || n <= tc.answerN {
					if tc.answer != nil {
						return nil, &net.OpError{Op: "dial", Net: network, Err: tc.answer}
					}
					a, b := net.Pipe()
					b.Close()
					return a, nil
				}
				return nil, &net.OpError{Op: "dial", Net: network, Err: timeoutErr{}}
			}
			err := WaitConfined(t.Context(), c)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("WaitConfined: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "does not enforce NetworkPolicy")):
				t.Fatalf("WaitConfined: %v, want an error with %q", err, tc.wantErr)
			}
			if k := knocks.Load(); k < tc.minKnock {
				t.Errorf("%d knocks, want at least %d", k, tc.minKnock)
			}
		})
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	done := fast
	done.dial = func(ctx context.Context, _, _ string) (net.Conn, error) { return nil, ctx.Err() }
	if err := WaitConfined(ctx, done); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitConfined on a done context: %v", err)
	}
}
