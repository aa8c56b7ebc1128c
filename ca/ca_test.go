package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
)

var t0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func mustNew(t *testing.T, hosts ...string) *bottle.CA {
	t.Helper()
	c, err := New("web", hosts, t0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func parseCert(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNew(t *testing.T) {
	t.Parallel()
	c := mustNew(t, "API.example.com", "github.com")
	cert := parseCert(t, c.Cert)
	checks := []struct {
		name string
		ok   bool
	}{
		{"CN", cert.Subject.CommonName == "bottle-apply CA for bottle web"},
		{"NotBefore now-1h", cert.NotBefore.Equal(t0.Add(-time.Hour))},
		{"NotAfter now+10y", cert.NotAfter.Equal(t0.Add(caLifetime))},
		{"IsCA", cert.IsCA && cert.BasicConstraintsValid},
		{"MaxPathLen 0", cert.MaxPathLen == 0 && cert.MaxPathLenZero},
		{"KeyUsage CertSign", cert.KeyUsage&x509.KeyUsageCertSign != 0},
		{"KeyUsage CRLSign", cert.KeyUsage&x509.KeyUsageCRLSign != 0},
		{"permitted exactly the hosts, lower-case", slices.Equal(cert.PermittedDNSDomains, []string{"api.example.com", "github.com"})},
		{"constraints critical", cert.PermittedDNSDomainsCritical},
		{"all IPs excluded", len(cert.ExcludedIPRanges) == 2 && cert.ExcludedIPRanges[0].String() == "0.0.0.0/0" && cert.ExcludedIPRanges[1].String() == "::/0"},
		{"serial is large and positive", cert.SerialNumber.Sign() > 0 && cert.SerialNumber.BitLen() > 64},
		{"ECDSA P-256", func() bool { k, ok := cert.PublicKey.(*ecdsa.PublicKey); return ok && k.Curve == elliptic.P256() }()},
		{"fingerprint is of the DER", c.Fingerprint == fingerprint(cert.Raw) && len(c.Fingerprint) == 64},
		{"key is PKCS #8", strings.HasPrefix(string(c.Key), "-----BEGIN PRIVATE KEY-----")},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("%s: does not hold", ch.name)
		}
	}
	if _, _, err := parsePair(c.Cert, c.Key); err != nil {
		t.Errorf("cert and key do not match: %v", err)
	}
	if other := mustNew(t, "github.com"); other.Fingerprint == c.Fingerprint {
		t.Error("two CAs share a fingerprint")
	}
	for _, bad := range [][]string{nil, {"10.0.0.1"}, {"*.example.com"}, {"example.com:443"}, {""}} {
		if _, err := New("web", bad, t0); err == nil {
			t.Errorf("New(%q) succeeded", bad)
		}
	}
}

// signLeaf signs a leaf with the CA's key directly, as whoever stole the
// key would, bypassing Issuer's own refusal.
func signLeaf(t *testing.T, c *bottle.CA, dns []string, ips []net.IP) *x509.Certificate {
	t.Helper()
	caCert, caKey, err := parsePair(c.Cert, c.Key)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "x"},
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     t0.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TestNameConstraintsStopAStolenKey is the attack the name constraints
// exist for: a leaf signed with the CA's key for any other name or for an
// address does not verify against a pool holding the CA.
func TestNameConstraintsStopAStolenKey(t *testing.T) {
	t.Parallel()
	c := mustNew(t, "api.example.com")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.Cert)
	tests := []struct {
		name   string
		dns    []string
		ips    []net.IP
		verify string // DNSName or IP to verify for
		ok     bool
	}{
		{"the permitted host", []string{"api.example.com"}, nil, "api.example.com", true},
		{"another name", []string{"evil.example"}, nil, "evil.example", false},
		{"a sibling name", []string{"www.example.com"}, nil, "www.example.com", false},
		{"the parent domain", []string{"example.com"}, nil, "example.com", false},
		{"the permitted host beside another", []string{"api.example.com", "evil.example"}, nil, "api.example.com", false},
		{"an IPv4 address", nil, []net.IP{net.ParseIP("93.184.216.34")}, "93.184.216.34", false},
		{"an IPv6 address", nil, []net.IP{net.ParseIP("2001:db8::1")}, "2001:db8::1", false},
		{"loopback beside the permitted host", []string{"api.example.com"}, []net.IP{net.ParseIP("127.0.0.1")}, "api.example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			leaf := signLeaf(t, c, tt.dns, tt.ips)
			_, err := leaf.Verify(x509.VerifyOptions{DNSName: tt.verify, Roots: pool, CurrentTime: t0})
			if tt.ok && err != nil {
				t.Errorf("a permitted leaf does not verify: %v", err)
			}
			if !tt.ok && err == nil {
				t.Error("a leaf outside the name constraints verifies")
			}
		})
	}
}

func TestIssuer(t *testing.T) {
	t.Parallel()
	c := mustNew(t, "api.example.com", "github.com")
	iss, err := NewIssuer(c.Cert, c.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.Cert)
	caCert := parseCert(t, c.Cert)

	tests := []struct {
		name, host string
		now        time.Time
		wantErr    bool
		notAfter   time.Time
	}{
		{"permitted host", "api.example.com", t0, false, t0.Add(7 * 24 * time.Hour)},
		{"upper-case host", "GitHub.com", t0, false, t0.Add(7 * 24 * time.Hour)},
		{"capped by the CA's end", "github.com", caCert.NotAfter.Add(-48 * time.Hour), false, caCert.NotAfter},
		{"another host", "evil.example", t0, true, time.Time{}},
		{"a subdomain of a credentialed host", "x.github.com", t0, false, t0.Add(7 * 24 * time.Hour)},
		{"an address", "127.0.0.1", t0, true, time.Time{}},
		{"empty", "", t0, true, time.Time{}},
		{"after the CA's end", "github.com", caCert.NotAfter.Add(time.Hour), true, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tc, err := iss.Certificate(tt.host, tt.now)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("issued a certificate for %q", tt.host)
				}
				if strings.Contains(err.Error(), "PRIVATE KEY") {
					t.Errorf("error carries the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.Certificate) != 1 {
				t.Errorf("chain has %d certificates, want the leaf alone", len(tc.Certificate))
			}
			leaf, err := x509.ParseCertificate(tc.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			host := strings.ToLower(tt.host)
			checks := []struct {
				name string
				ok   bool
			}{
				{"CN", leaf.Subject.CommonName == host},
				{"SAN", slices.Equal(leaf.DNSNames, []string{host}) && len(leaf.IPAddresses) == 0},
				{"NotBefore", leaf.NotBefore.Equal(tt.now.Add(-time.Hour))},
				{"NotAfter", leaf.NotAfter.Equal(tt.notAfter)},
				{"KeyUsage", leaf.KeyUsage == x509.KeyUsageDigitalSignature},
				{"ExtKeyUsage", slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})},
				{"not a CA", !leaf.IsCA},
			}
			for _, ch := range checks {
				if !ch.ok {
					t.Errorf("%s: does not hold", ch.name)
				}
			}
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, CurrentTime: tt.now}); err != nil {
				t.Errorf("leaf does not verify against the CA: %v", err)
			}
		})
	}
}

func TestIssuerCache(t *testing.T) {
	t.Parallel()
	c := mustNew(t, "api.example.com")
	iss, err := NewIssuer(c.Cert, c.Key)
	if err != nil {
		t.Fatal(err)
	}
	first, err := iss.Certificate("api.example.com", t0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			got, err := iss.Certificate("API.example.com", t0.Add(time.Hour))
			if err != nil || got != first {
				t.Errorf("a concurrent call within the lifetime did not get the cached leaf: %v", err)
			}
		})
	}
	wg.Wait()
	later, err := iss.Certificate("api.example.com", t0.Add(6*24*time.Hour+time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if later == first {
		t.Error("a leaf with less than a day left was not remade")
	}
}

func TestNewIssuerRefuses(t *testing.T) {
	t.Parallel()
	a, b := mustNew(t, "a.example"), mustNew(t, "b.example")
	tests := []struct {
		name      string
		cert, key []byte
	}{
		{"mismatched key", a.Cert, b.Key},
		{"garbage cert", []byte("not pem"), a.Key},
		{"garbage key", a.Cert, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewIssuer(tt.cert, tt.key)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), string(b.Key[30:60])) || strings.Contains(err.Error(), string(a.Key[30:60])) || strings.Contains(err.Error(), "AAAA") {
				t.Errorf("error carries key material: %v", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	hosts := []string{"api.example.com", "github.com"}
	type step struct {
		prepare  func(t *testing.T, dir string)
		hosts    []string
		now      time.Time
		save     bool
		wantMade bool
		// same is whether the fingerprint equals the first call's.
		same bool
	}
	corrupt := func(name string) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("-----BEGIN CERTIFICATE-----\nxx\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name string
		then step
	}{
		{"second call keeps it", step{hosts: hosts, now: t0.Add(time.Hour), save: true, same: true}},
		{"hosts in another order and case keep it", step{hosts: []string{"GitHub.com", "api.example.com"}, now: t0, save: true, same: true}},
		{"changed hosts make a new one", step{hosts: []string{"api.example.com"}, now: t0, save: true, wantMade: true}},
		{"missing key makes a new one", step{prepare: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, KeyFile)) }, hosts: hosts, now: t0, save: true, wantMade: true}},
		{"missing cert makes a new one", step{prepare: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, CertFile)) }, hosts: hosts, now: t0, save: true, wantMade: true}},
		{"corrupted cert makes a new one", step{prepare: corrupt(CertFile), hosts: hosts, now: t0, save: true, wantMade: true}},
		{"corrupted key makes a new one", step{prepare: corrupt(KeyFile), hosts: hosts, now: t0, save: true, wantMade: true}},
		{"another CA's key makes a new one", step{prepare: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, KeyFile), mustNew(t, hosts...).Key, 0o600); err != nil {
				t.Fatal(err)
			}
		}, hosts: hosts, now: t0, save: true, wantMade: true}},
		{"expiring makes a new one", step{hosts: hosts, now: t0.Add(caLifetime - 20*24*time.Hour), save: true, wantMade: true}},
		{"31 days left keeps it", step{hosts: hosts, now: t0.Add(caLifetime - 31*24*time.Hour), save: true, same: true}},
		{"dry run writes nothing", step{hosts: []string{"other.example"}, now: t0, save: false, wantMade: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "state", "engine", "web")
			first, made, err := Load(dir, "web", hosts, t0, true)
			if err != nil || !made {
				t.Fatalf("first Load: made=%v, %v", made, err)
			}
			checkModes(t, dir)
			keyBefore, _ := os.ReadFile(filepath.Join(dir, KeyFile))
			if string(keyBefore) != string(first.Key) {
				t.Fatal("the key file does not hold the returned key")
			}
			if tt.then.prepare != nil {
				tt.then.prepare(t, dir)
			}
			before := snapshot(t, dir)
			got, made, err := Load(dir, "web", tt.then.hosts, tt.then.now, tt.then.save)
			if err != nil {
				t.Fatal(err)
			}
			if made != tt.then.wantMade {
				t.Errorf("made = %v, want %v", made, tt.then.wantMade)
			}
			if (got.Fingerprint == first.Fingerprint) != tt.then.same {
				t.Errorf("same fingerprint = %v, want %v", got.Fingerprint == first.Fingerprint, tt.then.same)
			}
			if !tt.then.save {
				if after := snapshot(t, dir); after != before {
					t.Errorf("a dry run changed the directory:\n%s\n---\n%s", before, after)
				}
				return
			}
			checkModes(t, dir)
			reloaded, made, err := Load(dir, "web", tt.then.hosts, tt.then.now, false)
			if err != nil || made || reloaded.Fingerprint != got.Fingerprint {
				t.Errorf("what Load returned was not kept: made=%v, %v", made, err)
			}
		})
	}
}

func TestLoadDryRunMakesNoDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "absent")
	if _, made, err := Load(dir, "web", []string{"a.example"}, t0, false); err != nil || !made {
		t.Fatalf("made=%v, %v", made, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a dry run made %s: %v", dir, err)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	hosts := []string{"a.example"}
	tests := []struct {
		name string
		// asRoot is false where root would read or write the file anyway.
		asRoot  bool
		prepare func(t *testing.T, dir string) string // the path the error names
	}{
		{"key path is a directory", true, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, KeyFile)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"directory is a file", true, func(t *testing.T, dir string) string {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{"unreadable key", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, KeyFile)
			if err := os.Chmod(p, 0o000); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"read-only directory", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, KeyFile)
			os.Remove(p)
			if err := os.Chmod(dir, 0o500); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(dir, 0o700) })
			return p
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if !tt.asRoot && os.Geteuid() == 0 {
				t.Skip("root reads and writes files whatever their mode")
			}
			dir := filepath.Join(t.TempDir(), "ca")
			c, _, err := Load(dir, "web", hosts, t0, true)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.prepare(t, dir)
			_, _, err = Load(dir, "web", hosts, t0, true)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error does not name %s: %v", want, err)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), string(c.Key[30:60])) {
				t.Errorf("error carries the key: %v", err)
			}
		})
	}
}

func checkModes(t *testing.T, dir string) {
	t.Helper()
	for name, want := range map[string]os.FileMode{".": 0o700, CertFile: 0o600, KeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", name, got, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want the two files", len(entries))
	}
}

// snapshot is the directory's names, modes and contents.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		fi, _ := e.Info()
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		b.WriteString(e.Name() + " " + fi.Mode().String() + " " + string(data) + "\n")
	}
	return b.String()
}

// TestFallbackRootsPEM: the roots an agent without a CA bundle gets are
// a bundle a client can load, of many CAs.
func TestFallbackRootsPEM(t *testing.T) {
	t.Parallel()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(FallbackRootsPEM()) {
		t.Fatal("FallbackRootsPEM holds no certificate a pool takes")
	}
	if n := strings.Count(string(FallbackRootsPEM()), "BEGIN CERTIFICATE"); n < 100 {
		t.Errorf("FallbackRootsPEM holds %d roots; Mozilla's store has over 100", n)
	}
}
