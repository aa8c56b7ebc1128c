// Command bottle-apply reconciles agent sandboxes ("bottles") declared in
// YAML with what really exists on a Docker engine (and smolvm).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		// The first signal stops new steps and lets running ones finish
		// (within a bound); the second exits at once.
		<-sigs
		fmt.Fprintln(os.Stderr, "bottle-apply: interrupted: starting no new step, letting running ones finish (Ctrl-C again to exit now)")
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "bottle-apply: interrupted again: exiting now; what was done is labelled, and the next run converges from it")
		os.Exit(130)
	}()
	code := Run(ctx, os.Args[1:], Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	cancel()
	os.Exit(code)
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes, as terraform's -detailed-exitcode.
const (
	exitOK      = 0
	exitError   = 1
	exitChanges = 2
)

// Streams are the process's standard streams; tests pass buffers.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}
