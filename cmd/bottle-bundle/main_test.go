package main

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
	"github.com/bottle-apply/bottle-apply/probe"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The standalone program runs the daemons, answers status once they
// listen, runs the probe, and stops cleanly: the same program bottle-apply
// carries, on loopback.
func TestBundleProgram(t *testing.T) {
	t.Parallel()
	// The ports are free when picked, and another test may take one
	// before the daemons bind it: a daemon that exits on that is started
	// again on new ports; any other early exit fails, with its output.
	var (
		proxyPort int
		getenv    func(string) string
		cancel    context.CancelFunc
		daemonOut *bytes.Buffer
		done      chan int
		out       bytes.Buffer
		errOut    bytes.Buffer
	)
	for attempt := 1; ; attempt++ {
		var statusPort int
		proxyPort, statusPort = freePort(t), freePort(t)
		env := map[string]string{
			"BOTTLE_NAME": "standalone", "BOTTLE_DAEMONS": "egress", "BOTTLE_LISTEN_IP": "127.0.0.1",
			"BOTTLE_PROXY_PORT": strconv.Itoa(proxyPort), "BOTTLE_STATUS_ADDR": "127.0.0.1:" + strconv.Itoa(statusPort),
			"BOTTLE_EGRESS_ALLOW": "allowed.test:80",
		}
		getenv = func(k string) string { return env[k] }
		var ctx context.Context
		ctx, cancel = context.WithCancel(t.Context())
		daemonOut, done = &bytes.Buffer{}, make(chan int, 1)
		go func() { done <- run(ctx, nil, nil, daemonOut, &bytes.Buffer{}, getenv) }()
		if waitStatus(t, getenv, done, &out, &errOut, daemonOut) {
			break
		}
		cancel()
		if attempt == 3 || !strings.Contains(daemonOut.String(), "address already in use") {
			t.Fatalf("the daemons exited before they were ready:\n%s", daemonOut.String())
		}
	}
	var st struct {
		Bottle string `json:"bottle"`
		Ready  bool   `json:"ready"`
	}
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || !st.Ready || st.Bottle != "standalone" {
		t.Errorf("status printed %q (%v)", out.String(), err)
	}

	proxy := "127.0.0.1:" + strconv.Itoa(proxyPort)
	checks, _ := json.Marshal([]probe.Check{
		{Name: "proxy", Hole: "h", Kind: probe.KindTCP, Addr: proxy, Expect: probe.ExpectOpen},
		{Name: "denied", Hole: "h", Kind: probe.KindProxyConnect, Addr: proxy, Target: "denied.test:80", Expect: probe.ExpectDenied},
	})
	out.Reset()
	if code := run(t.Context(), []string{"probe"}, bytes.NewReader(checks), &out, &errOut, getenv); code != 0 {
		t.Errorf("probe exited %d: %s %s", code, out.String(), errOut.String())
	}
	var res []probe.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res) != 2 || !res[0].OK || !res[1].OK {
		t.Errorf("probe results %s (%v)", out.String(), err)
	}

	cancel()
	if code := <-done; code != 0 {
		t.Errorf("the daemons exited %d after the signal:\n%s", code, daemonOut.String())
	}
	if !strings.Contains(daemonOut.String(), `"decision":"deny"`) || !strings.Contains(daemonOut.String(), `"host":"denied.test"`) {
		t.Errorf("no decision line for the probe's denial:\n%s", daemonOut.String())
	}
}

func TestBundleProgramUsage(t *testing.T) {
	t.Parallel()
	var errOut bytes.Buffer
	if code := run(t.Context(), []string{"status", "extra"}, nil, &bytes.Buffer{}, &errOut, func(string) string { return "" }); code != 2 ||
		!strings.Contains(errOut.String(), "usage: bottle-bundle") {
		t.Errorf("run(status extra) = %d, %q", code, errOut.String())
	}
	// Nothing listens: status fails, saying why.
	errOut.Reset()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	if code := run(t.Context(), []string{"status"}, nil, &bytes.Buffer{}, &errOut, func(k string) string {
		return map[string]string{"BOTTLE_STATUS_ADDR": addr}[k]
	}); code != 1 || !strings.Contains(errOut.String(), "bottle-bundle: ") {
		t.Errorf("status with nothing listening = %d, %q", code, errOut.String())
	}
}

// TestCrossBuilds builds the program as make build and a release do, for
// every architecture bottle-apply ships it for, and checks each is a
// static linux executable for its machine: CI's guard that bottle-bundle
// still cross-builds (no cgo, nothing platform-bound).
func TestCrossBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds bottle-bundle for every architecture: skipped under -short")
	}
	t.Parallel()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	if len(bundlebin.Arches) != len(want) {
		t.Fatalf("bundlebin.Arches = %q: name the ELF machine of each here", bundlebin.Arches)
	}
	for _, arch := range bundlebin.Arches {
		t.Run(arch, func(t *testing.T) {
			t.Parallel()
			bin := testenv.BundleBinary(t, arch)
			if err := bundlebin.Check(bin, arch); err != nil {
				t.Fatal(err)
			}
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != want[arch] || f.Class != elf.ELFCLASS64 {
				t.Errorf("the linux/%s build is for %s (%s), want %s", arch, f.Machine, f.Class, want[arch])
			}
		})
	}
}

// waitStatus asks the daemons' status until they are ready (true), or
// until they exit (false); 10 seconds of neither fails the test.
func waitStatus(t *testing.T, getenv func(string) string, done chan int, out, errOut, daemonOut *bytes.Buffer) bool {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		out.Reset()
		if run(t.Context(), []string{"status"}, nil, out, errOut, getenv) == 0 {
			return true
		}
		select {
		case code := <-done:
			done <- code
			return false
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never ready: %s\nthe daemons said:\n%s", errOut.String(), daemonOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
