package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// errDecided ends a handshake as soon as the peer's certificate has told
// what the check wants to know: nothing after it could change the verdict.
var errDecided = errors.New("the certificate decided the check")

// checkIntercept asks the proxy at c.Addr for a tunnel to c.Target and, if
// it opens one, makes a TLS handshake for the target's host through it,
// trusting nothing but c.CA. The peer's certificate tells who answered:
// one that chains to the CA for the host is the bundle's interception;
// any other is not. It never sends a request: the connection closes once
// the handshake is done or the certificate has decided.
//
// A check that expects no interception is bounded by opt.InterceptTimeout
// from the connect on, so that an upstream far away holds up the
// self-test by that much at most; one that expects interception, which the
// bundle answers at once, by opt.ProxyTimeout.
func checkIntercept(ctx context.Context, c Check, opt Options) (got, detail string) {
	cas, err := parseCA(c.CA)
	if err != nil {
		return gotError, err.Error()
	}
	host, _, _ := net.SplitHostPort(c.Target)
	timeout := opt.ProxyTimeout
	if c.Expect == ExpectNotIntercepted {
		timeout = opt.InterceptTimeout
	}
	deadline := time.Now().Add(timeout)
	conn, err := dialTimeout(ctx, opt, "tcp", c.Addr, min(opt.ConnectTimeout, timeout))
	if err != nil {
		_, why := classifyDial(err, min(opt.ConnectTimeout, timeout))
		return gotNoTunnel, "the proxy " + c.Addr + ": " + why + "; no ClientHello was sent"
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	defer context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })()
	br := bufio.NewReader(conn)

	req := "CONNECT " + c.Target + " HTTP/1.1\r\nHost: " + c.Target + "\r\nUser-Agent: " + userAgent + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return connectFailed("send CONNECT to the proxy", err, timeout)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return connectFailed("read the proxy's answer to CONNECT", err, timeout)
	}
	if resp.StatusCode/100 != 2 {
		return gotNoTunnel, "the proxy opened no tunnel (" + denyReason(resp) + "), so no ClientHello was sent"
	}

	// The verdict is taken from the certificate, when one comes; the
	// handshake goes on only for a certificate the agent would accept, to
	// prove that whoever sent it holds its key.
	var verdict, why string
	rec := &readRecorder{Conn: conn, r: br}
	tc := tls.Client(rec, &tls.Config{
		ServerName: host,
		MinVersion: tls.VersionTLS12,
		// Verified below against the bottle's CA alone: the default roots
		// would say nothing about who answered.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			verdict, why = classifyPeer(raw, cas, host, time.Now())
			if verdict != string(ExpectIntercepted) {
				return errDecided
			}
			return nil
		},
	})
	herr := tc.Handshake()
	seen := rec.bytes()
	switch {
	case verdict == string(ExpectIntercepted) && herr == nil:
		return verdict, "tunnel opened, then " + why
	case verdict == string(ExpectIntercepted):
		return gotInterceptedInvalid, "tunnel opened, then " + why + ", but the handshake failed after it: " + herr.Error()
	case verdict != "":
		return verdict, "tunnel opened, then " + why
	case isTimeout(herr):
		return gotTimeout, fmt.Sprintf("tunnel opened, then no certificate within %s: the bundle, which answers at once for the hosts it intercepts, did not answer the ClientHello itself", timeout)
	case bytes.Equal(seen, accessDenied):
		return string(ExpectNotIntercepted), "tunnel opened, then the proxy refused the ClientHello with its TLS alert access_denied"
	case len(seen) > 0 && seen[0] == 21:
		return string(ExpectNotIntercepted), fmt.Sprintf("tunnel opened, then a TLS alert (%x) before any certificate: %v", seen[:min(len(seen), 7)], herr)
	case len(seen) > 0 && seen[0] != 22:
		return string(ExpectNotIntercepted), fmt.Sprintf("tunnel opened, then %d bytes that are not TLS: %v", len(seen), herr)
	case len(seen) > 0:
		return string(ExpectNotIntercepted), "tunnel opened, then the TLS handshake failed before any certificate: " + herr.Error()
	}
	return string(ExpectNotIntercepted), "tunnel opened, then it closed before any certificate: " + herr.Error()
}

// connectFailed words a CONNECT that got no answer: no tunnel, or a
// timeout, which an interception would not have taken.
func connectFailed(what string, err error, timeout time.Duration) (got, detail string) {
	if isTimeout(err) {
		return gotTimeout, what + ": " + ioError(err, timeout)
	}
	return gotNoTunnel, what + ": " + err.Error() + "; no ClientHello was sent"
}

// classifyPeer tells whose certificate chain raw (the leaf first) is:
// intercepted when it verifies for host against cas alone, as the agent's
// clients verify it; intercepted-invalid when one of its certificates is
// one of cas or signed by one, yet it does not verify (the CA's name
// constraints leave host out, the name is wrong, it expired): the bundle
// intercepted a host it may not; not-intercepted otherwise.
func classifyPeer(raw [][]byte, cas []*x509.Certificate, host string, now time.Time) (got, detail string) {
	if len(raw) == 0 {
		return string(ExpectNotIntercepted), "a handshake without a certificate"
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for i, der := range raw {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return string(ExpectNotIntercepted), fmt.Sprintf("a certificate chain whose certificate %d does not parse: %v", i+1, err)
		}
		certs = append(certs, cert)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	for _, cert := range certs[1:] {
		inter.AddCert(cert)
	}
	leaf := certs[0]
	_, verr := leaf.Verify(x509.VerifyOptions{
		DNSName: host, Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if verr == nil {
		return string(ExpectIntercepted), fmt.Sprintf("a certificate for %s of the bottle's CA (issuer %q)", host, leaf.Issuer.String())
	}
	for _, cert := range certs {
		for _, ca := range cas {
			if bytes.Equal(cert.Raw, ca.Raw) || cert.CheckSignatureFrom(ca) == nil {
				return gotInterceptedInvalid, fmt.Sprintf("a certificate of the bottle's CA that the agent would refuse for %s: %v", host, verr)
			}
		}
	}
	return string(ExpectNotIntercepted), fmt.Sprintf("a certificate for %s that is not the bottle's CA's (issuer %q)", host, leaf.Issuer.String())
}

// parseCA reads the PEM certificates of a CA: at least one, and nothing
// but certificates.
func parseCA(s string) ([]*x509.Certificate, error) {
	rest := []byte(s)
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("ca holds a PEM %s block; it takes the bottle's CA certificate alone", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca: parse the CA certificate: %w", err)
		}
		out = append(out, cert)
	}
	if len(out) == 0 || len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("ca is not a PEM CA certificate (-----BEGIN CERTIFICATE-----)")
	}
	return out, nil
}

// isIPLiteral reports an IP address, with or without brackets.
func isIPLiteral(h string) bool {
	_, err := netip.ParseAddr(h)
	return err == nil
}
