package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/app"
	"github.com/bottle-apply/bottle-apply/internal/lock"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
	"github.com/bottle-apply/bottle-apply/internal/xdg"
)

// startUntil starts the binary and returns once a stderr line contains
// marker; the rest of stderr keeps being collected, and acked is closed
// once a line contains ack (or stderr ends).
func startUntil(t *testing.T, bin string, env []string, marker, ack string, args ...string) (cmd *exec.Cmd, errOut *bytes.Buffer, drained, acked <-chan struct{}) {
	t.Helper()
	cmd = exec.Command(bin, args...)
	cmd.Env = env
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	seen, done, ackd := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		found, gotAck := false, false
		for sc.Scan() {
			errb.WriteString(sc.Text() + "\n")
			if !found && strings.Contains(sc.Text(), marker) {
				found = true
				close(seen)
			}
			if !gotAck && ack != "" && strings.Contains(sc.Text(), ack) {
				gotAck = true
				close(ackd)
			}
		}
		if !found {
			close(seen)
		}
		if !gotAck {
			close(ackd)
		}
	}()
	go func() { _ = cmd.Wait(); pw.Close() }()
	select {
	case <-seen:
	case <-time.After(2 * time.Minute):
		t.Fatalf("no %q on stderr", marker)
	}
	return cmd, &errb, done, ackd
}

func TestE2EInterruptLeavesAConvergeableBottle(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	for _, tc := range []struct {
		name    string
		signals int
		// at is the step whose start the first signal follows: the second
		// signal needs a step that runs long enough to interrupt.
		at   string
		code int
		says string
	}{
		{"once: running steps finish", 1, "create docker-network:", 1, "interrupted: starting no new step"},
		{"twice: exit at once", 2, "create docker-container:", 130, "interrupted again: exiting now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path, name := example(t, c, "hello.yaml", img)
			cmd, errb, drained, acked := startUntil(t, bin, os.Environ(), tc.at, "interrupted: starting no new step", "-f", path)
			for range tc.signals {
				_ = cmd.Process.Signal(syscall.SIGINT)
				// Each signal once it is taken: two sent at once can reach
				// a busy process as one (the kernel keeps one pending
				// SIGINT).
				select {
				case <-acked:
				case <-time.After(10 * time.Second):
				}
			}
			<-drained // after Wait: stderr closes when the process is reaped
			code := cmd.ProcessState.ExitCode()
			if code != tc.code || !strings.Contains(errb.String(), tc.says) {
				t.Fatalf("exit %d (want %d), stderr:\n%s", code, tc.code, errb.String())
			}
			if tc.signals == 1 && !strings.Contains(errb.String(), "what was done is labelled, and the next run converges from it") {
				t.Fatalf("the interrupted run does not say what to do:\n%s", errb.String())
			}
			// Whatever was left is labelled, and the next apply converges.
			if code, out, errs := cli(t, bin, "", "-f", path); code != 0 {
				t.Fatalf("apply after the interrupt: exit %d\n%s\n%s", code, out, errs)
			}
			if left := testenv.Leftovers(t, c, name); len(left) != 4 {
				t.Fatalf("after converging: %q, want 2 networks and 2 containers", left)
			}
			if code, out, _ := cli(t, bin, "", "-f", path); code != 0 || !strings.HasPrefix(out, "No changes.") {
				t.Fatalf("third apply: exit %d\n%s", code, out)
			}
			cli(t, bin, "", "-f", path, "--destroy")
		})
	}
}

func TestE2ELockTimeoutNamesTheHolder(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	path, name := example(t, c, "hello.yaml", img)
	state := t.TempDir()
	// Locks are the engine's, whatever its address.
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	held, err := lock.Acquire(t.Context(), xdg.LockDirIn(state, app.Engine{ID: info.ID}.LockKey()), []string{name}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-f", path, "--lock-timeout", "500ms")
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+state)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 ||
		!strings.Contains(string(out), "bottle "+name+": bottle is busy: another bottle-apply (pid ") ||
		!strings.Contains(string(out), "raise --lock-timeout") {
		t.Fatalf("apply while the bottle is locked: %v\n%s", err, out)
	}
	if left := testenv.Leftovers(t, c, name); len(left) != 0 {
		t.Fatalf("a run that could not lock changed %q", left)
	}
	held.Release()
	cmd = exec.CommandContext(ctx, bin, "-f", path, "--lock-timeout", "5s")
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+state)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apply once the lock is free: %v\n%s", err, out)
	}
	cli(t, bin, "", "-f", path, "--destroy")
}
