// Command bottle-bundle is the bundle program on its own: the daemons of a
// bottle's bundle (package bundle) and the isolation probe (package probe),
// without the rest of bottle-apply. bottle-apply carries the same program
// (`bottle-apply bundle`, `bottle-apply probe`) and bakes itself into the
// built-in bundle image, so that the default needs no second file; this
// smaller static binary is for a bundle image of your own
// (spec.bundle.image): COPY it in and make it the entrypoint.
//
//	bottle-bundle          run the daemons BOTTLE_DAEMONS names until SIGTERM
//	bottle-bundle status   print whether they are ready (exit 1 if not)
//	bottle-bundle probe    run isolation checks (JSON on stdin, results on stdout)
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/bottle-apply/bottle-apply/bundle"
	"github.com/bottle-apply/bottle-apply/probe"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	var err error
	switch {
	case len(args) == 0:
		err = bundle.Run(ctx, bundle.ConfigFromEnv(getenv), stdout)
	case args[0] == "status" && len(args) == 1:
		err = bundle.PrintStatus(ctx, stdout, getenv)
	case args[0] == "probe":
		return probe.Main(args[1:], stdin, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "bottle-bundle: unknown arguments %q\nusage: bottle-bundle [status | probe [flags]]\n", args)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "bottle-bundle: %v\n", err)
		return 1
	}
	return 0
}
