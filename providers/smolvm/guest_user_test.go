package smolvm

import (
	"errors"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/guest"
)

// Exec as the machine's user goes through setpriv; ExecOptions.User
// overrides it; a missing setpriv is named.
func TestExecAsUser(t *testing.T) {
	t.Parallel()
	run := argv("machine", "exec", "--name", "bottle-hello-agent", "-w", "/work", "--")
	e := newTestProvider(t, nil,
		statusCall("1000:1000"),
		call{argv: cat(run, []string{"setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--", "id", "-u"}), stdout: "1000\n"},
		call{argv: cat(run, []string{"setpriv", "--reuid=0", "--regid=0", "--clear-groups", "--", "id", "-u"})},
		statusCall("1000:1000"),
		call{argv: cat(run, []string{"setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--", "nope"}), code: 127},
		call{argv: argv("machine", "exec", "--name", "bottle-hello-agent", "--", "setpriv", "--version"), stdout: "setpriv from util-linux 2.39\n"},
		statusCall("1000:1000"),
		call{argv: cat(run, []string{"setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--", "sh"}), code: 127},
		call{argv: argv("machine", "exec", "--name", "bottle-hello-agent", "--", "setpriv", "--version"),
			err: &RunError{ExitCode: 127, Stderr: "exec failed: setpriv: No such file or directory"}},
	)
	g := e.p.Guest("hello")
	ctx := t.Context()
	var out strings.Builder
	if code, err := g.Exec(ctx, guest.ExecOptions{Cmd: []string{"id", "-u"}, Workdir: "/work"}, guest.Stdio{Out: &out}); code != 0 || err != nil || out.String() != "1000\n" {
		t.Errorf("Exec = %d, %v, %q", code, err, out.String())
	}
	if code, err := g.Exec(ctx, guest.ExecOptions{Cmd: []string{"id", "-u"}, Workdir: "/work", User: "0"}, guest.Stdio{}); code != 0 || err != nil {
		t.Errorf("Exec as 0 = %d, %v", code, err)
	}
	// The command is missing, not setpriv: the code is the answer.
	if code, err := g.Exec(ctx, guest.ExecOptions{Cmd: []string{"nope"}, Workdir: "/work"}, guest.Stdio{}); code != 127 || err != nil {
		t.Errorf("Exec of a missing command = %d, %v; want 127, nil", code, err)
	}
	code, err := g.Exec(ctx, guest.ExecOptions{Cmd: []string{"sh"}, Workdir: "/work"}, guest.Stdio{})
	if !errors.Is(err, ErrNoSetpriv) || !strings.Contains(err.Error(), "user needs setpriv (util-linux) in the agent's image") || code != 127 {
		t.Errorf("Exec without setpriv = %d, %v", code, err)
	}
	if _, err := g.Exec(ctx, guest.ExecOptions{Cmd: []string{"sh"}, User: "agent"}, guest.Stdio{}); err == nil {
		t.Error("a user name is refused: the image may not know it")
	}
}

// Before 1.8 the record says the user: no status call.
func TestExecUserFromRecord(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil,
		call{argv: argv("machine", "exec", "--name", "bottle-hello-agent", "--", "setpriv", "--reuid=1000", "--regid=100", "--clear-groups", "--", "true")},
	)
	if err := e.p.writeRecord(record{Name: "bottle-hello-agent", Bottle: "hello", Role: "agent", Hash: "h", User: "1000:100"}); err != nil {
		t.Fatal(err)
	}
	if code, err := e.p.Guest("hello").Exec(t.Context(), guest.ExecOptions{Cmd: []string{"true"}}, guest.Stdio{}); code != 0 || err != nil {
		t.Errorf("Exec = %d, %v", code, err)
	}
}

// CopyIn as the machine's user: parents made for it, then cp, then chown.
func TestCopyInAsUser(t *testing.T) {
	t.Parallel()
	e := newTestProvider(t, nil,
		statusCall("1000:1000"),
		call{argv: execArgv("sh", "-c", mkdirScript, "sh", "1000:1000", "./work", "./work/in")},
		call{argv: argv("machine", "cp", "notes.txt", "bottle-hello-agent:/work/in/notes.txt")},
		call{argv: execArgv("chown", "-R", "1000:1000", "./work/in/notes.txt")},
	)
	if err := e.p.Guest("hello").CopyIn(t.Context(), "notes.txt", "/work/in/notes.txt"); err != nil {
		t.Error(err)
	}
}
