package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/spec"
)

// run calls Run in-process and returns the exit code and both streams.
func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(t.Context(), args, Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func TestRunUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no spec", nil, "bottle-apply: no spec given: pass -f FILE, -f DIR or -f - (repeatable)"},
		{"bad output", []string{"-f", "x.yaml", "--output", "yaml"}, `bottle-apply: --output "yaml": want text or json`},
		{"bad log level", []string{"-f", "x.yaml", "--log-level", "loud"}, `bottle-apply: --log-level "loud": want debug, info, warn or error`},
		{"log level that would hide errors", []string{"-f", "x.yaml", "--log-level", "disabled"}, `bottle-apply: --log-level "disabled": want debug, info, warn or error`},
		{"bad log format", []string{"-f", "x.yaml", "--log-format", "xml"}, `bottle-apply: --log-format "xml": want console or json`},
		{"unknown flag", []string{"--frobnicate"}, "bottle-apply: unknown flag: --frobnicate"},
		{"verify with destroy", []string{"-f", "x.yaml", "--verify", "--destroy"}, "bottle-apply: --verify runs the self-test alone; it does not go with --destroy, --dry-run or --no-verify"},
		{"verify with no-verify", []string{"-f", "x.yaml", "--verify", "--no-verify"}, "bottle-apply: --verify runs the self-test alone; it does not go with --destroy, --dry-run or --no-verify"},
		{"logs without a name", []string{"logs"}, "bottle-apply: logs takes the bottle's name: bottle-apply logs [-f] NAME"},
		{"prune without a set", []string{"-f", "x.yaml", "--prune"}, "bottle-apply: --prune needs --set NAME: it deletes the bottles of that spec set that are not in the specs, and nothing else; nothing was changed"},
		{"prune with destroy", []string{"-f", "x.yaml", "--set", "a", "--prune", "--destroy"}, "bottle-apply: --set and --prune go with an apply: --destroy deletes the bottles of the specs whatever their set, --verify changes nothing"},
		{"set with verify", []string{"-f", "x.yaml", "--set", "a", "--verify"}, "bottle-apply: --set and --prune go with an apply: --destroy deletes the bottles of the specs whatever their set, --verify changes nothing"},
		{"set not a label value", []string{"-f", "x.yaml", "--set", "team a"}, `bottle-apply: --set: spec set "team a": want at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (a label value)`},
		{"empty set", []string{"-f", "x.yaml", "--set", ""}, `bottle-apply: --set: spec set "": want at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (a label value)`},
		{"volumes with an apply", []string{"-f", "x.yaml", "--volumes"}, "bottle-apply: --volumes goes with --destroy or --prune: it removes the named volumes of the bottles they delete"},
		{"positional", []string{"hello.yaml"}, `bottle-apply: unknown command "hello.yaml" for "bottle-apply" (specs are passed with -f)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, out, errs := run(t, "", tc.args...)
			if code != exitError {
				t.Errorf("exit %d, want %d", code, exitError)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
			if !strings.HasPrefix(errs, tc.want+"\n") || !strings.Contains(errs, "bottle-apply --help") {
				t.Errorf("stderr = %q, want %q and a pointer to --help", errs, tc.want)
			}
		})
	}
}

func TestRunInvalidSpecChangesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	spec := "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata:\n  name: Bad_Name\nspec:\n  agent:\n    image: x\n"
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	// DOCKER_HOST points nowhere: a spec error must be reported before any
	// engine is contacted.
	code, out, errs := run(t, "", "-f", path, "--log-format", "json")
	if code != exitError || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	for _, want := range []string{"invalid spec, nothing was changed", path + ":4:9: metadata.name"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

func TestRunInvalidSpecJSON(t *testing.T) {
	t.Parallel()
	code, out, _ := run(t, "kind: Bottle\n", "-f", "-", "-o", "json")
	var doc struct {
		Error   string `json:"error"`
		Changed bool   `json:"changed"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != exitError {
		t.Fatalf("exit %d, stdout not JSON (%v): %q", code, err, out)
	}
	if !strings.Contains(doc.Error, "<stdin>:1:1: apiVersion: required field is missing") || doc.Changed {
		t.Fatalf("JSON error = %+v", doc)
	}
}

func TestRunVersion(t *testing.T) {
	t.Parallel()
	code, out, _ := run(t, "", "--version")
	if code != 0 || !strings.Contains(out, "bottle-apply version dev") {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
}

func TestRunSchema(t *testing.T) {
	t.Parallel()
	want, err := spec.Schema()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"prints the schema", []string{"schema"}, 0, string(want), ""},
		{"takes no arguments", []string{"schema", "x"}, 1, "",
			"bottle-apply: schema takes no arguments: bottle-apply schema > bottle-apply.schema.json\nRun 'bottle-apply --help' for usage.\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := run(t, "", tt.args...)
			if code != tt.code || out != tt.out || errOut != tt.err {
				t.Fatalf("exit %d, stdout %d bytes, stderr %q; want exit %d, %d bytes, %q", code, len(out), errOut, tt.code, len(tt.out), tt.err)
			}
		})
	}
	_, out, _ := run(t, "", "schema")
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("stdout is not JSON: %v", err)
	}
	if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" || !strings.HasSuffix(out, "}\n") {
		t.Errorf("$schema = %v, want draft 2020-12, and a newline at the end", doc["$schema"])
	}
	if props, _ := doc["properties"].(map[string]any); props["spec"] == nil {
		t.Errorf("the schema has no property spec: %v", props)
	}
}
