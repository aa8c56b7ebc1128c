// Command bottle-bundle is the bundle program: the daemons of a bottle's
// bundle (package bundle) and the isolation probe (package probe), a
// static linux binary apart from bottle-apply, because it runs where the
// engine runs, whatever platform bottle-apply runs on. bottle-apply ships
// a build an architecture beside itself (bottle-bundle-linux-amd64,
// bottle-bundle-linux-arm64: make build): the built-in bundle image is
// made of the engine's, and the self-test copies one into an agent as the
// probe. For a bundle image of your own (spec.bundle.image), COPY the
// build for your engine in and make it the entrypoint.
//
//	bottle-bundle          run the daemons BOTTLE_DAEMONS names until SIGTERM
//	bottle-bundle status   print whether they are ready (exit 1 if not)
//	bottle-bundle probe    run isolation checks (JSON on stdin, results on stdout)
//	bottle-bundle place    in the agent's init container (kubernetes): put the
//	                       agent's files in place as BOTTLE_PLACE says (package place)
//	bottle-bundle guardcheck
//	                       in the bundle: exit 3 when the host answers past the
//	                       proxy (the host guard's rule is missing), 0 when not
//	bottle-bundle confined HOST:PORT...
//	                       in an agent pod's first init container: wait until
//	                       none answers (its NetworkPolicy is enforced)
//	bottle-bundle hostguard [-install -pool CIDR...]
//	                       on the engine's host network: keep bottles off the
//	                       host (package hostguard), print its addresses
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bottle-apply/bottle-apply/bundle"
	"github.com/bottle-apply/bottle-apply/hostguard"
	"github.com/bottle-apply/bottle-apply/place"
	"github.com/bottle-apply/bottle-apply/probe"
)

// guardCheckTimeout is how long guardcheck waits for the host: it
// answers a knock within a millisecond when nothing drops it.
const guardCheckTimeout = 100 * time.Millisecond

// confinedWithin bounds the wait of `bottle-bundle confined` for the
// pod's NetworkPolicy to be enforced.
const confinedWithin = 90 * time.Second

// exitGuardMissing is guardcheck's exit code when the host answered.
const exitGuardMissing = 3

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
	case args[0] == "place" && len(args) == 1:
		err = place.Run(ctx, getenv, stdout)
	case args[0] == "confined" && len(args) > 1:
		err = probe.WaitConfined(ctx, probe.Confinement{Addrs: args[1:], Within: confinedWithin, Every: 250 * time.Millisecond,
			Silence: 300 * time.Millisecond, Rounds: 3})
		if err == nil {
			fmt.Fprintf(stdout, "confined: %v no longer answer\n", args[1:])
		}
	case args[0] == "probe":
		return probe.Main(args[1:], stdin, stdout, stderr)
	case args[0] == "hostguard":
		return hostguard.Main(args[1:], stdout, stderr)
	case args[0] == "guardcheck" && len(args) == 1:
		answered, err := bundle.CheckHostGuard(ctx, "", guardCheckTimeout)
		if err != nil {
			fmt.Fprintf(stderr, "bottle-bundle: %v\n", err)
			return 1
		}
		if len(answered) > 0 {
			fmt.Fprintf(stdout, "the host answered at %v past the proxy: the host guard's rule is not installed on the engine's host\n", answered)
			return exitGuardMissing
		}
		return 0
	default:
		fmt.Fprintf(stderr, "bottle-bundle: unknown arguments %q\nusage: bottle-bundle [status | probe [flags] | place | confined HOST:PORT... | guardcheck | hostguard [flags]]\n", args)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "bottle-bundle: %v\n", err)
		return 1
	}
	return 0
}
