package bundle

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The decision lines carry exactly the documented fields.
func TestDecisionLineFields(t *testing.T) {
	t.Parallel()
	b, echo := startEgressAndDNS(t)

	before := time.Now()
	if resp, _ := dialProxy(t, b.proxy).do(t, "CONNECT", "allowed.test:"+strconv.Itoa(echo.port), ""); resp.StatusCode != 200 {
		t.Fatalf("CONNECT = %s", resp.Status)
	}
	if resp, _ := dialProxy(t, b.proxy).do(t, "CONNECT", "denied.test:443", ""); resp.StatusCode != 403 {
		t.Fatalf("CONNECT = %s", resp.Status)
	}
	c := &dns.Client{Timeout: 5 * time.Second}
	for _, name := range []string{"allowed.test.", "denied.test."} {
		if _, _, err := c.ExchangeContext(t.Context(), new(dns.Msg).SetQuestion(name, dns.TypeA), b.dns); err != nil {
			t.Fatal(err)
		}
	}

	common := []string{"time", "level", "bottle", "daemon", "decision", "host", "message"}
	want := []struct {
		keys   []string
		values map[string]any
	}{
		{append([]string{"port", "method", "rule"}, common...), map[string]any{
			"level": "info", "bottle": "hello", "daemon": "egress", "decision": "allow", "host": "allowed.test",
			"port": float64(echo.port), "method": "CONNECT", "rule": "allowed.test:*", "message": "egress decision"}},
		{append([]string{"port", "method", "reason"}, common...), map[string]any{
			"daemon": "egress", "decision": "deny", "host": "denied.test", "port": float64(443), "method": "CONNECT",
			"reason": "no rule in spec.bundle.egress.allow allows denied.test:443", "message": "egress decision"}},
		{append([]string{"qtype", "rule"}, common...), map[string]any{
			"daemon": "dns", "decision": "allow", "host": "allowed.test", "qtype": "A", "rule": "allowed.test:*", "message": "dns decision"}},
		{append([]string{"qtype", "reason"}, common...), map[string]any{
			"daemon": "dns", "decision": "deny", "host": "denied.test", "qtype": "A", "message": "dns decision"}},
	}
	var lines []map[string]any
	for _, l := range b.log.lines() {
		if _, ok := ParseDecision([]byte(l)); !ok {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != len(want) {
		t.Fatalf("%d decision lines, want %d:\n%s", len(lines), len(want), b.log)
	}
	for i, m := range lines {
		keys := slices.Sorted(maps.Keys(m))
		if wk := slices.Sorted(slices.Values(want[i].keys)); !slices.Equal(keys, wk) {
			t.Errorf("line %d keys = %v, want %v", i, keys, wk)
		}
		for k, v := range want[i].values {
			if m[k] != v {
				t.Errorf("line %d %s = %v, want %v", i, k, m[k], v)
			}
		}
		ts, _ := m["time"].(string)
		tm, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || !strings.Contains(ts, ".") || tm.Before(before.Add(-time.Second)) || time.Since(tm) > time.Minute {
			t.Errorf("line %d time = %q (%v), want RFC 3339 with sub-seconds, now", i, ts, err)
		}
	}
}

// Decision's JSON tags are the Field constants.
func TestDecisionJSONTags(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(Decision{Time: time.Now(), Level: "info", Bottle: "b", Daemon: "egress", Decision: "allow",
		Host: "h", Port: 1, Method: "GET", QType: "A", Rule: "r", Reason: "x", Status: 400, Client: "c", More: 2, Message: "m"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := []string{FieldTime, FieldLevel, FieldBottle, FieldDaemon, FieldDecision, FieldHost, FieldPort,
		FieldMethod, FieldQType, FieldRule, FieldReason, FieldStatus, FieldClient, FieldMore, FieldMessage}
	if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("Decision JSON keys = %v, want %v", got, want)
	}
}

func TestParseDecision(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		line string
		ok   bool
		want Decision
	}{
		{"egress", `{"level":"info","bottle":"b","daemon":"egress","decision":"deny","host":"denied.test","port":443,"method":"CONNECT","reason":"no rule","time":"2026-01-02T03:04:05.123456Z","message":"egress decision"}`,
			true, Decision{Time: time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC), Level: "info", Bottle: "b", Daemon: "egress", Decision: "deny",
				Host: "denied.test", Port: 443, Method: "CONNECT", Reason: "no rule", Message: "egress decision"}},
		{"dns", `{"level":"info","bottle":"b","daemon":"dns","decision":"allow","host":"a.test","qtype":"AAAA","rule":"a.test","time":"2026-01-02T03:04:05.5Z","message":"dns decision"}`,
			true, Decision{Time: time.Date(2026, 1, 2, 3, 4, 5, 500000000, time.UTC), Level: "info", Bottle: "b", Daemon: "dns", Decision: "allow",
				Host: "a.test", QType: "AAAA", Rule: "a.test", Message: "dns decision"}},
		{"refused before the handler", `{"level":"info","bottle":"b","daemon":"egress","decision":"deny","host":"","port":0,"method":"","status":400,"client":"10.1.2.3:40000","reason":"the request line is not METHOD TARGET HTTP/VERSION","time":"2026-01-02T03:04:05Z","message":"egress decision"}`,
			true, Decision{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Level: "info", Bottle: "b", Daemon: "egress", Decision: "deny",
				Status: 400, Client: "10.1.2.3:40000", Reason: "the request line is not METHOD TARGET HTTP/VERSION", Message: "egress decision"}},
		{"summary", `{"level":"info","bottle":"b","daemon":"dns","decision":"deny","host":"x.test","qtype":"TXT","more":7,"reason":"7 more like this in the last second: no rule","time":"2026-01-02T03:04:05Z","message":"dns decision"}`,
			true, Decision{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Level: "info", Bottle: "b", Daemon: "dns", Decision: "deny",
				Host: "x.test", QType: "TXT", More: 7, Reason: "7 more like this in the last second: no rule", Message: "dns decision"}},
		{"ready", `{"level":"info","bottle":"b","daemons":[{"name":"egress","listen":"10.1.2.2:8888"}],"message":"ready"}`, false, Decision{}},
		{"dial failure", `{"level":"warn","daemon":"egress","host":"a.test","port":443,"error":"x","message":"egress dial failed"}`, false, Decision{}},
		{"daemon mismatch", `{"daemon":"dns","decision":"allow","host":"a.test","message":"egress decision"}`, false, Decision{}},
		{"no decision", `{"daemon":"egress","host":"a.test","message":"egress decision"}`, false, Decision{}},
		{"not JSON", `bottle-apply: something`, false, Decision{}},
		{"empty", ``, false, Decision{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := ParseDecision([]byte(tt.line))
			if ok != tt.ok || !got.Time.Equal(tt.want.Time) {
				t.Fatalf("ParseDecision = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
			got.Time, tt.want.Time = time.Time{}, time.Time{}
			if got != tt.want {
				t.Fatalf("ParseDecision = %+v, want %+v", got, tt.want)
			}
			if ok && got.Allowed() != (got.Decision == "allow") {
				t.Fatalf("Allowed() = %v for %s", got.Allowed(), got.Decision)
			}
		})
	}
}
