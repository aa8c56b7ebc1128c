package app

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/connhelper"
	clicontext "github.com/docker/cli/cli/context"
	ctxdocker "github.com/docker/cli/cli/context/docker"
	"github.com/docker/cli/cli/context/store"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/tlsconfig"
)

// endpoint is where the Docker engine is and how to reach it, found as the
// docker CLI finds it: DOCKER_HOST (with DOCKER_TLS_VERIFY and
// DOCKER_CERT_PATH), else the docker context that DOCKER_CONTEXT names,
// else the CLI config's currentContext, else the default socket.
type endpoint struct {
	// Host is the engine's address: unix://PATH, tcp://HOST:PORT or
	// ssh://[USER@]HOST[:PORT][/SOCKET]; never empty.
	Host string
	// Source says where Host came from, for messages: "DOCKER_HOST",
	// `docker context "remote"`, "the default address".
	Source string
	// Context is the docker context's name; empty for DOCKER_HOST and the
	// default, whose TLS settings come from the environment.
	Context string
	// TLS is the context's TLS material (and SkipTLSVerify); nil when the
	// context has none.
	TLS *tls.Config
}

// connectTimeout bounds how long reaching the engine may take: the TCP
// connect (the client's default) and ssh's connect, where the docker CLI
// waits 30 s, and a TLS handshake, which the client does not bound.
const connectTimeout = 10 * time.Second

// sshFlags are added to the user's ssh for an ssh:// engine. Everything
// else (keys, known hosts, jump hosts) comes from the user's ssh config,
// as for the docker CLI.
var sshFlags = []string{"-o", fmt.Sprintf("ConnectTimeout=%d", int(connectTimeout/time.Second))}

// findEndpoint says which engine the environment names, reading docker
// contexts through the docker CLI's own context store.
func findEndpoint() (endpoint, error) {
	if h := os.Getenv(client.EnvOverrideHost); h != "" {
		return endpoint{Host: h, Source: "DOCKER_HOST"}, nil
	}
	dir := dockerConfigDir()
	name := os.Getenv("DOCKER_CONTEXT")
	if name == "" && dir != "" {
		cfg, err := config.Load(dir)
		if err != nil {
			return endpoint{}, fmt.Errorf("docker CLI config: %w; fix it, or set DOCKER_HOST", err)
		}
		name = cfg.CurrentContext
	}
	if name == "" || name == "default" {
		return endpoint{Host: client.DefaultDockerHost, Source: "the default address"}, nil
	}
	return contextEndpoint(filepath.Join(dir, "contexts"), name)
}

// dockerConfigDir is the docker CLI's configuration directory:
// $DOCKER_CONFIG, else ~/.docker; "" when neither is known. (The CLI's
// config.Dir reads the environment once per process.)
func dockerConfigDir() string {
	if d := os.Getenv(config.EnvOverrideConfigDir); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, ".docker")
}

// contextEndpoint reads the docker endpoint of the context name, and its
// TLS material, from the context store in dir.
func contextEndpoint(dir, name string) (endpoint, error) {
	s := store.New(dir, store.NewConfig(
		func() any { return &map[string]any{} },
		store.EndpointTypeGetter(ctxdocker.DockerEndpoint, func() any { return &ctxdocker.EndpointMeta{} }),
	))
	src := fmt.Sprintf("docker context %q", name)
	meta, err := s.GetMetadata(name)
	if errdefs.IsNotFound(err) {
		return endpoint{}, fmt.Errorf("%s not found (%s); run `docker context ls`", src, s.GetStorageInfo(name).MetadataPath)
	} else if err != nil {
		return endpoint{}, fmt.Errorf("%s: %w", src, err)
	}
	em, err := ctxdocker.EndpointFromContext(meta)
	if err != nil {
		return endpoint{}, fmt.Errorf("%s: %w", src, err)
	}
	ep := endpoint{Host: em.Host, Source: src, Context: name}
	if ep.Host == "" {
		ep.Host = client.DefaultDockerHost
	}
	withTLS, err := ctxdocker.WithTLSData(s, name, em)
	if err != nil {
		return endpoint{}, fmt.Errorf("%s: %w", src, err)
	}
	if ep.TLS, err = contextTLS(withTLS.TLSData, em.SkipTLSVerify); err != nil {
		return endpoint{}, fmt.Errorf("%s: %w", src, err)
	}
	return ep, nil
}

// contextTLS is the client side of a context's TLS material, as the docker
// CLI makes it: the context's CA (else the system's), its client
// certificate, and SkipTLSVerify. nil when the context has none.
func contextTLS(d *clicontext.TLSData, skipVerify bool) (*tls.Config, error) {
	if d == nil && !skipVerify {
		return nil, nil
	}
	var opts []func(*tls.Config)
	if d != nil && d.CA != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(d.CA) {
			return nil, errors.New("its TLS ca.pem holds no PEM certificate")
		}
		opts = append(opts, func(c *tls.Config) { c.RootCAs = pool })
	}
	if d != nil && d.Key != nil && d.Cert != nil {
		if b, _ := pem.Decode(d.Key); b == nil {
			return nil, errors.New("its TLS key.pem holds no PEM private key")
		}
		cert, err := tls.X509KeyPair(d.Cert, d.Key)
		if err != nil {
			return nil, fmt.Errorf("its TLS cert.pem and key.pem: %w", err)
		}
		opts = append(opts, func(c *tls.Config) { c.Certificates = []tls.Certificate{cert} })
	}
	if skipVerify {
		opts = append(opts, func(c *tls.Config) { c.InsecureSkipVerify = true })
	}
	return tlsconfig.ClientDefault(opts...), nil
}

// errAddress is an engine address that no attempt can reach: it is refused
// before any call.
var errAddress = errors.New("not an engine address")

// clientOpts are the Docker client's options for the endpoint. An address
// that can never work (an unknown scheme, a malformed ssh URL) is an error
// here, before any call.
func (e endpoint) clientOpts() ([]client.Opt, error) {
	scheme, rest, ok := strings.Cut(e.Host, "://")
	if !ok {
		scheme = ""
	}
	bad := func(why string) error {
		return fmt.Errorf("%s %q: %w: %s; want unix:///PATH, tcp://HOST:PORT or ssh://[USER@]HOST[:PORT]", e.Source, e.Host, errAddress, why)
	}
	switch scheme {
	case "ssh":
		// ssh runs `docker system dial-stdio` on the host, which speaks to
		// the engine there, as the docker CLI does; every connection is an
		// ssh process of its own.
		h, err := connhelper.GetConnectionHelperWithSSHOpts(e.Host, sshFlags)
		if err != nil {
			return nil, bad(err.Error())
		}
		tr := &http.Transport{DialContext: h.Dialer, MaxIdleConns: 6, IdleConnTimeout: 30 * time.Second}
		// The HTTP client comes last: WithHost would give it a proxy from
		// the environment, which ssh does not go through.
		return []client.Opt{client.WithHost(h.Host), client.WithHTTPClient(&http.Client{Transport: tr}), client.WithVersionFromEnv()}, nil
	case "unix":
		if rest == "" {
			return nil, bad("no socket path")
		}
	case "tcp":
		u, err := url.Parse(e.Host)
		if err != nil || u.Hostname() == "" {
			return nil, bad("no host")
		}
	case "npipe":
		if runtime.GOOS != "windows" {
			return nil, bad("named pipes are Windows'")
		}
	case "":
		return nil, bad("no scheme")
	default:
		return nil, bad(fmt.Sprintf("unknown scheme %q", scheme))
	}
	var opts []client.Opt
	if e.Context == "" {
		// DOCKER_HOST and the default: TLS from DOCKER_CERT_PATH and
		// DOCKER_TLS_VERIFY, the version from DOCKER_API_VERSION.
		opts = append(opts, client.FromEnv)
		if os.Getenv(client.EnvTLSVerify) != "" && os.Getenv(client.EnvOverrideCertPath) == "" {
			// As the docker CLI: the certificates default to its config
			// directory.
			d := dockerConfigDir()
			opts = append(opts, client.WithTLSClientConfig(filepath.Join(d, "ca.pem"), filepath.Join(d, "cert.pem"), filepath.Join(d, "key.pem")))
		}
		opts = append(opts, client.WithHost(e.Host))
	} else {
		if e.TLS != nil && scheme == "tcp" {
			opts = append(opts, client.WithHTTPClient(&http.Client{
				Transport:     &http.Transport{TLSClientConfig: e.TLS},
				CheckRedirect: client.CheckRedirect,
			}))
		}
		opts = append(opts, client.WithHost(e.Host), client.WithVersionFromEnv())
	}
	return append(opts, withTLSHandshakeTimeout(connectTimeout)), nil
}

// withTLSHandshakeTimeout bounds the TLS handshake, which the client leaves
// unbounded: an engine port that accepts and never answers fails instead
// of hanging the run.
func withTLSHandshakeTimeout(d time.Duration) client.Opt {
	return func(c *client.Client) error {
		if tr, ok := c.HTTPClient().Transport.(*http.Transport); ok {
			tr.TLSHandshakeTimeout = d
		}
		return nil
	}
}
