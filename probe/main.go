package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// Exit codes of Main.
const (
	ExitOK       = 0 // every check got what it expects
	ExitFailed   = 1 // some check did not
	ExitBadInput = 2 // bad flags or a bad check list; nothing was sent
)

// maxInput bounds the check list read from stdin.
const maxInput = 1 << 20

// Main is the probe subcommand: it reads a JSON array of Checks on stdin,
// runs them and writes a JSON array of Results, in the same order, on
// stdout. Failed checks are also told on stderr. args are the flags after
// the subcommand's name:
//
//	-connect-timeout 700ms  -dns-timeout 1.5s  -proxy-timeout 5s
//	-intercept-timeout 300ms (how long a check that expects no
//	interception waits for a certificate)
//	-silence 100ms (how long a check that expects unreachable waits)
//	-timeout 30s (the whole run)  -parallel 16
//	-remove-self (delete the probe's own executable first: a copy made
//	for this one run leaves nothing behind)
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var opt Options
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&opt.ConnectTimeout, "connect-timeout", DefaultConnectTimeout, "bound on a TCP connect")
	fs.DurationVar(&opt.DNSTimeout, "dns-timeout", DefaultDNSTimeout, "bound on a DNS query")
	fs.DurationVar(&opt.Silence, "silence", DefaultSilence, "how long a check that expects unreachable waits for an answer")
	fs.DurationVar(&opt.ProxyTimeout, "proxy-timeout", DefaultProxyTimeout, "bound on a proxy check")
	fs.DurationVar(&opt.InterceptTimeout, "intercept-timeout", DefaultInterceptTimeout, "bound on a check that expects no interception")
	fs.DurationVar(&opt.Total, "timeout", DefaultTotal, "bound on the whole run")
	fs.IntVar(&opt.Parallel, "parallel", DefaultParallel, "checks run at once")
	removeSelf := fs.Bool("remove-self", false, "delete the probe's own executable before running")
	if err := fs.Parse(args); err != nil {
		return ExitBadInput
	}
	if *removeSelf {
		// Linux runs a deleted executable to the end.
		if exe, err := os.Executable(); err == nil {
			_ = os.Remove(exe)
		}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "probe: unexpected arguments %q; the checks come on stdin\n", fs.Args())
		return ExitBadInput
	}
	checks, err := readChecks(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "probe: %v\n", err)
		return ExitBadInput
	}

	results := Run(context.Background(), checks, opt)

	enc := json.NewEncoder(stdout)
	if err := enc.Encode(results); err != nil {
		fmt.Fprintf(stderr, "probe: write the results: %v\n", err)
		return ExitFailed
	}
	failed := 0
	for _, r := range results {
		if !r.OK {
			failed++
			fmt.Fprintf(stderr, "probe: FAIL %s: got %s, want %s (%s); if so, %s\n", r.Name, r.Got, r.Expect, r.Detail, r.Hole)
		}
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "probe: %d of %d checks failed\n", failed, len(results))
		return ExitFailed
	}
	return ExitOK
}

// readChecks decodes and validates the check list: one JSON array, no
// unknown fields, nothing after it, at least one check.
func readChecks(r io.Reader) ([]Check, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, fmt.Errorf("read the checks: %w", err)
	}
	if len(b) > maxInput {
		return nil, fmt.Errorf("the checks are longer than %d bytes", maxInput)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var checks []Check
	if err := dec.Decode(&checks); err != nil {
		return nil, fmt.Errorf("decode the checks (a JSON array of checks): %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode the checks: data after the JSON array")
	}
	if len(checks) == 0 {
		return nil, errors.New("no checks: a self-test with nothing to test passes nothing")
	}
	var errs []error
	for i, c := range checks {
		if err := c.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("check %d (%s): %w", i, c.Name, err))
		}
	}
	return checks, errors.Join(errs...)
}
