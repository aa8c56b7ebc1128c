package secret

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/spec"
)

// credBottle is a bottle whose spec file is file, with credentials and
// trust files.
func credBottle(name, file string, creds []spec.Credential, trust ...string) bottle.Bottle {
	b := spec.Bottle{Metadata: spec.Metadata{Name: name}, Source: spec.Source{File: file, Line: 1}}
	b.Spec.Agent.Image = "alpine"
	b.Spec.Bundle.Egress.Credentials = creds
	b.Spec.Bundle.Egress.Trust = trust
	return bottle.New(b)
}

// cred is a credential for api.example.com's x-api-key from from.
func cred(from spec.ValueFrom) spec.Credential {
	return spec.Credential{Host: "api.example.com", Header: "x-api-key", ValueFrom: from}
}

// newCert returns the PEM of a self-signed certificate, a CA's or not.
func newCert(t *testing.T, cn string, isCA bool) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true, IsCA: isCA,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		tmpl.DNSNames = []string{cn}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestResolveCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	specFile := filepath.Join(dir, "bottle.yaml")
	write(t, filepath.Join(dir, "keys", "plain"), planted, 0o600)
	write(t, filepath.Join(dir, "keys", "nl"), planted+"-nl\n", 0o600)
	write(t, filepath.Join(dir, "keys", "crlf"), planted+"-crlf\r\n", 0o600)
	if err := os.Symlink("plain", filepath.Join(dir, "keys", "link")); err != nil {
		t.Fatal(err)
	}
	ca1, ca2 := newCert(t, "Corp Root", true), newCert(t, "Test Root", true)
	write(t, filepath.Join(dir, "certs", "one.pem"), "# the corporate root\n"+string(ca1), 0o644)
	write(t, filepath.Join(dir, "certs", "two.pem"), string(ca2)+"\n"+string(ca1), 0o644)
	b := credBottle("a", specFile, []spec.Credential{
		{Host: "API.Example.com.", Header: "x-api-key", ValueFrom: spec.ValueFrom{Env: "API_KEY"}, AgentEnv: "API_KEY"},
		{Host: "git.example.com", Header: "Authorization", Prefix: "Bearer ", ValueFrom: spec.ValueFrom{File: "keys/nl"}},
		{Host: "git.example.com", Header: "x-crlf", ValueFrom: spec.ValueFrom{File: "./keys/crlf"}},
		{Host: "git.example.com", Header: "x-link", ValueFrom: spec.ValueFrom{File: "keys/link"}},
	}, "certs/one.pem", "certs/two.pem")
	b.Credentials = []bottle.Credential{{Host: "stale"}} // dropped
	bottles := []bottle.Bottle{b, credBottle("none", specFile, nil), newBottle("stdin-env", spec.StdinName, nil)}
	bottles[1].Trust, bottles[1].TrustDigest = []byte("stale"), "stale"
	bottles[2].Spec.Bundle.Egress.Credentials = []spec.Credential{cred(spec.ValueFrom{Env: "API_KEY"})}
	if err := ResolveCredentials(bottles, testKey, env(map[string]string{"API_KEY": planted + "-env"})); err != nil {
		t.Fatal(err)
	}
	want := []bottle.Credential{
		{Host: "api.example.com", Header: "x-api-key", Value: planted + "-env", AgentEnv: "API_KEY"},
		{Host: "git.example.com", Header: "Authorization", Prefix: "Bearer ", Value: planted + "-nl"},
		{Host: "git.example.com", Header: "x-crlf", Value: planted + "-crlf"},
		{Host: "git.example.com", Header: "x-link", Value: planted},
	}
	for i := range want {
		want[i].Digest = CredentialDigest(testKey, want[i])
	}
	if got := bottles[0].Credentials; fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) || !credValuesEqual(got, want) {
		t.Errorf("credentials:\n%#v\nwant\n%#v", got, want)
	}
	wantTrust := string(ca1) + string(ca2) + string(ca1)
	if got := string(bottles[0].Trust); got != wantTrust {
		t.Errorf("trust:\n%s\nwant\n%s", got, wantTrust)
	}
	if got := bottles[0].TrustDigest; got != TrustDigest(testKey, []byte(wantTrust)) || len(got) != DigestLen {
		t.Errorf("trust digest %q", got)
	}
	if b := bottles[1]; b.Credentials != nil || b.Trust != nil || b.TrustDigest != "" {
		t.Errorf("a bottle without credentials kept %v %q %q", b.Credentials, b.Trust, b.TrustDigest)
	}
	if c := bottles[2].Credentials; len(c) != 1 || c[0].Value != planted+"-env" {
		t.Errorf("stdin bottle: %v", c)
	}
	// No credentials nor trust: no key needed.
	if err := ResolveCredentials([]bottle.Bottle{credBottle("none", specFile, nil)}, nil, nil); err != nil {
		t.Errorf("no credentials, no key: %v", err)
	}
	if err := ResolveCredentials(bottles, []byte("short"), nil); err == nil || err.Error() != "internal: a secret key of 5 bytes; want at least 16" {
		t.Errorf("short key: %v", err)
	}
}

// credValuesEqual compares what %#v of a Credential leaves out: the value.
func credValuesEqual(a, b []bottle.Credential) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Value != b[i].Value {
			return false
		}
	}
	return true
}

func TestCredentialDigest(t *testing.T) {
	t.Parallel()
	base := bottle.Credential{Host: "api.example.com", Header: "x-api-key", Prefix: "Bearer ", Value: planted}
	d := CredentialDigest(testKey, base)
	if len(d) != DigestLen {
		t.Fatalf("digest %q", d)
	}
	tests := []struct {
		name string
		key  []byte
		c    bottle.Credential
	}{
		{"value", testKey, bottle.Credential{Host: base.Host, Header: base.Header, Prefix: base.Prefix, Value: planted + "x"}},
		{"prefix", testKey, bottle.Credential{Host: base.Host, Header: base.Header, Prefix: "Token ", Value: planted}},
		{"header", testKey, bottle.Credential{Host: base.Host, Header: "authorization", Prefix: base.Prefix, Value: planted}},
		{"host", testKey, bottle.Credential{Host: "git.example.com", Header: base.Header, Prefix: base.Prefix, Value: planted}},
		{"prefix and value split elsewhere", testKey, bottle.Credential{Host: base.Host, Header: base.Header, Prefix: "Bearer", Value: " " + planted}},
		{"key", bytes.Repeat([]byte{8}, KeyLen), base},
	}
	for _, tt := range tests {
		if got := CredentialDigest(tt.key, tt.c); got == d {
			t.Errorf("another %s gives the same digest", tt.name)
		}
	}
	// AgentEnv and the old digest are not the credential.
	same := base
	same.AgentEnv, same.Digest = "API_KEY", "old"
	if CredentialDigest(testKey, same) != d {
		t.Error("agentEnv or Digest change the digest")
	}
	if strings.Contains(d, planted) {
		t.Error("the digest holds the value")
	}
}

func TestResolveCredentialsErrors(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	write(t, filepath.Join(outside, "stolen"), planted, 0o600)
	write(t, filepath.Join(outside, "root.pem"), string(newCert(t, "Outside Root", true)), 0o600)
	dir := t.TempDir()
	specFile := filepath.Join(dir, "bottle.yaml")
	write(t, filepath.Join(dir, "crlf-inside"), planted+"\r\nX-Evil: 1\n", 0o600)
	write(t, filepath.Join(dir, "lf-inside"), planted+"\nX-Evil: 1", 0o600)
	write(t, filepath.Join(dir, "nul"), planted+"\x00", 0o600)
	write(t, filepath.Join(dir, "tab"), "a\t"+planted, 0o600)
	write(t, filepath.Join(dir, "latin1"), planted+"\xe9", 0o600)
	write(t, filepath.Join(dir, "empty"), "\n", 0o600)
	write(t, filepath.Join(dir, "leaf.pem"), string(newCert(t, "server.example.com", false)), 0o644)
	write(t, filepath.Join(dir, "mixed.pem"), string(newCert(t, "Root", true))+string(newCert(t, "leaf.example.com", false)), 0o644)
	write(t, filepath.Join(dir, "garbage.pem"), "not a certificate "+planted+"\n", 0o644)
	write(t, filepath.Join(dir, "bad-der.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 0o644)
	write(t, filepath.Join(dir, "key.pem"), string(newCert(t, "Root", true))+
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte(planted)})), 0o644)
	write(t, filepath.Join(dir, "big.pem"), strings.Repeat("x", MaxTrustFile+1), 0o644)
	for link, target := range map[string]string{"abs": filepath.Join(outside, "stolen"), "up": "../" + filepath.Base(outside) + "/stolen",
		"root-link.pem": "../" + filepath.Base(outside) + "/root.pem"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	getenv := env(map[string]string{"CR": planted + "\r", "LF": planted + "\nX-Evil: 1", "NUL": planted + "\x00", "BAD_UTF8": planted + "\xff"})
	const at = "bottle b: spec.bundle.egress.credentials[0] (api.example.com x-api-key): "
	const trustAt = "bottle b: spec.bundle.egress.trust[0]: "
	control := " holds a control character (such as a CR, LF, NUL or tab), which a header's value may not: a line break would end the header; "
	tests := []struct {
		name string
		b    bottle.Bottle
		want string
	}{
		{"env unset", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{Env: "UNSET"})}),
			at + "environment variable UNSET is not set (or is empty); set UNSET in the environment of bottle-apply"},
		{"env CR", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{Env: "CR"})}),
			at + "environment variable CR" + control + "set CR to the secret itself, on one line"},
		{"env LF", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{Env: "LF"})}),
			at + "environment variable LF" + control + "set LF to the secret itself, on one line"},
		{"env NUL", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{Env: "NUL"})}),
			at + "environment variable NUL" + control + "set NUL to the secret itself, on one line"},
		{"env not UTF-8", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{Env: "BAD_UTF8"})}),
			at + "environment variable BAD_UTF8 is not valid UTF-8, which a header's value cannot carry unchanged; set BAD_UTF8 to the secret itself"},
		{"file CRLF inside", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{File: "crlf-inside"})}),
			at + "file " + dir + "/crlf-inside" + control + "write the secret into it, on one line"},
		{"file LF inside", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{File: "lf-inside"})}),
			at + "file " + dir + "/lf-inside" + control + "write the secret into it, on one line"},
		{"file NUL", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{File: "nul"})}),
			at + "file " + dir + "/nul" + control + "write the secret into it, on one line"},
		{"file tab", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{File: "tab"})}),
			at + "file " + dir + "/tab" + control + "write the secret into it, on one line"},
		{"file not UTF-8", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{File: "latin1"})}),
			at + "file " + dir + "/latin1 is not valid UTF-8, which a header's value cannot carry unchanged; write the secret into it"},
		{"file empty", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{File: "empty"})}),
			at + "file " + dir + "/empty: is empty; write the secret into it"},
		{"file missing", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{File: "nope"})}),
			at + "file " + dir + "/nope: does not exist; create it with the secret in it (the path is relative to the spec file's directory)"},
		{"file outside the directory", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{File: "../" + filepath.Base(outside) + "/stolen"})}),
			at + "valueFrom.file: \"../" + filepath.Base(outside) + "/stolen\" holds \"..\"; a secret file must be inside the spec file's directory"},
		{"absolute file", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{File: filepath.Join(outside, "stolen")})}),
			at + "valueFrom.file: \"" + outside + "/stolen\" is an absolute path; write it relative to the spec file's directory"},
		{"absolute symlink out", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{File: "abs"})}),
			at + "file " + dir + "/abs: leads out of the spec file's directory (through a symlink?); secrets are read only from inside it: put the file itself there"},
		{"relative symlink out", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{File: "up"})}),
			at + "file " + dir + "/up: leads out of the spec file's directory (through a symlink?); secrets are read only from inside it: put the file itself there"},
		{"file of a spec from stdin", credBottle("b", spec.StdinName, []spec.Credential{cred(spec.ValueFrom{File: "token"})}),
			at + "valueFrom.file \"token\": a spec read from standard input has no directory to read it from; use valueFrom.env, or pass the spec with -f FILE"},
		{"no source", credBottle("b", specFile, []spec.Credential{cred(spec.ValueFrom{})}),
			at + "valueFrom needs exactly one of env and file"},
		{"trust of a server", credBottle("b", specFile, nil, "leaf.pem"),
			trustAt + "file " + dir + "/leaf.pem: block 1 (subject \"CN=server.example.com\") is not a CA certificate; list the CA that issued the server's certificate, not the server's own"},
		{"trust with a server after a CA", credBottle("b", specFile, nil, "mixed.pem"),
			trustAt + "file " + dir + "/mixed.pem: block 2 (subject \"CN=leaf.example.com\") is not a CA certificate; list the CA that issued the server's certificate, not the server's own"},
		{"trust of garbage", credBottle("b", specFile, nil, "garbage.pem"),
			trustAt + "file " + dir + "/garbage.pem: holds no PEM block; write the CA certificate into it as PEM (-----BEGIN CERTIFICATE-----)"},
		{"trust of a bad certificate", credBottle("b", specFile, nil, "bad-der.pem"),
			trustAt + "file " + dir + "/bad-der.pem: block 1 is not a certificate x509 can parse (x509: malformed certificate); export the CA certificate again, as PEM"},
		{"trust with a key", credBottle("b", specFile, nil, "key.pem"),
			trustAt + "file " + dir + "/key.pem: block 2 is a \"PRIVATE KEY\", not a CERTIFICATE; a trust file holds CA certificates only (and never a key)"},
		{"trust too large", credBottle("b", specFile, nil, "big.pem"),
			trustAt + "file " + dir + "/big.pem: is larger than the limit of 1048576 bytes (1 MiB); list the CAs the bundle needs, not a whole system bundle"},
		{"trust missing", credBottle("b", specFile, nil, "certs/root.pem"),
			trustAt + "file " + dir + "/certs/root.pem: does not exist; write the PEM of the CA certificate into it (the path is relative to the spec file's directory)"},
		{"trust through a symlink out", credBottle("b", specFile, nil, "root-link.pem"),
			trustAt + "file " + dir + "/root-link.pem: leads out of the spec file's directory (through a symlink?); trust files are read only from inside it: put the file itself there"},
		{"trust outside the directory", credBottle("b", specFile, nil, "../root.pem"),
			trustAt + "\"../root.pem\" holds \"..\"; a trust file must be inside the spec file's directory"},
		{"trust of a spec from stdin", credBottle("b", spec.StdinName, nil, "root.pem"),
			trustAt + "\"root.pem\": a spec read from standard input has no directory to read it from; pass the spec with -f FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bs := []bottle.Bottle{tt.b}
			err := ResolveCredentials(bs, testKey, getenv)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error:\n%v\nwant:\n%s", err, tt.want)
			}
			if strings.Contains(err.Error(), planted) {
				t.Errorf("the error shows the value: %v", err)
			}
			if len(bs[0].Credentials) != 0 || bs[0].Trust != nil || bs[0].TrustDigest != "" {
				t.Errorf("a bottle with an error looks resolved: %v, trust %q", bs[0].Credentials, bs[0].Trust)
			}
		})
	}
}

// TestResolveCredentialsAllErrors reports every problem of every bottle.
func TestResolveCredentialsAllErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "ok"), planted, 0o600)
	file := filepath.Join(dir, "s.yaml")
	bottles := []bottle.Bottle{
		credBottle("one", file, []spec.Credential{cred(spec.ValueFrom{Env: "UNSET_A"}), cred(spec.ValueFrom{File: "ok"}),
			{Host: "git.example.com", Header: "Authorization", ValueFrom: spec.ValueFrom{Env: "UNSET_B"}}}),
		credBottle("two", file, nil, "missing.pem"),
	}
	err := ResolveCredentials(bottles, testKey, env(nil))
	want := "bottle one: spec.bundle.egress.credentials[0] (api.example.com x-api-key): environment variable UNSET_A is not set (or is empty); set UNSET_A in the environment of bottle-apply\n" +
		"bottle one: spec.bundle.egress.credentials[2] (git.example.com Authorization): environment variable UNSET_B is not set (or is empty); set UNSET_B in the environment of bottle-apply\n" +
		"bottle two: spec.bundle.egress.trust[0]: file " + dir + "/missing.pem: does not exist; write the PEM of the CA certificate into it (the path is relative to the spec file's directory)"
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
	if c := bottles[0].Credentials; len(c) != 1 || c[0].Value != planted || bottles[0].CredentialsResolved() {
		t.Errorf("partly resolved: %v", c)
	}
}

// TestResolvedCredentialNeverPrinted resolves a credential and prints it,
// and the bottle that holds it, every way a log line or an error might.
func TestResolvedCredentialNeverPrinted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "token"), planted+"\n", 0o600)
	bs := []bottle.Bottle{credBottle("p", filepath.Join(dir, "b.yaml"), []spec.Credential{
		{Host: "api.example.com", Header: "Authorization", Prefix: "Bearer ", ValueFrom: spec.ValueFrom{File: "token"}, AgentEnv: "TOKEN"},
	})}
	if err := ResolveCredentials(bs, testKey, nil); err != nil {
		t.Fatal(err)
	}
	b := bs[0]
	c := b.Credentials[0]
	if c.Value != planted {
		t.Fatalf("value not read: %d bytes", len(c.Value))
	}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3v"} {
		for _, v := range []any{c, &c, b, &b, b.Credentials, map[string]bottle.Credential{"k": c}} {
			out = append(out, fmt.Sprintf(verb, v))
		}
	}
	for _, v := range []any{c, b, b.Credentials} {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(j))
	}
	for _, o := range out {
		if strings.Contains(o, planted) || strings.Contains(strings.ToLower(o), fmt.Sprintf("%x", planted)) {
			t.Errorf("the value shows: %s", o)
		}
	}
}
