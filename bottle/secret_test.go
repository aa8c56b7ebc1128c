package bottle

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/spec"
)

// TestSecretNeverPrinted formats and marshals a bottle holding a resolved
// secret every way a log line or an error might.
func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	const value = "s3cr3t-planted-value"
	s := Secret{Name: "API_KEY", Value: value, Digest: "0123456789abcdef01234567"}
	b := New(spec.Bottle{Metadata: spec.Metadata{Name: "x"}, Spec: spec.Spec{Agent: spec.Agent{Image: "alpine"}}})
	b.Secrets = []Secret{s}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T", "%10.3v"} {
		for _, v := range []any{s, &s, b, &b, b.Secrets, map[string]Secret{"k": s}} {
			out = append(out, fmt.Sprintf(verb, v))
		}
	}
	out = append(out, fmt.Sprint(s, b), fmt.Sprintln(b), s.String(), s.GoString())
	for _, v := range []any{s, b, b.Secrets} {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(j))
	}
	text, _ := s.MarshalText()
	out = append(out, string(text))
	for _, o := range out {
		if strings.Contains(o, value) || strings.Contains(strings.ToLower(o), fmt.Sprintf("%x", value)) {
			t.Errorf("the value shows: %s", o)
		}
	}
	for verb, want := range map[string]string{
		"%v":  "{API_KEY REDACTED 0123456789abcdef01234567}",
		"%+v": "{Name:API_KEY Value:REDACTED Digest:0123456789abcdef01234567}",
		"%#v": `bottle.Secret{Name:"API_KEY", Value:"REDACTED", Digest:"0123456789abcdef01234567"}`,
		"%q":  `"{API_KEY REDACTED 0123456789abcdef01234567}"`,
	} {
		if got := fmt.Sprintf(verb, s); got != want {
			t.Errorf("%s = %s, want %s", verb, got, want)
		}
	}
	if j, _ := json.Marshal(s); string(j) != `{"name":"API_KEY","value":"REDACTED","digest":"0123456789abcdef01234567"}` {
		t.Errorf("JSON %s", j)
	}
	if j, _ := json.Marshal(b.Spec.Agent); strings.Contains(string(j), "API_KEY") {
		t.Errorf("resolved secrets are marshalled with the agent: %s", j)
	}
}
