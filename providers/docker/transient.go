package docker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/reconcile"
)

// transient marks engine errors that a later attempt may not meet (the
// engine restarting, or out of reach for a moment) so that the run
// observes again, with backoff, instead of failing. An error that says
// the engine's address can never work is returned at once, saying why.
func transient(err error) error {
	if err == nil || errors.Is(err, reconcile.ErrRetry) {
		return err
	}
	if why := unreachable(err); why != "" {
		return fmt.Errorf("%w\n%s; not retried", err, why)
	}
	// A daemon that is shutting down answers 500s ("failed to update
	// store ..."): an internal error is retried too, within the bound.
	if client.IsErrConnectionFailed(err) || cerrdefs.IsUnavailable(err) || cerrdefs.IsInternal(err) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w (%w)", err, reconcile.ErrRetry)
	}
	return err
}

// unreachable says why err shows that the engine's address can never
// work, or "" when a later attempt may pass. A name that does not resolve,
// a TLS certificate one side refuses, TLS spoken to a port that does not,
// ssh that cannot log in or finds no docker CLI on the host: these stay
// until someone changes the address or the credentials. A refused or
// reset connection, a timeout, an engine that does not answer behind ssh,
// may be an engine or a host restarting, and are not among them.
func unreachable(err error) string {
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return fmt.Sprintf("the engine's host %q does not resolve: check DOCKER_HOST or the docker context", dns.Name)
	}
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	if errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) {
		return "the engine's TLS certificate is not one the client trusts: check the CA (ca.pem of DOCKER_CERT_PATH or of the docker context) and that the certificate names the host"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && strings.HasPrefix(op.Err.Error(), "tls:") {
		return fmt.Sprintf("the engine refused the TLS handshake (%s): it does not accept the client's certificate (cert.pem and key.pem of DOCKER_CERT_PATH or of the docker context)", op.Err)
	}
	var header tls.RecordHeaderError
	if errors.As(err, &header) {
		return "the engine's port does not speak TLS: use its TLS port, or unset DOCKER_TLS_VERIFY and DOCKER_CERT_PATH"
	}
	return sshUnreachable(err.Error())
}

// sshExit matches the error of the docker CLI's ssh connection helper once
// ssh has exited: its exit status, and what it said on stderr.
var sshExit = regexp.MustCompile(`(?s)has exited with exit status (\d+), make sure the URL is valid.*?: stderr=(.*)`)

// sshLoginFailures are what ssh says when it cannot log in, and never
// will with this address, configuration and keys.
var sshLoginFailures = []string{
	"Could not resolve hostname",
	"Permission denied",
	"Host key verification failed",
	"REMOTE HOST IDENTIFICATION HAS CHANGED",
	"Too many authentication failures",
	"Unable to negotiate",
	"no matching host key type",
	"Bad owner or permissions",
	"UNPROTECTED PRIVATE KEY FILE",
	"Bad configuration option",
}

// sshUnreachable says why the error msg of an ssh connection means it can
// never work, or "" when it may pass (a refused connection, a timeout, an
// engine that the docker CLI on the host cannot reach for now).
func sshUnreachable(msg string) string {
	m := sshExit.FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	status, stderr := m[1], strings.TrimSpace(m[2])
	switch {
	case status == "127" || status == "126" || strings.Contains(stderr, "docker: command not found") || strings.Contains(stderr, "docker: not found"):
		return "ssh logged in, but the host has no docker CLI that a non-interactive ssh session can run (the connection runs `docker system dial-stdio` there; install the docker CLI on the host or put it on the PATH of ssh sessions)"
	case strings.Contains(stderr, "permission denied while trying to connect to the Docker daemon socket"):
		return "ssh logged in, but that user may not use the engine's socket on the host: add it to the docker group there, or log in as another user"
	case status != "255":
		return ""
	}
	if strings.Contains(stderr, "Temporary failure in name resolution") {
		return ""
	}
	for _, f := range sshLoginFailures {
		if strings.Contains(stderr, f) {
			return "ssh cannot reach or log in to the engine's host (" + lastLine(stderr) + "): check the address and your ssh configuration with `ssh HOST docker version`"
		}
	}
	return ""
}

// lastLine is the last non-empty line of s: ssh's own error comes after
// what the host's login scripts print.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
