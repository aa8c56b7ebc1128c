package bottle

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// Secret is a resolved secret: the variable Name, its Value and Digest, a
// keyed hash of name and value that stands for the value in config hashes.
// Value never appears when a Secret is formatted (%v, %+v, %#v, %s...) or
// marshalled to JSON: only Name and Digest do.
type Secret struct {
	Name   string
	Value  string
	Digest string
}

// Redacted stands for a secret's value wherever a Secret is printed.
const Redacted = "REDACTED"

// String shows the name and the digest, never the value.
func (s Secret) String() string {
	return "{" + s.Name + " " + Redacted + " " + s.Digest + "}"
}

// GoString is the %#v form, with the value redacted.
func (s Secret) GoString() string {
	return fmt.Sprintf("bottle.Secret{Name:%q, Value:%q, Digest:%q}", s.Name, Redacted, s.Digest)
}

// Format makes every verb print a redacted form: fmt would otherwise reach
// the value through %x, %q or %d of a Secret, or of a struct that holds one.
func (s Secret) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = io.WriteString(f, s.GoString())
	case verb == 'v' && f.Flag('+'):
		_, _ = io.WriteString(f, "{Name:"+s.Name+" Value:"+Redacted+" Digest:"+s.Digest+"}")
	case verb == 'q':
		_, _ = io.WriteString(f, strconv.Quote(s.String()))
	default:
		_, _ = io.WriteString(f, s.String())
	}
}

// MarshalJSON writes the name and the digest, and REDACTED for the value.
func (s Secret) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name   string `json:"name"`
		Value  string `json:"value"`
		Digest string `json:"digest"`
	}{s.Name, Redacted, s.Digest})
}

// MarshalText is the String form, so that a Secret used as text (a map key,
// an encoder that prefers TextMarshaler) stays redacted too.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// SecretsResolved reports whether Secrets holds a value for exactly the
// names spec.agent.secretEnv lists: providers refuse to make an agent whose
// secrets were never read rather than make it without them.
func (b *Bottle) SecretsResolved() bool {
	if len(b.Secrets) != len(b.Spec.Agent.SecretEnv) {
		return false
	}
	for _, s := range b.Secrets {
		if _, ok := b.Spec.Agent.SecretEnv[s.Name]; !ok {
			return false
		}
	}
	return true
}

// SecretDigests returns "NAME=DIGEST" for each resolved secret, sorted: what
// stands for the secrets in a config hash. It holds no value.
func (b *Bottle) SecretDigests() []string {
	out := make([]string, len(b.Secrets))
	for i, s := range b.Secrets {
		out[i] = s.Name + "=" + s.Digest
	}
	slices.Sort(out)
	return out
}

// formatRedacted is the Format of a type that holds a secret: %#v prints
// its GoString, %q its String quoted, every other verb its String, so
// that no verb reaches the fields fmt would otherwise print.
func formatRedacted(f fmt.State, verb rune, v interface {
	String() string
	GoString() string
}) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = io.WriteString(f, v.GoString())
	case verb == 'q':
		_, _ = io.WriteString(f, strconv.Quote(v.String()))
	default:
		_, _ = io.WriteString(f, v.String())
	}
}
