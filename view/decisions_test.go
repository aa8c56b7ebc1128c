package view

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/bundle"
)

// A bundle's log as the engine returns it: start-up lines, decisions and a
// stray line, in the bundle program's JSON.
var bundleLog = `{"level":"info","bottle":"b","daemons":["egress","dns"],"time":"2026-11-27T21:00:00.000Z","message":"ready"}
{"level":"info","bottle":"b","daemon":"egress","decision":"allow","host":"api.example.com","port":443,"method":"CONNECT","rule":"api.example.com","time":"2026-11-27T21:00:01.5Z","message":"egress decision"}
{"level":"info","bottle":"b","daemon":"egress","decision":"deny","host":"::1","port":80,"method":"CONNECT","reason":"::1 is a loopback address","time":"2026-11-27T21:00:02Z","message":"egress decision"}
not json at all
{"level":"info","message":"a line too long to keep: ` + "`" + ` + strings.Repeat("x", 200<<10) + ` + "`" + `"}
{"level":"info","bottle":"b","daemon":"dns","decision":"deny","host":"evil.test","qtype":"AAAA","reason":"no rule covers evil.test","time":"2026-11-27T21:00:03.25Z","message":"dns decision"}
`

func TestPrintDecisions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		json, denied bool
		want         string
	}{
		{"text", false, false, `2026-11-27T21:00:01.500Z  allow  egress  CONNECT api.example.com:443  rule api.example.com
2026-11-27T21:00:02.000Z  deny   egress  CONNECT [::1]:80  ::1 is a loopback address
2026-11-27T21:00:03.250Z  deny   dns     AAAA    evil.test  no rule covers evil.test
`},
		{"denied only", false, true, `2026-11-27T21:00:02.000Z  deny   egress  CONNECT [::1]:80  ::1 is a loopback address
2026-11-27T21:00:03.250Z  deny   dns     AAAA    evil.test  no rule covers evil.test
`},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		if err := Decisions(&out, strings.NewReader(bundleLog), tt.json, tt.denied); err != nil {
			t.Fatal(err)
		}
		if out.String() != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, out.String(), tt.want)
		}
	}
	// JSON: one decision per line, the non-decision lines left out.
	var out bytes.Buffer
	if err := Decisions(&out, strings.NewReader(bundleLog), true, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("json: %d lines, want 3:\n%s", len(lines), out.String())
	}
	var d bundle.Decision
	if err := json.Unmarshal([]byte(lines[1]), &d); err != nil || d.Host != "::1" || d.Port != 80 || d.Allowed() || d.Reason == "" {
		t.Errorf("json line 2 = %s (%v)", lines[1], err)
	}
}
