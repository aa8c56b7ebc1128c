package smolvm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/guest"
)

func TestPrettyCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		argv []string
		want string
	}{
		{[]string{"smolvm", "machine", "ls", "--json"}, "smolvm machine ls --json"},
		{[]string{"smolvm", "machine", "create", "--label", "io.bottle-apply.inputs=a=1,b=2"}, "smolvm machine create --label io.bottle-apply.inputs=a=1,b=2"},
		{[]string{"smolvm", "machine", "exec", "--name", "m", "--", "sh", "-c", "echo it's $HOME"}, `smolvm machine exec --name m -- sh -c 'echo it'\''s $HOME'`},
		{[]string{"x", ""}, "x ''"},
		{[]string{"/opt/my smolvm", "--version"}, "'/opt/my smolvm' --version"},
	}
	for _, tt := range tests {
		if got := PrettyCommand(tt.argv); got != tt.want {
			t.Errorf("PrettyCommand(%q) = %s, want %s", tt.argv, got, tt.want)
		}
	}
}

func TestRunErrorMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  *RunError
		want string
	}{
		{&RunError{Argv: []string{"smolvm", "machine", "start", "--name", "m"}, ExitCode: 1,
			Stderr: "Starting machine 'm'...\nError: vm not found: m\n"},
			"smolvm machine start --name m (exit 1): Starting machine 'm'...\nError: vm not found: m"},
		{&RunError{Argv: []string{"smolvm", "--version"}, ExitCode: -1, Err: exec.ErrNotFound},
			"smolvm --version: executable file not found in $PATH"},
		{&RunError{Argv: []string{"smolvm", "machine", "ls", "--json"}, ExitCode: 2}, "smolvm machine ls --json (exit 2)"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	re := &RunError{Err: exec.ErrNotFound}
	if !errors.Is(re, exec.ErrNotFound) {
		t.Error("RunError should unwrap to its Err")
	}
}

// The ExecRunner tests run /bin/sh: they check the real subprocess
// plumbing, not smolvm.

func TestExecRunnerRun(t *testing.T) {
	t.Parallel()
	r := ExecRunner{}
	out, err := r.Run(t.Context(), "sh", "-c", "echo out; echo progress >&2")
	if err != nil || string(out) != "out\n" {
		t.Errorf("Run = %q, %v; want stdout only", out, err)
	}

	_, err = r.Run(t.Context(), "sh", "-c", "echo partial; echo 'Error: vm not found: m' >&2; exit 3")
	var re *RunError
	if !errors.As(err, &re) {
		t.Fatalf("Run error = %T %v, want *RunError", err, err)
	}
	if re.ExitCode != 3 || re.Stdout != "partial\n" || !strings.Contains(re.Stderr, "vm not found") ||
		re.Argv[0] != "sh" || !isNotFound(err) {
		t.Errorf("RunError = %+v", re)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Errorf("RunError should unwrap to the *exec.ExitError, got %v", re.Err)
	}
}

func TestExecRunnerStdinIsEmpty(t *testing.T) {
	t.Parallel()
	// delete without -f reads its answer: it must see EOF, not hang.
	out, err := ExecRunner{Timeout: 10 * time.Second}.Run(t.Context(), "sh", "-c", "if read x; then echo read; else echo eof; fi")
	if err != nil || string(out) != "eof\n" {
		t.Errorf("Run = %q, %v; want eof", out, err)
	}
}

func TestExecRunnerNotFound(t *testing.T) {
	t.Parallel()
	_, err := ExecRunner{}.Run(t.Context(), "smolvm-does-not-exist-here")
	if !errors.Is(err, exec.ErrNotFound) || !couldNotRun(err) {
		t.Errorf("Run of a missing binary = %v, want exec.ErrNotFound", err)
	}
	var re *RunError
	if !errors.As(err, &re) || re.ExitCode != -1 {
		t.Errorf("want a *RunError with exit code -1, got %#v", err)
	}
	code, err := ExecRunner{}.Stream(t.Context(), guest.Stdio{}, "smolvm-does-not-exist-here")
	if !errors.Is(err, exec.ErrNotFound) || code != -1 {
		t.Errorf("Stream of a missing binary = %d, %v", code, err)
	}
}

func TestExecRunnerTimeout(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := ExecRunner{Timeout: 100 * time.Millisecond}.Run(t.Context(), "sleep", "10")
	if err == nil || !strings.Contains(err.Error(), "timed out after 100ms") {
		t.Errorf("Run = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %s", d)
	}
}

func TestExecRunnerCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := ExecRunner{}.Run(ctx, "sleep", "10")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

func TestExecRunnerStream(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	code, err := ExecRunner{}.Stream(t.Context(), guest.Stdio{In: strings.NewReader("hi\n"), Out: &out, Err: &errOut},
		"sh", "-c", "read x; echo got $x; echo warn >&2; exit 7")
	if code != 7 || err != nil {
		t.Errorf("Stream = %d, %v; want 7, nil", code, err)
	}
	if out.String() != "got hi\n" || errOut.String() != "warn\n" {
		t.Errorf("streams: out %q, err %q", out.String(), errOut.String())
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		argv, want string
	}{
		{"smolvm machine ls --json", "smolvm machine ls --json"},
		{"smolvm machine create --name n -e API_KEY=s3cret --env B=x=y -e NOEQUALS --label k=v -- sh -e X=1",
			"smolvm machine create --name n -e API_KEY=REDACTED --env B=REDACTED -e NOEQUALS --label k=v -- sh -e X=1"},
		{"smolvm machine exec --name n -e T=1 -- env", "smolvm machine exec --name n -e T=REDACTED -- env"},
	}
	for _, tt := range tests {
		argv := strings.Fields(tt.argv)
		if got := strings.Join(Redact(argv), " "); got != tt.want {
			t.Errorf("Redact:\n got  %s\n want %s", got, tt.want)
		}
		if strings.Join(argv, " ") != tt.argv {
			t.Errorf("Redact changed its argument")
		}
	}
	err := &RunError{Argv: strings.Fields("smolvm machine create n -e TOKEN=abc --image i"), ExitCode: 1, Stderr: "Error: x"}
	if strings.Contains(err.Error(), "abc") || !strings.Contains(err.Error(), "TOKEN=REDACTED") {
		t.Errorf("Error() = %s", err.Error())
	}
}

// smolvm runs in a process group of its own: the terminal's Ctrl-C, sent
// to bottle-apply's group, must not reach it; a cancel kills the group,
// what smolvm started included.
func TestExecRunnerOwnProcessGroup(t *testing.T) {
	t.Parallel()
	out, err := ExecRunner{}.Run(t.Context(), "sh", "-c", "cut -d' ' -f5 /proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	ours := syscall.Getpgrp()
	if got := strings.TrimSpace(string(out)); got == "" || got == strconv.Itoa(ours) {
		t.Errorf("smolvm's process group = %q; want one of its own, not bottle-apply's %d", got, ours)
	}

	// A grandchild that holds the output pipe dies with the group: Run
	// returns on cancel, not after the grandchild's 30 s.
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := ExecRunner{}.Run(ctx, "sh", "-c", "sleep 30 & echo $! > "+pidFile+"; wait")
		done <- err
	}()
	var pid int
	for pid == 0 {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		runtime.Gosched()
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	// Reaped by init or a zombie: either way not running sleep any more.
	for i := 0; i < 100; i++ {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("the grandchild %d outlived the cancel", pid)
}
