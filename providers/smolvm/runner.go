package smolvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/guest"
)

// Runner runs smolvm. The provider never calls os/exec itself: tests inject
// a scripted fake (STYLE §4).
type Runner interface {
	// Run runs the command with an empty standard input and returns its
	// standard output. A failure is a *RunError.
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
	// Stream runs the command with the given standard streams and returns
	// its exit code when it ran, whatever the code; err is set only when it
	// could not run (or was killed).
	Stream(ctx context.Context, stdio guest.Stdio, name string, args ...string) (exitCode int, err error)
}

// DefaultTimeout bounds one Run call of an ExecRunner with a zero Timeout.
const DefaultTimeout = 10 * time.Minute

// waitDelay is how long Wait waits for the output pipes to close after the
// process exits (or is killed): a VMM that smolvm forks must not hold a run
// open by inheriting them.
const waitDelay = 5 * time.Second

// ExecRunner runs commands as subprocesses.
type ExecRunner struct {
	// Timeout bounds each Run call; zero means DefaultTimeout. Stream calls
	// are bounded by their context only: an interactive session has no
	// natural limit, and its caller decides.
	Timeout time.Duration
}

var _ Runner = ExecRunner{}

// Run implements Runner. Standard input is the null device, so a command
// that asks a question (delete without -f) reads EOF.
func (r ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	argv := append([]string{name}, args...)
	zerolog.Ctx(ctx).Debug().Strs("argv", Redact(argv)).Msg("run")
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, name, args...)
	ownGroup(cmd)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = nil // the null device
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if err != nil && errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		// It succeeded; something it started kept the pipes open.
		zerolog.Ctx(ctx).Debug().Strs("argv", Redact(argv)).Msg("output pipes still open after exit; ignored")
		err = nil
	}
	if err == nil {
		return stdout.Bytes(), nil
	}
	re := &RunError{Argv: argv, ExitCode: -1, Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
	if cmd.ProcessState != nil {
		re.ExitCode = cmd.ProcessState.ExitCode()
	}
	if cctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		re.Err = fmt.Errorf("timed out after %s: %w", timeout, err)
	} else if ctx.Err() != nil {
		re.Err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return stdout.Bytes(), re
}

// Stream implements Runner.
func (r ExecRunner) Stream(ctx context.Context, stdio guest.Stdio, name string, args ...string) (int, error) {
	argv := append([]string{name}, args...)
	zerolog.Ctx(ctx).Debug().Strs("argv", Redact(argv)).Msg("run (streamed)")
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.In, stdio.Out, stdio.Err
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	ps := cmd.ProcessState
	if ps != nil && ctx.Err() == nil && ps.ExitCode() >= 0 {
		// It ran and exited on its own: the code is the result, whatever
		// it is (ErrWaitDelay included: the output was passed through).
		return ps.ExitCode(), nil
	}
	if err == nil {
		err = errors.New("no exit status")
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	re := &RunError{Argv: argv, ExitCode: -1, Err: err}
	if ps != nil {
		re.ExitCode = ps.ExitCode()
	}
	return re.ExitCode, re
}

// RunError is a failed command: the argv, how it ended and what it said.
type RunError struct {
	// Argv is the command as run. Error shows it redacted.
	Argv []string
	// ExitCode is -1 when the process did not run or was killed.
	ExitCode int
	Stdout   string
	Stderr   string
	Err      error
}

// maxErrOutput bounds the standard error quoted in Error: the end of it,
// where smolvm puts its "Error: ..." line.
const maxErrOutput = 2000

// Error shows the command, ready to paste into a shell once the values of
// environment variables are filled in (see Redact), how it ended and its
// standard error.
func (e *RunError) Error() string {
	var b strings.Builder
	b.WriteString(PrettyCommand(Redact(e.Argv)))
	if e.ExitCode >= 0 {
		fmt.Fprintf(&b, " (exit %d)", e.ExitCode)
	} else if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if out := strings.TrimSpace(e.Stderr); out != "" {
		if len(out) > maxErrOutput {
			out = "…" + out[len(out)-maxErrOutput:]
		}
		b.WriteString(": ")
		b.WriteString(out)
	}
	return b.String()
}

// Unwrap returns the underlying error (an *exec.ExitError, exec.ErrNotFound
// inside an *exec.Error, a context error...).
func (e *RunError) Unwrap() error { return e.Err }

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// PrettyCommand renders argv so that it can be pasted into a POSIX shell:
// arguments with other characters are single-quoted.
func PrettyCommand(argv []string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		if shellSafe.MatchString(a) {
			parts[i] = a
		} else {
			parts[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(parts, " ")
}

// redacted replaces the values of environment variables in logs and
// errors: a bottle's env may hold credentials.
const redacted = "REDACTED"

// Redact returns argv with the value of every -e/--env K=V option (before a
// "--") replaced by REDACTED.
func Redact(argv []string) []string {
	var out []string
	for i, a := range argv {
		if a == "--" {
			break
		}
		if i == 0 || argv[i-1] != "-e" && argv[i-1] != "--env" {
			continue
		}
		if k, _, ok := strings.Cut(a, "="); ok {
			if out == nil {
				out = slices.Clone(argv)
			}
			out[i] = k + "=" + redacted
		}
	}
	if out == nil {
		return argv
	}
	return out
}
