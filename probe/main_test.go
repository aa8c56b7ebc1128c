package probe

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestMainExitCodes(t *testing.T) {
	t.Parallel()
	open, closed := listen(t), closedPort(t, "tcp")
	check := func(addr string, e Expect) string {
		b, err := json.Marshal(Check{Name: "peer " + addr, Hole: "a hole", Kind: KindTCP, Addr: addr, Expect: e})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		gots   []string // the results' Got, in order; nil when no results are wanted
		stderr string
	}{
		{"all ok", nil, "[" + check(open, ExpectOpen) + "," + check(closed, ExpectClosed) + "]", ExitOK,
			[]string{"open", "refused"}, ""},
		{"one fails", []string{"-connect-timeout", "200ms"}, "[" + check(open, ExpectOpen) + "," + check(open, ExpectClosed) + "]\n",
			ExitFailed, []string{"open", "open"}, "FAIL peer " + open + ": got open, want closed (connected); if so, a hole"},
		{"bad json", nil, "[{", ExitBadInput, nil, "decode the checks"},
		{"not an array", nil, check(open, ExpectOpen), ExitBadInput, nil, "decode the checks"},
		{"unknown field", nil, `[{"kind":"tcp","addr":"127.0.0.1:1","expect":"closed","port":1}]`, ExitBadInput, nil, "unknown field"},
		{"trailing data", nil, "[" + check(open, ExpectOpen) + "] []", ExitBadInput, nil, "data after the JSON array"},
		{"empty", nil, "[]", ExitBadInput, nil, "no checks"},
		{"null", nil, "null", ExitBadInput, nil, "no checks"},
		{"nothing", nil, "", ExitBadInput, nil, "decode the checks"},
		{"invalid checks", nil, `[{"name":"a","kind":"udp","expect":"open"},{"name":"b","kind":"tcp","addr":"localhost:1","expect":"open"}]`,
			ExitBadInput, nil, "check 0 (a): kind \"udp\""},
		{"bad flag", []string{"-nope"}, "[" + check(open, ExpectOpen) + "]", ExitBadInput, nil, "-nope"},
		{"bad duration", []string{"-dns-timeout", "soon"}, "[" + check(open, ExpectOpen) + "]", ExitBadInput, nil, "dns-timeout"},
		{"argument", []string{"checks.json"}, "[" + check(open, ExpectOpen) + "]", ExitBadInput, nil, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := Main(tt.args, strings.NewReader(tt.stdin), &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("Main() = %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr = %q, want it to hold %q", stderr.String(), tt.stderr)
			}
			if tt.gots == nil {
				if stdout.Len() > 0 {
					t.Errorf("stdout = %q, want nothing", stdout.String())
				}
				return
			}
			var rs []Result
			if err := json.Unmarshal(stdout.Bytes(), &rs); err != nil {
				t.Fatalf("stdout is not a JSON array of results: %v\n%s", err, stdout.String())
			}
			var gots []string
			for _, r := range rs {
				gots = append(gots, r.Got)
			}
			if strings.Join(gots, ",") != strings.Join(tt.gots, ",") {
				t.Errorf("results got %q, want %q", gots, tt.gots)
			}
		})
	}
}

// TestResultJSON pins the wire shape of a Result: the check's fields
// flattened, then the outcome.
func TestResultJSON(t *testing.T) {
	t.Parallel()
	r := Result{Check: Check{Name: "n", Hole: "h", Kind: KindProxyConnect, Addr: "10.0.0.2:8888", Target: "x.invalid:443",
		Expect: ExpectDenied}, Got: "denied", OK: true, Detail: "403 Forbidden", Millis: 3}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"n","hole":"h","kind":"proxy-connect","addr":"10.0.0.2:8888","target":"x.invalid:443","expect":"denied",` +
		`"got":"denied","ok":true,"detail":"403 Forbidden","millis":3}`
	if string(b) != want {
		t.Fatalf("JSON = %s\nwant   %s", b, want)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil || back != r {
		t.Fatalf("round trip = %+v, %v; want %+v", back, err, r)
	}
}
