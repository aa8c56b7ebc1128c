package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"slices"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/guest"
	"github.com/bottle-apply/bottle-apply/internal/tarcopy"
	"github.com/bottle-apply/bottle-apply/spec"
)

// ErrNoAgent says a bottle has no agent on this provider.
var ErrNoAgent = errors.New("no agent")

// Agent finds the bottle's running agent container, ours by label, and
// returns its ID.
func (p *Provider) Agent(ctx context.Context, bottleName string) (string, error) {
	return p.running(ctx, bottleName, bottle.RoleAgent)
}

// running finds the bottle's running container of a role, ours by label.
func (p *Provider) running(ctx context.Context, bottleName, role string) (string, error) {
	c, err := p.ours(ctx, bottleName, role)
	if err != nil {
		return "", err
	}
	if c.State != "running" {
		return "", fmt.Errorf("the %s of bottle %s is %s; run bottle-apply to start it", role, bottleName, c.State)
	}
	return c.ID, nil
}

// bundleContainer finds the bottle's bundle, running or not.
func (p *Provider) bundleContainer(ctx context.Context, bottleName string) (string, error) {
	c, err := p.ours(ctx, bottleName, bottle.RoleBundle)
	return c.ID, err
}

// ours finds the bottle's container of a role, ours by label and name.
func (p *Provider) ours(ctx context.Context, bottleName, role string) (container.Summary, error) {
	f := filters.NewArgs(filters.Arg("label", bottle.LabelName+"="+bottleName), filters.Arg("label", bottle.LabelRole+"="+role))
	cs, err := p.eng.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return container.Summary{}, fmt.Errorf("find the %s of bottle %s: %w", role, bottleName, err)
	}
	if c, ok := pickOurs(cs, bottleName, role); ok {
		return c, nil
	}
	if role == bottle.RoleAgent {
		return container.Summary{}, fmt.Errorf("bottle %s has no docker agent container (%w): apply its spec first", bottleName, ErrNoAgent)
	}
	return container.Summary{}, fmt.Errorf("bottle %s has no %s container: apply its spec first", bottleName, role)
}

// pickOurs returns the bottle's container of a role among cs: labelled
// with a hash and named as ours (labels survive `docker commit` into
// look-alikes).
func pickOurs(cs []container.Summary, bottleName, role string) (container.Summary, bool) {
	for _, c := range cs {
		if c.Labels[bottle.LabelHash] != "" && c.Labels[bottle.LabelRole] == role && slices.Contains(c.Names, "/"+bottle.ResourceName(bottleName, role)) {
			return c, true
		}
	}
	return container.Summary{}, false
}

// Guest returns the bottle's running container of a role (bottle.RoleAgent
// or bottle.RoleBundle), ours by label, to run commands in and copy files
// to and from.
func (p *Provider) Guest(ctx context.Context, bottleName, role string) (guest.Guest, error) {
	g, err := p.guestEngine()
	if err != nil {
		return nil, err
	}
	c, err := p.ours(ctx, bottleName, role)
	if err != nil {
		return nil, err
	}
	if c.State != "running" {
		return nil, fmt.Errorf("the %s of bottle %s is %s; run bottle-apply to start it", role, bottleName, c.State)
	}
	where := "bottle " + bottleName
	if role != bottle.RoleAgent {
		where = "the " + role + " of bottle " + bottleName
	}
	cg := &containerGuest{g: g, id: c.ID, where: where}
	if u := c.Labels[LabelUser]; u != "" && role == bottle.RoleAgent {
		uid, gid, err := spec.ParseUser(u)
		if err != nil {
			return nil, fmt.Errorf("the agent of bottle %s: label %s: %w", bottleName, LabelUser, err)
		}
		cg.owner = &tarcopy.Owner{UID: uid, GID: gid}
	}
	return cg, nil
}

// containerGuest is a running container of a bottle.
type containerGuest struct {
	g     guestEngine
	id    string
	where string // names it in messages
	// owner is spec.agent.user: what CopyIn writes belongs to it; nil
	// keeps the owners of the host's files.
	owner *tarcopy.Owner
}

var _ guest.Guest = (*containerGuest)(nil)

func (c *containerGuest) String() string { return c.where }

// Exec implements guest.Guest.
func (c *containerGuest) Exec(ctx context.Context, o guest.ExecOptions, stdio guest.Stdio) (int, error) {
	return execIn(ctx, c.g, c.id, c.where, o, stdio)
}

// execIn runs an exec in container id; where names it in errors.
func execIn(ctx context.Context, g guestEngine, id, where string, o guest.ExecOptions, stdio guest.Stdio) (int, error) {
	// No user is the container's own (spec.agent.user for an agent that
	// sets it): the engine runs an exec as the container's user.
	created, err := g.ContainerExecCreate(ctx, id, container.ExecOptions{
		Cmd: o.Cmd, Env: o.Env, WorkingDir: o.Workdir, Tty: o.TTY, User: o.User,
		AttachStdin: o.Interactive, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", where, err)
	}
	resp, err := g.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{Tty: o.TTY})
	if err != nil {
		return 0, fmt.Errorf("attach to exec in %s: %w", where, err)
	}
	defer resp.Close()
	// Interrupted: close the stream so that the copies below return.
	stop := context.AfterFunc(ctx, resp.Close)
	defer stop()
	if o.TTY && o.Height > 0 && o.Width > 0 {
		_ = g.ContainerExecResize(ctx, created.ID, container.ResizeOptions{Height: o.Height, Width: o.Width})
	}
	if o.Interactive && stdio.In != nil {
		go func() {
			_, _ = io.Copy(resp.Conn, stdio.In)
			_ = resp.CloseWrite()
		}()
	}
	out, errw := orDiscard(stdio.Out), orDiscard(stdio.Err)
	if o.TTY {
		_, err = io.Copy(out, resp.Reader)
	} else {
		_, err = stdcopy.StdCopy(out, errw, resp.Reader)
	}
	if ctx.Err() != nil {
		return 0, fmt.Errorf("exec in %s: %w", where, ctx.Err())
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("exec in %s: read output: %w", where, err)
	}
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	insp, err := g.ContainerExecInspect(ictx, created.ID)
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", where, err)
	}
	return insp.ExitCode, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// CopyIn implements guest.Guest, like docker cp: into an existing
// directory, under the source's name. A directory is copied whole. Missing
// parent directories of dst are made (mode 0755); existing ones are left
// as they are. In an agent with spec.agent.user, what is written (the
// missing parents too) belongs to that user.
func (c *containerGuest) CopyIn(ctx context.Context, src, dst string) error {
	guestPath := path.Clean(dst)
	dir, as := path.Dir(guestPath), path.Base(guestPath)
	if st, err := c.g.ContainerStatPath(ctx, c.id, guestPath); err == nil && st.Mode.IsDir() {
		dir, as = guestPath, filepath.Base(filepath.Clean(src))
	}
	// Extract at the nearest directory that exists, with entries for the
	// missing ones below it.
	var missing []string
	for dir != "/" {
		if _, err := c.g.ContainerStatPath(ctx, c.id, dir); err == nil {
			break
		}
		missing = append([]string{path.Base(dir)}, missing...)
		dir = path.Dir(dir)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarcopy.Write(pw, src, path.Join(append(missing, as)...), c.owner)) }()
	err := c.g.CopyToContainer(ctx, c.id, dir, pr, container.CopyToContainerOptions{})
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("copy %s to %s:%s: %w", src, c.where, guestPath, err)
	}
	return nil
}

// CopyOut implements guest.Guest. The container writes the tar stream,
// so it is not trusted: see tarcopy.Extract.
func (c *containerGuest) CopyOut(ctx context.Context, src, dst string) error {
	guestPath := path.Clean(src)
	rc, _, err := c.g.CopyFromContainer(ctx, c.id, guestPath)
	if err != nil {
		return fmt.Errorf("copy %s:%s: %w", c.where, guestPath, err)
	}
	defer rc.Close()
	if err := tarcopy.Extract(ctx, rc, path.Base(guestPath), dst); err != nil {
		return fmt.Errorf("copy %s:%s to %s: %w", c.where, guestPath, dst, err)
	}
	return nil
}
