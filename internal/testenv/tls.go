package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// PEM is a certificate and its key, PEM-encoded.
type PEM struct {
	Cert, Key []byte
}

// Certs are a throwaway TLS set-up for an engine on 127.0.0.1: a CA, the
// server's certificate (for 127.0.0.1 and localhost) and a client's, both
// signed by the CA, as `dockerd --tlsverify` and `docker --tlsverify`
// use them.
type Certs struct {
	CA     PEM
	Server PEM
	Client PEM
}

// NewCerts makes a CA and the server and client certificates it signs.
func NewCerts(t testing.TB) *Certs {
	t.Helper()
	ca, caKey := newCert(t, "bottle-apply test CA", nil, nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid = true, true
		c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	})
	server, _ := newCert(t, "127.0.0.1", ca.parsed, caKey, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.DNSNames = []string{"localhost"}
	})
	client, _ := newCert(t, "bottle-apply test client", ca.parsed, caKey, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	return &Certs{CA: ca.pem, Server: server.pem, Client: client.pem}
}

type cert struct {
	pem    PEM
	parsed *x509.Certificate
}

// newCert makes a certificate for cn, signed by parent (self-signed when
// nil) and shaped by edit.
func newCert(t testing.TB, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, edit func(*x509.Certificate)) (cert, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	edit(tmpl)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return cert{
		pem: PEM{
			Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			Key:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		},
		parsed: parsed,
	}, key
}

// ClientDir writes the client's side (ca.pem, cert.pem, key.pem) into a
// new directory, as DOCKER_CERT_PATH wants it, and returns it.
func (c *Certs) ClientDir(t testing.TB) string {
	t.Helper()
	return PEMDir(t, c.CA.Cert, c.Client)
}

// PEMDir writes a CA and a certificate with its key into a new directory
// as ca.pem, cert.pem and key.pem, and returns it.
func PEMDir(t testing.TB, ca []byte, leaf PEM) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range map[string][]byte{"ca.pem": ca, "cert.pem": leaf.Cert, "key.pem": leaf.Key} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TLSFront is a TLS server on 127.0.0.1 in front of the engine's unix
// socket, as `dockerd --tlsverify -H tcp://...` would be: it asks for a
// client certificate signed by its CA, refuses the handshake without one,
// and passes each connection through to the engine whole (so that exec
// and attach, which take the connection over, work too).
type TLSFront struct {
	Addr    string // host:port
	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	refused int // handshakes refused
}

// StartTLSFront starts a TLSFront for the engine's unix socket at path,
// with the certificates of c, and stops it when the test ends.
func StartTLSFront(t testing.TB, c *Certs, path string) *TLSFront {
	t.Helper()
	cert, err := tls.X509KeyPair(c.Server.Cert, c.Server.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CA.Cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &TLSFront{Addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.serve(path)
	t.Cleanup(f.close)
	return f
}

// Refused is how many handshakes the front refused.
func (f *TLSFront) Refused() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refused
}

func (f *TLSFront) serve(path string) {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.pass(c.(*tls.Conn), path)
		}()
	}
}

// pass hands one client connection through to the engine.
func (f *TLSFront) pass(c *tls.Conn, path string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		f.mu.Lock()
		f.refused++
		f.mu.Unlock()
		return
	}
	_ = c.SetDeadline(time.Time{})
	up, err := net.Dial("unix", path)
	if err != nil {
		return
	}
	defer up.Close()
	if !f.track(c, up) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); _ = up.(*net.UnixConn).CloseWrite(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); _ = c.CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

// track records the connection pair so that close can end them; false
// when the front is closing.
func (f *TLSFront) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		return false
	}
	for _, c := range cs {
		f.conns[c] = struct{}{}
	}
	return true
}

func (f *TLSFront) close() {
	_ = f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	f.wg.Wait()
}

// UnixSocket is the path of the engine's unix socket that DOCKER_HOST
// names, or the default one.
func UnixSocket() (string, error) {
	h := os.Getenv("DOCKER_HOST")
	if h == "" {
		return "/var/run/docker.sock", nil
	}
	if p, ok := strings.CutPrefix(h, "unix://"); ok {
		return p, nil
	}
	return "", errors.New("DOCKER_HOST=" + h + " is not a unix socket: the tests put their own fronts before a local engine's socket")
}

// ServerCerts makes a CA named caName and a server certificate it signs
// for the DNS names: a stand-in's own TLS, which a test gives a client
// (or a bundle, through spec.bundle.egress.trust) to trust.
func ServerCerts(t testing.TB, caName string, names ...string) (ca, server PEM) {
	t.Helper()
	c, caKey := newCert(t, caName, nil, nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid = true, true
		c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	})
	s, _ := newCert(t, names[0], c.parsed, caKey, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		c.DNSNames = names
	})
	return c.pem, s.pem
}
