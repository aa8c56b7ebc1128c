package reconcile

import (
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

func TestRetry(t *testing.T) {
	t.Parallel()
	permanent := errors.New("no such host")
	cases := []struct {
		name      string
		errs      []error // f's answers, in order; nil after the last
		wantCalls int
		wantErr   error
	}{
		{"at once", nil, 1, nil},
		{"after two retries", []error{fmt.Errorf("refused (%w)", ErrRetry), fmt.Errorf("refused (%w)", ErrRetry)}, 3, nil},
		{"a permanent error at once", []error{permanent}, 1, permanent},
		{"a permanent error after a retry", []error{fmt.Errorf("refused (%w)", ErrRetry), permanent}, 2, permanent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				calls := 0
				err := Retry(t.Context(), "ask", func() error {
					calls++
					if calls <= len(tc.errs) {
						return tc.errs[calls-1]
					}
					return nil
				})
				if calls != tc.wantCalls || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
					t.Fatalf("Retry: %d calls, %v; want %d calls, %v", calls, err, tc.wantCalls, tc.wantErr)
				}
			})
		})
	}
	// An error that stays retryable gives up after about 30 seconds, as
	// Run does.
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		calls := 0
		err := Retry(t.Context(), "ask", func() error { calls++; return fmt.Errorf("refused (%w)", ErrRetry) })
		took := time.Since(start)
		if !errors.Is(err, ErrRetry) || calls != maxRetries+1 || took < 20*time.Second || took > 45*time.Second {
			t.Fatalf("Retry of a lasting error: %d calls in %s, %v", calls, took, err)
		}
	})
}
