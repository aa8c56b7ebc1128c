package bottle

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/spec"
)

// TestCredentialNeverPrinted formats and marshals a resolved credential,
// the bottle's CA and a bottle holding both every way a log line or an
// error might: neither the value nor the CA's key may show.
func TestCredentialNeverPrinted(t *testing.T) {
	t.Parallel()
	const value = "s3cr3t-planted-credential"
	const key = "-----BEGIN PRIVATE KEY-----\nplanted-ca-key\n-----END PRIVATE KEY-----\n"
	c := Credential{Host: "api.example.com", Header: "x-api-key", Prefix: "Bearer ", Value: value, Digest: "0123456789abcdef01234567", AgentEnv: "API_KEY"}
	ca := CA{Cert: []byte("-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"), Key: []byte(key), Fingerprint: "ab12"}
	b := New(spec.Bottle{Metadata: spec.Metadata{Name: "x"}, Spec: spec.Spec{Agent: spec.Agent{Image: "alpine"}}})
	b.Credentials, b.CA = []Credential{c}, &ca
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T", "%10.3v", "%-40s"} {
		for _, v := range []any{c, &c, ca, &ca, b, &b, b.Credentials, map[string]Credential{"k": c}, map[Credential]CA{c: ca}, []*CA{&ca}} {
			out = append(out, fmt.Sprintf(verb, v))
		}
	}
	out = append(out, fmt.Sprint(c, ca, b), fmt.Sprintln(b), c.String(), c.GoString(), ca.String(), ca.GoString())
	for _, v := range []any{c, &c, ca, &ca, b, b.Credentials, map[string]Credential{"k": c}} {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(j))
	}
	for _, m := range []interface{ MarshalText() ([]byte, error) }{c, ca} {
		text, _ := m.MarshalText()
		out = append(out, string(text))
	}
	for _, o := range out {
		for _, secret := range []string{value, "planted-ca-key"} {
			if strings.Contains(o, secret) || strings.Contains(strings.ToLower(o), fmt.Sprintf("%x", secret)) {
				t.Errorf("%s shows: %s", secret, o)
			}
		}
	}
	// What each prints instead, so that a form that prints nothing at all
	// does not pass either.
	for _, tt := range []struct {
		got, want string
	}{
		{fmt.Sprintf("%v", c), "{api.example.com x-api-key REDACTED 0123456789abcdef01234567}"},
		{fmt.Sprintf("%#v", c), `bottle.Credential{Host:"api.example.com", Header:"x-api-key", Prefix:"Bearer ", Value:"REDACTED", Digest:"0123456789abcdef01234567", AgentEnv:"API_KEY"}`},
		{fmt.Sprintf("%v", ca), "{CA ab12 key REDACTED}"},
		{fmt.Sprintf("%#v", ca), `bottle.CA{Fingerprint:"ab12", Key:"REDACTED"}`},
	} {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
	if j, _ := json.Marshal(c); string(j) != `{"host":"api.example.com","header":"x-api-key","prefix":"Bearer ","value":"REDACTED","digest":"0123456789abcdef01234567","agentEnv":"API_KEY"}` {
		t.Errorf("JSON %s", j)
	}
	// The file meant for the bundle holds them: that is its purpose.
	data, err := b.BundleSecretsJSON()
	if err != nil || !strings.Contains(string(data), value) || !strings.Contains(string(data), "planted-ca-key") {
		t.Errorf("BundleSecretsJSON = %s, %v; want the value and the key", data, err)
	}
}

// TestCANamesAgree keeps spec's reserved CA variables and directory, which
// a spec with credentials may not use, the ones bottle-apply sets.
func TestCANamesAgree(t *testing.T) {
	t.Parallel()
	set := slices.Sorted(slices.Values(append(slices.Clone(CAEnvFile), CAEnvBundle...)))
	if reserved := slices.Sorted(slices.Values(spec.CAEnvVars)); !slices.Equal(set, reserved) {
		t.Errorf("bottle-apply sets %v, spec reserves %v", set, reserved)
	}
	for _, f := range []string{AgentCAFile, AgentCABundle} {
		if path.Dir(f) != spec.AgentCADir {
			t.Errorf("%s is not in spec.AgentCADir %s", f, spec.AgentCADir)
		}
	}
}
