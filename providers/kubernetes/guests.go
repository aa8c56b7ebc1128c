package kubernetes

import (
	"context"
	"fmt"
	"io"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/guest"
)

// Guest returns the running agent or bundle of a bottle on the cluster,
// found by its labels in whatever namespace it is.
func (p *Provider) Guest(ctx context.Context, bottleName, role string) (guest.Guest, error) {
	c, err := p.Cluster()
	if err != nil {
		return nil, err
	}
	pod, err := c.FindPod(ctx, "", bottleName, role)
	if err != nil {
		return nil, err
	}
	return c.Guest(pod, role, podUser(pod, role), fmt.Sprintf("the %s of bottle %s", role, bottleName)), nil
}

// BundleLogs streams the decision log of the bottle's bundle, following it
// with follow.
func (p *Provider) BundleLogs(ctx context.Context, bottleName string, follow bool) (io.ReadCloser, error) {
	c, err := p.Cluster()
	if err != nil {
		return nil, err
	}
	pod, err := c.FindPod(ctx, "", bottleName, bottle.RoleBundle)
	if err != nil {
		return nil, err
	}
	return c.Logs(ctx, pod, containerBundle, follow, -1)
}
