package lock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestAcquireWaitsThenFailsNamingTheHolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := Acquire(t.Context(), dir, []string{"b", "a"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(t.Context(), dir, []string{"a"}, 300*time.Millisecond)
	want := "bottle a: bottle is busy: another bottle-apply (pid " + strconv.Itoa(os.Getpid()) + ") has been applying or destroying it for more than 300ms; wait for it to finish, or raise --lock-timeout"
	if !errors.Is(err, ErrBusy) || err.Error() != want {
		t.Fatalf("second Acquire = %v\nwant %s", err, want)
	}
	// Released: the waiter gets it.
	done := make(chan error, 1)
	go func() {
		s, err := Acquire(t.Context(), dir, []string{"a"}, 5*time.Second)
		s.Release()
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	first.Release()
	if err := <-done; err != nil {
		t.Fatalf("the waiter did not get the released lock: %v", err)
	}
}

// A holder that dies (SIGKILL, no cleanup) leaves nothing to unlock by hand.
func TestLockOfADeadHolderIsTakenOver(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "x.lock")
	// flock(1) from util-linux holds the lock in a child we then kill.
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("no flock(1) to hold a lock from another process")
	}
	cmd := exec.Command("flock", path, "sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // kill flock and its sleep together
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := Acquire(t.Context(), dir, []string{"x"}, 200*time.Millisecond); !errors.Is(err, ErrBusy) {
		t.Fatalf("Acquire while another process holds the lock = %v", err)
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	s, err := Acquire(t.Context(), dir, []string{"x"}, 2*time.Second)
	if err != nil {
		t.Fatalf("the dead holder's lock was not taken over: %v", err)
	}
	s.Release()
}

func TestAcquireStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	held, err := Acquire(t.Context(), dir, []string{"a"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = Acquire(ctx, dir, []string{"a"}, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "waiting for the lock of bottle a") {
		t.Fatalf("Acquire after cancel = %v", err)
	}
}

func TestZeroWaitTakesAFreeLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Acquire(t.Context(), dir, []string{"a"}, 0)
	if err != nil {
		t.Fatalf("Acquire of a free lock with no wait = %v", err)
	}
	if _, err := Acquire(t.Context(), dir, []string{"a"}, 0); !errors.Is(err, ErrBusy) {
		t.Fatalf("Acquire of a held lock with no wait = %v, want ErrBusy at once", err)
	}
	s.Release()
}
