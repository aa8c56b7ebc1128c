package view

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/app"
)

var statusNow = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func statusBottles() []app.BottleStatus {
	res := func(role, kind, state, status string) app.ResourceStatus {
		return app.ResourceStatus{Role: role, Kind: kind, Provider: "docker", Name: "bottle-x-" + role, State: state, Status: status,
			Created: statusNow.Add(-3 * time.Minute)}
	}
	return []app.BottleStatus{
		{Name: "hello", Backend: "docker", State: app.StateRunning, Agent: "running", Bundle: "running", Subnet: "10.213.0.0/24",
			BundleAddress: "10.213.0.2", Created: statusNow.Add(-90 * time.Second), Volumes: []app.VolumeStatus{{Name: "cache", Present: true}},
			Sync: app.SyncInSync, InSync: true,
			Resources: []app.ResourceStatus{res("agent", "container", "running", "Up 1 minute"), res("bundle", "container", "running", "Up 1 minute"),
				res("internal", "network", "present", "")}},
		{Name: "drifted", Backend: "docker", State: app.StateDegraded, Agent: "missing", Bundle: "running", Subnet: "10.213.1.0/24",
			BundleAddress: "10.213.1.2", Created: statusNow.Add(-26 * time.Hour),
			Volumes: []app.VolumeStatus{{Name: "work", Present: false}}, Sync: app.SyncDrifted,
			Reasons:   []string{"Create docker-container:drifted/agent: not found", "Replace docker-container:drifted/bundle: env changed"},
			Resources: []app.ResourceStatus{res("bundle", "container", "running", "Up 2 hours")}},
		{Name: "stopped", Backend: "smolvm", State: app.StateStopped, Agent: "exited (137)", Bundle: "stopped",
			Created: statusNow.Add(-5 * 24 * time.Hour), Sync: app.SyncDrifted, Reasons: []string{"Start smolvm-machine:stopped/agent: stopped"},
			Resources: []app.ResourceStatus{res("agent", "machine", "stopped", "")}},
		{Name: "gone", Backend: "kubernetes", State: app.StateMissing, Agent: "missing", Bundle: "missing", Sync: app.SyncMissing},
		{Name: "secret", Backend: "docker", State: app.StateRunning, Agent: "running", Bundle: "running",
			Sync: app.SyncUnknown + " (secret API_KEY not available)"},
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	all := &app.StatusResult{Bottles: statusBottles()[:3]}
	for i := range all.Bottles {
		all.Bottles[i].Sync, all.Bottles[i].InSync, all.Bottles[i].Reasons = "", false, nil
	}
	all.Warnings = []string{"smolvm skipped: smolvm not found on PATH; install it or use backend: docker"}
	tests := []struct {
		name string
		res  *app.StatusResult
		json bool
	}{
		{name: "all", res: all},
		{name: "all-json", res: all, json: true},
		{name: "specs", res: &app.StatusResult{Specs: true, Bottles: statusBottles()}},
		{name: "specs-json", res: &app.StatusResult{Specs: true, Bottles: statusBottles()}, json: true},
		{name: "none", res: &app.StatusResult{}},
		{name: "none-json", res: &app.StatusResult{}, json: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			if err := Status(&b, tt.res, tt.json, statusNow); err != nil {
				t.Fatal(err)
			}
			golden(t, "status-"+tt.name, b.String())
		})
	}
}

// The JSON keeps the keys: inSync only with specs.
func TestStatusJSONKeys(t *testing.T) {
	t.Parallel()
	for _, specs := range []bool{false, true} {
		var b bytes.Buffer
		if err := Status(&b, &app.StatusResult{Specs: specs, Bottles: statusBottles()[:1]}, true, statusNow); err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Bottles []map[string]any `json:"bottles"`
		}
		if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
			t.Fatal(err)
		}
		got := doc.Bottles[0]
		for _, k := range []string{"name", "backend", "state", "resources"} {
			if _, ok := got[k]; !ok {
				t.Errorf("specs=%v: no %q in %v", specs, k, got)
			}
		}
		if _, ok := got["inSync"]; ok != specs {
			t.Errorf("specs=%v: inSync present = %v", specs, ok)
		}
		r := got["resources"].([]any)[0].(map[string]any)
		for _, k := range []string{"role", "kind", "state"} {
			if _, ok := r[k]; !ok {
				t.Errorf("no %q in resource %v", k, r)
			}
		}
	}
}

func TestHumanAge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"}, {45 * time.Second, "45s"}, {119 * time.Second, "119s"}, {12 * time.Minute, "12m"},
		{5 * time.Hour, "5h"}, {47 * time.Hour, "47h"}, {72 * time.Hour, "3d"},
	}
	for _, tt := range tests {
		if got := humanAge(tt.d); got != tt.want {
			t.Errorf("humanAge(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
