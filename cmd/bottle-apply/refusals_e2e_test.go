package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/bundle"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
	"github.com/bottle-apply/bottle-apply/providers/docker"
)

// TestE2ERefusalsAreLogged is issue 12's hole 5 as an agent tries it:
// requests that Go's HTTP server refuses before the proxy's handler runs
// (a duplicate Host, a malformed request line, headers too large) used to
// leave no decision line. Sent from inside the agent to a real bundle,
// each is now in `bottle-apply logs --denied`; and a flood of one kind is
// summed up ("N more like this"), so that it cannot push the trail out of
// the rotated log, with every refusal counted.
func TestE2ERefusalsAreLogged(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	agentImage := testenv.AgentImage(t, c)
	name := testenv.Name("refuse")
	testenv.CleanupBottle(t, c, name)
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(egressSpec(name, agentImage)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := cli(t, bin, "", "--no-verify", "-f", path); code != 0 {
		t.Fatalf("apply exited %d\n%s\n%s", code, out, errOut)
	}
	addrs, err := docker.New(c, docker.Options{}).Addresses(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	proxy := addrs.BundleIP + " 8888"

	// One connection each; nc keeps its side open until the answer.
	const flood = 200
	script := fmt.Sprintf(`set -e
send() { (printf "$1"; sleep 1) | nc -w 2 %[1]s >/dev/null || true; }
send 'GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nHost: denied.test\r\n\r\n'
send 'NOT A REQUEST\r\n\r\n'
send 'GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-Big: %[2]s\r\n\r\n'
i=0
while [ $i -lt %[3]d ]; do
  printf 'GET http://denied.test/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n' | nc -w 1 %[1]s >/dev/null || true
  i=$((i+1))
done
`, proxy, strings.Repeat("x", 80<<10), flood)
	if code, out, errOut := cli(t, bin, "", "exec", name, "--", "sh", "-c", script); code != 0 {
		t.Fatalf("the agent's requests: exit %d\n%s\n%s", code, out, errOut)
	}

	// The summary of the last window is written when the window ends, a
	// second after it opened: read until every refusal is accounted for.
	var lines, counted int
	var statuses map[int]int
	var first, last time.Time
	want := flood + 2 + 1
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		code, out, errOut := cli(t, bin, "", "logs", name, "--denied", "-o", "json")
		if code != 0 {
			t.Fatalf("logs exited %d\n%s", code, errOut)
		}
		lines, counted, statuses = 0, 0, map[int]int{}
		first, last = time.Time{}, time.Time{}
		sc := bufio.NewScanner(strings.NewReader(out))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var d bundle.Decision
			if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
				t.Fatalf("a line of logs -o json is not a decision: %v: %s", err, sc.Text())
			}
			if d.Status == 0 {
				continue // the handler's own denials
			}
			// A summary stands for More refusals; it is none itself.
			n := 1
			if d.More > 0 {
				n = d.More
			}
			lines++
			counted += n
			statuses[d.Status] += n
			if first.IsZero() || d.Time.Before(first) {
				first = d.Time
			}
			if d.Time.After(last) {
				last = d.Time
			}
		}
		if counted >= want || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%d refusals before the handler in %d lines: %v", counted, lines, statuses)
	if want := flood + 2; statuses[400] != want {
		t.Errorf("%d refusals with status 400 in the log, want %d (duplicate Host, a bad request line, %d duplicate Hosts)", statuses[400], want, flood)
	}
	if statuses[431] != 1 {
		t.Errorf("%d refusals with status 431 in the log, want the one with headers too large", statuses[431])
	}
	// A key writes at most refusalsPerKey lines and a summary a second:
	// the bound follows the seconds the flood took (a loaded engine
	// spreads it), and stays far below one line a refusal.
	windows := int(last.Sub(first)/time.Second) + 2
	if lines > windows*(5+1) || lines*5 > counted {
		t.Errorf("%d lines for %d refusals over %s: a flood is not summed up", lines, counted, last.Sub(first))
	}
}
