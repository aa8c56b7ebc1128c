package bundle

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/spec"
	"golang.org/x/crypto/cryptobyte"
)

// ext is a ClientHello extension for the hand-built ClientHellos.
type ext struct {
	typ  uint16
	data []byte
}

func sniExt(names ...string) ext {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, n := range names {
			b.AddUint8(0)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(n)) })
		}
	})
	return ext{0, b.BytesOrPanic()}
}

// helloMsg is a ClientHello handshake message (header included).
func helloMsg(exts ...ext) []byte {
	var b cryptobyte.Builder
	b.AddUint8(1)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(0x0303)
		b.AddBytes(make([]byte, 32))
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, 32)) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x1301) })
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
		if exts == nil {
			return
		}
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range exts {
				b.AddUint16(e.typ)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.data) })
			}
		})
	})
	return b.BytesOrPanic()
}

// records splits msg into handshake records of at most size bytes.
func records(msg []byte, size int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// pqPadding makes a ClientHello about as long as a post-quantum one.
var pqPadding = ext{0x11ec, make([]byte, 1800)}

func TestReadClientHello(t *testing.T) {
	t.Parallel()
	oversize := helloMsg(sniExt("allowed.test"), ext{0x15, make([]byte, maxClientHello)})
	tests := []struct {
		name string
		in   []byte
		sni  string
		err  string // "" when it parses
	}{
		{"one record", records(helloMsg(sniExt("allowed.test")), 1<<14), "allowed.test", ""},
		{"split across records", records(helloMsg(sniExt("allowed.test"), pqPadding), 700), "allowed.test", ""},
		{"one byte records", records(helloMsg(sniExt("allowed.test")), 1), "allowed.test", ""},
		{"uppercase SNI", records(helloMsg(sniExt("ALLOWED.Test.")), 1<<14), "ALLOWED.Test.", ""},
		{"SNI absent", records(helloMsg(ext{10, []byte{0, 2, 0, 29}}), 1<<14), "", ""},
		{"no extensions", records(helloMsg(), 1<<14), "", ""},
		{"ECH-looking extension ignored", records(helloMsg(ext{0xfe0d, []byte("denied.test garbage")}, sniExt("allowed.test")), 1<<14), "allowed.test", ""},
		{"other name types skipped", records(helloMsg(ext{0, []byte{0, 19, 7, 0, 3, 'x', 'y', 'z', 0, 0, 10, 'a', 'l', 'l', 'o', 'w', 'e', 'd', '.', 't', 'e'}}), 1<<14), "allowed.te", ""},
		{"oversize", records(oversize, 1<<14), "", "more than 16384"},
		{"two server_name extensions", records(helloMsg(sniExt("allowed.test"), sniExt("denied.test")), 1<<14), "", "two server_name"},
		{"two host names", records(helloMsg(sniExt("allowed.test", "denied.test")), 1<<14), "", "two host names"},
		{"empty host name", records(helloMsg(sniExt("")), 1<<14), "", "bad server_name"},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"), "", "record type 71"},
		{"application data", []byte{23, 3, 3, 0, 1, 0}, "", "record type 23"},
		{"not a ClientHello", records([]byte{2, 0, 0, 0}, 1<<14), "", "handshake type 2"},
		{"empty record", []byte{22, 3, 1, 0, 0}, "", "record length 0"},
		{"record too long", []byte{22, 3, 1, 0x40, 1}, "", "record length"},
		{"bad version", []byte{22, 2, 0, 0, 1, 1}, "", "record version"},
		{"truncated record", records(helloMsg(sniExt("allowed.test")), 1<<14)[:20], "", "unexpected EOF"},
		{"truncated message", records(helloMsg(sniExt("allowed.test")), 30)[:35], "", "EOF"},
		{"bytes after the ClientHello", records(append(helloMsg(sniExt("allowed.test")), 20, 0, 0, 0), 1<<14), "", "bytes after"},
		{"bad extension length", records([]byte{1, 0, 0, 40, 3, 3}, 1<<14)[:9+1], "", "EOF"},
		{"nothing", nil, "", "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// A trailing byte the reader must leave unread.
			in := append(append([]byte(nil), tt.in...), 0xEE)
			raw, sni, err := readClientHello(bytes.NewReader(in))
			if !bytes.HasPrefix(in, raw) {
				t.Fatalf("raw is not a prefix of the input")
			}
			if tt.err == "" {
				if err != nil || sni != tt.sni || !bytes.Equal(raw, tt.in) {
					t.Fatalf("= %q, %v (raw %d of %d bytes); want %q", sni, err, len(raw), len(tt.in), tt.sni)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error = %v, want one containing %q", err, tt.err)
			}
		})
	}
}

func TestSNIMismatch(t *testing.T) {
	t.Parallel()
	tests := []struct{ sni, host, want string }{
		{"allowed.test", "allowed.test", ""},
		{"ALLOWED.Test", "allowed.test", ""},
		{"allowed.test.", "allowed.test", ""},
		{"denied.test", "allowed.test", `names "denied.test", not the CONNECT host allowed.test`},
		{"allowed.test.evil", "allowed.test", "not the CONNECT host"},
		{"", "allowed.test", "no SNI"},
		{"", "10.1.2.3", ""},
		{"allowed.test", "10.1.2.3", "the CONNECT is to the IP address 10.1.2.3"},
		{strings.Repeat("a", 1000), "allowed.test", "..."},
	}
	for _, tt := range tests {
		got := sniMismatch(tt.sni, tt.host)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("sniMismatch(%q, %q) = %q, want %q", tt.sni, tt.host, got, tt.want)
		}
		if len(got) > 2*maxHostLen+200 {
			t.Errorf("sniMismatch(%q...) is %d bytes long", tt.sni[:10], len(got))
		}
	}
}

func TestHostMismatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		h, host string
		port    int
		want    string
	}{
		{"allowed.test", "allowed.test", 80, ""},
		{"allowed.test:80", "allowed.test", 80, ""},
		{"ALLOWED.test.", "allowed.test", 80, ""},
		{"allowed.test:8080", "allowed.test", 80, "not the CONNECT host"},
		{"denied.test", "allowed.test", 80, `Host "denied.test"`},
		{"denied.test:80", "allowed.test", 80, "not the CONNECT host"},
		{"", "allowed.test", 80, "no Host"},
		{"[2001:db8::1]", "2001:db8::1", 80, ""},
		{"[2001:db8::1]:80", "2001:db8::1", 80, ""},
		{"10.1.2.3", "10.1.2.3", 80, ""},
		{"10.1.2.4", "10.1.2.3", 80, "not the CONNECT host"},
	}
	for _, tt := range tests {
		got := hostMismatch(tt.h, tt.host, tt.port)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("hostMismatch(%q, %q, %d) = %q, want %q", tt.h, tt.host, tt.port, got, tt.want)
		}
	}
}

func FuzzClientHello(f *testing.F) {
	f.Add(records(helloMsg(sniExt("allowed.test")), 1<<14))
	f.Add(records(helloMsg(sniExt("allowed.test"), pqPadding), 100))
	f.Add(records(helloMsg(ext{0xfe0d, []byte{1, 2, 3}}), 7))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		raw, sni, err := readClientHello(bytes.NewReader(in))
		if !bytes.HasPrefix(in, raw) {
			t.Fatalf("raw is not a prefix of the input")
		}
		if len(raw) > maxClientHello+4+5*(maxClientHello+4) {
			t.Fatalf("read %d bytes", len(raw))
		}
		if err == nil && len(sni) > len(raw) {
			t.Fatalf("SNI longer than the input")
		}
		_ = sniMismatch(sni, "allowed.test")
		_, _ = parseClientHello(in)
	})
}

// recordingTLS is a TLS stand-in upstream on loopback for allowed.test: it
// records every byte it receives and echoes lines.
type recordingTLS struct {
	ln   net.Listener
	port int
	pool *x509.CertPool
	mu   sync.Mutex
	got  []bytes.Buffer
	done chan struct{} // one per connection that ended
}

func startRecordingTLS(t *testing.T) *recordingTLS {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "allowed.test"},
		DNSNames: []string{"allowed.test", "denied.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	u := &recordingTLS{pool: x509.NewCertPool(), done: make(chan struct{}, 16)}
	u.pool.AddCert(cert)
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	u.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.ln.Close() })
	u.port = u.ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := u.ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.got = append(u.got, bytes.Buffer{})
			i := len(u.got) - 1
			u.mu.Unlock()
			go func() {
				defer func() { u.done <- struct{}{} }()
				defer c.Close()
				tc := tls.Server(&recordConn{Conn: c, u: u, i: i}, cfg)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(tc)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					_, _ = io.WriteString(tc, line)
				}
			}()
		}
	}()
	return u
}

type recordConn struct {
	net.Conn
	u *recordingTLS
	i int
}

func (c *recordConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.u.mu.Lock()
	c.u.got[c.i].Write(b[:n])
	c.u.mu.Unlock()
	return n, err
}

func (u *recordingTLS) received() [][]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out [][]byte
	for _, b := range u.got {
		out = append(out, bytes.Clone(b.Bytes()))
	}
	return out
}

// writeRecorder records what a client writes.
type writeRecorder struct {
	net.Conn
	mu      sync.Mutex
	written bytes.Buffer
}

func (w *writeRecorder) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.written.Write(b)
	w.mu.Unlock()
	return w.Conn.Write(b)
}

// startChecked runs the proxy allowing allowed.test on any port, with
// tls and http checked as port 443 and port 80 are.
func startChecked(t *testing.T, tlsPort, httpPort int, timeout time.Duration) *testBundle {
	t.Helper()
	res := newResolver(map[string]string{"allowed.test": "127.0.0.1", "denied.test": "127.0.0.1"})
	cfg := baseConfig(res, "allowed.test:*")
	cfg.sniffPorts = map[int]sniffKind{tlsPort: sniffTLS, httpPort: sniffHTTP}
	cfg.sniffTimeout = timeout
	return startBundle(t, cfg)
}

// connectTLS opens a tunnel to allowed.test:port and runs a crypto/tls
// client named sni through it.
func connectTLS(t *testing.T, b *testBundle, u *recordingTLS, sni string) (*writeRecorder, error) {
	t.Helper()
	c := dialProxy(t, b.proxy)
	resp, _ := c.do(t, "CONNECT", "allowed.test:"+strconv.Itoa(u.port), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT = %s", resp.Status)
	}
	if c.r.Buffered() != 0 {
		t.Fatalf("bytes after the 200")
	}
	rec := &writeRecorder{Conn: c.Conn}
	tc := tls.Client(rec, &tls.Config{ServerName: sni, RootCAs: u.pool})
	if err := tc.Handshake(); err != nil {
		return rec, err
	}
	if _, err := io.WriteString(tc, "hello\n"); err != nil {
		return rec, err
	}
	line, err := bufio.NewReader(tc).ReadString('\n')
	if err != nil || line != "hello\n" {
		return rec, fmt.Errorf("echo = %q, %v", line, err)
	}
	_ = tc.Close()
	return rec, nil
}

// A real crypto/tls client reaches the upstream through a checked tunnel,
// and the upstream receives what the client sent, byte for byte.
func TestSniffTLSAllowed(t *testing.T) {
	t.Parallel()
	u := startRecordingTLS(t)
	b := startChecked(t, u.port, 0, 0)
	for _, sni := range []string{"allowed.test", "ALLOWED.TEST"} {
		rec, err := connectTLS(t, b, u, sni)
		if err != nil {
			t.Fatalf("TLS as %s through the proxy: %v", sni, err)
		}
		<-u.done
		got := u.received()
		rec.mu.Lock()
		sent := bytes.Clone(rec.written.Bytes())
		rec.mu.Unlock()
		if last := got[len(got)-1]; !bytes.Equal(last, sent) {
			t.Fatalf("the upstream received %d bytes, not the %d the client sent", len(last), len(sent))
		}
	}
	checkDecisions(t, b.log, []Decision{
		{Daemon: "egress", Decision: "allow", Host: "allowed.test", Port: u.port, Method: "CONNECT", Rule: "allowed.test:*"},
		{Daemon: "egress", Decision: "allow", Host: "allowed.test", Port: u.port, Method: "CONNECT", Rule: "allowed.test:*"},
	})
}

// The attack: CONNECT allowed.test:443 carrying a ClientHello for
// denied.test (a front that serves both). Before the check the upstream
// answered it.
func TestSniffTLSAttackOtherSNI(t *testing.T) {
	t.Parallel()
	u := startRecordingTLS(t)
	b := startChecked(t, u.port, 0, 0)
	if _, err := connectTLS(t, b, u, "denied.test"); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("TLS as denied.test through a tunnel to allowed.test: %v, want the proxy's alert access_denied", err)
	}
	if n := len(u.received()); n != 0 {
		t.Fatalf("the upstream was dialled %d times", n)
	}
	ds := b.log.decisions()
	if len(ds) != 1 || ds[0].Allowed() || ds[0].Host != "allowed.test" || ds[0].Port != u.port ||
		!strings.Contains(ds[0].Reason, `names "denied.test", not the CONNECT host allowed.test`) {
		t.Fatalf("decisions = %+v, want one deny naming denied.test", ds)
	}
}

// checkedTunnel opens a tunnel to allowed.test:port and writes in, in
// pieces with a pause between them.
func checkedTunnel(t *testing.T, b *testBundle, port int, in []byte, piece int, pause time.Duration) *proxyConn {
	t.Helper()
	c := dialProxy(t, b.proxy)
	resp, _ := c.do(t, "CONNECT", "allowed.test:"+strconv.Itoa(port), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT = %s", resp.Status)
	}
	for len(in) > 0 {
		n := min(piece, len(in))
		if _, err := c.Write(in[:n]); err != nil {
			break // the proxy may close as soon as it has seen enough
		}
		in = in[n:]
		time.Sleep(pause)
	}
	return c
}

// expectClosed waits for the proxy to close c after want, and nothing
// else.
func expectClosed(t *testing.T, c *proxyConn, want []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(io.LimitReader(c.r, 1<<10))
	var ne net.Error
	if !bytes.Equal(got, want) || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read after the refusal = %x, %v; want %x, then the connection closed", got, err, want)
	}
}

// The refusal of a TLS tunnel is a TLS alert access_denied, then the close:
// byte for byte, whatever the client sent.
func TestSniffTLSRefusalAlert(t *testing.T) {
	t.Parallel()
	echo := startListener(t, "tcp", "127.0.0.1:0", true)
	b := startChecked(t, echo.port, 0, 300*time.Millisecond)
	alert := []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31}
	for _, in := range [][]byte{records(helloMsg(sniExt("denied.test")), 1<<14), []byte("SSH-2.0-x\r\n"), nil} {
		c := checkedTunnel(t, b, echo.port, in, 1<<14, 0)
		expectClosed(t, c, alert)
	}
	if n := echo.accepts.Load(); n != 0 {
		t.Fatalf("the upstream was dialled %d times", n)
	}
}

func TestSniffTLSRaw(t *testing.T) {
	t.Parallel()
	echo := startListener(t, "tcp", "127.0.0.1:0", true)
	b := startChecked(t, echo.port, 0, 300*time.Millisecond)
	big := records(helloMsg(sniExt("allowed.test"), pqPadding), 1000) // 1.8 KiB in two records
	tests := []struct {
		name   string
		in     []byte
		piece  int
		pause  time.Duration
		reason string // "" when allowed
	}{
		{"post-quantum size, split across segments with delays", big, 300, 20 * time.Millisecond, ""},
		{"one byte segments", records(helloMsg(sniExt("allowed.test")), 40), 1, time.Millisecond, ""},
		{"SNI absent", records(helloMsg(ext{10, []byte{0, 2, 0, 29}}), 1<<14), 1 << 14, 0, "no SNI"},
		{"SNI mismatch", records(helloMsg(sniExt("denied.test")), 1<<14), 1 << 14, 0, `names "denied.test"`},
		{"ECH-looking extension with another name", records(helloMsg(ext{0xfe0d, []byte("denied.test")}, sniExt("denied.test")), 1<<14), 1 << 14, 0, `names "denied.test"`},
		{"oversize", records(helloMsg(sniExt("allowed.test"), ext{0x15, make([]byte, maxClientHello)}), 1<<14), 1 << 14, 0, "does not open with a TLS ClientHello: not a TLS ClientHello: 16484 bytes, more than 16384"},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"), 1 << 14, 0, "record type 71"},
		{"timeout", nil, 1, 0, "no TLS ClientHello within 300ms of the CONNECT"},
		{"half a ClientHello, then silence", big[:900], 1 << 14, 0, "no TLS ClientHello within 300ms"},
	}
	for _, tt := range tests {
		before := echo.accepts.Load()
		start := time.Now()
		c := checkedTunnel(t, b, echo.port, tt.in, tt.piece, tt.pause)
		if tt.reason == "" {
			got := make([]byte, len(tt.in))
			if _, err := io.ReadFull(c.r, got); err != nil || !bytes.Equal(got, tt.in) {
				t.Fatalf("%s: the upstream echoed %d bytes, %v; want the ClientHello unchanged", tt.name, len(got), err)
			}
			c.echo(t, "and then the rest")
			continue
		}
		expectClosed(t, c, accessDenied[:])
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: closed after %v", tt.name, d)
		}
		if n := echo.accepts.Load(); n != before {
			t.Fatalf("%s: the upstream was dialled", tt.name)
		}
		ds := b.log.decisions()
		last := ds[len(ds)-1]
		if last.Allowed() || last.Host != "allowed.test" || last.Method != "CONNECT" || !strings.Contains(last.Reason, tt.reason) {
			t.Fatalf("%s: decision = %+v, want a deny containing %q", tt.name, last, tt.reason)
		}
	}
}

// The attack in a plain tunnel: CONNECT allowed.test:80, then a request
// for another Host, first or after an allowed one.
func TestSniffHTTPAttackOtherHost(t *testing.T) {
	t.Parallel()
	up := startHTTP(t)
	b := startChecked(t, 0, up.port, 300*time.Millisecond)

	// Allowed: two requests, the Host with and without the port.
	c := checkedTunnel(t, b, up.port, nil, 1, 0)
	for _, h := range []string{"allowed.test", "allowed.test:" + strconv.Itoa(up.port)} {
		fmt.Fprintf(c, "GET /ok HTTP/1.1\r\nHost: %s\r\n\r\n", h)
		resp, err := http.ReadResponse(c.r, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET with Host %s through the tunnel: %v %v", h, resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	// Then one for denied.test on the same tunnel.
	fmt.Fprintf(c, "POST /leak HTTP/1.1\r\nHost: denied.test\r\nContent-Length: 6\r\n\r\nsecret")
	expectClosed(t, c, nil)

	// A tunnel whose first request names denied.test.
	c = checkedTunnel(t, b, up.port, []byte("GET /leak HTTP/1.1\r\nHost: denied.test\r\n\r\n"), 1<<10, 0)
	expectClosed(t, c, nil)

	// No request at all.
	c = checkedTunnel(t, b, up.port, nil, 1, 0)
	expectClosed(t, c, nil)

	for _, r := range up.requests() {
		if !strings.HasPrefix(r, "allowed.test") || strings.Contains(r, "leak") {
			t.Fatalf("the upstream received %q", r)
		}
	}
	p := up.port
	checkDecisions(t, b.log, []Decision{
		{Daemon: "egress", Decision: "allow", Host: "allowed.test", Port: p, Method: "CONNECT", Rule: "allowed.test:*"},
		{Daemon: "egress", Decision: "deny", Host: "allowed.test", Port: p, Method: "CONNECT",
			Reason: `a request in the tunnel is for Host "denied.test", not the CONNECT host allowed.test`},
		{Daemon: "egress", Decision: "deny", Host: "allowed.test", Port: p, Method: "CONNECT",
			Reason: `a request in the tunnel is for Host "denied.test", not the CONNECT host allowed.test`},
		{Daemon: "egress", Decision: "deny", Host: "allowed.test", Port: p, Method: "CONNECT",
			Reason: "no HTTP request within 300ms of the CONNECT"},
	})
}

// Ports no check applies to pass as before: a ClientHello for another
// name to a port the sniffer does not watch reaches the upstream.
func TestSniffOtherPortsUnchecked(t *testing.T) {
	t.Parallel()
	u := startRecordingTLS(t)
	b := startChecked(t, 1, 2, 0)
	if _, err := connectTLS(t, b, u, "denied.test"); err != nil {
		t.Fatalf("an unchecked tunnel: %v", err)
	}
}

func TestSniffForDefaults(t *testing.T) {
	t.Parallel()
	rules, err := spec.ParseEgressRules([]string{"api.test:8443/tls", "*.cdn.test:*/tls", "plain.test:8443", "api.test:22"})
	if err != nil {
		t.Fatal(err)
	}
	p := &policy{rules: rules}
	for _, tt := range []struct {
		host string
		port int
		want sniffKind
	}{
		{"any.test", 443, sniffTLS}, {"any.test", 80, sniffHTTP}, {"any.test", 22, sniffNone},
		{"any.test", 8443, sniffNone}, {"any.test", 8080, sniffNone},
		// A rule marked /tls makes its ports checked as 443 is.
		{"api.test", 8443, sniffTLS}, {"API.test.", 8443, sniffTLS}, {"api.test", 22, sniffNone},
		{"x.cdn.test", 9000, sniffTLS}, {"x.cdn.test", 80, sniffTLS},
		{"plain.test", 8443, sniffNone},
	} {
		if got := p.sniffFor(tt.host, tt.port); got != tt.want {
			t.Errorf("sniffFor(%s, %d) = %d, want %d", tt.host, tt.port, got, tt.want)
		}
	}
}

// A checked tunnel still answers 403 or 502 before it opens when its name
// resolves only to addresses the proxy never connects to, or not at all:
// the preflight, on port 443 itself (the production ports).
func TestSniffPreflight(t *testing.T) {
	t.Parallel()
	b, _, never := startBlocking(t, map[string]string{"loop.test": "127.0.0.1"}, func(c *Config) {
		c.checkAddr = func(netip.AddrPort) string { return "a loopback address" }
		c.EgressAllow = append(c.EgressAllow, "gone.test:443")
	})
	resp, body := dialProxy(t, b.proxy).do(t, "CONNECT", "loop.test:443", "")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "loop.test resolves to 127.0.0.1, a loopback address") {
		t.Fatalf("CONNECT loop.test:443 = %s %q, want 403", resp.Status, body)
	}
	resp, body = dialProxy(t, b.proxy).do(t, "CONNECT", "gone.test:443", "")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "resolve gone.test") {
		t.Fatalf("CONNECT gone.test:443 = %s %q, want 502", resp.Status, body)
	}
	if n := never.accepts.Load(); n != 0 {
		t.Fatalf("dialled %d times", n)
	}
	ds := b.log.decisions()
	if len(ds) != 2 || ds[0].Allowed() || !strings.Contains(ds[0].Reason, "loopback") || ds[1].Rule != "gone.test:443" {
		t.Fatalf("decisions = %+v", ds)
	}
}

// A ClientHello sent with the CONNECT, before the 200, is not read as the
// tunnel's first bytes (goproxy keeps what it buffered): the tunnel is
// refused, never opened unchecked.
func TestSniffClientHelloBeforeThe200(t *testing.T) {
	t.Parallel()
	echo := startListener(t, "tcp", "127.0.0.1:0", true)
	b := startChecked(t, echo.port, 0, 300*time.Millisecond)
	c := dialProxy(t, b.proxy)
	target := "allowed.test:" + strconv.Itoa(echo.port)
	hello := records(helloMsg(sniExt("allowed.test")), 1<<14)
	if _, err := c.Write(append([]byte("CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"), hello...)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.r, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT = %v, %v", resp, err)
	}
	expectClosed(t, c, accessDenied[:])
	if n := echo.accepts.Load(); n != 0 {
		t.Fatalf("the upstream was dialled")
	}
}

// After an allowed request, bytes that are not HTTP (a smuggled TLS
// stream, say) end a port-80 tunnel with a decision line.
func TestSniffHTTPThenNotHTTP(t *testing.T) {
	t.Parallel()
	up := startHTTP(t)
	b := startChecked(t, 0, up.port, 300*time.Millisecond)
	c := checkedTunnel(t, b, up.port, []byte("GET /ok HTTP/1.1\r\nHost: allowed.test\r\n\r\n"), 1<<10, 0)
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET through the tunnel: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_, _ = c.Write(records(helloMsg(sniExt("denied.test")), 1<<14))
	expectClosed(t, c, nil)
	ds := b.log.decisions()
	if len(ds) != 2 || ds[1].Allowed() || !strings.Contains(ds[1].Reason, "something other than HTTP (a byte 0x16") {
		t.Fatalf("decisions = %+v", ds)
	}
}

// An Upgrade does not turn the check off: requests after it are still
// read as requests, so a refused upgrade cannot carry unchecked ones.
func TestSniffHTTPUpgradeStillChecked(t *testing.T) {
	t.Parallel()
	up := startHTTP(t) // answers 200 to the Upgrade: no switch
	b := startChecked(t, 0, up.port, 300*time.Millisecond)
	c := checkedTunnel(t, b, up.port, []byte("GET /ws HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"), 1<<10, 0)
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET through the tunnel: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	fmt.Fprintf(c, "GET /leak HTTP/1.1\r\nHost: denied.test\r\n\r\n")
	expectClosed(t, c, nil)
	for _, r := range up.requests() {
		if strings.Contains(r, "leak") {
			t.Fatalf("the upstream received %q", r)
		}
	}
}

// A malformed request in a port-80 tunnel is refused without quoting it.
func TestSniffHTTPMalformedNotQuoted(t *testing.T) {
	t.Parallel()
	up := startHTTP(t)
	b := startChecked(t, 0, up.port, 300*time.Millisecond)
	c := checkedTunnel(t, b, up.port, []byte("GET /secret?token=hunter2 HTTP/9\r\nHost: allowed.test\r\n\r\n"), 1<<10, 0)
	expectClosed(t, c, nil)
	ds := b.log.decisions()
	if len(ds) != 1 || ds[0].Allowed() || ds[0].Reason != "the tunnel does not carry a well-formed HTTP request" {
		t.Fatalf("decisions = %+v", ds)
	}
	checkNoSecrets(t, b.log)
}

// A rule marked /tls makes its port checked as 443 is: a ClientHello for
// another name is refused before the dial; without the mark the same
// tunnel goes through unchecked.
func TestSniffRuleMarkedTLS(t *testing.T) {
	t.Parallel()
	u := startRecordingTLS(t)
	res := newResolver(map[string]string{"allowed.test": "127.0.0.1"})
	port := strconv.Itoa(u.port)
	marked := startBundle(t, baseConfig(res, "allowed.test:"+port+"/tls"))
	if _, err := connectTLS(t, marked, u, "denied.test"); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("a ClientHello for denied.test through a /tls rule's port: %v, want the bundle's access_denied alert", err)
	}
	if _, err := connectTLS(t, marked, u, "allowed.test"); err != nil {
		t.Fatalf("a ClientHello for allowed.test through a /tls rule's port: %v", err)
	}
	plain := startBundle(t, baseConfig(res, "allowed.test:"+port))
	if _, err := connectTLS(t, plain, u, "denied.test"); err != nil {
		t.Fatalf("an unmarked port is not checked, but: %v", err)
	}
}
