package docker

import (
	"context"
	"fmt"
	"io"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// BundleLogs streams what the bottle's bundle wrote to its stdout (its
// daemons' JSON lines), from its start, and on as it writes when follow is
// set, until ctx is done. Closing the reader ends the stream.
func (p *Provider) BundleLogs(ctx context.Context, bottleName string, follow bool) (io.ReadCloser, error) {
	g, err := p.guestEngine()
	if err != nil {
		return nil, err
	}
	id, err := p.bundleContainer(ctx, bottleName)
	if err != nil {
		return nil, err
	}
	rc, err := g.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: follow})
	if err != nil {
		return nil, fmt.Errorf("read the logs of the bundle of bottle %s: %w", bottleName, err)
	}
	pr, pw := io.Pipe()
	go func() {
		// The bundle has no terminal: its stream is multiplexed. Its
		// stderr carries Go's own failures; pass both on.
		_, err := stdcopy.StdCopy(pw, pw, rc)
		rc.Close()
		pw.CloseWithError(err)
	}()
	return pr, nil
}
