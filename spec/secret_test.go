package spec

import (
	"strings"
	"testing"
)

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
