package bundle

import (
	"os/exec"
	"strings"
	"testing"
)

func TestParseHoles(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want holeSet
	}{
		{"", holeSet{}},
		{"host", holeSet{host: true}},
		{"host, sni,dns-types", holeSet{host: true, sni: true, dnsTypes: true}},
		{"nonsense,sni", holeSet{sni: true}},
	} {
		if got := parseHoles(tt.in); got != tt.want {
			t.Errorf("parseHoles(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// A build without the bottleholes tag has no hole open and no way to open
// one: the variable a test build sets at link time does not exist.
func TestReleasedBuildHasNoHoles(t *testing.T) {
	t.Parallel()
	if holes != (holeSet{}) {
		t.Fatalf("this build opens holes: %+v", holes)
	}
	out, err := exec.Command("go", "list", "-f", "{{.GoFiles}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "holes_on.go") || !strings.Contains(string(out), "holes_off.go") {
		t.Fatalf("a build without tags holds %s", out)
	}
}
