// Package guest is a handle on a running part of a bottle, its agent or its
// bundle, whatever the backend: run a command in it, copy files in and out.
// Every provider returns one; exec, cp and the self-test use nothing else.
package guest

import (
	"context"
	"io"
)

// Guest is a running agent or bundle.
type Guest interface {
	// Exec runs a command and returns its exit code (a non-zero code is
	// not an error); an error means the command could not be run.
	Exec(ctx context.Context, o ExecOptions, stdio Stdio) (int, error)
	// CopyIn copies the host file or directory src to dst in the guest.
	// When dst is an existing directory, src goes into it under its own
	// name, as with docker cp.
	CopyIn(ctx context.Context, src, dst string) error
	// CopyOut copies the file or directory src in the guest to the host
	// path dst.
	CopyOut(ctx context.Context, src, dst string) error
	// String names the guest in messages: "the agent of bottle hello".
	String() string
}

// ExecOptions says what to run in a guest and how.
type ExecOptions struct {
	Cmd     []string // required
	Env     []string // K=V, on top of the guest's own, in this order
	Workdir string   // "" for the guest's own
	// User is a numeric uid[:gid] to run as; "" is the guest's own user
	// (spec.agent.user for an agent that sets it).
	User string
	// Interactive passes standard input; TTY allocates a terminal, of
	// Height rows and Width columns when they are set.
	Interactive, TTY bool
	Height, Width    uint
}

// Stdio are the streams of an exec. A nil field is the null device.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
}
