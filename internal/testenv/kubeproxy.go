package testenv

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeProxy stands between bottle-apply and a cluster's API server and
// counts the calls: kubeconfig is the file to give bottle-apply; the
// proxy authenticates to the cluster with the credentials of the
// kubeconfig it was made from.
type KubeProxy struct {
	Kubeconfig string
	srv        *httptest.Server
	mu         sync.Mutex
	calls      []string
}

// StartKubeProxy starts a counting proxy in front of the cluster of
// kubeconfig (its current context), on loopback, for the test's life.
func StartKubeProxy(t testing.TB, kubeconfig string) *KubeProxy {
	t.Helper()
	p, err := NewKubeProxy(kubeconfig, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// NewKubeProxy starts a counting proxy in front of the cluster of
// kubeconfig (its current context), on loopback, and writes the
// kubeconfig that names it into dir; Close stops it. It is
// StartKubeProxy for a program that is not a test (hack/bench).
func NewKubeProxy(kubeconfig, dir string) (*KubeProxy, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, err
	}
	p := &KubeProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = rt
	rp.FlushInterval = -1 // watches, logs -f and exec stream
	p.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		call := r.Method + " " + r.URL.Path
		if r.URL.RawQuery != "" {
			call += "?" + r.URL.RawQuery
		}
		p.mu.Lock()
		p.calls = append(p.calls, call)
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	kc := clientcmdapi.NewConfig()
	kc.Clusters["proxy"] = &clientcmdapi.Cluster{Server: p.srv.URL, InsecureSkipTLSVerify: true}
	kc.AuthInfos["proxy"] = &clientcmdapi.AuthInfo{}
	kc.Contexts["proxy"] = &clientcmdapi.Context{Cluster: "proxy", AuthInfo: "proxy"}
	kc.CurrentContext = "proxy"
	p.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, p.Kubeconfig); err == nil {
		err = os.Chmod(p.Kubeconfig, 0o600)
	}
	if err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Close stops the proxy.
func (p *KubeProxy) Close() { p.srv.Close() }

// Take returns the calls made since the last Take, "METHOD /path?query".
func (p *KubeProxy) Take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.calls
	p.calls = nil
	return out
}

// KubeWrites are the calls of calls that change something.
func KubeWrites(calls []string) []string {
	var out []string
	for _, c := range calls {
		if !strings.HasPrefix(c, "GET ") {
			out = append(out, c)
		}
	}
	return out
}
