package bottle

import (
	"strings"
	"testing"
)

func TestCheckSet(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"team-a", true},
		{"a", true},
		{"Team_A.1", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-a", false},
		{"a-", false},
		{"a b", false},
		{"a/b", false},
		{"a=b", false},
		{"é", false},
	} {
		if err := CheckSet(tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckSet(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestWithSet(t *testing.T) {
	t.Parallel()
	if l := WithSet(Labels("b", "agent", "h", "", "v"), ""); len(l) != 5 {
		t.Errorf("without a set: %v, want the 5 ownership labels alone", l)
	}
	if l := WithSet(Labels("b", "agent", "h", "", "v"), "team-a"); l[LabelSet] != "team-a" || len(l) != 6 {
		t.Errorf("with a set: %v", l)
	}
}
