package bottle

import (
	"encoding/json"
	"fmt"

	"github.com/bottle-apply/bottle-apply/spec"
)

// Credential is a resolved spec.bundle.egress.credentials entry: the
// header the bundle sets on the agent's requests to Host. Value never
// appears when a Credential is formatted or marshalled to JSON: only its
// host, header, prefix, agentEnv and Digest do, as with Secret.
type Credential struct {
	Host, Header, Prefix string
	// Value is the secret, without the prefix.
	Value string
	// Digest is a keyed hash of the credential (see package secret),
	// which stands for it in config hashes.
	Digest string
	// AgentEnv is spec's agentEnv: the agent's variable set to
	// CredentialPlaceholder; "" is none.
	AgentEnv string
}

// String shows everything but the value.
func (c Credential) String() string {
	return fmt.Sprintf("{%s %s %s %s}", c.Host, c.Header, Redacted, c.Digest)
}

// GoString is the %#v form, with the value redacted.
func (c Credential) GoString() string {
	return fmt.Sprintf("bottle.Credential{Host:%q, Header:%q, Prefix:%q, Value:%q, Digest:%q, AgentEnv:%q}",
		c.Host, c.Header, c.Prefix, Redacted, c.Digest, c.AgentEnv)
}

// Format makes every verb print a redacted form.
func (c Credential) Format(f fmt.State, verb rune) {
	formatRedacted(f, verb, c)
}

// MarshalJSON writes everything but the value.
func (c Credential) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Host     string `json:"host"`
		Header   string `json:"header"`
		Prefix   string `json:"prefix,omitempty"`
		Value    string `json:"value"`
		Digest   string `json:"digest"`
		AgentEnv string `json:"agentEnv,omitempty"`
	}{c.Host, c.Header, c.Prefix, Redacted, c.Digest, c.AgentEnv})
}

// MarshalText is the String form.
func (c Credential) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// CA is the bottle's own certificate authority, which the bundle issues
// the certificates of credentialed hosts with: made and kept by
// bottle-apply (package ca), its certificate given to the agent, its key
// to the bundle alone. Key never appears when a CA is formatted or
// marshalled.
type CA struct {
	// Cert is the CA certificate, PEM.
	Cert []byte
	// Key is its private key, PEM (PKCS #8).
	Key []byte
	// Fingerprint is the hex SHA-256 of the certificate's DER: what stands
	// for the CA in config hashes.
	Fingerprint string
}

// String shows the fingerprint alone.
func (c CA) String() string { return "{CA " + c.Fingerprint + " key " + Redacted + "}" }

// GoString is the %#v form, with the key redacted.
func (c CA) GoString() string {
	return fmt.Sprintf("bottle.CA{Fingerprint:%q, Key:%q}", c.Fingerprint, Redacted)
}

// Format makes every verb print a redacted form.
func (c CA) Format(f fmt.State, verb rune) {
	formatRedacted(f, verb, c)
}

// MarshalJSON writes the fingerprint alone.
func (c CA) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Fingerprint string `json:"fingerprint"`
		Key         string `json:"key"`
	}{c.Fingerprint, Redacted})
}

// MarshalText is the String form.
func (c CA) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// Where the bundle finds what it needs for credentials, and where the
// agent finds the bottle's CA.
const (
	// BundleSecretsDir is the bundle's directory of files copied in
	// before it starts (a volume of its own on docker, a Secret volume
	// on a cluster).
	BundleSecretsDir = "/run/bottle-apply"
	// BundleSecretsFile is the file the bundle reads (BundleSecrets, as
	// JSON); BOTTLE_CREDENTIALS_FILE names it.
	BundleSecretsFile = BundleSecretsDir + "/credentials.json"
	// AgentCAFile is the bottle's CA certificate alone, in the agent.
	AgentCAFile = spec.AgentCADir + "/ca.pem"
	// AgentCABundle is the image's own CA bundle and the bottle's CA,
	// joined, in the agent.
	AgentCABundle = spec.AgentCADir + "/ca-bundle.pem"
	// CredentialPlaceholder is what an agentEnv variable holds.
	CredentialPlaceholder = "bottle-apply-placeholder-the-bundle-adds-the-credential"
)

// CAEnvFile are the agent's variables that name a file holding the
// bottle's CA alone (a client adds it to its own roots): they name
// AgentCAFile. The spec reserves them (spec.CAEnvVars).
var CAEnvFile = spec.CAEnvFileVars

// CAEnvBundle are the agent's variables that name a whole bundle of CAs
// (a client reads them instead of its own): they name AgentCABundle.
var CAEnvBundle = spec.CAEnvBundleVars

// BundleSecrets is the file the bundle reads its credentials from
// (BundleSecretsFile): it holds the values and the CA's key, and goes to
// the bundle and nowhere else.
type BundleSecrets struct {
	// CACert and CAKey are PEM.
	CACert string `json:"caCert"`
	CAKey  string `json:"caKey"`
	// Trust are PEM certificates the bundle trusts upstream besides its
	// root store.
	Trust       string             `json:"trust,omitempty"`
	Credentials []BundleCredential `json:"credentials"`
}

// BundleCredential is one credential as the bundle reads it.
type BundleCredential struct {
	Host   string `json:"host"`
	Header string `json:"header"`
	Prefix string `json:"prefix,omitempty"`
	Value  string `json:"value"`
}

// CredentialsResolved reports whether Credentials holds one resolved
// credential for each of spec.bundle.egress.credentials, and the bottle
// has its CA when it has any: providers refuse to make a bundle whose
// credentials were never read rather than make it without them.
func (b *Bottle) CredentialsResolved() bool {
	n := len(b.Spec.Bundle.Egress.Credentials)
	return len(b.Credentials) == n && (n == 0 || b.CA != nil)
}

// CredentialDigests returns "HOST HEADER=DIGEST" for each resolved
// credential, in the spec's order: what stands for them in a config hash.
func (b *Bottle) CredentialDigests() []string {
	out := make([]string, len(b.Credentials))
	for i, c := range b.Credentials {
		out[i] = c.Host + " " + c.Header + "=" + c.Digest
	}
	return out
}

// BundleSecretsJSON is the content of BundleSecretsFile: the credentials'
// values, the CA's key and the trusted certificates. It goes to the bundle
// and nowhere else; nil when the bottle has no credentials.
func (b *Bottle) BundleSecretsJSON() ([]byte, error) {
	if len(b.Credentials) == 0 {
		return nil, nil
	}
	if b.CA == nil {
		return nil, fmt.Errorf("internal: bottle %s: credentials without a CA", b.Metadata.Name)
	}
	f := BundleSecrets{CACert: string(b.CA.Cert), CAKey: string(b.CA.Key), Trust: string(b.Trust)}
	for _, c := range b.Credentials {
		f.Credentials = append(f.Credentials, BundleCredential{Host: c.Host, Header: c.Header, Prefix: c.Prefix, Value: c.Value})
	}
	return json.Marshal(f)
}

// CredentialEnv is what the agent's environment gets of the credentials:
// each agentEnv set to CredentialPlaceholder (never the value), and the
// variables that point common clients at the bottle's CA. Nothing without
// credentials.
func (b *Bottle) CredentialEnv() []string {
	if len(b.Spec.Bundle.Egress.Credentials) == 0 {
		return nil
	}
	var env []string
	for _, c := range b.Spec.Bundle.Egress.Credentials {
		if c.AgentEnv != "" {
			env = append(env, c.AgentEnv+"="+CredentialPlaceholder)
		}
	}
	for _, k := range CAEnvFile {
		env = append(env, k+"="+AgentCAFile)
	}
	for _, k := range CAEnvBundle {
		env = append(env, k+"="+AgentCABundle)
	}
	return env
}

// CAFiles are the files that give the agent the bottle's CA: the
// certificate alone (AgentCAFile), and joined after roots, the CA bundle
// of the agent's image or what stands for it (AgentCABundle). Both are
// root's and world-readable: a certificate is public.
func CAFiles(caCert, roots []byte) []File {
	joined := make([]byte, 0, len(roots)+len(caCert)+1)
	joined = append(joined, roots...)
	if len(joined) > 0 && joined[len(joined)-1] != '\n' {
		joined = append(joined, '\n')
	}
	joined = append(joined, caCert...)
	return []File{
		{Path: AgentCAFile, Content: caCert, Mode: 0o644},
		{Path: AgentCABundle, Content: joined, Mode: 0o644},
	}
}

// ImageCABundles are where images keep their CA bundle, most common
// first: Debian, Ubuntu and Alpine; Fedora and RHEL; openSUSE; Alpine's
// and the BSDs' other name. A provider joins the first its agent's image
// has to the bottle's CA (CAFiles).
var ImageCABundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// MaxCABundleSize caps an image's CA bundle read (Debian's is about 220
// KiB).
const MaxCABundleSize = 4 << 20
