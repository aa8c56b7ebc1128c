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
	"crypto/tls"
	"errors"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// New makes a CA for bottle name whose credentials go to hosts.
func New(name string, hosts []string, now time.Time) (*bottle.CA, error) {
	return nil, errors.New("ca: not yet")
}

// Load returns the CA kept under dir for bottle name, if it permits
// exactly hosts and is not about to expire; otherwise it makes a new one
// and, when save is set, keeps it (mode 0600) in place of the old.
// made reports a new CA.
func Load(dir, name string, hosts []string, now time.Time, save bool) (c *bottle.CA, made bool, err error) {
	return nil, false, errors.New("ca: not yet")
}

// Issuer issues the certificates of credentialed hosts, signed by a CA.
type Issuer struct{}

// NewIssuer reads a CA's PEM certificate and key.
func NewIssuer(certPEM, keyPEM []byte) (*Issuer, error) { return nil, errors.New("ca: not yet") }

// Certificate returns a certificate for host, made or cached.
func (i *Issuer) Certificate(host string, now time.Time) (*tls.Certificate, error) {
	return nil, errors.New("ca: not yet")
}

// FallbackRootsPEM are the roots bottle-apply carries, PEM: what an agent
// whose image has no CA bundle gets beside the bottle's CA.
func FallbackRootsPEM() []byte { return nil }
