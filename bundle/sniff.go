package bundle

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/crypto/cryptobyte"

	"github.com/bottle-apply/bottle-apply/spec"
)

const (
	// maxClientHello caps the ClientHello handshake message, reassembled
	// across records and TCP segments (post-quantum ones are about 1.8 KiB).
	maxClientHello = 16 << 10
	// maxRecordLen is TLS's cap on a record's plaintext (RFC 8446 5.1).
	maxRecordLen = 16 << 10
)

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
