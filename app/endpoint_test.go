package app

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// writeFile writes s at p, making its directories.
func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// contextDir is where the docker CLI keeps a context's files of kind
// ("meta" or "tls") under the config directory dir.
func contextDir(dir, kind, name string) string {
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(dir, "contexts", kind, hex.EncodeToString(sum[:]))
}

func TestFindEndpoint(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_HOST", "")
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("DOCKER_CONTEXT", "")
	if ep, err := findEndpoint(); ep.Host != client.DefaultDockerHost || ep.Context != "" || err != nil {
		t.Fatalf("no config: %+v %v", ep, err)
	}
	writeFile(t, filepath.Join(dir, "config.json"), `{"currentContext":"remote"}`)
	if _, err := findEndpoint(); err == nil || !strings.Contains(err.Error(), `docker context "remote" not found`) {
		t.Fatalf("missing context: %v", err)
	}
	writeFile(t, filepath.Join(contextDir(dir, "meta", "remote"), "meta.json"),
		`{"Name":"remote","Metadata":{"Description":"a box"},"Endpoints":{"docker":{"Host":"ssh://me@box","SkipTLSVerify":false}}}`)
	if ep, err := findEndpoint(); ep.Host != "ssh://me@box" || ep.Context != "remote" || ep.TLS != nil || err != nil {
		t.Fatalf("current context: %+v %v", ep, err)
	}
	t.Setenv("DOCKER_CONTEXT", "default")
	if ep, err := findEndpoint(); ep.Host != client.DefaultDockerHost || err != nil {
		t.Fatalf("DOCKER_CONTEXT=default: %+v %v", ep, err)
	}
	t.Setenv("DOCKER_CONTEXT", "remote")
	t.Setenv("DOCKER_HOST", "tcp://1.2.3.4:2375")
	if ep, err := findEndpoint(); ep.Host != "tcp://1.2.3.4:2375" || ep.Source != "DOCKER_HOST" || err != nil {
		t.Fatalf("DOCKER_HOST wins: %+v %v", ep, err)
	}
	t.Setenv("DOCKER_HOST", "")
	writeFile(t, filepath.Join(dir, "config.json"), `{"currentContext": `)
	t.Setenv("DOCKER_CONTEXT", "")
	if _, err := findEndpoint(); err == nil || !strings.Contains(err.Error(), "docker CLI config") {
		t.Fatalf("a broken config: %v", err)
	}
}

// TestContextTLS reads a tcp context's TLS material from the store, laid
// out as the docker CLI writes it.
func TestContextTLS(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_HOST", "")
	t.Setenv("DOCKER_CONFIG", dir)
	certs := testenv.NewCerts(t)
	writeFile(t, filepath.Join(contextDir(dir, "meta", "tls"), "meta.json"),
		`{"Name":"tls","Metadata":{},"Endpoints":{"docker":{"Host":"tcp://127.0.0.1:2376","SkipTLSVerify":false}}}`)
	tlsDir := filepath.Join(contextDir(dir, "tls", "tls"), "docker")
	writeFile(t, filepath.Join(tlsDir, "ca.pem"), string(certs.CA.Cert))
	writeFile(t, filepath.Join(tlsDir, "cert.pem"), string(certs.Client.Cert))
	writeFile(t, filepath.Join(tlsDir, "key.pem"), string(certs.Client.Key))
	writeFile(t, filepath.Join(contextDir(dir, "meta", "skip"), "meta.json"),
		`{"Name":"skip","Metadata":{},"Endpoints":{"docker":{"Host":"tcp://127.0.0.1:2376","SkipTLSVerify":true}}}`)

	t.Setenv("DOCKER_CONTEXT", "tls")
	ep, err := findEndpoint()
	if err != nil || ep.TLS == nil || ep.TLS.RootCAs == nil || len(ep.TLS.Certificates) != 1 || ep.TLS.InsecureSkipVerify {
		t.Fatalf("context with TLS material: %+v %v", ep, err)
	}
	if _, err := ep.clientOpts(); err != nil {
		t.Fatalf("clientOpts: %v", err)
	}
	t.Setenv("DOCKER_CONTEXT", "skip")
	if ep, err := findEndpoint(); err != nil || ep.TLS == nil || !ep.TLS.InsecureSkipVerify || ep.TLS.RootCAs != nil {
		t.Fatalf("context with SkipTLSVerify: %+v %v", ep, err)
	}

	writeFile(t, filepath.Join(tlsDir, "ca.pem"), "not a certificate")
	t.Setenv("DOCKER_CONTEXT", "tls")
	if _, err := findEndpoint(); err == nil || !strings.Contains(err.Error(), `docker context "tls": its TLS ca.pem holds no PEM certificate`) {
		t.Fatalf("a broken ca.pem: %v", err)
	}
}

func TestClientOptsRefusesAddressesThatCannotWork(t *testing.T) {
	t.Setenv("DOCKER_HOST", "")
	t.Setenv("DOCKER_TLS_VERIFY", "")
	t.Setenv("DOCKER_CERT_PATH", "")
	cases := []struct {
		host string
		want string // in the error; "" for none
	}{
		{"unix:///var/run/docker.sock", ""},
		{"tcp://127.0.0.1:2376", ""},
		{"tcp://box.example:2376", ""},
		{"ssh://me@box", ""},
		{"ssh://me@box:2222/run/docker.sock", ""},
		{"ssh://box", ""},
		{"foo://box", `unknown scheme "foo"`},
		{"http://box:2375", `unknown scheme "http"`},
		{"box:2375", "no scheme"},
		{"unix://", "no socket path"},
		{"tcp://:2376", "no host"},
		{"ssh://me:secret@box", "plain-text password is not supported"},
		{"ssh://me@box?x=1", "query parameters are not allowed"},
		{"ssh://", "hostname is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.host, func(t *testing.T) {
			_, err := endpoint{Host: tc.host, Source: "DOCKER_HOST"}.clientOpts()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("clientOpts: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, errAddress) || !strings.Contains(err.Error(), tc.want) ||
				!strings.HasPrefix(err.Error(), `DOCKER_HOST "`+tc.host+`": not an engine address`) {
				t.Fatalf("clientOpts: %v; want an address error containing %q", err, tc.want)
			}
		})
	}
}

// fakeTLSEngine is an engine API on 127.0.0.1 that answers the version
// ping and docker info over TLS, asking for a client certificate signed by
// the CA of certs, as `dockerd --tlsverify` does. It counts its calls.
func fakeTLSEngine(t *testing.T, certs *testenv.Certs) (host string, calls *atomic.Int32) {
	t.Helper()
	calls = new(atomic.Int32)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Ostype", "linux")
		if strings.HasSuffix(r.URL.Path, "/info") {
			_, _ = io.WriteString(w, `{"ID":"fake-engine-id","OSType":"linux","Architecture":"aarch64"}`)
			return
		}
		_, _ = io.WriteString(w, "OK")
	}))
	cert, err := tls.X509KeyPair(certs.Server.Cert, certs.Server.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certs.CA.Cert)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return "tcp://" + srv.Listener.Addr().String(), calls
}

// TestTLSFromEnv is DOCKER_HOST=tcp:// with DOCKER_TLS_VERIFY and
// DOCKER_CERT_PATH, which client.FromEnv reads (DOCKER_TLS_VERIFY alone
// takes the certificates from the docker CLI's config directory, as the
// CLI does), against an engine that wants a client certificate. The
// engine's description comes from its docker info, once.
func TestTLSFromEnv(t *testing.T) {
	certs := testenv.NewCerts(t)
	other := testenv.NewCerts(t)
	good := certs.ClientDir(t)
	cases := []struct {
		name, verify, certPath, config string
		want                           string // in the error; "" for none
	}{
		{"verify", "1", good, "", ""},
		{"encrypted, not verified", "", good, "", ""},
		{"certificates in the config directory", "1", "", good, ""},
		{"no certificates", "1", filepath.Join(good, "none"), "", "none/ca.pem"},
		{"a client certificate the engine does not trust", "1", testenv.PEMDir(t, certs.CA.Cert, other.Client), "", "the engine refused the TLS handshake"},
		{"an engine certificate the client does not trust", "1", other.ClientDir(t), "", "the engine's TLS certificate is not one the client trusts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host, calls := fakeTLSEngine(t, certs)
			t.Setenv("DOCKER_HOST", host)
			t.Setenv("DOCKER_TLS_VERIFY", tc.verify)
			t.Setenv("DOCKER_CERT_PATH", tc.certPath)
			t.Setenv("DOCKER_CONFIG", tc.config)
			t.Setenv("XDG_CACHE_HOME", t.TempDir())
			start := time.Now()
			ps, err := NewProviders(&Options{})
			var e Engine
			if err == nil {
				e, err = ps.Engine(t.Context())
			}
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Engine: %v; want an error containing %q", err, tc.want)
				}
				t.Logf("error: %v (%s)", err, time.Since(start))
				if took := time.Since(start); took > 5*time.Second {
					t.Fatalf("an address that cannot work took %s to fail: retried?", took)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Engine{Endpoint: host, ID: "fake-engine-id", OS: "linux", Arch: "aarch64"}
			if e != want || e.Platform() != "linux/arm64" {
				t.Fatalf("Engine = %+v (%s), want %+v", e, e.Platform(), want)
			}
			if n := calls.Load(); n != 2 {
				t.Fatalf("%d calls, want 2 (the version ping, docker info)", n)
			}
			// The next run reads the record, and asks nothing.
			ps, err = NewProviders(&Options{})
			if err != nil {
				t.Fatal(err)
			}
			if e, err := ps.Engine(t.Context()); e != want || err != nil {
				t.Fatalf("Engine from the record = %+v, %v", e, err)
			}
			if n := calls.Load(); n != 2 {
				t.Fatalf("%d calls after a second Engine, want still 2", n)
			}
		})
	}
}
