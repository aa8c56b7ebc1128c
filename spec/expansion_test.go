package spec

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func parseNode(t *testing.T, data []byte) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		t.Fatal(err)
	}
	return n.Content[0]
}

// TestExpansionStopsEarly runs the classic billion laughs (9^9 strings
// once expanded) and checks that the walk stops at the first node past the
// limit, blaming the alias the document expands there.
func TestExpansionStopsEarly(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/invalid-alias-bomb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	root := parseNode(t, data)
	for _, limit := range []int{1000, MaxNodes} {
		count, at, msg := expansion(root, limit)
		if count != limit+1 {
			t.Errorf("limit %d: visited %d nodes, want the walk to stop at %d", limit, count, limit+1)
		}
		if at == nil || at.Kind != yaml.AliasNode || !strings.HasPrefix(msg, "too many nodes after expanding aliases") {
			t.Errorf("limit %d: blamed %+v: %s", limit, at, msg)
		}
	}
}

func TestExpansionCounts(t *testing.T) {
	t.Parallel()
	// The mapping, 3 keys, the list and its 2 items, 2 aliases each
	// standing for the list (1 + 3 nodes).
	root := parseNode(t, []byte("a: &l [x, y]\nb: *l\nc: *l\n"))
	if count, at, _ := expansion(root, 100); count != 1+3+3+2*4 || at != nil {
		t.Errorf("count %d, at %v; want 15, nil", count, at)
	}
	if count, at, _ := expansion(root, 15); count != 15 || at != nil {
		t.Errorf("limit 15: count %d, at %v; want 15 and no problem", count, at)
	}
	if _, at, _ := expansion(root, 14); at == nil || at.Line != 3 {
		t.Errorf("limit 14: blamed %+v, want the alias on line 3", at)
	}
}

// TestParseNodeLimit parses bottles of exactly MaxNodes nodes and one more,
// written out (no alias): the limit counts every node, not only aliases'.
func TestParseNodeLimit(t *testing.T) {
	t.Parallel()
	// The mapping, 2 nodes each for apiVersion, kind, metadata's name,
	// agent's image, 2 each for the metadata, spec, agent and command keys
	// with their values: 17 nodes and the command's items.
	const fixed = 17
	doc := func(items int) []byte {
		return []byte("apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata: {name: big}\nspec:\n  agent:\n    image: alpine\n    command: [" +
			strings.Repeat("x,", items-1) + "x]\n")
	}
	if _, err := Parse("big.yaml", doc(MaxNodes-fixed)); err != nil {
		t.Fatalf("%d nodes: %v", MaxNodes, err)
	}
	_, err := Parse("big.yaml", doc(MaxNodes-fixed+1))
	col := len("    command: [") + 2*(MaxNodes-fixed) + 1 // the last item
	want := "big.yaml:7:" + strconv.Itoa(col) + ": too many nodes after expanding aliases (more than 100000): " +
		"a bottle needs far fewer; check the anchors (&) and aliases (*) this one expands"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v\nwant %s", err, want)
	}
}
