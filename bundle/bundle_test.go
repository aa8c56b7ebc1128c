package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"BOTTLE_NAME": "hello", "BOTTLE_DAEMONS": "egress, dns,", "BOTTLE_ALLOW_CIDRS": "", "BOTTLE_PROXY_PORT": "8888"}
	got := ConfigFromEnv(func(k string) string { return env[k] })
	want := Config{Bottle: "hello", Daemons: []string{"egress", "dns"}, ProxyPort: "8888"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ConfigFromEnv = %+v, want %+v", got, want)
	}
}

func TestRunIdlesWithNoDaemons(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{Bottle: "hello"}, &out) }()
	select {
	case err := <-done:
		t.Fatalf("Run returned before ctx was done: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	dec := json.NewDecoder(&out)
	var first map[string]any
	if err := dec.Decode(&first); err != nil {
		t.Fatalf("first log line is not JSON: %v (%q)", err, out.String())
	}
	if first["message"] != "no daemons selected" || first["bottle"] != "hello" {
		t.Fatalf("first log line = %v", first)
	}
}

func TestRunRejectsUnknownDaemon(t *testing.T) {
	t.Parallel()
	err := Run(t.Context(), Config{Daemons: []string{"telnetd"}}, &bytes.Buffer{})
	if err == nil || err.Error() != `daemon "telnetd" is not available in this bundle build` {
		t.Fatalf("Run = %v", err)
	}
}
