package smolvm

import (
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// TestTranslateSet: a machine of a bottle applied with a set carries it in
// its labels and its record, with the hash it has without a set.
func TestTranslateSet(t *testing.T) {
	t.Parallel()
	plain, err := translate(testBottle("hello"), "test", "docker-save")
	if err != nil {
		t.Fatal(err)
	}
	b := testBottle("hello")
	b.Set = "team-a"
	r, err := translate(b, "test", "docker-save")
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.Config.(machineConfig)
	if r.Set != "team-a" || cfg.Labels[bottle.LabelSet] != "team-a" || cfg.Record.Set != "team-a" {
		t.Errorf("set: resource %q, label %q, record %q; want team-a in each", r.Set, cfg.Labels[bottle.LabelSet], cfg.Record.Set)
	}
	if r.Hash != plain.Hash || cfg.Labels[bottle.LabelHash] != plain.Hash {
		t.Errorf("hash %s with a set, %s without: the set must be in no hash", r.Hash, plain.Hash)
	}
	if _, ok := plain.Config.(machineConfig).Labels[bottle.LabelSet]; ok {
		t.Errorf("a machine without a set has the label %s", bottle.LabelSet)
	}
}

// TestObservedSet: the set is read from the labels, or from the record
// where a machine has none.
func TestObservedSet(t *testing.T) {
	t.Parallel()
	ms := []machine{
		{Name: "bottle-a-agent", State: "running", Labels: map[string]string{
			bottle.LabelName: "a", bottle.LabelRole: "agent", bottle.LabelHash: "h", bottle.LabelSet: "team-a"}},
		{Name: "bottle-b-agent", State: "running"},
		{Name: "bottle-c-agent", State: "running"},
	}
	recs := map[string]*record{
		"bottle-b-agent": {Name: "bottle-b-agent", Bottle: "b", Role: "agent", Hash: "h", Set: "team-b"},
		"bottle-c-agent": {Name: "bottle-c-agent", Bottle: "c", Role: "agent", Hash: "h"},
	}
	want := map[string]string{"a": "team-a", "b": "team-b", "c": ""}
	got := observed(ms, recs, reconcile.Scope{Bottles: []string{"a", "b", "c"}})
	if len(got) != len(want) {
		t.Fatalf("observed %d machines, want %d", len(got), len(want))
	}
	for _, r := range got {
		if !r.Managed || r.Set != want[r.Bottle] {
			t.Errorf("%s: managed %v, set %q; want managed, set %q", r.ID(), r.Managed, r.Set, want[r.Bottle])
		}
	}
}
