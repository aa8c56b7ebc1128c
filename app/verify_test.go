package app

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/probe"
	"github.com/bottle-apply/bottle-apply/spec"
)

// TestInterception wires the interception checks' inputs: the
// credentialed hosts from the spec and the CA the run resolved, or for
// --verify the one apply keeps; without a CA that is surely the bundle's,
// none, and the log says why.
func TestInterception(t *testing.T) {
	t.Parallel()
	const resolvedPEM, keptPEM = "resolved CA PEM", "kept CA PEM"
	credentialed := func(ca *bottle.CA) bottle.Bottle {
		var s spec.Bottle
		s.Metadata.Name = "web"
		s.Spec.Bundle.Egress.Allow = []string{"api.example.com", "github.com"}
		s.Spec.Bundle.Egress.Credentials = []spec.Credential{{Host: "api.example.com"}, {Host: "github.com"}}
		b := bottle.New(s)
		b.CA = ca
		return b
	}
	kept := func(c *bottle.CA, made bool, err error) func(context.Context, *bottle.Bottle, []string) (*bottle.CA, bool, error) {
		return func(_ context.Context, b *bottle.Bottle, hosts []string) (*bottle.CA, bool, error) {
			if b.Metadata.Name != "web" || strings.Join(hosts, " ") != "api.example.com github.com" {
				return nil, false, errors.New("asked for another bottle or other hosts")
			}
			return c, made, err
		}
	}
	tests := []struct {
		name    string
		b       bottle.Bottle
		keptCA  func(context.Context, *bottle.Bottle, []string) (*bottle.CA, bool, error)
		wantCA  string // "" is no interception checks
		wantLog string
	}{
		{"no credentials", bottle.New(spec.Bottle{}), kept(nil, false, errors.New("must not be asked")), "", ""},
		{"an apply's resolved CA", credentialed(&bottle.CA{Cert: []byte(resolvedPEM)}), kept(nil, false, errors.New("must not be asked")), resolvedPEM, ""},
		{"--verify: the CA apply keeps", credentialed(nil), kept(&bottle.CA{Cert: []byte(keptPEM)}, false, nil), keptPEM, ""},
		{"--verify without a way to read it", credentialed(nil), nil, "", "cannot read the bottle's CA"},
		{"--verify: none kept", credentialed(nil), kept(&bottle.CA{Cert: []byte("new")}, true, nil), "", "no CA is kept"},
		{"--verify: unreadable", credentialed(nil), kept(nil, false, errors.New("permission denied")), "", "could not be read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			ctx := zerolog.New(&buf).WithContext(t.Context())
			ps := &Providers{keptCA: tt.keptCA}
			var target probe.Target
			ps.interception(ctx, &tt.b, &target)
			if string(target.CA) != tt.wantCA {
				t.Errorf("CA = %q, want %q", target.CA, tt.wantCA)
			}
			wantHosts := ""
			if tt.wantCA != "" {
				wantHosts = "api.example.com github.com"
			}
			if got := strings.Join(target.Credentialed, " "); got != wantHosts {
				t.Errorf("Credentialed = %q, want %q", got, wantHosts)
			}
			switch log := buf.String(); {
			case tt.wantLog == "" && log != "":
				t.Errorf("logged %s; want nothing", log)
			case tt.wantLog != "" && (!strings.Contains(log, tt.wantLog) || !strings.Contains(log, `"bottle":"web"`) ||
				!strings.Contains(log, `"level":"warn"`)):
				t.Errorf("logged %q; want a warning for bottle web with %q", log, tt.wantLog)
			}
		})
	}
}

// TestInterceptionChecksWithTheCA runs Standard on what interception
// fills in: the checks carry the CA, so that a bottle whose CA is known
// gets them.
func TestInterceptionChecksWithTheCA(t *testing.T) {
	t.Parallel()
	var asked atomic.Int32
	var s spec.Bottle
	s.Metadata.Name = "web"
	s.Spec.Bundle.Daemons = []string{spec.DaemonEgress}
	s.Spec.Bundle.Egress.Allow = []string{"api.example.com"}
	s.Spec.Bundle.Egress.Credentials = []spec.Credential{{Host: "api.example.com"}}
	b := bottle.New(s)
	ps := &Providers{keptCA: func(context.Context, *bottle.Bottle, []string) (*bottle.CA, bool, error) {
		asked.Add(1)
		return nil, false, errors.New("not this way")
	}}
	b.CA = &bottle.CA{Cert: []byte(testCAPEM)}
	target := probe.Target{BundleIP: "10.0.0.2", ProxyPort: bottle.ProxyPort, Daemons: b.Spec.Bundle.Daemons, Allow: b.Spec.Bundle.Egress.Allow}
	ps.interception(t.Context(), &b, &target)
	checks, err := probe.Standard(target)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range checks {
		if c.Kind == probe.KindProxyIntercept {
			n++
			if c.CA != testCAPEM || c.Target != "api.example.com:443" || c.Expect != probe.ExpectIntercepted {
				t.Errorf("check = %+v; want api.example.com:443 intercepted, with the bottle's CA", c)
			}
		}
	}
	if n != 1 || asked.Load() != 0 {
		t.Fatalf("%d interception checks, the kept CA asked %d times; want 1, and never asked with a resolved CA", n, asked.Load())
	}
}

// testCAPEM is a CA certificate (probe/testdata/ca.pem).
const testCAPEM = `-----BEGIN CERTIFICATE-----
MIIBkjCCATigAwIBAgIBATAKBggqhkjOPQQDAjAfMR0wGwYDVQQDExRib3R0bGUt
YXBwbHkgdGVzdCBDQTAeFw0yNjAxMDEwMDAwMDBaFw0zNjAxMDEwMDAwMDBaMB8x
HTAbBgNVBAMTFGJvdHRsZS1hcHBseSB0ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZI
zj0DAQcDQgAE6DvLfDcCvJGpVYtCP/+qENOxfRGmixSd5OKXzINAfbiok7L3NRKZ
cJzmbz/Y87/J5aeXX73dFDDwZGqHwyPvmKNlMGMwDgYDVR0PAQH/BAQDAgIEMA8G
A1UdEwEB/wQFMAMBAf8wHQYDVR0OBBYEFEpbFXoWyhr0JD18WAnOLG3RyiZXMCEG
A1UdHgEB/wQXMBWgEzARgg9hcGkuZXhhbXBsZS5jb20wCgYIKoZIzj0EAwIDSAAw
RQIhANpNDai+mOS6/RKD1xOihekXrD2NxJP8aMxAbzNTNEwbAiAbrZzhpYHyBiwO
orz9eADhj4lbtlAJE5K6gLLETr2caQ==
-----END CERTIFICATE-----
`
