package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/invopop/jsonschema"
	jsv "github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite ../"+SchemaFile)

// TestSchemaFile keeps the schema the repository ships, which the examples'
// modelines point at, the one the types generate.
func TestSchemaFile(t *testing.T) {
	t.Parallel()
	want, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join("..", SchemaFile)
	if *update {
		if err := os.WriteFile(file, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the spec types generate: run `make schema` (or go test ./spec -run TestSchemaFile -update) and commit it", SchemaFile)
	}
	var doc map[string]any
	if err := json.Unmarshal(got, &doc); err != nil || doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("not a draft 2020-12 schema (%v): $schema = %v", err, doc["$schema"])
	}
}

// compiledSchema is Schema compiled by a validator independent of the
// generator.
var compiledSchema = sync.OnceValues(func() (*jsv.Schema, error) {
	data, err := Schema()
	if err != nil {
		return nil, err
	}
	doc, err := jsv.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	c := jsv.NewCompiler()
	if err := c.AddResource("bottle-apply.schema.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("bottle-apply.schema.json")
})

// validateDocs validates each non-empty document of a YAML file against the
// schema, as an editor does, and returns the errors by document.
func validateDocs(t *testing.T, data []byte) []error {
	t.Helper()
	sch, err := compiledSchema()
	if err != nil {
		t.Fatalf("compile the schema: %v", err)
	}
	var errs []error
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return errs
		}
		if err != nil {
			t.Fatalf("yaml: %v", err)
		}
		if len(n.Content) == 0 || isNull(n.Content[0]) {
			continue
		}
		errs = append(errs, sch.Validate(jsonValue(n.Content[0])))
	}
}

// jsonValue is the JSON an editor sees of a YAML node: the scalars typed by
// their YAML tags, as the decoder sees them.
func jsonValue(n *yaml.Node) any {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind == yaml.AliasNode && k.Alias != nil {
				k = k.Alias
			}
			m[k.Value] = jsonValue(n.Content[i+1])
		}
		return m
	case yaml.SequenceNode:
		s := []any{}
		for _, c := range n.Content {
			s = append(s, jsonValue(c))
		}
		return s
	}
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		return n.Value == "true"
	case "!!int":
		var i big.Int
		if _, ok := i.SetString(strings.ReplaceAll(n.Value, "_", ""), 0); ok {
			return json.Number(i.String())
		}
	case "!!float":
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil {
			return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
		}
	}
	return n.Value
}

// specFiles are the files Load takes as they are: the examples that are
// specs (not examples/kubernetes-rbac.yaml) and the valid test specs.
func specFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, glob := range []string{"../examples/*.yaml", "../examples/*/*.yaml", "testdata/valid-*.yaml", "testdata/dup/*.y*ml"} {
		m, _ := filepath.Glob(glob)
		if len(m) == 0 {
			t.Fatalf("no files match %s", glob)
		}
		files = append(files, m...)
	}
	return slices.DeleteFunc(files, func(file string) bool {
		data, err := os.ReadFile(file)
		return err == nil && !strings.Contains(string(data), "apiVersion: "+APIVersion)
	})
}

func TestSchemaAcceptsValidSpecs(t *testing.T) {
	t.Parallel()
	for _, file := range specFiles(t) {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(file, data); err != nil {
				t.Fatalf("not a valid spec, so it proves nothing here:\n%v", err)
			}
			errs := validateDocs(t, data)
			if len(errs) == 0 {
				t.Fatal("no documents validated")
			}
			for i, err := range errs {
				if err != nil {
					t.Errorf("document %d: %v", i+1, err)
				}
			}
		})
	}
}

// TestSchemaAcceptsWhatTheDecoderTakes covers the shapes the decoder
// takes beyond the plain ones: null for what may be empty, any scalar for
// a string, both forms of a volume.
func TestSchemaAcceptsWhatTheDecoderTakes(t *testing.T) {
	t.Parallel()
	const head = "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata: {name: n}\n"
	tests := []struct{ name, spec string }{
		{"null sections", "spec:\n  backend:\n  agent: {image: alpine}\n  network:\n  bundle: ~\n  kubernetes:\n"},
		{"null fields", "spec:\n  agent: {image: alpine, command: ~, workdir: ~, env: ~, cpus: ~, user: ~, volumes: ~, files: ~}\n" +
			"  network: {subnet: ~, allowCIDRs: ~}\n  bundle: {image: ~, daemons: ~, egress: {allow: ~, dns: ~}}\n"},
		{"null elements and values", "spec:\n  agent: {image: alpine, command: [~, sh], env: {A: ~}}\n" +
			"  network: {allowCIDRs: [~]}\n  bundle: {daemons: [~, egress], egress: {allow: [~, example.com]}}\n"},
		{"numbers and booleans for strings", "spec:\n  agent:\n    image: alpine\n    user: 1000\n    env: {A: 1, B: 1.5, C: true, D: 2001-12-14}\n" +
			"    command: [sleep, 10]\n    files: [{path: /etc/a, content: 42, mode: 0600, owner: 1000}]\n"},
		{"volumes in both forms", "spec:\n  agent:\n    image: alpine\n    volumes:\n      - ./src:/workspace\n      - home:/home/agent:rw\n" +
			"      - ./docs:/docs:ro\n      - {source: cache, target: /cache, readOnly: true}\n"},
		{"credentials and trust", "spec:\n  agent: {image: alpine}\n  bundle:\n    daemons: [egress]\n" +
			"    egress:\n      allow: [api.example.com]\n      trust: [certs/root.pem]\n      credentials:\n" +
			"        - {host: api.example.com, header: x-api-key, valueFrom: {env: KEY}, agentEnv: KEY}\n" +
			"        - {host: api.example.com, header: Authorization, prefix: \"Bearer \", valueFrom: {file: token}, agentEnv: ~}\n"},
		{"a secret from the environment", "spec:\n  agent: {image: alpine, secretEnv: {TOKEN: {valueFrom: {env: TOKEN}}}}\n"},
		{"zero numbers", "spec:\n  agent: {image: alpine, cpus: 0, memory: 0, pids: 0}\n  bundle: {egress: {dns: {maxNameLength: 0}}}\n"},
		{"hexadecimal numbers", "spec:\n  agent: {image: alpine, cpus: 0x10}\n"},
		{"empty backend", "spec:\n  backend: \"\"\n  agent: {image: alpine}\n"},
		{"empty optional strings", "spec:\n  backend: kubernetes\n  agent: {image: alpine, workdir: \"\"}\n" +
			"  bundle: {image: registry.example/bundle:1}\n  kubernetes: {namespace: \"\", runtimeClassName: \"\"}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := []byte(head + tt.spec)
			if _, err := Parse("edge.yaml", data); err != nil {
				t.Fatalf("Parse refuses it, so it proves nothing here:\n%v", err)
			}
			schemaAccepts(t, data)
		})
	}
}

// schemaAccepts fails t unless the schema takes every document of data,
// which Parse accepts: the schema may never be stricter than bottle-apply.
// FuzzParse and FuzzValidate call it.
func schemaAccepts(t *testing.T, data []byte) {
	t.Helper()
	for i, err := range validateDocs(t, data) {
		if err != nil {
			t.Errorf("Parse accepts document %d, the schema refuses it: %v", i+1, err)
		}
	}
}

// TestSchemaRefusesInvalidSpecs checks that the schema refuses the faults of
// invalid test specs that are in their structure, each at its place
// (a JSON pointer) and by its keyword.
func TestSchemaRefusesInvalidSpecs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file, at, keyword, why string
	}{
		{"invalid-backend.yaml", "/spec/backend", "enum", "a backend that does not exist"},
		{"invalid-multi-doc.yaml", "/spec/backend", "enum", "a bad backend in the first of two documents"},
		{"invalid-daemons.yaml", "/spec/bundle/daemons/1", "enum", "a daemon that does not exist"},
		{"invalid-header.yaml", "/apiVersion", "const", "another apiVersion"},
		{"invalid-header.yaml", "/kind", "const", "another kind"},
		{"invalid-missing-header.yaml", "", "required", "no apiVersion and kind"},
		{"invalid-missing-image.yaml", "/spec/agent", "required", "an agent without an image"},
		{"invalid-missing-name.yaml", "/metadata", "required", "metadata without a name"},
		{"invalid-empty-values.yaml", "/metadata/name", "minLength", "an empty name"},
		{"invalid-not-mapping.yaml", "", "type", "a list for a document"},
		{"invalid-type-list.yaml", "/spec/agent/command", "type", "a string for a list"},
		{"invalid-type-list.yaml", "/spec/bundle/daemons", "type", "a mapping for a list"},
		{"invalid-type-mapping.yaml", "/metadata", "type", "a string for a mapping"},
		{"invalid-type-mapping.yaml", "/spec/agent/env", "type", "a list for a mapping"},
		{"invalid-type-string.yaml", "/metadata/name", "type", "a list for a string"},
		{"invalid-type-string.yaml", "/spec/agent/image", "type", "a mapping for a string"},
		{"invalid-unknown-field-list.yaml", "/metadata", "additionalProperties", "an unknown field"},
		{"invalid-unknown-field-suggest.yaml", "", "additionalProperties", "a misspelt field (Kind)"},
		{"invalid-secrets-field.yaml", "/spec/agent", "additionalProperties", "secrets held in the spec"},
		{"invalid-kubernetes.yaml", "/spec/kubernetes", "additionalProperties", "an unknown field of kubernetes"},
		{"invalid-kubernetes.yaml", "/spec/kubernetes/namespace", "pattern", "a namespace that is not a DNS label"},
		{"invalid-name.yaml", "/metadata/name", "pattern", "a name that is not a DNS label"},
		{"invalid-name.yaml", "/metadata/name", "maxLength", "a name of 64 characters"},
		{"invalid-env.yaml", "key 1FOO", "propertyNames", "a variable name that is not a name"},
		{"invalid-env.yaml", "key HTTP_PROXY", "propertyNames", "a variable bottle-apply sets"},
		{"invalid-workdir.yaml", "/spec/agent/workdir", "pattern", "a relative workdir"},
		{"invalid-resources.yaml", "/spec/agent/cpus", "maximum", "65 CPUs"},
		{"invalid-resources.yaml", "/spec/agent/memory", "anyOf", "32 MiB, neither 0 nor at least 64"},
		{"invalid-resources.yaml", "/spec/agent/pids", "minimum", "a negative number"},
		{"invalid-resources.yaml", "/spec/agent/pids", "type", "a string for a number"},
		{"invalid-volumes.yaml", "/spec/agent/volumes/0", "oneOf", "a short form of four parts"},
		{"invalid-volumes.yaml", "/spec/agent/volumes/8", "oneOf", "a null volume"},
		{"invalid-volumes.yaml", "/spec/agent/volumes/15", "oneOf", "a volume without a source"},
		{"invalid-secret-type.yaml", "/spec/agent/secretEnv/A", "anyOf", "a secret's value in the spec"},
		{"invalid-secret-type.yaml", "/spec/agent/secretEnv", "type", "a list for a mapping"},
		{"invalid-credentials.yaml", "/spec/bundle/egress/credentials/7", "required", "a credential without a host"},
		{"invalid-credentials.yaml", "/spec/bundle/egress/credentials/9/header", "minLength", "an empty header"},
		{"invalid-credentials.yaml", "/spec/bundle/egress/credentials/14/header", "pattern", "a header that is not a token"},
		{"invalid-credentials.yaml", "/spec/bundle/egress/credentials/15/prefix", "pattern", "a prefix with CR and LF"},
		{"invalid-credentials.yaml", "/spec/bundle/egress/credentials/22/agentEnv", "pattern", "an agentEnv that is not a name"},
		{"invalid-credentials.yaml", "/spec/bundle/egress/credentials/28", "additionalProperties", "a credential's value in the spec"},
	}
	for _, tt := range tests {
		t.Run(tt.file+tt.at+"/"+tt.keyword, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(tt.file, data); err == nil {
				t.Fatal("Parse accepts it: not an invalid spec")
			}
			var got []string
			for _, err := range validateDocs(t, data) {
				var ve *jsv.ValidationError
				if errors.As(err, &ve) {
					got = append(got, faults(ve)...)
				}
			}
			if want := tt.at + " " + tt.keyword; !slices.Contains(got, want) {
				t.Errorf("the schema does not refuse %s (%s %s); its faults:\n%s", tt.why, tt.at, tt.keyword, strings.Join(got, "\n"))
			}
		})
	}
}

// faults lists an error and its causes as "POINTER KEYWORD" (the root's
// pointer is "").
func faults(ve *jsv.ValidationError) []string {
	var out []string
	if path := ve.ErrorKind.KeywordPath(); len(path) > 0 {
		at := ""
		if k, ok := ve.ErrorKind.(*kind.PropertyNames); ok {
			// v6.0.3 aliases the location of a propertyNames error to a
			// slice it goes on changing: name the key instead.
			at = "key " + k.Property
		} else if len(ve.InstanceLocation) > 0 {
			at = "/" + strings.Join(ve.InstanceLocation, "/")
		}
		out = append(out, at+" "+path[len(path)-1])
	}
	for _, c := range ve.Causes {
		out = append(out, faults(c)...)
	}
	return out
}

// TestSchemaRefusesUnknownRules checks that a validate rule the generator
// does not know fails generation instead of leaving the schema looser
// than it says, or stricter.
func TestSchemaRefusesUnknownRules(t *testing.T) {
	t.Parallel()
	type (
		stringRule struct {
			A string `yaml:"a" validate:"omitempty,frobnicate"`
		}
		numberRule struct {
			A int `yaml:"a" validate:"omitempty,gt=3"`
		}
		listRule struct {
			A []string `yaml:"a" validate:"min=1,dive,dnslabel"`
		}
		keyRule struct {
			A map[string]string `yaml:"a" validate:"dive,keys,frobnicate,endkeys"`
		}
	)
	tests := []struct {
		name string
		t    reflect.Type
		want string
	}{
		{"string", reflect.TypeFor[stringRule](), `stringRule.A: internal: validate rule "frobnicate" has no entry in stringKeywords`},
		{"number", reflect.TypeFor[numberRule](), `numberRule.A: internal: validate rule "gt=3" of a number has no schema keywords`},
		{"list", reflect.TypeFor[listRule](), `listRule.A: internal: validate rules ["min=1"] of a slice have no schema keywords`},
		{"map key", reflect.TypeFor[keyRule](), `keyRule.A: internal: validate rule "frobnicate" has no entry in stringKeywords`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := reflectSchema(tt.t)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error = %v, want %s", err, tt.want)
			}
		})
	}
}

// TestSchemaKeywordsFollowChecks compares each pattern the schema takes
// for a validate rule with the rule's own check: the schema may let through
// what the check refuses, never refuse what it takes.
func TestSchemaKeywordsFollowChecks(t *testing.T) {
	t.Parallel()
	samples := []string{"", "a", "abc", "a-b", "-a", "a-", "A", "a_b", "1", "a.b", "a..b", ".a", "a.", "xn--a",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a.", 126) + "a", "/", "/workspace", "workspace", "./x",
		"_", "_A1", "1A", "A-B", "HTTP_PROXY", "http_proxy", "no_proxy", "PATH", "a\n", "\na"}
	for _, tag := range slices.Sorted(func(yield func(string) bool) {
		for tag := range checks {
			if !yield(tag) {
				return
			}
		}
	}) {
		set, ok := stringKeywords[tag]
		if !ok {
			t.Errorf("rule %q has no entry in stringKeywords", tag)
			continue
		}
		if set == nil {
			continue
		}
		t.Run(tag, func(t *testing.T) {
			t.Parallel()
			s := newStringSchema(t, set)
			for _, v := range samples {
				if checks[tag](v) == "" && s.Validate(v) != nil {
					t.Errorf("the schema refuses %q, which the check takes", v)
				}
			}
		})
	}
	// The patterns that express their checks exactly.
	for _, tag := range []string{"dnslabel", "dnssubdomain", "abspath", "envname", "noproxy"} {
		s := newStringSchema(t, stringKeywords[tag])
		for _, v := range samples {
			if checks[tag](v) != "" && s.Validate(v) == nil {
				t.Errorf("%s: the schema takes %q, which the check refuses", tag, v)
			}
		}
	}
}

func newStringSchema(t *testing.T, set func(*jsonschema.Schema)) *jsv.Schema {
	t.Helper()
	s := &jsonschema.Schema{}
	set(s)
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsv.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	c := jsv.NewCompiler()
	if err := c.AddResource("s.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("s.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// TestExamplesPointAtSchema checks the modeline of every example spec: its
// first line points the YAML language server at the shipped schema.
func TestExamplesPointAtSchema(t *testing.T) {
	t.Parallel()
	for _, file := range specFiles(t) {
		if !strings.HasPrefix(file, "../examples/") {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(data), "\n")
		rel, ok := strings.CutPrefix(first, "# yaml-language-server: $schema=")
		if !ok {
			t.Errorf("%s: first line %q is not a yaml-language-server modeline", file, first)
			continue
		}
		if got, want := filepath.Clean(filepath.Join(filepath.Dir(file), rel)), filepath.Join("..", SchemaFile); got != want {
			t.Errorf("%s: the modeline points at %s, not %s", file, got, want)
		}
	}
}
