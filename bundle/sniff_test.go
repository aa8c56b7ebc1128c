package bundle

import (
	"bytes"
	"strings"
	"testing"

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
