package spec

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file checks spec.agent's user, volumes and files: the short form of
// a volume (shortVolume, called by the decoder), what the YAML alone says
// (validateWorkspace, called by validate) and what only the host's
// filesystem can say (checkHost, called by Load).

// shortVolume turns a volume written as "SOURCE:TARGET[:ro|:rw]" into the
// mapping of its long form, every node at the scalar's position so that
// later errors point at what the user wrote. It returns nil after
// recording why n is not such a string.
func (d *document) shortVolume(n *yaml.Node, field string) *yaml.Node {
	switch tag := n.ShortTag(); {
	case tag == "!!str":
	case !strings.HasPrefix(tag, "!!") || tag == "!!binary":
		d.errorf(n, field, "unsupported tag %s: write a plain string", quote(tag))
		return nil
	default:
		d.errorf(n, field, "expected a mapping (source, target, readOnly) or a string SOURCE:TARGET[:ro], got %s", describe(n))
		return nil
	}
	parts := strings.Split(n.Value, ":")
	readOnly := false
	switch {
	case n.Value == "":
		d.errorf(n, field, "must not be empty; write SOURCE:TARGET, such as ./src:/workspace or work:/home/agent")
		return nil
	case len(parts) == 1:
		d.errorf(n, field, "%s has no target; write SOURCE:TARGET, such as ./src:/workspace or work:/home/agent", quote(n.Value))
		return nil
	case len(parts) > 3:
		d.errorf(n, field, "%s has %d parts separated by \":\"; the short form is SOURCE:TARGET[:ro] "+
			"(write a path that holds \":\" in the long form, with source and target)", quote(n.Value), len(parts))
		return nil
	case len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw":
		d.errorf(n, field, "%s has the option %s; the short form takes only ro or rw (SOURCE:TARGET[:ro])", quote(n.Value), quote(parts[2]))
		return nil
	case len(parts) == 3:
		readOnly = parts[2] == "ro"
	}
	at := func(tag, value string) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value, Line: n.Line, Column: n.Column}
	}
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column, Content: []*yaml.Node{
		at("!!str", "source"), at("!!str", parts[0]),
		at("!!str", "target"), at("!!str", parts[1]),
		at("!!str", "readOnly"), at("!!bool", strconv.FormatBool(readOnly)),
	}}
}

// report records a problem at field unless the field failed to decode (its
// error says what to fix).
func (d *document) report(field, format string, args ...any) {
	if d.decodeFailed(field) {
		return
	}
	n, _ := d.locate(field, false)
	d.errorf(n, field, format, args...)
}

// given reports whether field is in the YAML with a value that is not null.
func (d *document) given(field string) bool {
	e, ok := d.nodes[field]
	return ok && !isNull(e.val)
}

// validateWorkspace checks spec.agent's user, volumes and files as far as
// the YAML goes. Empty required fields have the validator's error. No
// message quotes a file's content.
func (d *document) validateWorkspace() {
	b := &d.bottle
	a := &b.Spec.Agent
	const agent = "spec.agent."
	if a.User != "" {
		if _, _, err := ParseUser(a.User); err != nil {
			d.report(agent+"user", "%v", err)
		} else if b.Spec.Backend == BackendSmolvm && len(a.Command) > 0 {
			d.report(agent+"user", "smolvm runs the agent's command as root and has no user flag; "+
				"drop command or user, or use backend: docker")
		}
	}
	targets := map[string]int{} // valid targets, to the first volume with each
	for i, v := range a.Volumes {
		field := agent + "volumes[" + strconv.Itoa(i) + "]"
		if msg := checkVolumeSource(v.Source); msg != "" {
			d.report(field+".source", "%s", msg)
		} else if strings.Contains(v.Source, ":") {
			d.report(field+".source", "%s holds \":\", which a mount (HOST:GUEST on smolvm) cannot carry; rename the directory, or mount its parent", quote(v.Source))
		} else if v.Source != "" && !v.Named() && !path.IsAbs(v.Source) && d.file == StdinName {
			d.report(field+".source", "%s is relative, but a spec read from standard input has no directory for it to start at; "+
				"write an absolute path, or pass the spec with -f FILE", quote(v.Source))
		} else if v.Source != "" && !v.Named() && b.Spec.Backend == BackendKubernetes {
			d.report(field+".source", "%s is a host directory, which backend kubernetes cannot mount: the pods run on the cluster's nodes, "+
				"not on this machine; use a named volume (a PersistentVolumeClaim), and copy work in with bottle-apply cp", quote(v.Source))
		} else if v.Named() && v.AllowSensitive {
			d.report(field+".allowSensitive", "has no effect on a named volume (it lets a host directory be or hold /etc, /usr "+
				"or your home directory); remove it")
		}
		if v.Target == "" {
			continue
		}
		if msg := checkPath(v.Target, "/workspace", "\"/\" would hide the agent's whole filesystem; mount the volume at a directory such as /workspace"); msg != "" {
			d.report(field+".target", "%s", msg)
		} else if strings.Contains(v.Target, ":") {
			d.report(field+".target", "%s holds \":\", which a mount (HOST:GUEST on smolvm) cannot carry; choose a target without it", quote(v.Target))
		} else if j, dup := targets[v.Target]; dup {
			d.report(field+".target", "%s is already the target of %svolumes[%d]; give each volume a target of its own", quote(v.Target), agent, j)
		} else {
			targets[v.Target] = i
		}
	}
	paths := map[string]int{}
	for i, f := range a.Files {
		field := agent + "files[" + strconv.Itoa(i) + "]"
		d.validateFilePath(field+".path", f.Path, paths, i)
		switch hasSource, hasContent := d.given(field+".source"), d.given(field+".content"); {
		case hasSource && hasContent:
			d.report(field, "has both source and content; set exactly one")
		case !hasSource && !hasContent:
			d.report(field, "needs exactly one of source (a file relative to the spec file's directory) and content (the file's text)")
		case hasSource:
			if msg := CheckFileSource(f.Source); msg != "" {
				d.report(field+".source", "%s", msg)
			} else if d.file == StdinName {
				d.report(field+".source", "a spec read from standard input has no directory to read files from; "+
					"use content, or pass the spec with -f FILE")
			}
		}
		if f.Mode != "" {
			if _, err := ParseMode(f.Mode); err != nil {
				d.report(field+".mode", "%v", err)
			}
		}
		if f.Owner != "" {
			if _, _, err := ParseUser(f.Owner); err != nil {
				d.report(field+".owner", "%v", err)
			}
		}
	}
}

// validateFilePath checks the path of files[i]: an absolute, clean path to
// a file of its own, not a volume's mount point nor inside a read-only
// volume or a host directory. A file inside a writable named volume is
// written through it on every create: a seeded setting (~/.claude.json in
// a home volume) that each create puts back as the spec says. One inside a
// host directory would be written onto the host, as root without a user.
func (d *document) validateFilePath(field, p string, paths map[string]int, i int) {
	if p == "" {
		return
	}
	if msg := checkPath(p, "/root/.claude.json", "\"/\" is the root directory, not a file; name a file such as /root/.claude.json"); msg != "" {
		d.report(field, "%s", msg)
		return
	}
	if j, dup := paths[p]; dup {
		d.report(field, "%s is already written by spec.agent.files[%d]; list each file once", quote(p), j)
		return
	}
	paths[p] = i
	vols := d.bottle.Spec.Agent.Volumes
	in := -1 // the volume p is written to: the one mounted deepest above it
	for j, v := range vols {
		t := v.Target
		if checkPath(t, "", "/") != "" {
			continue
		}
		switch {
		case p == t:
			d.report(field, "%s is where spec.agent.volumes[%d] is mounted, a directory; name a file in it or elsewhere", quote(p), j)
			return
		case strings.HasPrefix(t, p+"/"):
			d.report(field, "%s is a directory that spec.agent.volumes[%d] is mounted under (at %s), not a file; choose another path",
				quote(p), j, t)
			return
		case strings.HasPrefix(p, t+"/") && (in < 0 || len(t) > len(vols[in].Target)):
			in = j
		}
	}
	if in < 0 {
		return
	}
	switch v := &vols[in]; {
	case v.ReadOnly:
		d.report(field, "%s is inside spec.agent.volumes[%d], mounted read-only at %s, where it cannot be written; "+
			"put the file elsewhere, or make the volume writable", quote(p), in, v.Target)
	case !v.Named():
		d.report(field, "%s is inside spec.agent.volumes[%d] (at %s) and would be written into the host directory %s on every create; "+
			"put the file there on the host yourself, or choose a path outside it", quote(p), in, v.Target, quote(v.Source))
	}
}

// CheckFileSource returns what is wrong with the source of a file of
// spec.agent.files, or "": like a secret file, it must be relative and stay
// inside the spec file's directory.
func CheckFileSource(file string) string { return checkLocalFile(file, "a file's source") }

// checkVolumeSource returns what is wrong with a volume's source, or "": a
// host directory starts with "." or "/", anything else must be the name of
// a volume (a DNS label).
func checkVolumeSource(s string) string {
	if s == "" || !(Volume{Source: s}).Named() || checkName(s) == "" {
		return ""
	}
	msg := quote(s) + " is neither a host directory nor a volume name: a host directory starts with \".\" or \"/\" " +
		"(./src, /srv/cache), a volume name is a DNS label (work)"
	if strings.HasPrefix(s, "~") {
		msg += "; \"~\" is not expanded: write the directory's absolute path"
	}
	return msg
}

// checkPath returns what is wrong with a path in the agent (a volume's
// target, a file's path, such as example), or "": it must be absolute and
// clean, and not "/", for which root is the message.
func checkPath(p, example, root string) string {
	switch c := path.Clean(p); {
	case !path.IsAbs(p):
		return fmt.Sprintf("%s is not an absolute path (e.g. %s)", quote(p), example)
	case c == "/":
		return root
	case c != p:
		return fmt.Sprintf("%s is not a clean path; write %q", quote(p), c)
	}
	return ""
}

// hostEnv is what checkHost compares host directories with.
type hostEnv struct {
	forbidden []hostPath // what no volume may be, lie under or hold
	sensitive []hostPath // what a volume may be or hold only with allowSensitive
	home      string     // the invoking user's home directory, or ""
}

// hostPath is a directory of the host, under each name it has: as written
// and with its symlinks resolved as far as it exists (on Debian, /var/run
// is /run).
type hostPath struct {
	forms []string
	why   string // for messages
	// ofHome marks a directory of the user's home, which a volume that
	// holds the whole home may hold: see newHostEnv.
	ofHome bool
}

// Forbidden directories of the host: a container engine's socket and
// state, and the kernel's interfaces. A bottle that mounts one of them, or
// a directory that holds one, has the run of the host. They are compared
// as paths, whether they exist or not.
var forbiddenDirs = []struct{ path, why string }{
	{"/run", "the container engine keeps its socket"},
	{"/var/run", "the container engine keeps its socket"},
	{"/var/lib/docker", "docker keeps its state"},
	{"/var/lib/containerd", "containerd keeps its state"},
	{"/proc", "the kernel shows the host's processes"},
	{"/sys", "the kernel shows the host's devices and settings"},
	{"/dev", "the host's devices are"},
	{"/boot", "the host's kernel and boot loader are"},
	{"/var/lib/containers", "podman keeps its state"},
	{"/var/snap/docker", "docker installed as a snap keeps its state"},
}

// Forbidden directories of the invoking user's home: the state of engines
// that run as the user (or in a VM of theirs) and the keys to engines.
var forbiddenHomeDirs = []struct{ path, why string }{
	{".local/share/docker", "rootless docker keeps its state"},
	{".local/share/containers", "podman keeps its state"},
	{".docker", "the docker CLI keeps its credentials and the TLS keys of its contexts"},
	{".colima", "colima keeps its virtual machines and the engine's socket"},
	{".lima", "lima keeps its virtual machines and their sockets"},
	{".orbstack", "OrbStack keeps its engine's socket and state"},
	{"Library/Containers/com.docker.docker", "Docker Desktop keeps its virtual machine and state"},
}

// newHostEnv resolves the forbidden and sensitive directories; home is the
// invoking user's home directory ("" for none) and dockerHost the value of
// DOCKER_HOST, whose unix socket's directory is forbidden too.
//
// A directory of the home is forbidden to be or lie under, and to be held
// by any volume but one that holds the whole home: that one needs
// allowSensitive, which says the user means it (the contract: the
// home directory itself may be mounted with it), and its warning names
// these directories.
func newHostEnv(home, dockerHost string) *hostEnv {
	h := &hostEnv{}
	for _, f := range forbiddenDirs {
		h.forbidden = append(h.forbidden, newHostPath(f.path, f.why))
	}
	home = filepath.Clean(home)
	if !filepath.IsAbs(home) || home == "/" {
		home = ""
	}
	h.home = home
	if home != "" {
		for _, f := range forbiddenHomeDirs {
			hp := newHostPath(filepath.Join(home, f.path), f.why)
			hp.ofHome = true
			h.forbidden = append(h.forbidden, hp)
		}
	}
	if sock, ok := strings.CutPrefix(dockerHost, "unix://"); ok && filepath.IsAbs(sock) {
		// The root directory is refused anyway, and every directory lies
		// under it.
		if dir := filepath.Dir(filepath.Clean(sock)); dir != "/" {
			h.forbidden = append(h.forbidden, newHostPath(dir, "DOCKER_HOST ("+dockerHost+") puts the engine's socket"))
		}
	}
	h.sensitive = []hostPath{newHostPath("/etc", "the host's /etc"), newHostPath("/usr", "the host's /usr")}
	if home != "" {
		h.sensitive = append(h.sensitive, newHostPath(home, "your home directory ("+home+")"))
	}
	return h
}

func newHostPath(p, why string) hostPath {
	hp := hostPath{forms: []string{p}, why: why}
	if r := resolveExisting(p); r != p {
		hp.forms = append(hp.forms, r)
	}
	return hp
}

// resolveExisting resolves the symlinks of p (clean, absolute) as far as
// it exists, and joins the rest to that as written.
func resolveExisting(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	parent := filepath.Dir(p)
	if parent == p {
		return p
	}
	return filepath.Join(resolveExisting(parent), filepath.Base(p))
}

// userHome is the invoking user's home directory, or "".
func userHome() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return home
}

// within reports whether p is dir or lies under it; both are clean and
// absolute.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// holds reports whether the directory dir is p or one of p's ancestors
// (all clean and absolute): by name, or, where they exist, by identity
// (os.SameFile), which sees through names that differ only in case on a
// case-insensitive filesystem, bind mounts and symlinks.
func holds(dir, p string) bool {
	if within(p, dir) {
		return true
	}
	di, err := os.Stat(dir)
	if err != nil {
		return false
	}
	for q := p; ; q = filepath.Dir(q) {
		if fi, err := os.Stat(q); err == nil && os.SameFile(fi, di) {
			return true
		}
		if q == filepath.Dir(q) {
			return false
		}
	}
}

// sameFile reports whether a and b name the same existing file.
func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	ai, err := os.Stat(a)
	if err != nil {
		return false
	}
	bi, err := os.Stat(b)
	return err == nil && os.SameFile(ai, bi)
}

// forbid returns why a host directory p (clean, absolute) may not be
// mounted, or "". Once p is resolved (it exists, with no symlinks left),
// it compares identities as well as names. A p that holds the home
// directory may hold the home's engine directories (see newHostEnv):
// whether it may be mounted is up to allowSensitive.
func (h *hostEnv) forbid(p string, resolved bool) string {
	if p == "/" || resolved && sameFile(p, "/") {
		return "is the host's root directory, which holds the container engine's socket and state; " +
			"mount a directory that holds only what the agent needs"
	}
	// By name first, so that a message names what the user wrote
	// (/var/run, not /run), then by identity.
	for _, identity := range []bool{false, resolved} {
		for _, f := range h.forbidden {
			for _, form := range f.forms {
				inside, contains := within(p, form), within(form, p)
				if identity {
					inside, contains = holds(form, p), holds(p, form)
				}
				switch {
				case inside:
					return fmt.Sprintf("is inside %s, where %s; a bottle must never reach it: mount another directory", form, f.why)
				case contains && !(f.ofHome && h.home != "" && holds(p, h.home)):
					return fmt.Sprintf("contains %s, where %s; a bottle must never reach it: "+
						"mount a directory that holds only what the agent needs", form, f.why)
				}
			}
		}
	}
	return ""
}

// sensitiveName names the sensitive directory that one of paths is or
// holds, is saying which, or returns "".
func (h *hostEnv) sensitiveName(paths ...string) (name string, is bool) {
	for _, identity := range []bool{false, true} {
		for _, s := range h.sensitive {
			for _, form := range s.forms {
				for _, p := range paths {
					is, held := p == form, within(form, p)
					if identity {
						is, held = sameFile(p, form), holds(p, form)
					}
					if is || held {
						return s.why, is
					}
				}
			}
		}
	}
	return "", false
}

// checkHost checks the host directories of the document's volumes, whose
// YAML is valid, against the host's filesystem, and sets their HostPath:
// the directory made absolute with its symlinks resolved. Relative sources
// start at the spec file's directory.
func (d *document) checkHost(h *hostEnv) {
	failed := map[string]bool{}
	for _, e := range d.errs {
		failed[e.Field] = true
	}
	own := d.ownFiles()
	vols := d.bottle.Spec.Agent.Volumes
	for i := range vols {
		v := &vols[i]
		field := "spec.agent.volumes[" + strconv.Itoa(i) + "]"
		if v.Source == "" || v.Named() || failed[field+".source"] || failed[field+".allowSensitive"] || d.decodeFailed(field) {
			continue
		}
		if !filepath.IsAbs(v.Source) && d.file == StdinName {
			continue // refused by validateWorkspace
		}
		dir, sub, msg := h.resolve(d.file, v)
		if msg != "" {
			d.report(field+cmp.Or(sub, ".source"), "%s", msg)
			continue
		}
		// Set even when refused below: nestedDirs then reports the
		// directories inside it too, and Load returns no bottle.
		v.HostPath = dir
		if !v.ReadOnly {
			if msg := holdsOwn(dir, own); msg != "" {
				d.report(field+".source", "%s %s", quote(v.Source), msg)
			}
		}
	}
}

// ownFile is a file of the host that says what a bottle is: its spec file,
// a secret file, a source of spec.agent.files.
type ownFile struct {
	given string // absolute, as the spec names it
	path  string // given, resolved as far as it exists
	what  string // for messages: "the spec file itself"
	risk  string // what the agent could do with it
	it    string // how the fix names it
}

// ownFiles lists the files the document's bottle is made of, the spec file
// first (none for a spec read from standard input). Paths its validation
// refused are left out.
func (d *document) ownFiles() []ownFile {
	if d.file == StdinName {
		return nil
	}
	spec, err := filepath.Abs(d.file)
	if err != nil {
		return nil
	}
	dir := filepath.Dir(spec)
	own := []ownFile{{spec, resolveExisting(spec), "the spec file itself",
		"could rewrite its own bottle (mount more of the host, widen its egress) before your next apply", "the spec"}}
	a := &d.bottle.Spec.Agent
	for _, name := range slices.Sorted(maps.Keys(a.SecretEnv)) {
		if f := a.SecretEnv[name].ValueFrom.File; f != "" && CheckSecretFile(f) == "" {
			p := filepath.Join(dir, f)
			own = append(own, ownFile{p, resolveExisting(p), "the secret file of spec.agent.secretEnv." + name,
				"could replace the secret it is given (with a key of its own, or another file beside the spec) before your next apply", "it"})
		}
	}
	e := &d.bottle.Spec.Bundle.Egress
	for i, c := range e.Credentials {
		if f := c.ValueFrom.File; f != "" && CheckSecretFile(f) == "" {
			p := filepath.Join(dir, f)
			own = append(own, ownFile{p, resolveExisting(p), "the value file of spec.bundle.egress.credentials[" + strconv.Itoa(i) + "].valueFrom.file",
				"could replace the credential the bundle adds for " + c.Host + " (with a key of its own, to watch what is done with it) before your next apply", "it"})
		}
	}
	for i, f := range e.Trust {
		if f != "" && CheckTrustFile(f) == "" {
			p := filepath.Join(dir, f)
			own = append(own, ownFile{p, resolveExisting(p), "the trust file spec.bundle.egress.trust[" + strconv.Itoa(i) + "]",
				"could make the bundle trust a CA of its own upstream, and so read the credentials the bundle sends", "it"})
		}
	}
	for i, f := range a.Files {
		if f.Source != "" && CheckFileSource(f.Source) == "" {
			p := filepath.Join(dir, f.Source)
			own = append(own, ownFile{p, resolveExisting(p), "the source of spec.agent.files[" + strconv.Itoa(i) + "]",
				"could choose what every create writes to " + f.Path + " in the agent", "it"})
		}
	}
	return own
}

// holdsOwn returns why a writable host directory dir may not hold one of
// own, or "": the file, or the path the spec names it by (the agent could
// point a symlink on it elsewhere).
func holdsOwn(dir string, own []ownFile) string {
	for _, f := range own {
		for _, p := range []string{f.given, f.path} {
			if holds(dir, p) {
				return fmt.Sprintf("holds %s (%s): the agent %s; mount a directory that does not hold %s, or add readOnly: true",
					f.what, p, f.risk, f.it)
			}
		}
	}
	return ""
}

// resolve returns the directory a volume's source names, or what is wrong
// with it and the field to blame under the volume ("" for its source).
func (h *hostEnv) resolve(file string, v *Volume) (dir, field, msg string) {
	src := quote(v.Source)
	abs, err := sourcePath(file, v.Source)
	if err != nil {
		return "", "", fmt.Sprintf("%s cannot be made absolute: %v", src, err)
	}
	shown := src
	if abs != v.Source {
		shown += " (resolved to " + abs + ")"
	}
	if msg := h.forbid(abs, false); msg != "" {
		return "", "", shown + " " + msg
	}
	resolved, err := filepath.EvalSymlinks(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		msg := shown + " does not exist; create it, or fix the path"
		if !filepath.IsAbs(v.Source) {
			msg += " (relative paths start at the spec file's directory)"
		}
		return "", "", msg
	case err != nil:
		return "", "", fmt.Sprintf("%s cannot be resolved (%v); let the user who runs bottle-apply reach it, or fix the path", shown, unwrapPath(err))
	}
	if resolved != v.Source {
		shown = src + " (resolved to " + resolved + ")"
	}
	if msg := h.forbid(resolved, true); msg != "" {
		return "", "", shown + " " + msg
	}
	if fi, err := os.Stat(resolved); err != nil {
		return "", "", fmt.Sprintf("%s cannot be read (%v); let the user who runs bottle-apply reach it, or fix the path", shown, unwrapPath(err))
	} else if !fi.IsDir() {
		return "", "", shown + " is not a directory; a volume's source must be a directory"
	}
	name, is := h.sensitiveName(abs, resolved)
	switch {
	case name != "" && !v.AllowSensitive:
		could := "read and change"
		if v.ReadOnly {
			could = "read"
		}
		if is {
			return "", "", fmt.Sprintf("%s is %s, which the agent could then %s; "+
				"mount a directory below it, or set allowSensitive: true on this volume if that is what you want", shown, name, could)
		}
		return "", "", fmt.Sprintf("%s holds %s, which the agent could then %s; "+
			"mount a directory that does not hold it, or set allowSensitive: true on this volume if that is what you want", shown, name, could)
	case name == "" && v.AllowSensitive:
		return "", ".allowSensitive", fmt.Sprintf("has no effect: %s neither is nor holds /etc, /usr or your home directory; remove it", shown)
	}
	return resolved, "", ""
}

// sourcePath is a host directory's source made absolute, symlinks kept.
func sourcePath(file, source string) (string, error) {
	if !filepath.IsAbs(source) {
		source = filepath.Join(filepath.Dir(file), source)
	}
	return filepath.Abs(source)
}

// nestedDirs reports each host directory of docs that lies strictly
// inside a writable host directory of any of them (the same bottle or
// another), or whose source names it through one: the agent that has the
// outer one could swap the inner one's path for a symlink between the
// check and the mount, or before the next apply.
func nestedDirs(docs []*document) []*FieldError {
	type mount struct {
		d *document
		i int
	}
	var writable []mount
	for _, d := range docs {
		for i, v := range d.bottle.Spec.Agent.Volumes {
			if v.HostPath != "" && !v.ReadOnly {
				writable = append(writable, mount{d, i})
			}
		}
	}
	var errs []*FieldError
	for _, d := range docs {
		n := len(d.errs)
		for i, v := range d.bottle.Spec.Agent.Volumes {
			if v.HostPath == "" {
				continue
			}
			abs, err := sourcePath(d.file, v.Source)
			if err != nil {
				continue // resolve did it
			}
			for _, w := range writable {
				outer := w.d.bottle.Spec.Agent.Volumes[w.i].HostPath
				if w.d == d && w.i == i || !holds(outer, filepath.Dir(abs)) && (!holds(outer, v.HostPath) || sameFile(outer, v.HostPath)) {
					continue
				}
				field := "spec.agent.volumes[" + strconv.Itoa(w.i) + "]"
				at, _ := w.d.locate(field, false)
				shown := quote(v.Source)
				if v.Source != v.HostPath {
					shown += " (resolved to " + v.HostPath + ")"
				}
				d.report("spec.agent.volumes["+strconv.Itoa(i)+"].source",
					"%s lies inside %s, which bottle %s mounts writable (%s, at %s:%d): its agent could swap this "+
						"directory for a symlink (to /var/run, say) between the check and the mount; "+
						"mount the outer directory only, or make the outer one read-only",
					shown, outer, w.d.bottle.Metadata.Name, field, w.d.file, at.Line)
				break
			}
		}
		errs = append(errs, d.errs[n:]...)
	}
	return errs
}

// unwrapPath drops the path an *fs.PathError repeats.
func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

// SensitiveVolumes returns a warning for each host directory of b that
// allowSensitive lets be or hold /etc, /usr or the user's home directory, naming
// the bottle, the target and the directory: the caller shows them before
// it applies. It needs the HostPath that Load sets, so a bottle from
// LoadDeclared or Parse has none.
func SensitiveVolumes(b Bottle) []string {
	var out []string
	var h *hostEnv
	for i, v := range b.Spec.Agent.Volumes {
		if !v.AllowSensitive || v.HostPath == "" {
			continue
		}
		if h == nil { // only for a bottle that has one
			h = newHostEnv(userHome(), "")
		}
		access := "read-write"
		if v.ReadOnly {
			access = "read-only"
		}
		what := v.HostPath
		switch name, is := h.sensitiveName(v.HostPath); {
		case is:
			what = name + " (" + v.HostPath + ")"
		case name != "":
			what = v.HostPath + ", which holds " + name + ","
		}
		msg := fmt.Sprintf("bottle %s: spec.agent.volumes[%d] mounts %s at %s %s, as allowSensitive lets it",
			b.Metadata.Name, i, what, v.Target, access)
		if h.home != "" && holds(v.HostPath, h.home) {
			// What a home holds that a bottle is otherwise never given.
			msg += "; the agent can then use what your home holds: ssh keys, the docker CLI's credentials and contexts (~/.docker), a rootless engine's state"
		}
		out = append(out, msg)
	}
	return out
}

// RecheckHostPath says whether a host directory that Load resolved and
// checked (Volume.HostPath) is still that directory, just before a
// provider mounts it: a path whose parts became symlinks since (an agent
// with write access to a parent could make them) would be mounted
// wherever they lead, and a path that is gone would not be there.
func RecheckHostPath(p string) error {
	now, err := filepath.EvalSymlinks(p)
	if err != nil {
		return fmt.Errorf("host directory %s: %w; make it again, or take it out of spec.agent.volumes", p, err)
	}
	if now != p {
		return fmt.Errorf("host directory %s now leads to %s (a symlink was put in its path since the spec was checked): "+
			"refusing to mount it; look at who can write there, then apply again", p, now)
	}
	return nil
}
