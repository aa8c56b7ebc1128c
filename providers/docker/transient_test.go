package docker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/reconcile"
)

// sshFailed is the error of the docker CLI's ssh connection helper once
// ssh exited with status, having said stderr.
func sshFailed(status int, stderr string) error {
	return fmt.Errorf("command [ssh -l root -p 2222 -o ConnectTimeout=10 -T -- box docker system dial-stdio] has exited with exit status %d, "+
		"make sure the URL is valid, and Docker 18.09 or later is installed on the remote host: stderr=%s", status, stderr)
}

// readFails is a connection whose reads fail with err, as the ssh
// helper's does once ssh has exited.
type readFails struct {
	net.Conn
	err error
}

func (c readFails) Read([]byte) (int, error)         { return 0, c.err }
func (c readFails) Write(p []byte) (int, error)      { return len(p), nil }
func (c readFails) Close() error                     { return nil }
func (c readFails) SetDeadline(time.Time) error      { return nil }
func (c readFails) SetReadDeadline(time.Time) error  { return nil }
func (c readFails) SetWriteDeadline(time.Time) error { return nil }

// viaClient is the error a call of the Docker client returns when its
// connection fails with err: at dialling, or at the first read when read
// is set. The client wraps it as it wraps the real thing.
func viaClient(t *testing.T, err error, read bool) error {
	t.Helper()
	dial := func(context.Context, string, string) (net.Conn, error) {
		if read {
			return readFails{err: err}, nil
		}
		return nil, err
	}
	c, cerr := client.NewClientWithOpts(client.WithHost("tcp://engine.test:2376"), client.WithDialContext(dial))
	if cerr != nil {
		t.Fatal(cerr)
	}
	defer c.Close()
	_, got := c.NetworkList(t.Context(), network.ListOptions{})
	if got == nil {
		t.Fatal("the call did not fail")
	}
	return fmt.Errorf("list networks: %w", got)
}

func TestTransient(t *testing.T) {
	t.Parallel()
	dnsNotFound := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "does-not-resolve.invalid", IsNotFound: true}}
	dnsTemporary := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "server misbehaving", Name: "box", IsTemporary: true}}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	untrusted := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	alert := &net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}
	cases := []struct {
		name  string
		err   error
		retry bool
		why   string // in the error when it is not retried; "" for no reason added
	}{
		// What an engine that restarts, or a network that blinks, does.
		{"refused", fmt.Errorf("list: %w", syscall.ECONNREFUSED), true, ""},
		{"refused, through the client", viaClient(t, refused, false), true, ""},
		{"cut", fmt.Errorf("create: %w", io.ErrUnexpectedEOF), true, ""},
		{"unavailable", fmt.Errorf("create: %w", cerrdefs.ErrUnavailable), true, ""},
		{"internal", fmt.Errorf("start: %w", cerrdefs.ErrInternal), true, ""},
		{"a lookup that may pass", viaClient(t, dnsTemporary, false), true, ""},
		{"ssh refused", viaClient(t, sshFailed(255, "ssh: connect to host box port 2222: Connection refused\r\n"), true), true, ""},
		{"ssh timed out", viaClient(t, sshFailed(255, "ssh: connect to host box port 22: Connection timed out\r\n"), true), true, ""},
		{"ssh lookup that may pass", viaClient(t, sshFailed(255, "ssh: Could not resolve hostname box: Temporary failure in name resolution\r\n"), true), true, ""},
		{"no engine behind ssh", viaClient(t, sshFailed(1, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n"), true), true, ""},

		// Errors of the engine about what was asked.
		{"invalid", fmt.Errorf("create: %w", cerrdefs.ErrInvalidArgument), false, ""},
		{"no such image", errors.New("no such image"), false, ""},

		// Addresses that can never work.
		{"a host that does not resolve", viaClient(t, dnsNotFound, false), false, `the engine's host "does-not-resolve.invalid" does not resolve`},
		{"an engine certificate the client does not trust", viaClient(t, untrusted, false), false, "the engine's TLS certificate is not one the client trusts"},
		{"a client certificate the engine refuses", viaClient(t, alert, true), false, "the engine refused the TLS handshake (tls: bad certificate)"},
		{"TLS to a port that does not speak it", viaClient(t, tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, true), false, "does not speak TLS"},
		{"ssh to a host that does not resolve", viaClient(t, sshFailed(255, "ssh: Could not resolve hostname does-not-resolve.invalid: Name or service not known\r\n"), true), false,
			"ssh cannot reach or log in to the engine's host (ssh: Could not resolve hostname does-not-resolve.invalid: Name or service not known)"},
		{"ssh refused the key", viaClient(t, sshFailed(255, "root@box: Permission denied (publickey).\r\n"), true), false, "ssh cannot reach or log in to the engine's host (root@box: Permission denied (publickey).)"},
		{"ssh does not know the host", viaClient(t, sshFailed(255, "No ED25519 host key is known for [box]:2222 and you have requested strict checking.\r\nHost key verification failed.\r\n"), true), false,
			"(Host key verification failed.)"},
		{"no docker on the host", viaClient(t, sshFailed(127, "motd\nbash: line 1: docker: command not found\n"), true), false, "the host has no docker CLI"},
		{"a user that may not use the engine", viaClient(t, sshFailed(1, "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock\n"), true), false,
			"that user may not use the engine's socket"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := transient(tc.err)
			if retry := errors.Is(got, reconcile.ErrRetry); retry != tc.retry {
				t.Fatalf("transient(%v) retries = %v, want %v", tc.err, retry, tc.retry)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("transient(%v) = %v, which does not wrap it", tc.err, got)
			}
			if tc.why != "" && (!strings.Contains(got.Error(), tc.why) || !strings.HasSuffix(got.Error(), "; not retried")) {
				t.Errorf("transient(%v) = %v, want it to say %q", tc.err, got, tc.why)
			}
			if tc.why == "" && strings.Contains(got.Error(), "not retried") {
				t.Errorf("transient(%v) = %v, which gives a reason not to retry", tc.err, got)
			}
		})
	}
	if transient(nil) != nil {
		t.Error("transient(nil) != nil")
	}
}
