package spec

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestSecretNeverPrinted formats and marshals a bottle holding a resolved
// secret every way a log line or an error might.
func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	const value = "s3cr3t-planted-value"
	s := Secret{Name: "API_KEY", Value: value, Digest: "0123456789abcdef01234567"}
	b := Bottle{Metadata: Metadata{Name: "x"}, Spec: Spec{Agent: Agent{Image: "alpine", Secrets: []Secret{s}}}}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T", "%10.3v"} {
		for _, v := range []any{s, &s, b, &b, b.Spec.Agent, b.Spec.Agent.Secrets, map[string]Secret{"k": s}} {
			out = append(out, fmt.Sprintf(verb, v))
		}
	}
	out = append(out, fmt.Sprint(s, b), fmt.Sprintln(b), s.String(), s.GoString())
	for _, v := range []any{s, b, b.Spec.Agent, b.Spec.Agent.Secrets} {
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
		"%#v": `spec.Secret{Name:"API_KEY", Value:"REDACTED", Digest:"0123456789abcdef01234567"}`,
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

func TestStdinSecrets(t *testing.T) {
	t.Parallel()
	doc := func(from string) string {
		return "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata: {name: in}\nspec:\n  agent:\n    image: alpine\n" +
			"    secretEnv:\n      API_KEY:\n        valueFrom: " + from + "\n"
	}
	tests := []struct {
		name, from, want string
	}{
		{"env", "{env: API_KEY}", ""},
		{"file", "{file: token}", "<stdin>:9:27: spec.agent.secretEnv.API_KEY.valueFrom.file: a spec read from standard input " +
			"has no directory to read secret files from; use valueFrom.env, or pass the spec with -f FILE"},
		{"bad file: its own error only", "{file: /token}", "<stdin>:9:27: spec.agent.secretEnv.API_KEY.valueFrom.file: " +
			"\"/token\" is an absolute path; write it relative to the spec file's directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bottles, err := Load([]string{Stdin}, strings.NewReader(doc(tt.from)))
			if tt.want == "" {
				if err != nil || len(bottles) != 1 {
					t.Fatalf("Load = %v, %v", bottles, err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v\nwant %s", err, tt.want)
			}
		})
	}
	// The same document from a file may name a file.
	if _, err := Parse("dir/spec.yaml", []byte(doc("{file: token}"))); err != nil {
		t.Errorf("from a file: %v", err)
	}
}

func TestCheckSecretFile(t *testing.T) {
	t.Parallel()
	for file, ok := range map[string]bool{
		"token": true, "a/b/token": true, "./token": true, "a/./b": true, ".token": true, "..token": true, "a..b": true,
		"": false, ".": false, "./": false, "a/..": false, "..": false, "../x": false, "a/../b": false,
		"/etc/passwd": false, "//x": false,
	} {
		if got := CheckSecretFile(file) == ""; got != ok {
			t.Errorf("CheckSecretFile(%q) = %q, want ok=%v", file, CheckSecretFile(file), ok)
		}
	}
}
