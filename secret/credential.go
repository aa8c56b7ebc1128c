package secret

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/spec"
)

// MaxTrustFile is the largest file of spec.bundle.egress.trust
// ResolveCredentials reads, in bytes: a bundle of a few hundred CAs fits.
const MaxTrustFile = 1 << 20

// trustFile is how readRegular speaks of a trust file.
var trustFile = fileKind{
	max:        MaxTrustFile,
	notRegular: "name a PEM file of CA certificates",
	tooLarge:   "list the CAs the bundle needs, not a whole system bundle",
	missing:    "write the PEM of the CA certificate into it",
	outside:    "trust files are read only from inside it",
}

// ResolveCredentials reads the values of every bottle's
// spec.bundle.egress.credentials and its trust files.
//
// It sets b.Credentials in the spec's order: each host normalized (lower
// case, no trailing dot: what the bundle compares a request's host with),
// its header, prefix and agentEnv as written, its value read as a
// secretEnv's is (a variable of getenv, nil meaning os.Getenv, or a file
// next to the spec, read through an os.Root so that neither the path nor
// a symlink can leave the spec's directory, without one trailing newline)
// and its Digest (CredentialDigest). A value is refused if it holds a
// control character (CR and LF would end the header and let the value
// write others), is not UTF-8, or is empty.
//
// It sets b.Trust to the certificates of the trust files, re-encoded as
// PEM and joined in the spec's order, and b.TrustDigest to TrustDigest of
// them ("" for none). Each file must hold one or more PEM CERTIFICATE
// blocks and nothing else in PEM, each a CA certificate: the bundle
// trusts them to vouch for the hosts it sends credentials to.
//
// It reports every problem of every bottle, each naming the bottle, the
// credential (its index, host and header) or trust file and its source,
// and saying what to do; none holds a value. On an error the bottles may
// be partly resolved (CredentialsResolved is then false) and must not be
// applied.
func ResolveCredentials(bottles []bottle.Bottle, key []byte, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	var errs []error
	for i := range bottles {
		b := &bottles[i]
		e := &b.Spec.Bundle.Egress
		b.Credentials, b.Trust, b.TrustDigest = nil, nil, ""
		if len(e.Credentials) == 0 && len(e.Trust) == 0 {
			continue
		}
		if len(key) < MinKeyLen {
			return fmt.Errorf("internal: a secret key of %d bytes; want at least %d", len(key), MinKeyLen)
		}
		var dir *dirRoot
		for j, c := range e.Credentials {
			value, err := readCredential(&b.Bottle, c, getenv, &dir)
			if err != nil {
				errs = append(errs, fmt.Errorf("bottle %s: spec.bundle.egress.credentials[%d] (%s %s): %w", b.Metadata.Name, j, c.Host, c.Header, err))
				continue
			}
			rc := bottle.Credential{Host: spec.NormalizeHost(c.Host), Header: c.Header, Prefix: c.Prefix, Value: value, AgentEnv: c.AgentEnv}
			rc.Digest = CredentialDigest(key, rc)
			b.Credentials = append(b.Credentials, rc)
		}
		var trust []byte
		ok := true
		for j, file := range e.Trust {
			certs, err := readTrust(&b.Bottle, file, &dir)
			if err != nil {
				errs = append(errs, fmt.Errorf("bottle %s: spec.bundle.egress.trust[%d]: %w", b.Metadata.Name, j, err))
				ok = false
				continue
			}
			trust = append(trust, certs...)
		}
		if ok && len(trust) > 0 {
			b.Trust, b.TrustDigest = trust, TrustDigest(key, trust)
		}
		dir.close()
	}
	return errors.Join(errs...)
}

// readCredential returns the value of one credential. Its errors name the
// source and what to do, never the value.
func readCredential(b *spec.Bottle, c spec.Credential, getenv func(string) string, dir **dirRoot) (string, error) {
	v, source, fix, err := readSource(b, c.ValueFrom, getenv, dir)
	if err != nil {
		return "", err
	}
	return v, checkHeaderValue(v, source, fix)
}

// checkHeaderValue refuses what cannot go into a header's value, without
// quoting it: a control character (a CR or LF would end the header, and
// what follows would be headers of the value's choosing; NUL and the rest
// are refused by servers, or worse, cut the value short) and bytes that
// are not UTF-8.
func checkHeaderValue(v, source, fix string) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%s is not valid UTF-8, which a header's value cannot carry unchanged; %s", source, fix)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s holds a control character (such as a CR, LF, NUL or tab), which a header's value may not: "+
				"a line break would end the header; %s, on one line", source, fix)
		}
	}
	return nil
}

// readTrust reads one trust file and returns its certificates as PEM.
// Its errors name the file and what is wrong, and never quote it: a
// private key put there by mistake stays out of them.
func readTrust(b *spec.Bottle, file string, dir **dirRoot) ([]byte, error) {
	if msg := spec.CheckTrustFile(file); msg != "" {
		return nil, errors.New(msg)
	}
	switch src := b.Source.File; src {
	case "", spec.Stdin, spec.StdinName:
		return nil, fmt.Errorf("%q: a spec read from standard input has no directory to read it from; pass the spec with -f FILE", file)
	}
	d := openDir(b, dir)
	shown := filepath.Join(d.path, file)
	if d.err != nil {
		return nil, fmt.Errorf("file %s: cannot open the spec file's directory: %w", shown, pathErr(d.err))
	}
	data, err := readRegular(d.root, file, trustFile)
	if err != nil {
		return nil, fmt.Errorf("file %s: %w", shown, err)
	}
	certs, err := parseTrust(data)
	if err != nil {
		return nil, fmt.Errorf("file %s: %w", shown, err)
	}
	return certs, nil
}

// parseTrust returns the CA certificates of a PEM file, re-encoded (text
// around the blocks, such as the comments of a system bundle, dropped).
func parseTrust(data []byte) ([]byte, error) {
	var out bytes.Buffer
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		at := "block " + strconv.Itoa(n)
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s is a %s, not a CERTIFICATE; a trust file holds CA certificates only (and never a key)", at, quoteType(block.Type))
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s is not a certificate x509 can parse (%v); export the CA certificate again, as PEM", at, err)
		}
		if !cert.BasicConstraintsValid || !cert.IsCA {
			return nil, fmt.Errorf("%s (subject %q) is not a CA certificate; list the CA that issued the server's certificate, not the server's own",
				at, cert.Subject.String())
		}
		_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}) // a bytes.Buffer does not fail
	}
	if n == 0 {
		return nil, errors.New("holds no PEM block; write the CA certificate into it as PEM (-----BEGIN CERTIFICATE-----)")
	}
	return out.Bytes(), nil
}

// quoteType quotes a PEM block's type for a message, cut short: it is the
// file's text, not a value, but need not be long.
func quoteType(t string) string {
	if len(t) > 40 {
		t = t[:40] + "..."
	}
	return strconv.Quote(t)
}

// CredentialDigest is the digest of a resolved credential that stands for
// it in config hashes: the first DigestLen hex digits of an HMAC-SHA256
// under key of its host, header, prefix and value, each length-prefixed so
// that no two credentials share an encoding. A label holding it cannot be
// checked against guessed values without the key.
func CredentialDigest(key []byte, c bottle.Credential) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("bottle-apply credential v1\x00"))
	for _, f := range []string{c.Host, c.Header, c.Prefix, c.Value} {
		m.Write(binary.BigEndian.AppendUint64(nil, uint64(len(f))))
		m.Write([]byte(f))
	}
	return hex.EncodeToString(m.Sum(nil))[:DigestLen]
}

// TrustDigest is the digest of a bottle's trusted certificates (its Trust)
// that stands for them in config hashes. They are no secret; it is keyed
// all the same, as every other digest of the spec's files is.
func TrustDigest(key []byte, trust []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("bottle-apply trust v1\x00"))
	m.Write(trust)
	return hex.EncodeToString(m.Sum(nil))[:DigestLen]
}
