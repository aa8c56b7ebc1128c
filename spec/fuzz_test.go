package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	more, _ := filepath.Glob("testdata/dup/*.y*ml")
	examples, _ := filepath.Glob("../examples/*.yaml")
	nested, _ := filepath.Glob("../examples/*/*.yaml") // examples/claude-code/bottle.yaml
	examples = append(examples, nested...)
	for _, file := range append(append(files, more...), examples...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const file = "fuzz.yaml"
		bottles, err := Parse(file, data)
		if err == nil {
			if len(bottles) == 0 {
				t.Fatal("no bottles and no error")
			}
			for _, b := range bottles {
				if b.Source.File != file || b.Source.Line < 1 {
					t.Errorf("Source = %+v", b.Source)
				}
				again := b
				again.Default()
				if !reflect.DeepEqual(again, b) {
					t.Errorf("Default changed a defaulted bottle: %+v", b)
				}
				if err := bottleValidator().Struct(&b); err != nil {
					t.Errorf("defaulted bottle is invalid: %v", err)
				}
			}
			schemaAccepts(t, data)
			return
		}
		if bottles != nil {
			t.Errorf("bottles returned with an error")
		}
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var fe *FieldError
			if !errors.As(e, &fe) || fe.Msg == "" {
				t.Errorf("error %q (%T) is not a *FieldError with a message", e, e)
			}
			if msg := e.Error(); !strings.HasPrefix(msg, file+":") || strings.Contains(msg, "internal:") {
				t.Errorf("bad error message: %q", msg)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("testdata/valid-full.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse("valid-full.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzValidate drives the validator through well-formed documents whose
// values are fuzzed: every rule must say what is wrong with a value at its
// own line, never panic, and never echo an env value.
func FuzzValidate(f *testing.F) {
	f.Add("hello", "docker", "alpine:3.20", "/workspace", "FOO", "bar", "192.168.240.0/24", "192.168.240.2", "10.0.0.0/8", "egress", 2, 512,
		"1000:1000", "./src:/workspace", "0600", "file-content")
	f.Add("Bad_Name", "lxc", "UPPER", "rel", "1X", "v", "10.0.0.0/33", "10.1.0.1", "fd00::/8", "telnet", 0, 32,
		"root", "work:/home/agent:rx", "0999", "")
	f.Add("xn--a", "smolvm", "a@sha256:00", "/", "HTTP_PROXY", "", "192.168.240.5/24", "192.168.240.255", "1.2.3.4", "dns", 65, 64,
		"1:2:3", "a:b:c:d", "rw", "\n")
	f.Add("vol", "smolvm", "alpine", "/workspace/x", "A", "b", "", "", "10.0.0.0/8", "dns", 1, 64,
		"0", "~/x:/workspace", "644", "/workspace")
	// For the document with credentials: a valid one, and one wrong in
	// most ways.
	f.Add("x-api-key", "docker", "alpine", "/workspace", "API_KEY", "Bearer ", "", "", "", "api.example.com", 1, 64,
		"", "secrets/token", "Authorization", "")
	f.Add("Host", "kubernetes", "alpine", "/etc/bottle-apply/ca.pem", "SSL_CERT_FILE", "Bearer\r\n", "", "", "10.0.0.0/8", "*.example.com", 1, 64,
		"HTTPS_PROXY", "/certs/root.pem", ":authority", "x")
	f.Fuzz(func(t *testing.T, name, backend, image, workdir, envKey, envVal, subnet, bundleIP, cidr, daemon string, cpus, mem int,
		user, volume, mode, content string) {
		q := func(s string) string { return strconv.Quote(s) }
		build := func(content string) string {
			return "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata:\n  name: " + q(name) + "\nspec:\n" +
				"  backend: " + q(backend) + "\n" +
				"  agent:\n    image: " + q(image) + "\n    workdir: " + q(workdir) + "\n" +
				"    env: {" + q(envKey) + ": " + q(envVal) + "}\n" +
				"    cpus: " + strconv.Itoa(cpus) + "\n    memory: " + strconv.Itoa(mem) + "\n    pids: " + strconv.Itoa(mem*cpus) + "\n" +
				// The workdir doubles as a volume's target and a file's path.
				"    user: " + q(user) + "\n    command: [" + q(name) + "]\n" +
				"    volumes: [" + q(volume) + ", {source: " + q(volume) + ", target: " + q(workdir) + ", readOnly: true, allowSensitive: true}]\n" +
				"    files: [{path: " + q(workdir) + ", content: " + q(content) + ", mode: " + q(mode) + ", owner: " + q(user) + "},\n" +
				"      {path: " + q(workdir+"/f") + ", source: " + q(volume) + "}]\n" +
				"  network:\n    subnet: " + q(subnet) + "\n    bundleIP: " + q(bundleIP) + "\n    allowCIDRs: [" + q(cidr) + "]\n" +
				"  bundle:\n    daemons: [" + q(daemon) + "]\n" +
				// The daemon's string doubles as an egress rule.
				"    egress: {allow: [" + q(daemon) + ", " + q(daemon+":"+strconv.Itoa(cpus)) + "],\n" +
				// The numbers double as the DNS limits.
				"      dns: {maxNameLength: " + strconv.Itoa(mem) + ", maxLabelLength: " + strconv.Itoa(cpus) +
				", newNamesPerMinute: " + strconv.Itoa(mem-cpus) + "}}\n"
		}
		// A second document with credentials, from the same strings: the
		// daemon doubles as their host, the name and the mode as their
		// headers, the env value as a prefix, the user as an agentEnv, the
		// volume as a value file and a trust file.
		creds := "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata:\n  name: " + q(name) + "\nspec:\n" +
			"  backend: " + q(backend) + "\n" +
			"  agent:\n    image: " + q(image) + "\n    env: {" + q(envKey) + ": " + q(envVal) + "}\n" +
			"    files: [{path: " + q(workdir) + ", content: " + q(content) + "}]\n" +
			"  bundle:\n    daemons: [egress]\n" +
			"    egress:\n      allow: [" + q(daemon) + ", " + q(daemon+":"+strconv.Itoa(cpus)) + "]\n" +
			"      credentials:\n" +
			"        - {host: " + q(daemon) + ", header: " + q(name) + ", prefix: " + q(envVal) + ", valueFrom: {env: " + q(envKey) + "}, agentEnv: " + q(envKey+"_KEY") + "}\n" +
			"        - {host: " + q(daemon) + ", header: " + q(mode) + ", valueFrom: {file: " + q(volume) + "}, agentEnv: " + q(user) + "}\n" +
			"      trust: [" + q(volume) + "]\n"
		if _, err := Parse("c.yaml", []byte(creds)); err == nil {
			schemaAccepts(t, []byte(creds))
		} else {
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var fe *FieldError
				if !errors.As(e, &fe) || fe.Msg == "" || fe.Line < 1 || strings.Contains(e.Error(), "internal:") {
					t.Errorf("error %q is not a positioned *FieldError", e)
				}
			}
		}
		_, err := Parse("v.yaml", []byte(build(content)))
		if err == nil {
			schemaAccepts(t, []byte(build(content)))
			return
		}
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var fe *FieldError
			if !errors.As(e, &fe) || fe.Msg == "" || fe.Line < 1 || strings.Contains(e.Error(), "internal:") {
				t.Errorf("error %q is not a positioned *FieldError", e)
			}
			if len(envVal) >= 4 && strings.HasPrefix(fe.Field, "spec.agent.env") && strings.Contains(fe.Msg, envVal) &&
				!strings.Contains(envKey, envVal) {
				t.Errorf("an env value is echoed: %q", e)
			}
			if len(content) >= 4 && strings.HasPrefix(fe.Field, "spec.agent.files") && strings.Contains(fe.Msg, quote(content)) &&
				!strings.Contains(workdir+"/f"+mode+user+volume, content) && echoes(t, build, fe) {
				t.Errorf("a file's content is echoed: %q", e)
			}
		}
	})
}

// echoes reports whether fe's message follows a file's content: a message
// whose own text happens to hold the content ("1000" of an owner's example,
// "0600" of a mode's) says the same with another content in its place.
func echoes(t *testing.T, build func(content string) string, fe *FieldError) bool {
	t.Helper()
	const other = "other-content-of-the-file"
	_, err := Parse("v.yaml", []byte(build(other)))
	if err == nil {
		return true
	}
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var again *FieldError
		if errors.As(e, &again) && again.Field == fe.Field && again.Line == fe.Line && again.Msg == fe.Msg {
			return false
		}
	}
	return true
}
