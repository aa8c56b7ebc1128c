package kubernetes

import (
	"context"
	"fmt"
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// Target is what the self-test needs to know of a bottle on a cluster.
type Target struct {
	// BundleIP is the bundle Service's ClusterIP.
	BundleIP string
	// NodeAddrs are the nodes' addresses, which the agent must not reach
	// (without NetworkPolicy, every pod reaches them).
	NodeAddrs []string
	// Listening are services that listen for every pod of a cluster
	// without NetworkPolicy: each node's kubelet (10250), the API server
	// (the default/kubernetes Service).
	Listening []string
	// Arch is the GOARCH of the agent's node.
	Arch string
}

// Target reads where the bottle's bundle is and what its agent must not
// reach: two lists (the bottle's Service, the nodes) and the agent's pod's
// node.
func (p *Provider) Target(ctx context.Context, bottleName string) (Target, error) {
	var t Target
	c, err := p.Cluster()
	if err != nil {
		return t, err
	}
	sel := metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labelsOf(bottleName, bottle.RoleBundle)).String()}
	svcs, err := c.Client.CoreV1().Services("").List(ctx, sel)
	if err != nil {
		return t, fmt.Errorf("find the bundle Service of bottle %s: %w", bottleName, explain(err))
	}
	for _, s := range svcs.Items {
		if s.Name == bottle.ResourceName(bottleName, bottle.RoleBundle) && s.Annotations[annHash] != "" {
			t.BundleIP = s.Spec.ClusterIP
		}
	}
	if t.BundleIP == "" {
		return t, fmt.Errorf("bottle %s has no bundle Service on the cluster; run bottle-apply -f SPEC", bottleName)
	}
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return t, fmt.Errorf("list the cluster's nodes: %w", explain(err))
	}
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == "InternalIP" || a.Type == "ExternalIP" {
				t.NodeAddrs = append(t.NodeAddrs, a.Address)
			}
		}
		if t.Arch == "" {
			t.Arch = n.Status.NodeInfo.Architecture
		}
	}
	for _, a := range t.NodeAddrs {
		if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() {
			t.Listening = append(t.Listening, netip.AddrPortFrom(ip, 10250).String())
		}
	}
	if api, err := c.Client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{}); err == nil {
		if ip, err := netip.ParseAddr(api.Spec.ClusterIP); err == nil && ip.Is4() {
			t.Listening = append(t.Listening, netip.AddrPortFrom(ip, 443).String())
		}
	}
	return t, nil
}
