package bundle

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/elazarl/goproxy"
	"golang.org/x/crypto/cryptobyte"

	"github.com/bottle-apply/bottle-apply/spec"
)

// Checked tunnels. A CONNECT to port 443 must open with a TLS ClientHello
// whose SNI is the CONNECT host; every HTTP request in a CONNECT to port
// 80 must carry the CONNECT host as its Host. The proxy answers the
// CONNECT with 200, reads the first bytes from the client, and dials only
// when they match; a refusal logs a decision line and closes the
// connection, a TLS one after a TLS alert access_denied. Other ports (ssh to github.com:22, name:*) pass unsniffed.

const (
	// sniffTimeout bounds the wait for a checked tunnel's first bytes: a
	// ClientHello, or the first request's header.
	sniffTimeout = 10 * time.Second
	// maxClientHello caps the ClientHello handshake message, reassembled
	// across records and TCP segments (post-quantum ones are about 1.8 KiB).
	maxClientHello = 16 << 10
	// maxRecordLen is TLS's cap on a record's plaintext (RFC 8446 5.1).
	maxRecordLen = 16 << 10

	deniedSNI  = "sni-mismatch"
	deniedHost = "host-mismatch"
)

type sniffKind int

const (
	sniffNone sniffKind = iota
	sniffTLS
	sniffHTTP
)

// sniffFor says what a tunnel to host:port carries that the proxy
// checks: TLS on 443 and on the ports of a rule marked /tls that allows
// the tunnel, HTTP on 80.
func (p *policy) sniffFor(host string, port int) sniffKind {
	if p.sniffPorts != nil {
		return p.sniffPorts[port]
	}
	for _, r := range p.rules {
		if r.TLS && r.Matches(host, port) {
			return sniffTLS
		}
	}
	switch port {
	case 443:
		return sniffTLS
	case 80:
		return sniffHTTP
	}
	return sniffNone
}

var errNotClientHello = errors.New("not a TLS ClientHello")

// readClientHello reads TLS records from r until they hold one whole
// ClientHello and returns every byte read (to relay unchanged) and the
// ClientHello's SNI, "" when it has none. It reads no byte past the
// record that completes the ClientHello.
func readClientHello(r io.Reader) (raw []byte, sni string, err error) {
	var msg []byte // the handshake message so far
	hdr := make([]byte, 5)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return raw, "", fmt.Errorf("read a TLS record header: %w", err)
		}
		raw = append(raw, hdr...)
		n := int(hdr[3])<<8 | int(hdr[4])
		switch {
		case hdr[0] != 22:
			return raw, "", fmt.Errorf("%w: record type %d, want 22 (handshake)", errNotClientHello, hdr[0])
		case hdr[1] != 3:
			return raw, "", fmt.Errorf("%w: record version %d.%d", errNotClientHello, hdr[1], hdr[2])
		case n == 0 || n > maxRecordLen:
			return raw, "", fmt.Errorf("%w: record length %d", errNotClientHello, n)
		case len(msg)+n > maxClientHello+4:
			return raw, "", fmt.Errorf("%w: longer than %d bytes", errNotClientHello, maxClientHello)
		}
		start := len(raw)
		raw = append(raw, make([]byte, n)...)
		if _, err := io.ReadFull(r, raw[start:]); err != nil {
			return raw[:start], "", fmt.Errorf("read a TLS record: %w", err)
		}
		msg = append(msg, raw[start:]...)
		if len(msg) < 4 {
			continue
		}
		if msg[0] != 1 {
			return raw, "", fmt.Errorf("%w: handshake type %d, want 1", errNotClientHello, msg[0])
		}
		l := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
		if l > maxClientHello {
			return raw, "", fmt.Errorf("%w: %d bytes, more than %d", errNotClientHello, l, maxClientHello)
		}
		if len(msg) < 4+l {
			continue
		}
		if len(msg) > 4+l {
			// Another message after the ClientHello: a client sends
			// nothing before the server's answer.
			return raw, "", fmt.Errorf("%w: bytes after the ClientHello", errNotClientHello)
		}
		sni, err := parseClientHello(msg[4:])
		return raw, sni, err
	}
}

// parseClientHello returns the server_name of a ClientHello's body
// (RFC 8446 4.1.2, RFC 6066 3), "" when it has none. Extensions it does
// not know (encrypted_client_hello included) are skipped: the outer SNI
// is what the proxy checks.
func parseClientHello(body []byte) (string, error) {
	s := cryptobyte.String(body)
	var version uint16
	var random, sessionID, suites, compression, exts cryptobyte.String
	if !s.ReadUint16(&version) || !s.ReadBytes((*[]byte)(&random), 32) ||
		!s.ReadUint8LengthPrefixed(&sessionID) || !s.ReadUint16LengthPrefixed(&suites) ||
		!s.ReadUint8LengthPrefixed(&compression) {
		return "", fmt.Errorf("%w: truncated", errNotClientHello)
	}
	if s.Empty() {
		return "", nil // no extensions
	}
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return "", fmt.Errorf("%w: bad extensions", errNotClientHello)
	}
	sni, seen := "", false
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return "", fmt.Errorf("%w: bad extension", errNotClientHello)
		}
		if typ != 0 {
			continue
		}
		if seen {
			return "", fmt.Errorf("%w: two server_name extensions", errNotClientHello)
		}
		seen = true
		var list cryptobyte.String
		if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
			return "", fmt.Errorf("%w: bad server_name extension", errNotClientHello)
		}
		for !list.Empty() {
			var nameType uint8
			var name cryptobyte.String
			if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&name) || len(name) == 0 {
				return "", fmt.Errorf("%w: bad server_name", errNotClientHello)
			}
			if nameType != 0 {
				continue
			}
			if sni != "" {
				return "", fmt.Errorf("%w: two host names in server_name", errNotClientHello)
			}
			sni = string(name)
		}
	}
	return sni, nil
}

// sniMismatch says why a ClientHello's SNI may not open a tunnel to host
// (the verdict's: lower case, no trailing dot), or "" when it may. An IP
// literal target takes no SNI (clients send none for one); a name must
// be named.
func sniMismatch(sni, host string) string {
	if holes.sni {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		if sni == "" {
			return ""
		}
		return fmt.Sprintf("the TLS ClientHello names %s, but the CONNECT is to the IP address %s", quoteClip(shownHost(sni)), host)
	}
	switch n := spec.NormalizeHost(sni); {
	case sni == "":
		return fmt.Sprintf("the TLS ClientHello names no server (no SNI); the CONNECT is to %s", host)
	case n != host:
		return fmt.Sprintf("the TLS ClientHello names %s, not the CONNECT host %s", quoteClip(shownHost(sni)), host)
	}
	return ""
}

// hostMismatch says why a request's Host may not travel in a tunnel to
// host:port, or "" when it may. The Host may leave out the port, or name
// the tunnel's own.
func hostMismatch(h, host string, port int) string {
	if holes.sni {
		return ""
	}
	return hostDiffers(h, host, port)
}

// hostDiffers is hostMismatch whatever holes a test build opens.
func hostDiffers(h, host string, port int) string {
	name, p, err := net.SplitHostPort(h)
	if err != nil {
		name, p = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), ""
	}
	n := spec.NormalizeHost(name)
	if a, err := netip.ParseAddr(n); err == nil {
		n = a.Unmap().String()
	}
	switch {
	case h == "":
		return fmt.Sprintf("a request in the tunnel has no Host; the CONNECT is to %s", host)
	case n != host || (p != "" && p != strconv.Itoa(port)):
		return fmt.Sprintf("a request in the tunnel is for Host %s, not the CONNECT host %s", quoteClip(clip(h, maxHostLen)), host)
	}
	return ""
}

// checkedTunnel answers an allowed CONNECT whose first bytes are checked.
func (e *egress) checkedTunnel(a *attempt, k sniffKind) func(*http.Request, net.Conn, *goproxy.ProxyCtx) {
	return func(r *http.Request, client net.Conn, ctx *goproxy.ProxyCtx) {
		defer client.Close()
		if err := a.preflight(r.Context()); err != nil {
			e.connectError(client, ctx, err) // a 403 or a 502, as before
			return
		}
		if _, err := io.WriteString(client, connectOK(r)); err != nil {
			return
		}
		_ = client.SetReadDeadline(time.Now().Add(e.p.sniffTimeout))
		var first []byte      // what the client sent, relayed unchanged
		var req *http.Request // the first request of an HTTP tunnel
		var br *bufio.Reader
		var lr *io.LimitedReader
		var why string
		switch k {
		case sniffTLS:
			raw, sni, err := readClientHello(client)
			switch {
			case err != nil:
				why = e.sniffError("TLS ClientHello", err)
			default:
				why = sniMismatch(sni, a.host)
			}
			first = raw
		case sniffHTTP:
			lr = &io.LimitedReader{R: client, N: maxHeaderBytes}
			br = bufio.NewReader(lr)
			var err error
			if req, err = http.ReadRequest(br); err != nil {
				why = e.sniffError("HTTP request", err)
			} else {
				why = hostMismatch(req.Host, a.host, a.port)
			}
		}
		if why != "" {
			a.refuse(k, why)
			if k == sniffTLS {
				// Said in TLS, so that a client (and the self-test) can
				// tell the proxy's refusal from an upstream that closed.
				_ = client.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = client.Write(accessDenied[:])
			}
			return
		}
		_ = client.SetReadDeadline(time.Time{})
		v, _, _, _ := a.outcome()
		up, err := a.dial(r.Context(), "tcp", v.target())
		if err != nil {
			return // logged; the client sees the tunnel close
		}
		defer up.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = io.Copy(client, up)
			_ = client.Close() // unblocks a read of the client
		}()
		var ended bool // the client closed its side: pass it on
		if k == sniffTLS {
			if _, err := up.Write(first); err == nil {
				_, err = io.Copy(up, client)
				ended = err == nil
			}
		} else {
			ended = e.relayRequests(a, req, client, br, lr, up)
		}
		if ended {
			closeWrite(up)
		} else {
			_ = up.Close() // a refusal or an error: both ends close now
			_ = client.Close()
		}
		<-done
	}
}

// relayRequests writes req and every following request from br to up,
// each checked for its Host; a mismatch, or bytes that are not HTTP, end
// the tunnel with a decision line. It reports whether the client ended
// cleanly. An Upgrade (a ws:// websocket) ends the tunnel at the client's
// first frame: after it the proxy could no longer tell whether the
// upstream switched protocols or the client goes on with requests no
// check sees.
func (e *egress) relayRequests(a *attempt, req *http.Request, client net.Conn, br *bufio.Reader, lr *io.LimitedReader, up net.Conn) bool {
	for {
		lr.N = 1<<63 - 1 // the body is not capped
		if _, ok := req.Header["User-Agent"]; !ok {
			req.Header["User-Agent"] = []string{""} // Write adds none then
		}
		if err := req.Write(up); err != nil {
			return false
		}
		// The tunnel may idle between requests (up to tunnelIdle); once a
		// request starts, its header has sniffTimeout to arrive.
		lr.N = maxHeaderBytes
		b, err := br.Peek(1)
		if errors.Is(err, io.EOF) {
			return true
		}
		why := ""
		switch {
		case err != nil:
			return false
		case b[0] < 'A' || b[0] > 'Z':
			why = fmt.Sprintf("the tunnel carries something other than HTTP (a byte 0x%02x where a request starts)", b[0])
		default:
			_ = client.SetReadDeadline(time.Now().Add(e.p.sniffTimeout))
			req, err = http.ReadRequest(br)
			_ = client.SetReadDeadline(time.Time{})
		}
		switch {
		case why != "":
		case err != nil:
			why = e.sniffError("HTTP request", err)
		default:
			why = hostMismatch(req.Host, a.host, a.port)
		}
		if why != "" {
			v, _, _, _ := a.outcome()
			v.deny(http.StatusForbidden, deniedHost, why)
			e.dl.egress(v.method, v.host, v.port, "", v.reason)
			return false
		}
	}
}

// preflight resolves a named target and checks its addresses, as dial
// does but without connecting, so that a CONNECT to a name that does not
// resolve, or resolves only to addresses the proxy never connects to, is
// answered 502 or 403 before the tunnel opens. The dial after the check
// resolves and checks again: this is for the answer, not the policy.
func (a *attempt) preflight(ctx context.Context) error {
	if _, err := netip.ParseAddr(a.host); err == nil {
		return nil // decide checked the address
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	addrs, err := a.e.d.lookup(ctx, a.host)
	switch {
	case err != nil:
		err = fmt.Errorf("resolve %s: %w", a.host, err)
	case len(addrs) == 0:
		err = fmt.Errorf("resolve %s: no addresses", a.host)
	}
	var b *blockedError
	for _, ip := range addrs {
		kind, never := a.e.d.check(netip.AddrPortFrom(ip.Unmap(), uint16(a.port)), true)
		if kind == "" {
			return nil
		}
		if b == nil {
			b = &blockedError{host: a.host, addr: ip.Unmap(), kind: kind, never: never}
		}
	}
	a.mu.Lock()
	switch {
	case b != nil:
		a.blocked, err = true, b
		a.v.denyBlocked(b)
	default:
		a.dialErr = err
	}
	a.mu.Unlock()
	a.record()
	if b == nil {
		a.e.dl.log.Warn().Str(FieldDaemon, spec.DaemonEgress).Str(FieldHost, a.host).Int(FieldPort, a.port).
			Err(err).Msg("egress dial failed")
	}
	return err
}

// accessDenied is the TLS alert record the proxy sends when it refuses a
// TLS tunnel: a fatal access_denied (RFC 8446 6.2), before any byte of a
// server's. TLS 1.3 clients accept its legacy record version 3.3.
var accessDenied = [...]byte{21, 3, 3, 0, 2, 2, 49}

// refuse logs a checked tunnel's refusal; the caller closes it (a TLS
// tunnel after accessDenied).
func (a *attempt) refuse(k sniffKind, why string) {
	short := deniedSNI
	if k == sniffHTTP {
		short = deniedHost
	}
	a.refuseWith(short, why)
}

// sniffError says why a checked tunnel did not open with what ("TLS
// ClientHello" or "HTTP request"). It quotes no byte the client sent:
// only the TLS parser's own words.
func (e *egress) sniffError(what string, err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no %s within %s of the CONNECT", what, e.p.sniffTimeout)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("the client closed the tunnel before a whole %s", what)
	case errors.Is(err, errNotClientHello):
		return fmt.Sprintf("the tunnel does not open with a %s: %s", what, clip(err.Error(), maxReasonLen/2))
	}
	return fmt.Sprintf("the tunnel does not carry a well-formed %s", what)
}

// connectOK is the 200 that opens a tunnel, in the CONNECT's HTTP version.
func connectOK(r *http.Request) string {
	major, minor := r.ProtoMajor, r.ProtoMinor
	if major != 1 {
		major, minor = 1, 1
	}
	return fmt.Sprintf("HTTP/%d.%d 200 Connection established\r\n\r\n", major, minor)
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
