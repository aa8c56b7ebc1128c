package kubernetes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/guest"
	"github.com/bottle-apply/bottle-apply/internal/tarcopy"
	"github.com/bottle-apply/bottle-apply/spec"
)

// ErrNoBottle says the cluster has no pod of the bottle's role.
var ErrNoBottle = errors.New("no such bottle on the cluster")

// FindPod finds the running pod of a bottle's role (bottle.RoleAgent or
// bottle.RoleBundle) with one list of the pods labelled with the bottle's
// name and the role: in namespace, or in all namespaces when it is "". A
// pod without those labels is not the bottle's, whatever its name.
func (c *Cluster) FindPod(ctx context.Context, namespace, bottleName, role string) (*corev1.Pod, error) {
	sel := labels.Set{bottle.LabelName: bottleName, bottle.LabelRole: role}.String()
	list, err := c.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		where := "the cluster"
		if namespace != "" {
			where = "namespace " + namespace
		}
		return nil, fmt.Errorf("find the %s of bottle %s in %s: %w", role, bottleName, where, err)
	}
	return pickPod(list.Items, namespace, bottleName, role)
}

// pickPod chooses the running pod of a bottle's role among pods (those
// the label selector returned), or says why there is none.
func pickPod(pods []corev1.Pod, namespace, bottleName, role string) (*corev1.Pod, error) {
	// The selector did the filtering; check again, as a fake or a
	// careless caller may hand us anything.
	pods = slices.DeleteFunc(slices.Clone(pods), func(p corev1.Pod) bool {
		return p.Labels[bottle.LabelName] != bottleName || p.Labels[bottle.LabelRole] != role
	})
	if len(pods) == 0 {
		where := "on the cluster"
		if namespace != "" {
			where = "in namespace " + namespace
		}
		return nil, fmt.Errorf("bottle %s has no %s pod %s (%w): apply its spec first (bottle-apply -f SPEC)", bottleName, role, where, ErrNoBottle)
	}
	var namespaces []string
	for _, p := range pods {
		if !slices.Contains(namespaces, p.Namespace) {
			namespaces = append(namespaces, p.Namespace)
		}
	}
	if len(namespaces) > 1 {
		slices.Sort(namespaces)
		return nil, fmt.Errorf("bottle %s has %s pods in several namespaces (%s): name the bottle's namespace", bottleName, role, strings.Join(namespaces, ", "))
	}
	// A StatefulSet's pod being replaced: the old one terminating, the
	// new one starting. Take a running one that stays, first by name.
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	for i := range pods {
		if pods[i].DeletionTimestamp == nil && podRunning(&pods[i], role) {
			return &pods[i], nil
		}
	}
	p := &pods[0]
	for i := range pods {
		if pods[i].DeletionTimestamp == nil {
			p = &pods[i]
			break
		}
	}
	return nil, fmt.Errorf("the %s of bottle %s (pod %s/%s) is not running: %s; fix the spec and apply it (bottle-apply -f SPEC)", role, bottleName, p.Namespace, p.Name, podState(p, role))
}

// podRunning says whether the pod runs and its container is up.
func podRunning(p *corev1.Pod, container string) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == container {
			return cs.State.Running != nil
		}
	}
	return false
}

// podState says in a few words why a pod's container does not run: its
// phase, then the container's reason ("Pending, ImagePullBackOff: ...").
func podState(p *corev1.Pod, container string) string {
	parts := []string{string(p.Status.Phase)}
	if p.Status.Phase == "" {
		parts[0] = "no phase yet"
	}
	if p.DeletionTimestamp != nil {
		parts = append(parts, "being deleted")
	}
	detail := func(reason, msg string) {
		switch {
		case reason != "" && msg != "":
			parts = append(parts, reason+": "+msg)
		case reason != "":
			parts = append(parts, reason)
		case msg != "":
			parts = append(parts, msg)
		}
	}
	found := false
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name != container {
			continue
		}
		found = true
		switch {
		case cs.State.Waiting != nil:
			detail(cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			t := cs.State.Terminated
			detail(t.Reason, t.Message)
			parts = append(parts, "exit code "+strconv.Itoa(int(t.ExitCode)))
		}
	}
	if !found {
		// Not scheduled, or not created yet: the pod's conditions say why.
		detail(p.Status.Reason, p.Status.Message)
		for _, c := range p.Status.Conditions {
			if c.Status == corev1.ConditionFalse && (c.Reason != "" || c.Message != "") {
				detail(c.Reason, c.Message)
			}
		}
	}
	return strings.Join(parts, ", ")
}

// Guest returns the container of a pod (as FindPod returns it) to run
// commands in and copy files to and from, through the API server. user is
// the bottle's spec.agent.user (numeric uid[:gid], "" when unset): what
// CopyIn writes belongs to it. Exec runs as the container's own user:
// Kubernetes cannot switch, so ExecOptions.User must be the runAsUser of
// the pod's security context. label names the guest in messages ("the
// agent of bottle NAME"); "" derives it from the pod's labels.
func (c *Cluster) Guest(pod *corev1.Pod, container, user string, label string) guest.Guest {
	if label == "" {
		label = "the " + container + " of bottle " + pod.Labels[bottle.LabelName]
	}
	return &podGuest{c: c, namespace: pod.Namespace, pod: pod.Name, container: container,
		user: user, runAs: podUser(pod, container), label: label}
}

// podGuest is a container of a pod, reached through the API server.
type podGuest struct {
	c                         *Cluster
	namespace, pod, container string
	// user is spec.agent.user ("" when unset), runAs the user the pod
	// runs the container as, from its security context ("" when unset).
	user, runAs string
	label       string
}

var _ guest.Guest = (*podGuest)(nil)

func (g *podGuest) String() string { return g.label }

// podUser is the numeric uid[:gid] the container runs as by its security
// context (the container's own over the pod's), "" when neither sets
// runAsUser.
func podUser(p *corev1.Pod, container string) string {
	var uid, gid *int64
	if sc := p.Spec.SecurityContext; sc != nil {
		uid, gid = sc.RunAsUser, sc.RunAsGroup
	}
	for _, c := range p.Spec.Containers {
		if c.Name == container && c.SecurityContext != nil {
			if c.SecurityContext.RunAsUser != nil {
				uid = c.SecurityContext.RunAsUser
			}
			if c.SecurityContext.RunAsGroup != nil {
				gid = c.SecurityContext.RunAsGroup
			}
		}
	}
	if uid == nil {
		return ""
	}
	s := strconv.FormatInt(*uid, 10)
	if gid != nil {
		s += ":" + strconv.FormatInt(*gid, 10)
	}
	return s
}

// checkUser says whether an exec may run as want: Kubernetes runs every
// exec as the container's own user and cannot switch, so want must be
// the user the pod's security context runs it as (runAs). A gid must
// match too when want names one. An image's own USER is not known to the
// pod: with no runAsUser, no user can be asked for.
func checkUser(want, runAs string) error {
	if want == "" {
		return nil
	}
	wuid, wgid, err := spec.ParseUser(want)
	if err != nil {
		return fmt.Errorf("exec as user: %w", err)
	}
	limit := "on kubernetes an exec runs as the pod's own user: the API cannot switch users"
	if runAs == "" {
		return fmt.Errorf("exec as user %s: %s, and this pod sets no runAsUser to compare with; drop the user", want, limit)
	}
	ouid, ogid, err := spec.ParseUser(runAs)
	if err != nil {
		return fmt.Errorf("exec as user %s: the pod's user: %w", want, err)
	}
	hasGID := strings.Contains(want, ":")
	ownGID := strings.Contains(runAs, ":")
	if wuid != ouid || hasGID && (!ownGID || wgid != ogid) {
		return fmt.Errorf("exec as user %s: %s, which is %s; drop the user or set spec.agent.user", want, limit, runAs)
	}
	return nil
}

// Exec implements guest.Guest.
func (g *podGuest) Exec(ctx context.Context, o guest.ExecOptions, stdio guest.Stdio) (int, error) {
	if len(o.Cmd) == 0 {
		return 0, fmt.Errorf("exec in %s: no command", g.label)
	}
	if err := checkUser(o.User, g.runAs); err != nil {
		return 0, fmt.Errorf("%s: %w", g.label, err)
	}
	cmd, err := wrapCmd(o.Cmd, o.Env, o.Workdir)
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", g.label, err)
	}
	var in io.Reader
	if o.Interactive && stdio.In != nil {
		in = stdio.In
	}
	var size *remotecommand.TerminalSize
	if o.TTY && o.Height > 0 && o.Width > 0 {
		size = &remotecommand.TerminalSize{Height: uint16(min(o.Height, 65535)), Width: uint16(min(o.Width, 65535))}
	}
	code, err := g.stream(ctx, cmd, o.TTY, size, in, stdio.Out, stdio.Err)
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", g.label, err)
	}
	return code, nil
}

// wrapCmd applies env (K=V) and a working directory to cmd: Kubernetes
// exec has neither. It works with busybox: the directory through sh,
// given as an argument (no quoting to get wrong), and the variables
// through env, which takes any name docker would.
func wrapCmd(cmd, env []string, workdir string) ([]string, error) {
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("environment variable %q is not NAME=VALUE", kv)
		}
	}
	if len(env) > 0 && strings.Contains(cmd[0], "=") {
		// env would take it for one more variable.
		return nil, fmt.Errorf("command %q: a name with '=' cannot follow environment variables on kubernetes", cmd[0])
	}
	var out []string
	if workdir != "" {
		// cd's failure is the command's: 126, as a runtime says it cannot
		// run a command.
		out = append(out, "/bin/sh", "-c", `cd -- "$1" || exit 126; shift; exec "$@"`, "sh", workdir)
	}
	if len(env) > 0 {
		out = append(append(out, "env"), env...)
	}
	return append(out, cmd...), nil
}

// sizeQueue hands the executor one terminal size, then blocks until done
// is closed (the exec ended). The size travels on its own stream: a
// command may start before its terminal has it, as with kubectl exec.
type sizeQueue struct {
	size *remotecommand.TerminalSize
	done <-chan struct{}
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	if s := q.size; s != nil {
		q.size = nil
		return s
	}
	<-q.done
	return nil
}

// stream runs cmd as it is in the container and returns its exit code.
// With tty, the terminal merges stderr into stdout, of size when it is not
// nil. A nil writer discards.
func (g *podGuest) stream(ctx context.Context, cmd []string, tty bool, size *remotecommand.TerminalSize, in io.Reader, out, errw io.Writer) (int, error) {
	out, errw = orDiscard(out), orDiscard(errw)
	if tty {
		errw = nil
	}
	req := g.c.Client.CoreV1().RESTClient().Post().
		Namespace(g.namespace).Resource("pods").Name(g.pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: g.container, Command: cmd,
			Stdin: in != nil, Stdout: true, Stderr: !tty, TTY: tty,
		}, scheme.ParameterCodec)
	ex, err := g.c.executor(req.URL())
	if err != nil {
		return 0, err
	}
	opts := remotecommand.StreamOptions{Stdin: in, Stdout: out, Stderr: errw, Tty: tty}
	if size != nil {
		done := make(chan struct{})
		defer close(done)
		opts.TerminalSizeQueue = &sizeQueue{size: size, done: done}
	}
	err = ex.StreamWithContext(ctx, opts)
	var exit utilexec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit) && exit.Exited():
		return exit.ExitStatus(), nil
	case ctx.Err() != nil:
		return 0, ctx.Err()
	}
	if code, msg, ok := startFailure(err); ok {
		// As docker does: the runtime's word on the command's stderr,
		// and a shell's exit code.
		w := errw
		if w == nil {
			w = out
		}
		_, _ = fmt.Fprintln(w, msg)
		return code, nil
	}
	return 0, err
}

// startFailure classifies an exec's error that says the runtime could
// not start the command: 127 when it is not found, 126 when it cannot be
// run, as a shell and docker exec say. msg is the runtime's part of the
// error.
func startFailure(err error) (code int, msg string, ok bool) {
	msg = err.Error()
	i := strings.Index(msg, "OCI runtime exec failed")
	if i < 0 {
		return 0, "", false
	}
	msg = msg[i:]
	switch {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
		return 127, msg, true
	case strings.Contains(msg, "permission denied"), strings.Contains(msg, "is a directory"):
		return 126, msg, true
	}
	return 0, "", false
}

// executor is kubectl's: WebSocket first, SPDY when the server (or a
// proxy on the way) does not upgrade to it.
func (c *Cluster) executor(u *url.URL) (remotecommand.Executor, error) {
	ws, err := remotecommand.NewWebSocketExecutor(c.Config, "GET", u.String())
	if err != nil {
		return nil, fmt.Errorf("websocket executor: %w", err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(c.Config, "POST", u)
	if err != nil {
		return nil, fmt.Errorf("spdy executor: %w", err)
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// run runs cmd for bottle-apply's own use (probes, tar) with in as its
// input, out its output, and fails on a non-zero exit with its stderr.
func (g *podGuest) run(ctx context.Context, cmd []string, in io.Reader, out io.Writer) error {
	var stderr bytes.Buffer
	code, err := g.stream(ctx, cmd, false, nil, in, out, &stderr)
	if err != nil {
		return err
	}
	if code != 0 {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = "no message"
		}
		return fmt.Errorf("%s exited with code %d: %s", cmd[0], code, msg)
	}
	return nil
}

// probeScript says of $1 in the guest "dir" when it is a directory,
// else "new" and, on the next line, its nearest ancestor that exists.
const probeScript = `p=$1
if [ -d "$p" ]; then echo dir; exit 0; fi
d=$(dirname -- "$p")
while [ ! -d "$d" ] && [ "$d" != / ] && [ "$d" != . ]; do d=$(dirname -- "$d"); done
printf 'new\n%s' "$d"`

// CopyIn implements guest.Guest, as docker cp does: into dst when it is
// an existing directory, under src's name, else as dst; src ending in
// "/." copies the directory's contents into dst. Missing parents of dst
// are made (mode 0755). With the bottle's user set, what is written (the
// missing parents too) belongs to it. A tar stream through exec, as
// kubectl cp: the image needs sh and tar (busybox has both).
func (g *podGuest) CopyIn(ctx context.Context, src, dst string) error {
	guestPath := path.Clean(dst)
	fail := func(err error) error { return fmt.Errorf("copy %s to %s:%s: %w", src, g.label, guestPath, err) }
	if _, err := os.Lstat(src); err != nil {
		return fail(err)
	}
	var probe bytes.Buffer
	if err := g.run(ctx, []string{"/bin/sh", "-c", probeScript, "sh", guestPath}, nil, &probe); err != nil {
		return fail(fmt.Errorf("look at the destination: %w", err))
	}
	isDir, existing, err := parseProbe(probe.String())
	if err != nil {
		return fail(err)
	}
	dir, as, err := copyInTarget(src, guestPath, isDir, existing)
	if err != nil {
		return fail(err)
	}
	var own *tarcopy.Owner
	if g.user != "" {
		uid, gid, err := spec.ParseUser(g.user)
		if err != nil {
			return fail(fmt.Errorf("the bottle's user: %w", err))
		}
		own = &tarcopy.Owner{UID: uid, GID: gid}
	}
	pr, pw := io.Pipe()
	tarred := make(chan error, 1)
	go func() {
		err := tarcopy.Write(pw, src, as, own)
		pw.CloseWithError(err)
		tarred <- err
	}()
	err = g.run(ctx, tarCmd("xf", "-", "-C", dir), pr, nil)
	pr.CloseWithError(io.ErrClosedPipe)
	// The host's error first: a stream cut short by it fails the guest's
	// tar, or leaves a part of the copy.
	if terr := <-tarred; terr != nil && !errors.Is(terr, io.ErrClosedPipe) {
		return fail(terr)
	}
	if err != nil {
		return fail(err)
	}
	return nil
}

// copyInTarget says where CopyIn extracts src in the guest: the
// directory dir, under the name as (a slash-separated path below dir, ""
// for a directory's contents right into dir). dst is a directory
// (isDir), or does not exist yet and existing is its nearest ancestor
// that does: then the missing directories are part of as.
func copyInTarget(src, dst string, isDir bool, existing string) (dir, as string, err error) {
	contents := isContents(src)
	switch {
	case isDir && contents:
		return dst, "", nil
	case isDir:
		return dst, filepath.Base(filepath.Clean(src)), nil
	}
	// Extract at the nearest directory that exists, with entries for the
	// missing ones below it: dst itself too, for contents.
	top, name := path.Dir(dst), path.Base(dst)
	if contents {
		top, name = dst, ""
	}
	missing, err := missingBelow(existing, top)
	if err != nil {
		return "", "", err
	}
	return existing, path.Join(append(missing, name)...), nil
}

// isContents says whether a path names a directory's contents: it ends
// in "/." (or is "."), as docker cp takes it.
func isContents(p string) bool {
	p = filepath.ToSlash(p)
	return p == "." || strings.HasSuffix(p, "/.")
}

// parseProbe reads probeScript's output.
func parseProbe(out string) (isDir bool, existing string, err error) {
	if strings.TrimSpace(out) == "dir" {
		return true, "", nil
	}
	if rest, ok := strings.CutPrefix(out, "new\n"); ok && rest != "" {
		return false, rest, nil
	}
	return false, "", fmt.Errorf("internal: unexpected answer of the destination's probe: %q", out)
}

// missingBelow lists the names of the directories from existing
// (exclusive) down to dir (inclusive), each inside the one before.
func missingBelow(existing, dir string) ([]string, error) {
	var missing []string
	for d := dir; d != existing; d = path.Dir(d) {
		if d == "/" || d == "." {
			return nil, fmt.Errorf("internal: %s is not below %s", dir, existing)
		}
		missing = append([]string{path.Base(d)}, missing...)
	}
	return missing, nil
}

// CopyOut implements guest.Guest, as docker cp does: into dst when it is
// an existing directory, under src's name, else as dst; src ending in
// "/." copies the directory's contents into dst. The guest writes the tar
// stream, so it is not trusted: see tarcopy.Extract.
func (g *podGuest) CopyOut(ctx context.Context, src, dst string) error {
	guestPath := path.Clean(src)
	fail := func(err error) error { return fmt.Errorf("copy %s:%s to %s: %w", g.label, guestPath, dst, err) }
	dir, top := path.Dir(guestPath), path.Base(guestPath)
	if isContents(src) {
		dir, top = guestPath, "."
	}
	if top == "/" || top == ".." {
		return fail(errors.New("name a file or a directory (a directory's contents as DIR/.)"))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := g.run(ctx, tarCmd("cf", "-", "-C", dir, top), nil, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	uerr := tarcopy.Extract(ctx, pr, top, dst)
	if uerr != nil {
		cancel() // and the guest's tar with it
	} else {
		_, _ = io.Copy(io.Discard, pr) // the archive's padding
	}
	pr.CloseWithError(io.ErrClosedPipe)
	err := <-done
	// The guest's failure explains a stream cut short (tar: no such
	// file); anything else the extraction refused is the error, whatever
	// the guest's tar made of being cut off.
	if err != nil && (uerr == nil || errors.Is(uerr, tarcopy.ErrShortArchive)) {
		return fail(err)
	}
	if uerr != nil {
		return fail(uerr)
	}
	return nil
}

// tarCmd runs the agent's tar through its shell, as the copies' other
// steps are: the tar on PATH when there is one (by its path: a busybox
// shell would otherwise run its own applet in its place), else the
// shell's own, so that an image whose busybox has its applets only inside
// its shell copies as well as one with GNU tar.
func tarCmd(args ...string) []string {
	const script = `IFS=:; for d in $PATH; do if [ -x "$d/tar" ]; then exec "$d/tar" "$@"; fi; done; exec tar "$@"`
	return append([]string{"/bin/sh", "-c", script, "tar"}, args...)
}
