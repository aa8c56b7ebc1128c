package docker

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// Addresses are where a bottle's parts are on its networks, as the engine
// has them: what a self-test probes from inside the agent.
type Addresses struct {
	BundleIP        string
	AgentIP         string // "" without a docker agent (smolvm)
	InternalSubnet  string
	InternalGateway string // the gateway's address; the host does not hold it
	EgressSubnet    string
	EgressGateway   string // the host's address on the egress network
}

// Addresses reads the bottle's networks and bundle from the engine.
func (p *Provider) Addresses(ctx context.Context, bottleName string) (Addresses, error) {
	var a Addresses
	nets, err := p.eng.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", bottle.LabelName+"="+bottleName))})
	if err != nil {
		return a, fmt.Errorf("list the networks of bottle %s: %w", bottleName, err)
	}
	for _, n := range nets {
		if n.Labels[bottle.LabelHash] == "" || len(n.IPAM.Config) == 0 {
			continue
		}
		c := n.IPAM.Config[0]
		switch n.Name {
		case bottle.ResourceName(bottleName, bottle.RoleInternal):
			a.InternalSubnet, a.InternalGateway = c.Subnet, c.Gateway
		case bottle.ResourceName(bottleName, bottle.RoleEgress):
			a.EgressSubnet, a.EgressGateway = c.Subnet, c.Gateway
		}
	}
	if a.InternalSubnet == "" {
		return a, fmt.Errorf("bottle %s has no internal network: apply its spec first", bottleName)
	}
	// One list for both containers; it holds their addresses.
	cs, err := p.eng.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", bottle.LabelName+"="+bottleName))})
	if err != nil {
		return a, fmt.Errorf("list the containers of bottle %s: %w", bottleName, err)
	}
	internal := bottle.ResourceName(bottleName, bottle.RoleInternal)
	ip := func(role string) string {
		if c, ok := pickOurs(cs, bottleName, role); ok && c.NetworkSettings != nil {
			if ep := c.NetworkSettings.Networks[internal]; ep != nil {
				return ep.IPAddress
			}
		}
		return ""
	}
	a.BundleIP, a.AgentIP = ip(bottle.RoleBundle), ip(bottle.RoleAgent)
	if a.BundleIP == "" {
		return a, fmt.Errorf("the bundle of bottle %s has no address on %s: run bottle-apply to replace it", bottleName, bottle.ResourceName(bottleName, bottle.RoleInternal))
	}
	return a, nil
}

// ProbeDir is where InstallProbe puts probe programs in an agent.
const ProbeDir = "/.bottle-apply"

// InstallProbe copies the static program bin into the bottle's agent under
// ProbeDir, at a new name each time, and returns its path: a copy that the
// agent had changed is never run.
func (p *Provider) InstallProbe(ctx context.Context, bottleName, bin string) (string, error) {
	g, err := p.guestEngine()
	if err != nil {
		return "", err
	}
	if err := checkStatic(bin); err != nil {
		return "", err
	}
	st, err := os.Stat(bin)
	if err != nil {
		return "", err
	}
	id, err := p.Agent(ctx, bottleName)
	if err != nil {
		return "", err
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	guest := path.Join(ProbeDir, "probe-"+hex.EncodeToString(nonce[:]))
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeProbe(pw, bin, guest, st.Size(), st.ModTime())) }()
	err = g.CopyToContainer(ctx, id, "/", pr, container.CopyToContainerOptions{})
	pr.CloseWithError(err)
	if err != nil {
		return "", fmt.Errorf("copy the probe program into the agent of bottle %s: %w", bottleName, err)
	}
	return guest, nil
}

func writeProbe(w io.Writer, bin, guest string, size int64, mtime time.Time) error {
	f, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(w)
	dir := ProbeDir[1:] + "/"
	if err := tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: guest[1:], Mode: 0o755, Size: size, ModTime: mtime}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, size); err != nil {
		return err
	}
	return tw.Close()
}
