// Package lock serializes runs of bottle-apply on the same bottles: one
// apply or destroy per bottle at a time, on file locks that the kernel
// releases when their holder dies (so a crashed run never leaves a stale
// lock behind).
package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"
)

// ErrBusy says another run holds a bottle's lock.
var ErrBusy = errors.New("bottle is busy")

// Set is the locks of one run.
type Set struct {
	locks []*flock.Flock
}

// Acquire takes the locks of the named bottles in dir, in name order so
// that two runs over overlapping sets cannot deadlock, waiting up to wait
// for each. On timeout it fails with ErrBusy naming the holder's pid.
func Acquire(ctx context.Context, dir string, bottles []string, wait time.Duration) (*Set, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock directory %s: %w", dir, err)
	}
	if err := checkPrivate(dir); err != nil {
		return nil, err
	}
	names := slices.Clone(bottles)
	slices.Sort(names)
	names = slices.Compact(names)
	s := &Set{}
	for _, b := range names {
		path := filepath.Join(dir, b+".lock")
		l := flock.New(path)
		ok, err := l.TryLock() // a free lock is taken at once, even with no wait
		if err == nil && !ok && wait > 0 {
			wctx, cancel := context.WithTimeout(ctx, wait)
			ok, err = l.TryLockContext(wctx, 100*time.Millisecond)
			cancel()
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			s.Release()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("waiting for the lock of bottle %s: %w", b, ctx.Err())
			}
			return nil, fmt.Errorf("lock bottle %s (%s): %w", b, path, err)
		}
		if !ok {
			s.Release()
			return nil, fmt.Errorf("bottle %s: %w: another bottle-apply (%s) has been applying or destroying it for more than %s; wait for it to finish, or raise --lock-timeout",
				b, ErrBusy, holder(path), wait)
		}
		// Say who holds it, for the message above in other runs.
		_ = os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
		s.locks = append(s.locks, l)
	}
	return s, nil
}

func holder(path string) string {
	b, err := os.ReadFile(path)
	if pid := strings.TrimSpace(string(b)); err == nil && pid != "" {
		return "pid " + pid
	}
	return "pid unknown"
}

// Release lets go of every lock of the set.
func (s *Set) Release() {
	if s == nil {
		return
	}
	for _, l := range s.locks {
		_ = l.Unlock()
	}
	s.locks = nil
}
