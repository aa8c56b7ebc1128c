package reconcile

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	t.Parallel()
	changed := hello
	changed.env = "e2"
	stopped := with(changed.observed(), "bundle", func(r *Resource) { r.State, r.Status = StateStopped, "Exited (0) 1 second ago" })
	mixed := append(changed.desired(), world{bottle: "new", subnet: "10.0.3", env: "e", bundle: "none"}.desired()...)
	mixed = with(mixed, "agent", func(r *Resource) {
		if r.Bottle == "new" {
			r.Summary = map[string]string{"image": "agent:1", "proxy": "http://10.0.3.2:8888"}
		}
	})
	cases := []struct {
		name              string
		desired, observed []Resource
		scope             []string
		color             bool
	}{
		{name: "no-changes", desired: hello.desired(), observed: hello.observed()},
		{name: "from-nothing", desired: hello.desired()},
		{name: "mixed", desired: mixed, observed: append(stopped, with(hello.observed(), "agent", func(r *Resource) {})...)[:4],
			scope: []string{"hello", "new"}},
		{name: "replace-and-start", desired: hello.desired(), observed: with(stopped, "x", nil), color: false},
		{name: "destroy", observed: hello.observed()},
		{name: "destroy-color", observed: hello.observed(), color: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			scope := tc.scope
			if scope == nil {
				scope = []string{"hello"}
			}
			plan, err := Diff(tc.desired, tc.observed, Scope{Bottles: scope})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := Render(&buf, plan, tc.color); err != nil {
				t.Fatal(err)
			}
			golden(t, "render-"+tc.name, buf.String())
		})
	}
}

func TestPlanDocJSON(t *testing.T) {
	t.Parallel()
	plan, err := Diff(hello.desired(), nil, Scope{Bottles: []string{"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(plan.Doc())
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Steps []struct {
			ID       int    `json:"id"`
			Action   string `json:"action"`
			Resource string `json:"resource"`
		} `json:"steps"`
		Changes map[string]int `json:"changes"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Steps) != 4 || back.Steps[0].Action != "create" || back.Changes["create"] != 4 {
		t.Fatalf("plan JSON = %s", b)
	}
	if !strings.Contains(string(b), `"resource":"docker-network:hello/egress"`) {
		t.Fatalf("plan JSON lacks resource IDs: %s", b)
	}
}
