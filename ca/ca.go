// Package ca is a bottle's own certificate authority, which lets the
// bundle add credentials to the agent's requests (spec.bundle.egress.
// credentials) without the agent holding them: bottle-apply makes it and
// keeps it in its state directory (Load), the agent trusts its
// certificate, and the bundle issues with its key a certificate for each
// credentialed host it intercepts (Issuer). Its X.509 name constraints
// permit the credentialed hosts alone, so that its key could never
// intercept anything else.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	roots "golang.org/x/crypto/x509roots/fallback/bundle"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/atomicfile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// Files under Load's directory.
const (
	CertFile = "ca.pem"
	KeyFile  = "ca-key.pem"
)

const (
	// caLifetime is ten years: the CA is the agent's to trust, and a new
	// one replaces the agent (its CA file changes), so it should outlive
	// any bottle. A long life costs little here, because the name
	// constraints keep the key from vouching for anything but the
	// credentialed hosts, and the key never leaves bottle-apply's state
	// directory and the bundle.
	caLifetime = 10 * 365 * 24 * time.Hour
	// renewBefore is how close to its end Load replaces a CA, so that
	// it never expires under a running bottle.
	renewBefore = 30 * 24 * time.Hour
	// backdate covers clocks that are a little behind ours (the agent's
	// VM, a container started just after a host clock step).
	backdate = time.Hour
	// leafLifetime is short: leaves are made in the bundle on demand and
	// never stored, so nothing is lost by remaking them.
	leafLifetime = 7 * 24 * time.Hour
	// leafRenewBefore is how close to its end a cached leaf is remade.
	leafRenewBefore = 24 * time.Hour
)

// Every IPv4 and IPv6 address, which the CA may never vouch for.
var allIPs = []*net.IPNet{
	{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
	{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
}

// normHosts returns hosts as spec.NormalizeHost has them (lower-case,
// without a trailing dot), sorted and without repeats.
func normHosts(hosts []string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, spec.NormalizeHost(strings.TrimSpace(h)))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// dnsName reports whether a normalized host is a name the CA may vouch
// for: not empty, not an address, no wildcard, port or path.
func dnsName(h string) bool {
	return h != "" && net.ParseIP(h) == nil && !strings.ContainsAny(h, "*/: ")
}

// New makes a CA for bottle name whose credentials go to hosts.
func New(name string, hosts []string, now time.Time) (*bottle.CA, error) {
	permitted := normHosts(hosts)
	if len(permitted) == 0 {
		return nil, fmt.Errorf("make CA for bottle %s: no credentialed hosts to permit", name)
	}
	for _, h := range permitted {
		if !dnsName(h) {
			return nil, fmt.Errorf("make CA for bottle %s: host %q is not a DNS name: give credentials a host name without wildcards or port", name, h)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("make CA key for bottle %s: %w", name, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("make CA for bottle %s: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "bottle-apply CA for bottle " + name},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		// DigitalSignature is there for clients that check it on a
		// CA (it costs nothing: the key signs certificates alone).
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		// The name constraints are critical so that a client that does
		// not understand them refuses the CA rather than trusting it
		// for every name. By RFC 5280 4.2.1.10 a DNS constraint also
		// permits the names below it (x.api.example.com for
		// api.example.com): no other name, no address.
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         permitted,
		ExcludedIPRanges:            allIPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate for bottle %s: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode CA key for bottle %s: %w", name, err)
	}
	return &bottle.CA{
		Cert:        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:         pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Fingerprint: fingerprint(der),
	}, nil
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("make serial number: %w", err)
	}
	return serial, nil
}

// Load returns the CA kept under dir for bottle name, if it permits
// exactly hosts and is not about to expire; otherwise it makes a new one
// and, when save is set, keeps it (mode 0600) in place of the old.
// made reports a new CA.
func Load(dir, name string, hosts []string, now time.Time, save bool) (c *bottle.CA, made bool, err error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	certPEM, err := readIfAny(certPath)
	if err != nil {
		return nil, false, err
	}
	keyPEM, err := readIfAny(keyPath)
	if err != nil {
		return nil, false, err
	}
	if certPEM != nil && keyPEM != nil {
		if kept, ok := usable(certPEM, keyPEM, hosts, now); ok {
			return kept, false, nil
		}
	}
	c, err = New(name, hosts, now)
	if err != nil {
		return nil, false, err
	}
	if !save {
		return c, true, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create CA directory %s: %w; check that its parent is writable", dir, err)
	}
	// The key goes first: a cert without its key is remade on the next
	// Load, and atomicfile writes through a 0600 temporary file, so the
	// key is never readable by others, not even for a moment.
	if err := atomicfile.Write(keyPath, c.Key); err != nil {
		return nil, false, fmt.Errorf("write CA key %s: %w; check that the directory is writable", keyPath, scrub(err))
	}
	if err := atomicfile.Write(certPath, c.Cert); err != nil {
		return nil, false, fmt.Errorf("write CA certificate %s: %w; check that the directory is writable", certPath, scrub(err))
	}
	return c, true, nil
}

// scrub keeps only the operation and the OS error of a file error, so
// that no error text could ever carry file content (it never does today,
// but the key is at stake).
func scrub(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// readIfAny reads path; a missing file is nil and no error, so that Load
// makes a new CA, and any other failure is an error naming the path.
func readIfAny(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read %s: %w; fix its permissions or remove it to have a new CA made", path, scrub(err))
	}
	return b, nil
}

// usable reports whether the kept CA parses, matches its key, is a CA
// permitting exactly hosts, and has more than renewBefore left.
func usable(certPEM, keyPEM []byte, hosts []string, now time.Time) (*bottle.CA, bool) {
	cert, _, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return nil, false
	}
	if !cert.IsCA || !slices.Equal(normHosts(cert.PermittedDNSDomains), normHosts(hosts)) {
		return nil, false
	}
	if !cert.NotAfter.After(now.Add(renewBefore)) {
		return nil, false
	}
	return &bottle.CA{Cert: certPEM, Key: keyPEM, Fingerprint: fingerprint(cert.Raw)}, true
}

// parsePair parses a PEM certificate and its PKCS #8 key and checks that
// they belong together. Its errors never quote either.
func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("the certificate is not a PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse the certificate: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, nil, errors.New("the key is not a PEM PRIVATE KEY (PKCS #8) block")
	}
	// The parser's error is left out: it is about the key's bytes.
	parsed, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, errors.New("the key does not parse as PKCS #8")
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("the key cannot sign")
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, errors.New("the key does not belong to the certificate")
	}
	return cert, key, nil
}

// Issuer issues the certificates of credentialed hosts, signed by a CA.
// It is safe for concurrent use.
type Issuer struct {
	ca    *x509.Certificate
	caKey crypto.Signer
	// roots holds the CA alone: every leaf is verified against it before
	// it is handed out, which applies the CA's name constraints exactly
	// as the agent's clients will.
	roots *x509.CertPool
	// leafKey is shared by all leaves: they all go to the one bundle.
	leafKey *ecdsa.PrivateKey

	mu    sync.Mutex
	cache map[string]*tls.Certificate
}

// NewIssuer reads a CA's PEM certificate and key.
func NewIssuer(certPEM, keyPEM []byte) (*Issuer, error) {
	cert, key, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("read the bottle's CA: %s; apply the bottle again to have its CA rewritten", err)
	}
	if !cert.IsCA {
		return nil, errors.New("read the bottle's CA: the certificate is not a CA; apply the bottle again to have its CA rewritten")
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("make the leaf key: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &Issuer{ca: cert, caKey: key, roots: roots, leafKey: leafKey, cache: map[string]*tls.Certificate{}}, nil
}

// Certificate returns a certificate for host, made or cached.
func (i *Issuer) Certificate(host string, now time.Time) (*tls.Certificate, error) {
	host = spec.NormalizeHost(host)
	if !dnsName(host) {
		return nil, fmt.Errorf("issue a certificate for %q: not a host name the bottle's CA may vouch for", host)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if c, ok := i.cache[host]; ok && c.Leaf != nil && c.Leaf.NotAfter.Sub(now) > leafRenewBefore && !now.Before(c.Leaf.NotBefore) {
		return c, nil
	}
	notAfter := now.Add(leafLifetime)
	if i.ca.NotAfter.Before(notAfter) {
		notAfter = i.ca.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("issue a certificate for %s: the bottle's CA expired on %s; apply the bottle again to have a new CA made", host, i.ca.NotAfter.Format(time.RFC3339))
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("issue a certificate for %s: %w", host, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.ca, i.leafKey.Public(), i.caKey)
	if err != nil {
		return nil, fmt.Errorf("issue a certificate for %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issue a certificate for %s: parse it back: %w", host, err)
	}
	// The CA's name constraints decide, as they will in the agent: a
	// host outside them would only make a certificate no client accepts.
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: i.roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, fmt.Errorf("issue a certificate for %s: the bottle's CA does not permit it (%v); only credentialed hosts are intercepted", host, err)
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: i.leafKey, Leaf: leaf}
	i.cache[host] = c
	return c, nil
}

// FallbackRootsPEM are the roots bottle-apply carries (Mozilla's, from
// golang.org/x/crypto/x509roots/fallback), PEM: what an agent whose image
// has no CA bundle (a distroless or scratch image) gets beside the
// bottle's CA. A root the module constrains (a distrust date) is left
// out: a PEM bundle cannot say the constraint.
func FallbackRootsPEM() []byte {
	rootsOnce.Do(func() {
		var b bytes.Buffer
		for r := range roots.Roots() {
			if r.Constraint == nil {
				_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
			}
		}
		rootsPEM = b.Bytes()
	})
	return rootsPEM
}

var (
	rootsOnce sync.Once
	rootsPEM  []byte
)

// FallbackRoots are the roots bottle-apply carries as a pool, each with
// the constraint the module gives it: what the bundle verifies the
// upstreams of intercepted tunnels against, besides the spec's trust. The
// bundle builds this pool rather than import the fallback package, whose
// init calls x509.SetFallbackRoots: that would change how every TLS client
// of the process verifies, and only where the system has no roots (the
// scratch image, not a test machine). An explicit pool is the same
// everywhere. Each call returns a new pool, for the caller to add to.
func FallbackRoots() *x509.CertPool {
	p := x509.NewCertPool()
	for r := range roots.Roots() {
		cert, err := x509.ParseCertificate(r.Certificate)
		if err != nil {
			continue // the module's own tests parse every root
		}
		if r.Constraint == nil {
			p.AddCert(cert)
		} else {
			p.AddCertWithConstraint(cert, r.Constraint)
		}
	}
	return p
}
