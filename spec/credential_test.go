package spec

import (
	"strings"
	"testing"
)

func TestCheckHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header string
		want   string // a part of the message; "" for none
	}{
		{"x-api-key", ""},
		{"Authorization", ""},
		{"X-Goog-Api-Key", ""},
		{"a!#$%&'*+-.^_`|~9", ""},
		{"", ""}, // required says it
		{"Host", "owns"},
		{"host", "owns"},
		{"Connection", "owns"},
		{"Content-Length", "owns"},
		{"transfer-encoding", "owns"},
		{"Upgrade", "owns"},
		{"Proxy-Authorization", "owns"},
		{"proxy-connection", "owns"},
		{"TE", "owns"},
		{"Trailer", "owns"},
		{"Keep-Alive", "owns"},
		{":authority", "pseudo-header"},
		{":path", "pseudo-header"},
		{"x api key", "not a header name"},
		{"x-api-key:", "not a header name"},
		{"x\r\nEvil", "not a header name"},
		{"caf\u00e9", "not a header name"},
		{"a\x00", "not a header name"},
	}
	for _, tt := range tests {
		got := checkHeader(tt.header)
		if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
			t.Errorf("checkHeader(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}

func TestCheckHeaderPrefix(t *testing.T) {
	t.Parallel()
	for prefix, ok := range map[string]bool{
		"": true, "Bearer ": true, "token ": true, "Basic": true, "\u00e9 ": true,
		"Bearer\r\n": false, "a\nb": false, "a\rb": false, "\x00": false, "a\tb": false, "\x7f": false, "\u0085": false,
	} {
		if got := checkHeaderPrefix(prefix); (got == "") != ok {
			t.Errorf("checkHeaderPrefix(%q) = %q, want ok=%v", prefix, got, ok)
		}
	}
}

// TestCredentialsAccepted covers what credentials may be with: each
// backend, the built-in bundle or an image, several headers of a host,
// a host written in another case, any exact rule's ports.
func TestCredentialsAccepted(t *testing.T) {
	t.Parallel()
	doc := func(spec string) string {
		return "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata: {name: c}\nspec:\n" + spec
	}
	const creds = "      credentials:\n" +
		"        - {host: api.example.com, header: x-api-key, valueFrom: {env: KEY}, agentEnv: KEY}\n" +
		"        - {host: API.Example.com., header: Authorization, prefix: \"Bearer \", valueFrom: {file: token}}\n"
	tests := []struct{ name, spec string }{
		{"docker, built-in bundle", "  agent: {image: alpine, env: {OTHER: x}}\n  bundle:\n    daemons: [egress, dns]\n" +
			"    egress:\n      allow: [api.example.com]\n      trust: [root.pem]\n" + creds},
		{"smolvm, bundle image, a port", "  backend: smolvm\n  agent: {image: alpine}\n  bundle:\n    image: registry.example/b:1\n    daemons: [egress]\n" +
			"    egress:\n      allow: ['*.example.com', 'api.example.com:8443']\n" + creds},
		{"kubernetes", "  backend: kubernetes\n  agent: {image: alpine}\n  bundle:\n    image: registry.example/b:1\n    daemons: [egress]\n" +
			"    egress:\n      allow: ['api.example.com:*']\n" + creds},
		{"CA variables without credentials", "  agent: {image: alpine, env: {SSL_CERT_FILE: /x}, files: [{path: /etc/bottle-apply/x, content: y}]}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := []byte(doc(tt.spec))
			bottles, err := Parse("dir/c.yaml", data)
			if err != nil || len(bottles) != 1 {
				t.Fatalf("Parse = %v, %v", bottles, err)
			}
			schemaAccepts(t, data)
		})
	}
}

func TestStdinCredentials(t *testing.T) {
	t.Parallel()
	doc := func(from, trust string) string {
		return "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata: {name: in}\nspec:\n  agent: {image: alpine}\n" +
			"  bundle:\n    daemons: [egress]\n    egress:\n      allow: [api.example.com]\n" +
			"      credentials:\n        - {host: api.example.com, header: x-api-key, valueFrom: " + from + "}\n" + trust
	}
	tests := []struct{ name, doc, want string }{
		{"env", doc("{env: KEY}", ""), ""},
		{"file", doc("{file: token}", ""), "<stdin>:11:72: spec.bundle.egress.credentials[0].valueFrom.file: a spec read from standard input " +
			"has no directory to read secret files from; use valueFrom.env, or pass the spec with -f FILE"},
		{"bad file: its own error only", doc("{file: /token}", ""), "<stdin>:11:72: spec.bundle.egress.credentials[0].valueFrom.file: " +
			"\"/token\" is an absolute path; write it relative to the spec file's directory"},
		{"trust", doc("{env: KEY}", "      trust: [root.pem]\n"), "<stdin>:12:15: spec.bundle.egress.trust[0]: a spec read from standard input " +
			"has no directory to read trust files from; pass the spec with -f FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bottles, err := Load([]string{Stdin}, strings.NewReader(tt.doc))
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
}
