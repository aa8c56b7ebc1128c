// Package kubernetes puts bottles on a Kubernetes cluster: translation of a
// bottle into namespaced objects (the bundle's Deployment and Service, the
// agent's StatefulSet, NetworkPolicies, PersistentVolumeClaims and the
// files' Secret), server-side apply, and the agent's guest through the API
// (exec, cp, logs), so that it works from a laptop against a remote
// cluster.
package kubernetes

import (
	"fmt"
	"sync"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// FieldManager is the server-side apply field manager of every object
// bottle-apply writes.
const FieldManager = "bottle-apply"

// Cluster is one cluster as a kubeconfig context reaches it.
type Cluster struct {
	// Context is the kubeconfig context ("" for the current one).
	Context string
	// Config is the REST configuration, for remote commands (exec, cp).
	Config *rest.Config
	// Client is the typed clientset.
	Client kubernetes.Interface
}

// Connect reads the kubeconfig as kubectl does (KUBECONFIG honoured, else
// ~/.kube/config) and returns the cluster of context ("" for the current
// one). It makes no call to the cluster.
func Connect(kubeconfig, context string) (*Cluster, error) {
	quietKlog()
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		what := "the current kubeconfig context"
		if context != "" {
			what = "kubeconfig context " + context
		}
		return nil, fmt.Errorf("%s: %w\nset KUBECONFIG, or spec.kubernetes.context to a context of your kubeconfig (kubectl config get-contexts)", what, err)
	}
	cfg.UserAgent = "bottle-apply"
	// Many small calls in a burst (observe lists every kind at once):
	// client-go's default of 5 per second would throttle a plain apply.
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	return &Cluster{Context: context, Config: cfg, Client: cs}, nil
}

// quietKlog stops client-go from writing its own lines to stderr (a
// stream it could not copy, a watch it restarts): what matters reaches
// bottle-apply as an error, and bottle-apply's log is zerolog's.
var quietKlog = sync.OnceFunc(func() { klog.SetLogger(logr.Discard()) })
