package kubernetes

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// TestTranslateSet: a bottle applied with a set carries it as a label of
// each object's own metadata, never in a selector or a pod template (a
// selector cannot change), and every hash is the one without a set.
func TestTranslateSet(t *testing.T) {
	t.Parallel()
	plain, err := translate(workBottle(t), testCluster, "v-test")
	if err != nil {
		t.Fatal(err)
	}
	b := workBottle(t)
	b.Set = "team-a"
	rs, err := translate(b, testCluster, "v-test")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != len(plain) {
		t.Fatalf("%d objects with a set, %d without", len(rs), len(plain))
	}
	for i := range rs {
		if rs[i].Hash != plain[i].Hash || rs[i].Set != "team-a" {
			t.Errorf("%s: hash %s (without a set %s), set %q", rs[i].ID(), rs[i].Hash, plain[i].Hash, rs[i].Set)
		}
	}
	// The renderings differ by one label line per object, and by nothing
	// else.
	line := "    " + bottle.LabelSet + ": team-a"
	with := render(t, rs, "10.96.0.42")
	if n := strings.Count(with, line+"\n"); n != len(rs) {
		t.Errorf("%d objects carry %q at the top of their metadata, want %d:\n%s", n, line, len(rs), with)
	}
	if strings.Count(with, bottle.LabelSet) != len(rs) {
		t.Errorf("the set label is also somewhere else than the objects' own labels:\n%s", with)
	}
	if got, want := strings.ReplaceAll(with, line+"\n", ""), render(t, plain, "10.96.0.42"); got != want {
		t.Errorf("without the label lines the rendering differs from the one without a set:\n%s", got)
	}
}

// TestObjectMetaSet: the set is observed from an object's labels.
func TestObjectMetaSet(t *testing.T) {
	t.Parallel()
	for _, set := range []string{"", "team-a"} {
		m := metav1.ObjectMeta{Name: "x", Namespace: "ns",
			Labels:      bottle.WithSet(labelsOf("work", RoleFiles), set),
			Annotations: map[string]string{annHash: "h"}}
		if r := objectMeta(KindSecret, &m); !r.Managed || r.Set != set {
			t.Errorf("labels %v: managed %v, set %q; want managed, set %q", m.Labels, r.Managed, r.Set, set)
		}
	}
}
