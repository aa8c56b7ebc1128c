package docker

import (
	"archive/tar"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// fakeEngine is an in-memory engine. Every call is logged as "Method arg"
// before anything else happens, so a test can assert the exact sequence.
// An error in fail[Method] is returned by that method (after logging) and
// leaves the state alone. IDs are "id-" + name.
type fakeEngine struct {
	mu         sync.Mutex
	networks   map[string]network.Summary   // by name
	containers map[string]container.Summary // by name
	images     map[string]bool
	// imageIDs are the content IDs of images, by ref: "sha256:" + ref
	// when not set. imageLabels and imageCreated are what ImageList says
	// of them.
	imageIDs     map[string]string
	imageLabels  map[string]map[string]string
	imageCreated map[string]time.Time
	volumes      map[string]volume.Volume // by name
	// paths are the paths ContainerStatPath finds, in every container.
	paths map[string]bool
	calls []string
	fail  map[string]error
	// stuck holds the IDs of containers whose runtime task outlived an
	// engine restart: every start of them fails, until they are removed.
	stuck map[string]bool

	// pullStream and importStream are the progress streams ImagePull and
	// ImageImport return; an image is added only if its stream holds no
	// "error".
	pullStream   string
	importStream string
	// inspectGate, when set, blocks ImageInspect until it is closed.
	inspectGate chan struct{}
	// info is what Info answers: the engine's platform.
	info system.Info

	// Arguments, recorded for assertions.
	netCreates map[string]network.CreateOptions
	ctrCreates map[string]ctrCreate
	connects   map[string]*network.EndpointSettings // "network container" -> settings
	netLists   []network.ListOptions
	ctrLists   []container.ListOptions
	volLists   []volume.ListOptions
	imgLists   []image.ListOptions
	// copies are the tars CopyToContainer got: "container path" and the
	// entries' headers, with each regular file's content.
	copies      []ctrCopy
	removes     map[string]container.RemoveOptions // container ID -> options
	imports     []imageImport
	pullOptions []image.PullOptions
}

type ctrCreate struct {
	config *container.Config
	host   *container.HostConfig
	net    *network.NetworkingConfig
}

type ctrCopy struct {
	to      string
	headers []tar.Header
	content map[string]string
}

type imageImport struct {
	ref     string
	opts    image.ImportOptions
	entries []string          // names in the imported tar
	files   map[string][]byte // the regular files' content, by name
}

var _ engine = (*fakeEngine)(nil)

func newFakeEngine() *fakeEngine {
	return &fakeEngine{
		networks:     map[string]network.Summary{},
		containers:   map[string]container.Summary{},
		images:       map[string]bool{},
		imageIDs:     map[string]string{},
		imageLabels:  map[string]map[string]string{},
		imageCreated: map[string]time.Time{},
		volumes:      map[string]volume.Volume{},
		paths:        map[string]bool{"/": true},
		fail:         map[string]error{},
		info:         system.Info{OSType: "linux", Architecture: "x86_64"},
		pullStream:   `{"status":"Pulling fs layer","id":"abc"}` + "\n" + `{"status":"Download complete"}`,
		importStream: `{"status":"sha256:0123"}`,
		netCreates:   map[string]network.CreateOptions{},
		ctrCreates:   map[string]ctrCreate{},
		connects:     map[string]*network.EndpointSettings{},
		removes:      map[string]container.RemoveOptions{},
	}
}

// record logs a call and returns the error injected for its method.
func (f *fakeEngine) record(method string, args ...string) error {
	f.calls = append(f.calls, strings.Join(append([]string{method}, args...), " "))
	return f.fail[method]
}

func (f *fakeEngine) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeEngine) count(method string) int {
	n := 0
	for _, c := range f.callLog() {
		if c == method || strings.HasPrefix(c, method+" ") {
			n++
		}
	}
	return n
}

func (f *fakeEngine) networkByRef(ref string) (network.Summary, bool) {
	for _, n := range f.networks {
		if n.ID == ref || n.Name == ref {
			return n, true
		}
	}
	return network.Summary{}, false
}

func (f *fakeEngine) containerByRef(ref string) (string, bool) {
	for name, c := range f.containers {
		if c.ID == ref || name == ref {
			return name, true
		}
	}
	return "", false
}

func notFound(what string) error { return fmt.Errorf("no such %s: %w", what, cerrdefs.ErrNotFound) }

func (f *fakeEngine) NetworkList(_ context.Context, opts network.ListOptions) ([]network.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("NetworkList"); err != nil {
		return nil, err
	}
	f.netLists = append(f.netLists, opts)
	out := make([]network.Summary, 0, len(f.networks))
	for _, n := range f.networks {
		out = append(out, n)
	}
	return out, nil
}

func (f *fakeEngine) NetworkCreate(_ context.Context, name string, opts network.CreateOptions) (network.CreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("NetworkCreate", name); err != nil {
		return network.CreateResponse{}, err
	}
	if _, ok := f.networks[name]; ok {
		return network.CreateResponse{}, fmt.Errorf("network with name %s already exists: %w", name, cerrdefs.ErrConflict)
	}
	f.netCreates[name] = opts
	n := network.Summary{Name: name, ID: "id-" + name, Driver: opts.Driver, Internal: opts.Internal, Labels: opts.Labels}
	if opts.IPAM != nil {
		n.IPAM = *opts.IPAM
	}
	f.networks[name] = n
	return network.CreateResponse{ID: n.ID}, nil
}

func (f *fakeEngine) NetworkRemove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("NetworkRemove", id); err != nil {
		return err
	}
	n, ok := f.networkByRef(id)
	if !ok {
		return notFound("network " + id)
	}
	delete(f.networks, n.Name)
	return nil
}

func (f *fakeEngine) NetworkConnect(_ context.Context, netID, ctrID string, settings *network.EndpointSettings) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("NetworkConnect", netID, ctrID); err != nil {
		return err
	}
	n, ok := f.networkByRef(netID)
	if !ok {
		return notFound("network " + netID)
	}
	name, ok := f.containerByRef(ctrID)
	if !ok {
		return notFound("container " + ctrID)
	}
	f.connects[netID+" "+ctrID] = settings
	c := f.containers[name]
	ep := &network.EndpointSettings{NetworkID: n.ID}
	if settings != nil && settings.IPAMConfig != nil {
		ep.IPAddress = settings.IPAMConfig.IPv4Address
	}
	c.NetworkSettings.Networks[n.Name] = ep
	f.containers[name] = c
	return nil
}

func (f *fakeEngine) ContainerList(_ context.Context, opts container.ListOptions) ([]container.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("ContainerList"); err != nil {
		return nil, err
	}
	f.ctrLists = append(f.ctrLists, opts)
	var res []*regexp.Regexp
	for _, v := range opts.Filters.Get("name") {
		res = append(res, regexp.MustCompile(v))
	}
	ancestors := opts.Filters.Get("ancestor")
	var out []container.Summary
	for _, c := range f.containers {
		if !opts.All && c.State != "running" || !hasLabels(c.Labels, opts.Filters.Get("label")) {
			continue
		}
		if len(ancestors) > 0 && !slices.Contains(ancestors, c.ImageID) {
			continue
		}
		if len(res) == 0 || len(c.Names) > 0 && slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(c.Names[0]) }) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakeEngine) ContainerCreate(_ context.Context, config *container.Config, host *container.HostConfig,
	netcfg *network.NetworkingConfig, _ *ocispec.Platform, name string,
) (container.CreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("ContainerCreate", name); err != nil {
		return container.CreateResponse{}, err
	}
	if _, ok := f.containers[name]; ok {
		return container.CreateResponse{}, fmt.Errorf("container name %q is already in use: %w", "/"+name, cerrdefs.ErrConflict)
	}
	if !f.images[config.Image] {
		return container.CreateResponse{}, notFound("image " + config.Image)
	}
	f.ctrCreates[name] = ctrCreate{config: config, host: host, net: netcfg}
	c := container.Summary{
		ID: "id-" + name, Names: []string{"/" + name}, Image: config.Image, ImageID: f.imageID(config.Image), Labels: config.Labels,
		State: "created", Status: "Created",
		NetworkSettings: &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{}},
	}
	for _, m := range host.Mounts {
		if m.Type == mount.TypeVolume {
			c.Mounts = append(c.Mounts, container.MountPoint{Type: m.Type, Name: m.Source, Destination: m.Target})
		}
	}
	for netName, s := range netcfg.EndpointsConfig {
		n, ok := f.networkByRef(netName)
		if !ok {
			return container.CreateResponse{}, notFound("network " + netName)
		}
		ep := &network.EndpointSettings{NetworkID: n.ID}
		if s != nil && s.IPAMConfig != nil {
			ep.IPAddress = s.IPAMConfig.IPv4Address
		}
		c.NetworkSettings.Networks[n.Name] = ep
	}
	f.containers[name] = c
	return container.CreateResponse{ID: c.ID}, nil
}

func (f *fakeEngine) ContainerStart(_ context.Context, id string, _ container.StartOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("ContainerStart", id); err != nil {
		return err
	}
	name, ok := f.containerByRef(id)
	if !ok {
		return notFound("container " + id)
	}
	c := f.containers[name]
	if f.stuck[c.ID] {
		// As dockerd 20.10 answers, with a 500.
		return wrapped(cerrdefs.ErrInternal, "task "+c.ID+": already exists")
	}
	c.State, c.Status = "running", "Up 1 second"
	f.containers[name] = c
	return nil
}

func (f *fakeEngine) ContainerRemove(_ context.Context, id string, opts container.RemoveOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("ContainerRemove", id); err != nil {
		return err
	}
	f.removes[id] = opts
	name, ok := f.containerByRef(id)
	if !ok {
		return notFound("container " + id)
	}
	delete(f.stuck, f.containers[name].ID)
	delete(f.containers, name)
	return nil
}

func (f *fakeEngine) ContainerStatPath(_ context.Context, id, p string) (container.PathStat, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("ContainerStatPath", id, p); err != nil {
		return container.PathStat{}, err
	}
	if _, ok := f.containerByRef(id); !ok {
		return container.PathStat{}, notFound("container " + id)
	}
	if !f.paths[p] {
		return container.PathStat{}, notFound("path " + p)
	}
	return container.PathStat{Name: p, Mode: fs.ModeDir | 0o755}, nil
}

func (f *fakeEngine) CopyToContainer(_ context.Context, id, to string, r io.Reader, _ container.CopyToContainerOptions) error {
	f.mu.Lock()
	err := f.record("CopyToContainer", id, to)
	f.mu.Unlock()
	if err != nil {
		return err
	}
	c := ctrCopy{to: id + " " + to, content: map[string]string{}}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read the copied tar: %w", err)
		}
		h.ModTime, h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}, time.Time{}
		h.Format = 0
		c.headers = append(c.headers, *h)
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			c.content[h.Name] = string(b)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.copies = append(f.copies, c)
	return nil
}

// hasLabels is the engine's label filter: every one of want, a key (it
// exists) or key=value, is on the object.
func hasLabels(labels map[string]string, want []string) bool {
	for _, w := range want {
		k, v, withValue := strings.Cut(w, "=")
		if got, ok := labels[k]; !ok || withValue && got != v {
			return false
		}
	}
	return true
}

func (f *fakeEngine) VolumeList(_ context.Context, opts volume.ListOptions) (volume.ListResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("VolumeList"); err != nil {
		return volume.ListResponse{}, err
	}
	f.volLists = append(f.volLists, opts)
	names := opts.Filters.Get("name")
	var out volume.ListResponse
	for _, v := range f.volumes {
		// As the engine: a substring match, the filters OR'ed.
		if !hasLabels(v.Labels, opts.Filters.Get("label")) {
			continue
		}
		if len(names) == 0 || slices.ContainsFunc(names, func(n string) bool { return strings.Contains(v.Name, n) }) {
			out.Volumes = append(out.Volumes, &v)
		}
	}
	return out, nil
}

func (f *fakeEngine) VolumeCreate(_ context.Context, opts volume.CreateOptions) (volume.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("VolumeCreate", opts.Name); err != nil {
		return volume.Volume{}, err
	}
	// As the engine: an existing volume of that name is returned as it is.
	if v, ok := f.volumes[opts.Name]; ok {
		return v, nil
	}
	v := volume.Volume{Name: opts.Name, Driver: "local", Labels: opts.Labels}
	f.volumes[opts.Name] = v
	return v, nil
}

func (f *fakeEngine) VolumeRemove(_ context.Context, name string, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("VolumeRemove", name); err != nil {
		return err
	}
	if _, ok := f.volumes[name]; !ok {
		return notFound("volume " + name)
	}
	for _, c := range f.containers {
		for _, m := range c.Mounts {
			if m.Name == name {
				return fmt.Errorf("remove %s: volume is in use - [%s]: %w", name, c.ID, cerrdefs.ErrConflict)
			}
		}
	}
	delete(f.volumes, name)
	return nil
}

func (f *fakeEngine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	f.mu.Lock()
	err := f.record("ImageInspect", ref)
	gate := f.inspectGate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if err != nil {
		return image.InspectResponse{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.images[ref] {
		return image.InspectResponse{}, notFound("image " + ref)
	}
	return image.InspectResponse{ID: f.imageID(ref)}, nil
}

// imageID is the content ID of the image ref. Called with f.mu held.
func (f *fakeEngine) imageID(ref string) string {
	if id, ok := f.imageIDs[ref]; ok {
		return id
	}
	return "sha256:" + ref
}

func (f *fakeEngine) ImageList(_ context.Context, opts image.ListOptions) ([]image.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.imgLists = append(f.imgLists, opts)
	if err := f.record("ImageList"); err != nil {
		return nil, err
	}
	var out []image.Summary
	for _, ref := range slices.Sorted(maps.Keys(f.images)) {
		if f.images[ref] {
			out = append(out, image.Summary{ID: f.imageID(ref), RepoTags: []string{ref}, Labels: f.imageLabels[ref], Created: f.imageCreated[ref].Unix()})
		}
	}
	return out, nil
}

func (f *fakeEngine) ImageRemove(_ context.Context, ref string, _ image.RemoveOptions) ([]image.DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("ImageRemove", ref); err != nil {
		return nil, err
	}
	if !f.images[ref] {
		return nil, notFound("image " + ref)
	}
	// Another tag of the image stays: this one is only untagged.
	tags := 0
	for r, ok := range f.images {
		if ok && f.imageID(r) == f.imageID(ref) {
			tags++
		}
	}
	for _, c := range f.containers {
		if tags == 1 && c.ImageID == f.imageID(ref) {
			return nil, fmt.Errorf("unable to remove repository reference %q (must force) - container %s is using its referenced image: %w", ref, c.ID, cerrdefs.ErrConflict)
		}
	}
	delete(f.images, ref)
	return []image.DeleteResponse{{Untagged: ref}}, nil
}

func (f *fakeEngine) ImagePull(_ context.Context, ref string, opts image.PullOptions) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("ImagePull", ref); err != nil {
		return nil, err
	}
	f.pullOptions = append(f.pullOptions, opts)
	if !strings.Contains(f.pullStream, `"error"`) {
		f.images[ref] = true
	}
	return io.NopCloser(strings.NewReader(f.pullStream)), nil
}

func (f *fakeEngine) ImageImport(_ context.Context, src image.ImportSource, ref string, opts image.ImportOptions) (io.ReadCloser, error) {
	f.mu.Lock()
	err := f.record("ImageImport", ref)
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	// Read the whole source, as the engine would, outside the lock.
	var entries []string
	files := map[string][]byte{}
	tr := tar.NewReader(src.Source)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read import source: %w", err)
		}
		entries = append(entries, h.Name)
		if h.Typeflag == tar.TypeReg {
			if files[h.Name], err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("read import source: %w", err)
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.imports = append(f.imports, imageImport{ref: ref, opts: opts, entries: entries, files: files})
	if !strings.Contains(f.importStream, `"error"`) {
		f.images[ref] = true
	}
	return io.NopCloser(strings.NewReader(f.importStream)), nil
}

func (f *fakeEngine) Info(context.Context) (system.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("Info"); err != nil {
		return system.Info{}, err
	}
	return f.info, nil
}

func (f *fakeEngine) ClientVersion() string { return "1.51" }

func TestContainerState(t *testing.T) {
	t.Parallel()
	tests := map[string]reconcile.State{
		"running":    reconcile.StateRunning,
		"restarting": reconcile.StateRunning,
		"created":    reconcile.StateCreated,
		"exited":     reconcile.StateStopped,
		"dead":       reconcile.StateFailed,
		"paused":     reconcile.StateUnknown,
		"removing":   reconcile.StateUnknown,
		"":           reconcile.StateUnknown,
		"weird":      reconcile.StateUnknown,
	}
	for in, want := range tests {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			if got := containerState(in); got != want {
				t.Errorf("containerState(%q) = %v, want %v", in, got, want)
			}
		})
	}
}

func managedLabels(bottleName, role, hash string) map[string]string {
	return map[string]string{bottle.LabelName: bottleName, bottle.LabelRole: role, bottle.LabelHash: hash, bottle.LabelInputs: "image=aaa,ip=bbb"}
}

func TestObserved(t *testing.T) {
	t.Parallel()
	netRes := func(name, id string, managed bool, subnet string) reconcile.Resource {
		r := reconcile.Resource{Provider: ProviderName, Kind: KindNetwork, Name: name, EngineID: id,
			State: reconcile.StatePresent}
		if managed {
			r.Bottle, r.Role, r.Hash, r.Managed = "hello", strings.TrimPrefix(name, "bottle-hello-"), "h1", true
			r.Inputs = map[string]string{"image": "aaa", "ip": "bbb"}
		}
		if subnet != "" {
			r.Summary = map[string]string{"subnet": subnet}
		}
		return r
	}
	internal := network.Summary{Name: "bottle-hello-internal", ID: "n1", Labels: managedLabels("hello", bottle.RoleInternal, "h1"),
		IPAM: network.IPAM{Config: []network.IPAMConfig{{Subnet: "192.168.240.0/24"}}}}
	egress := network.Summary{Name: "bottle-hello-egress", ID: "n2", Labels: managedLabels("hello", bottle.RoleEgress, "h1"),
		IPAM: network.IPAM{Config: []network.IPAMConfig{{Subnet: "fd00::/64"}, {Subnet: "10.213.0.16/28"}}}}
	bridge := network.Summary{Name: "bridge", ID: "n0",
		IPAM: network.IPAM{Config: []network.IPAMConfig{{Subnet: "172.17.0.0/16"}}}}
	ctr := func(state string, nets ...string) container.Summary {
		c := container.Summary{ID: "c1", Names: []string{"/bottle-hello-agent"}, Image: "agent:1", State: state, Status: "st",
			Labels:          managedLabels("hello", bottle.RoleAgent, "h2"),
			NetworkSettings: &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{}}}
		for _, n := range nets {
			c.NetworkSettings.Networks["name-of-"+n] = &network.EndpointSettings{NetworkID: n}
		}
		return c
	}
	agent := func(state reconcile.State, attached map[string]string, deps ...string) reconcile.Resource {
		return reconcile.Resource{Provider: ProviderName, Kind: KindContainer, Bottle: "hello", Role: bottle.RoleAgent,
			Name: "bottle-hello-agent", Hash: "h2", Inputs: map[string]string{"image": "aaa", "ip": "bbb"},
			Managed: true, EngineID: "c1", State: state, Status: "st", Attached: attached, DependsOn: deps,
			Summary: map[string]string{"image": "agent:1"}}
	}
	tests := []struct {
		name string
		nets []network.Summary
		ctrs []container.Summary
		want []reconcile.Resource
	}{
		{name: "nothing", want: []reconcile.Resource{}},
		{
			name: "network without labels is unmanaged",
			nets: []network.Summary{bridge},
			want: []reconcile.Resource{netRes("bridge", "n0", false, "172.17.0.0/16")},
		},
		{
			name: "labels with an empty hash are unmanaged",
			nets: []network.Summary{{Name: "bottle-hello-internal", ID: "n9", Labels: managedLabels("hello", bottle.RoleInternal, "")}},
			want: []reconcile.Resource{{Provider: ProviderName, Kind: KindNetwork, Name: "bottle-hello-internal", EngineID: "n9",
				Bottle: "hello", Role: bottle.RoleInternal, Inputs: map[string]string{"image": "aaa", "ip": "bbb"},
				State: reconcile.StatePresent}},
		},
		{
			name: "labels without a role are unmanaged",
			nets: []network.Summary{{Name: "x", ID: "n9", Labels: map[string]string{bottle.LabelName: "hello", bottle.LabelHash: "h"}}},
			want: []reconcile.Resource{{Provider: ProviderName, Kind: KindNetwork, Name: "x", EngineID: "n9",
				Bottle: "hello", Hash: "h", State: reconcile.StatePresent}},
		},
		{
			name: "managed networks decode labels; the IPv4 subnet wins over IPv6",
			nets: []network.Summary{internal, egress},
			want: []reconcile.Resource{
				netRes("bottle-hello-internal", "n1", true, "192.168.240.0/24"),
				netRes("bottle-hello-egress", "n2", true, "10.213.0.16/28"),
			},
		},
		{
			name: "IPv6-only network has no subnet summary",
			nets: []network.Summary{{Name: "v6", ID: "n6", IPAM: network.IPAM{Config: []network.IPAMConfig{{Subnet: "fd00::/64"}}}}},
			want: []reconcile.Resource{netRes("v6", "n6", false, "")},
		},
		{
			name: "container on a managed network is attached and depends on it",
			nets: []network.Summary{internal},
			ctrs: []container.Summary{ctr("running", "n1")},
			want: []reconcile.Resource{
				netRes("bottle-hello-internal", "n1", true, "192.168.240.0/24"),
				agent(reconcile.StateRunning, map[string]string{"docker-network:hello/internal": "n1"}, "docker-network:hello/internal"),
			},
		},
		{
			name: "networks that are not ours are recorded as such, not depended on",
			nets: []network.Summary{bridge},
			ctrs: []container.Summary{ctr("exited", "n0", "gone")},
			want: []reconcile.Resource{
				netRes("bridge", "n0", false, "172.17.0.0/16"),
				agent(reconcile.StateStopped, map[string]string{"network name-of-n0": "n0", "network name-of-gone": "gone"}),
			},
		},
		{
			name: "managed network the container is not on is not attached",
			nets: []network.Summary{internal, egress},
			ctrs: []container.Summary{ctr("created", "n2")},
			want: []reconcile.Resource{
				netRes("bottle-hello-internal", "n1", true, "192.168.240.0/24"),
				netRes("bottle-hello-egress", "n2", true, "10.213.0.16/28"),
				agent(reconcile.StateCreated, map[string]string{"docker-network:hello/egress": "n2"}, "docker-network:hello/egress"),
			},
		},
		{
			name: "container without network settings or names",
			ctrs: []container.Summary{{ID: "c7", Image: "busybox", State: "dead"}},
			want: []reconcile.Resource{{Provider: ProviderName, Kind: KindContainer, EngineID: "c7",
				State: reconcile.StateFailed, Summary: map[string]string{"image": "busybox"}}},
		},
		{
			name: "the address on the bottle's internal network is kept, from its IPAM config when stopped",
			ctrs: []container.Summary{
				{ID: "c1", Names: []string{"/bottle-hello-bundle"}, State: "running", Labels: managedLabels("hello", bottle.RoleBundle, "h"),
					NetworkSettings: &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{
						"bottle-hello-internal": {IPAddress: "10.0.0.2"}, "bottle-hello-egress": {IPAddress: "10.1.0.2"}}}},
				{ID: "c2", Names: []string{"/bottle-other-bundle"}, State: "exited", Labels: managedLabels("other", bottle.RoleBundle, "h"),
					NetworkSettings: &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{
						"bottle-other-internal": {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "10.0.1.2"}}}}},
			},
			want: []reconcile.Resource{
				{Provider: ProviderName, Kind: KindContainer, Bottle: "hello", Role: bottle.RoleBundle, Name: "bottle-hello-bundle", Hash: "h",
					Inputs: map[string]string{"image": "aaa", "ip": "bbb"}, Managed: true, EngineID: "c1", State: reconcile.StateRunning,
					Attached: map[string]string{"network bottle-hello-internal": "", "network bottle-hello-egress": ""},
					Summary:  map[string]string{"image": "", "ip": "10.0.0.2"}},
				{Provider: ProviderName, Kind: KindContainer, Bottle: "other", Role: bottle.RoleBundle, Name: "bottle-other-bundle", Hash: "h",
					Inputs: map[string]string{"image": "aaa", "ip": "bbb"}, Managed: true, EngineID: "c2", State: reconcile.StateStopped,
					Attached: map[string]string{"network bottle-other-internal": ""},
					Summary:  map[string]string{"image": "", "ip": "10.0.1.2"}},
			},
		},
		{
			name: "the engine's creation times are kept",
			nets: []network.Summary{{Name: "n", ID: "n3", Created: time.Unix(1750000000, 0)}},
			ctrs: []container.Summary{{ID: "c8", State: "running", Created: 1750000100}},
			want: []reconcile.Resource{
				{Provider: ProviderName, Kind: KindNetwork, Name: "n", EngineID: "n3", State: reconcile.StatePresent, Created: time.Unix(1750000000, 0)},
				{Provider: ProviderName, Kind: KindContainer, EngineID: "c8", State: reconcile.StateRunning, Created: time.Unix(1750000100, 0),
					Summary: map[string]string{"image": ""}},
			},
		},
		{
			name: "a paused container is left alone",
			ctrs: []container.Summary{ctr("paused")},
			want: []reconcile.Resource{agent(reconcile.StateUnknown, map[string]string{})},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := observed(tt.nets, tt.ctrs)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("observed() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestObservedAttachedToBothNetworks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, state, id1, id2 string
	}{
		{"running", "running", "n1", "n2"},
		// The engine names a container's networks without their IDs until
		// its first start: one left created by a killed engine stays so.
		{"created, never started", "created", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testObservedAttached(t, tc.state, tc.id1, tc.id2)
		})
	}
}

func testObservedAttached(t *testing.T, state, id1, id2 string) {
	nets := []network.Summary{
		{Name: "bottle-hello-internal", ID: "n1", Labels: managedLabels("hello", bottle.RoleInternal, "h")},
		{Name: "bottle-hello-egress", ID: "n2", Labels: managedLabels("hello", bottle.RoleEgress, "h")},
	}
	ctrs := []container.Summary{{ID: "c1", Names: []string{"/bottle-hello-bundle"}, State: state,
		Labels: managedLabels("hello", bottle.RoleBundle, "h"),
		NetworkSettings: &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{
			"bottle-hello-internal": {NetworkID: id1}, "bottle-hello-egress": {NetworkID: id2},
		}}}}
	got := observed(nets, ctrs)[2]
	// The order of DependsOn follows map iteration: compare it sorted.
	deps := slices.Sorted(slices.Values(got.DependsOn))
	wantDeps := []string{"docker-network:hello/egress", "docker-network:hello/internal"}
	if !slices.Equal(deps, wantDeps) {
		t.Errorf("DependsOn = %q, want %q", deps, wantDeps)
	}
	wantAttached := map[string]string{"docker-network:hello/internal": "n1", "docker-network:hello/egress": "n2"}
	if !reflect.DeepEqual(got.Attached, wantAttached) {
		t.Errorf("Attached = %v, want %v", got.Attached, wantAttached)
	}
}

const bundleRef = "bottle-apply/bundle:abc"

// hello returns the hello bottle's desired resources by role.
func hello() map[string]reconcile.Resource {
	return byRole(translate(helloBottle(), bundleRef, "v1"))
}

func step(a reconcile.Action, r reconcile.Resource) reconcile.Step {
	return reconcile.Step{ID: 1, Action: a, ResourceID: r.ID(), Resource: r}
}

func observedRes(kind, role, engineID string, managed bool) reconcile.Resource {
	return reconcile.Resource{Provider: ProviderName, Kind: kind, Bottle: "hello", Role: role,
		Name: bottle.ResourceName("hello", role), EngineID: engineID, Managed: managed}
}

func wrapped(e error, msg string) error { return fmt.Errorf("%s: %w", msg, e) }

func TestApply(t *testing.T) {
	t.Parallel()
	rs := hello()
	internalCfg := rs[bottle.RoleInternal].Config.(networkConfig)
	egressCfg := rs[bottle.RoleEgress].Config.(networkConfig)
	noSubnet := rs[bottle.RoleInternal]
	noSubnet.Config = networkConfig{Name: "bottle-hello-internal", Internal: true, Labels: internalCfg.Labels}
	withNetworks := func(f *fakeEngine) {
		for _, r := range []reconcile.Resource{rs[bottle.RoleInternal], rs[bottle.RoleEgress]} {
			name := r.Config.(networkConfig).Name
			f.networks[name] = network.Summary{Name: name, ID: "id-" + name}
		}
	}
	present := func(refs ...string) func(*fakeEngine) {
		return func(f *fakeEngine) {
			withNetworks(f)
			for _, ref := range refs {
				f.images[ref] = true
			}
		}
	}
	builds := testenv.FakeBundleBuilds(t, elf.EM_X86_64, elf.EM_AARCH64)

	agentObs := observedRes(KindContainer, bottle.RoleAgent, "c-agent", true)
	startStep := step(reconcile.Start, rs[bottle.RoleAgent])
	startStep.Observed = &agentObs
	startNoObs := step(reconcile.Start, rs[bottle.RoleAgent])
	badCfg := rs[bottle.RoleAgent]
	badCfg.Config = networkConfig{}

	bundleCalls := []string{
		"ImageInspect " + bundleRef,
		"ContainerCreate bottle-hello-bundle",
		"NetworkConnect bottle-hello-egress id-bottle-hello-bundle",
		"ContainerStart id-bottle-hello-bundle",
	}

	tests := []struct {
		name      string
		opts      Options
		setup     func(*fakeEngine)
		step      reconcile.Step
		wantCalls []string
		wantErr   string // substring; "" means success
		wantIs    []error
		check     func(t *testing.T, f *fakeEngine)
	}{
		{
			name:      "create internal network sends translate's config",
			step:      step(reconcile.Create, rs[bottle.RoleInternal]),
			wantCalls: []string{"NetworkCreate bottle-hello-internal"},
			check: func(t *testing.T, f *fakeEngine) {
				want := network.CreateOptions{Driver: "bridge", Internal: true, Labels: internalCfg.Labels,
					Options: map[string]string{OptionInhibitIPv4: "true"},
					IPAM:    &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: "192.168.240.0/24", Gateway: "192.168.240.1"}}}}
				if got := f.netCreates["bottle-hello-internal"]; !reflect.DeepEqual(got, want) {
					t.Errorf("NetworkCreate options = %+v, want %+v", got, want)
				}
				if internalCfg.Labels[bottle.LabelHash] != rs[bottle.RoleInternal].Hash || internalCfg.Labels[bottle.LabelVersion] != "v1" {
					t.Errorf("labels = %v", internalCfg.Labels)
				}
			},
		},
		{
			name:      "create egress network is not internal",
			step:      step(reconcile.Create, rs[bottle.RoleEgress]),
			wantCalls: []string{"NetworkCreate bottle-hello-egress"},
			check: func(t *testing.T, f *fakeEngine) {
				want := network.CreateOptions{Driver: "bridge", Labels: egressCfg.Labels,
					IPAM: &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: "10.213.0.16/28", Gateway: "10.213.0.17"}}}}
				if got := f.netCreates["bottle-hello-egress"]; !reflect.DeepEqual(got, want) {
					t.Errorf("NetworkCreate options = %+v, want %+v", got, want)
				}
			},
		},
		{
			name:      "create network without subnet leaves IPAM to the engine",
			step:      step(reconcile.Create, noSubnet),
			wantCalls: []string{"NetworkCreate bottle-hello-internal"},
			check: func(t *testing.T, f *fakeEngine) {
				if got := f.netCreates["bottle-hello-internal"]; got.IPAM != nil || !got.Internal {
					t.Errorf("NetworkCreate options = %+v, want internal and no IPAM", got)
				}
			},
		},
		{
			name:      "network name conflict is retried",
			setup:     func(f *fakeEngine) { f.fail["NetworkCreate"] = wrapped(cerrdefs.ErrConflict, "network exists") },
			step:      step(reconcile.Create, rs[bottle.RoleInternal]),
			wantCalls: []string{"NetworkCreate bottle-hello-internal"},
			wantErr:   "create network bottle-hello-internal: network exists",
			wantIs:    []error{reconcile.ErrRetry, cerrdefs.ErrConflict},
		},
		{
			name:      "network already exists is retried",
			setup:     func(f *fakeEngine) { f.fail["NetworkCreate"] = wrapped(cerrdefs.ErrAlreadyExists, "exists") },
			step:      step(reconcile.Create, rs[bottle.RoleInternal]),
			wantCalls: []string{"NetworkCreate bottle-hello-internal"},
			wantErr:   "exists",
			wantIs:    []error{reconcile.ErrRetry},
		},
		{
			name: "subnet overlap is retried",
			setup: func(f *fakeEngine) {
				f.fail["NetworkCreate"] = errors.New("invalid pool request: Pool overlaps with other one on this address space")
			},
			step:      step(reconcile.Create, rs[bottle.RoleInternal]),
			wantCalls: []string{"NetworkCreate bottle-hello-internal"},
			wantErr:   "with subnet 192.168.240.0/24",
			wantIs:    []error{reconcile.ErrRetry},
		},
		{
			name:      "other network create errors are not retried",
			setup:     func(f *fakeEngine) { f.fail["NetworkCreate"] = errors.New("daemon on fire") },
			step:      step(reconcile.Create, rs[bottle.RoleInternal]),
			wantCalls: []string{"NetworkCreate bottle-hello-internal"},
			wantErr:   "create network bottle-hello-internal: daemon on fire",
		},
		{
			name:      "create bundle: inspect, create on the primary network, connect egress, start",
			setup:     present(bundleRef),
			step:      step(reconcile.Create, rs[bottle.RoleBundle]),
			wantCalls: bundleCalls,
			check: func(t *testing.T, f *fakeEngine) {
				cfg := rs[bottle.RoleBundle].Config.(containerConfig)
				got := f.ctrCreates["bottle-hello-bundle"]
				wantEP := map[string]*network.EndpointSettings{
					"bottle-hello-internal": {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "192.168.240.2"}},
				}
				if !reflect.DeepEqual(got.net.EndpointsConfig, wantEP) {
					t.Errorf("EndpointsConfig = %+v, want only the internal network at the bundle IP", got.net.EndpointsConfig)
				}
				if got.host.NetworkMode != "bottle-hello-internal" {
					t.Errorf("NetworkMode = %q", got.host.NetworkMode)
				}
				if got.config.Image != bundleRef || !reflect.DeepEqual(got.config.Labels, cfg.Labels) ||
					!reflect.DeepEqual(got.config.Env, cfg.Env) || got.config.Hostname != "bottle-hello-bundle" {
					t.Errorf("container config = %+v", got.config)
				}
				if ep := f.connects["bottle-hello-egress id-bottle-hello-bundle"]; ep == nil || ep.IPAMConfig != nil {
					t.Errorf("egress endpoint = %+v, want one without a pinned IP", ep)
				}
				if c := f.containers["bottle-hello-bundle"]; c.State != "running" || len(c.NetworkSettings.Networks) != 2 {
					t.Errorf("bundle container = %+v", c)
				}
			},
		},
		{
			name:      "create agent: init and one network, no connect",
			setup:     present("agent:1"),
			step:      step(reconcile.Create, rs[bottle.RoleAgent]),
			wantCalls: []string{"ImageInspect agent:1", "ContainerCreate bottle-hello-agent", "ContainerStart id-bottle-hello-agent"},
			check: func(t *testing.T, f *fakeEngine) {
				got := f.ctrCreates["bottle-hello-agent"]
				if got.host.Init == nil || !*got.host.Init {
					t.Errorf("agent HostConfig.Init = %v, want true", got.host.Init)
				}
				wantEP := map[string]*network.EndpointSettings{
					"bottle-hello-internal": {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "192.168.240.254"}},
				}
				if !reflect.DeepEqual(got.net.EndpointsConfig, wantEP) {
					t.Errorf("EndpointsConfig = %+v", got.net.EndpointsConfig)
				}
			},
		},
		{
			name:      "missing image is pulled",
			setup:     withNetworks,
			step:      step(reconcile.Create, rs[bottle.RoleAgent]),
			wantCalls: []string{"ImageInspect agent:1", "ImagePull agent:1", "ContainerCreate bottle-hello-agent", "ContainerStart id-bottle-hello-agent"},
		},
		{
			name: "pull stream error",
			setup: func(f *fakeEngine) {
				withNetworks(f)
				f.pullStream = `{"status":"Pulling"}` + "\n" + `{"error":"boom"}`
			},
			step:      step(reconcile.Create, rs[bottle.RoleAgent]),
			wantCalls: []string{"ImageInspect agent:1", "ImagePull agent:1"},
			wantErr:   "image agent:1 is not present locally and pulling it failed: boom",
		},
		{
			name: "pull call error",
			setup: func(f *fakeEngine) {
				withNetworks(f)
				f.fail["ImagePull"] = wrapped(cerrdefs.ErrNotFound, "pull access denied")
			},
			step:      step(reconcile.Create, rs[bottle.RoleAgent]),
			wantCalls: []string{"ImageInspect agent:1", "ImagePull agent:1"},
			wantErr:   "is not present locally and pulling it failed: pull access denied",
			wantIs:    []error{cerrdefs.ErrNotFound},
		},
		{
			name: "inspect error other than not found stops before pulling",
			setup: func(f *fakeEngine) {
				withNetworks(f)
				f.fail["ImageInspect"] = errors.New("connection reset")
			},
			step:      step(reconcile.Create, rs[bottle.RoleAgent]),
			wantCalls: []string{"ImageInspect agent:1"},
			wantErr:   "inspect image agent:1: connection reset",
		},
		{
			name:  "missing builtin image is imported from the engine's build",
			opts:  Options{BundleBinary: builds.Path, Version: "v9"},
			setup: withNetworks,
			step:  step(reconcile.Create, rs[bottle.RoleBundle]),
			wantCalls: append([]string{"ImageInspect " + bundleRef, "Info", "ImageImport " + bundleRef},
				bundleCalls[1:]...),
			check: func(t *testing.T, f *fakeEngine) {
				if len(f.imports) != 1 {
					t.Fatalf("imports = %+v", f.imports)
				}
				imp := f.imports[0]
				wantChanges := []string{`ENTRYPOINT ["/bottle-bundle"]`, "LABEL " + bottle.LabelVersion + "=v9"}
				if imp.ref != bundleRef || !slices.Equal(imp.opts.Changes, wantChanges) {
					t.Errorf("import = %q %q, want %q %q", imp.ref, imp.opts.Changes, bundleRef, wantChanges)
				}
				if want := []string{"tmp/", "bottle-bundle"}; !slices.Equal(imp.entries, want) {
					t.Errorf("imported rootfs = %q, want %q", imp.entries, want)
				}
			},
		},
		{
			name:      "missing builtin image without bundle builds",
			setup:     withNetworks,
			step:      step(reconcile.Create, rs[bottle.RoleBundle]),
			wantCalls: []string{"ImageInspect " + bundleRef, "Info"},
			wantErr:   "internal: no bottle-bundle builds",
		},
		{
			name: "the engine's platform unknown",
			opts: Options{BundleBinary: builds.Path},
			setup: func(f *fakeEngine) {
				withNetworks(f)
				f.fail["Info"] = wrapped(cerrdefs.ErrUnavailable, "engine restarting")
			},
			step:      step(reconcile.Create, rs[bottle.RoleBundle]),
			wantCalls: []string{"ImageInspect " + bundleRef, "Info"},
			wantErr:   "make the built-in bundle image " + bundleRef + ": ask the engine for its platform (docker info): engine restarting",
			wantIs:    []error{reconcile.ErrRetry},
		},
		{
			name: "import stream error",
			opts: Options{BundleBinary: builds.Path},
			setup: func(f *fakeEngine) {
				withNetworks(f)
				f.importStream = `{"error":"no space left on device"}`
			},
			step:      step(reconcile.Create, rs[bottle.RoleBundle]),
			wantCalls: []string{"ImageInspect " + bundleRef, "Info", "ImageImport " + bundleRef},
			wantErr:   "import bundle image " + bundleRef + ": no space left on device",
		},
		{
			name: "import call error",
			opts: Options{BundleBinary: builds.Path},
			setup: func(f *fakeEngine) {
				withNetworks(f)
				f.fail["ImageImport"] = errors.New("refused")
			},
			step:      step(reconcile.Create, rs[bottle.RoleBundle]),
			wantCalls: []string{"ImageInspect " + bundleRef, "Info", "ImageImport " + bundleRef},
			wantErr:   "import bundle image " + bundleRef + ": refused",
		},
		{
			name: "container name conflict is retried",
			setup: func(f *fakeEngine) {
				present("agent:1")(f)
				f.fail["ContainerCreate"] = wrapped(cerrdefs.ErrConflict, "name in use")
			},
			step:      step(reconcile.Create, rs[bottle.RoleAgent]),
			wantCalls: []string{"ImageInspect agent:1", "ContainerCreate bottle-hello-agent"},
			wantErr:   "create container bottle-hello-agent: name in use",
			wantIs:    []error{reconcile.ErrRetry, cerrdefs.ErrConflict},
		},
		{
			name: "a built-in bundle image removed since its import is made again",
			setup: func(f *fakeEngine) {
				withNetworks(f)
				present(bundleRef)(f)
				f.fail["ContainerCreate"] = wrapped(cerrdefs.ErrNotFound, "No such image: "+bundleRef)
			},
			step:      step(reconcile.Create, rs[bottle.RoleBundle]),
			wantCalls: bundleCalls[:2],
			wantErr:   "create container bottle-hello-bundle: No such image: " + bundleRef + ": not found; another build's cleanup may have removed the built-in bundle image: it is made again",
			wantIs:    []error{reconcile.ErrRetry},
		},
		{
			name: "an image of the spec that is gone is not retried",
			setup: func(f *fakeEngine) {
				present("agent:1")(f)
				f.fail["ContainerCreate"] = wrapped(cerrdefs.ErrNotFound, "No such image: agent:1")
			},
			step:      step(reconcile.Create, rs[bottle.RoleAgent]),
			wantCalls: []string{"ImageInspect agent:1", "ContainerCreate bottle-hello-agent"},
			wantErr:   "create container bottle-hello-agent: No such image: agent:1: not found",
		},
		{
			name: "other container create errors are not retried",
			setup: func(f *fakeEngine) {
				present("agent:1")(f)
				f.fail["ContainerCreate"] = errors.New("invalid")
			},
			step:      step(reconcile.Create, rs[bottle.RoleAgent]),
			wantCalls: []string{"ImageInspect agent:1", "ContainerCreate bottle-hello-agent"},
			wantErr:   "create container bottle-hello-agent: invalid",
		},
		{
			name: "connect error stops before start and retries",
			setup: func(f *fakeEngine) {
				present(bundleRef)(f)
				f.fail["NetworkConnect"] = errors.New("no")
			},
			step:      step(reconcile.Create, rs[bottle.RoleBundle]),
			wantCalls: bundleCalls[:3],
			wantErr:   "connect container bottle-hello-bundle to network bottle-hello-egress: no",
			wantIs:    []error{reconcile.ErrRetry},
		},
		{
			name: "start error points at the logs",
			setup: func(f *fakeEngine) {
				present("agent:1")(f)
				f.fail["ContainerStart"] = errors.New("exec format error")
			},
			step:      step(reconcile.Create, rs[bottle.RoleAgent]),
			wantCalls: []string{"ImageInspect agent:1", "ContainerCreate bottle-hello-agent", "ContainerStart id-bottle-hello-agent"},
			wantErr:   "start container bottle-hello-agent: exec format error; see `docker logs bottle-hello-agent`",
		},
		{
			name: "start uses the observed engine ID",
			step: startStep,
			setup: func(f *fakeEngine) {
				f.containers["bottle-hello-agent"] = container.Summary{ID: "c-agent", State: "exited"}
			},
			wantCalls: []string{"ContainerStart c-agent"},
		},
		{
			name:    "start without an observed resource is an internal error",
			step:    startNoObs,
			wantErr: "internal: the docker provider cannot Start a container",
		},
		{
			name:    "create with the wrong config type is an internal error",
			step:    step(reconcile.Create, badCfg),
			wantErr: "internal: docker-container:hello/agent has no container config",
		},
		{
			name:    "replace is not the provider's to do",
			step:    step(reconcile.Replace, rs[bottle.RoleAgent]),
			wantErr: "internal: the docker provider cannot Replace a container",
		},
		{
			name:      "delete container forces removal by engine ID",
			setup:     func(f *fakeEngine) { f.containers["bottle-hello-agent"] = container.Summary{ID: "c-agent"} },
			step:      step(reconcile.Delete, observedRes(KindContainer, bottle.RoleAgent, "c-agent", true)),
			wantCalls: []string{"ContainerRemove c-agent"},
			check: func(t *testing.T, f *fakeEngine) {
				want := container.RemoveOptions{Force: true, RemoveVolumes: true}
				if got := f.removes["c-agent"]; got != want {
					t.Errorf("ContainerRemove options = %+v, want %+v", got, want)
				}
				if len(f.containers) != 0 {
					t.Errorf("containers left: %v", f.containers)
				}
			},
		},
		{
			name:      "delete container that is already gone",
			step:      step(reconcile.Delete, observedRes(KindContainer, bottle.RoleAgent, "c-gone", true)),
			wantCalls: []string{"ContainerRemove c-gone"},
		},
		{
			name:      "delete container error",
			setup:     func(f *fakeEngine) { f.fail["ContainerRemove"] = errors.New("device busy") },
			step:      step(reconcile.Delete, observedRes(KindContainer, bottle.RoleAgent, "c-agent", true)),
			wantCalls: []string{"ContainerRemove c-agent"},
			wantErr:   "remove container bottle-hello-agent: device busy",
		},
		{
			name:    "delete unmanaged container is refused without a call",
			step:    step(reconcile.Delete, observedRes(KindContainer, bottle.RoleAgent, "c-agent", false)),
			wantErr: "refusing to remove container bottle-hello-agent",
			wantIs:  []error{reconcile.ErrNotManaged},
		},
		{
			name:      "delete network by engine ID",
			setup:     withNetworks,
			step:      step(reconcile.Delete, observedRes(KindNetwork, bottle.RoleEgress, "id-bottle-hello-egress", true)),
			wantCalls: []string{"NetworkRemove id-bottle-hello-egress"},
			check: func(t *testing.T, f *fakeEngine) {
				if _, ok := f.networks["bottle-hello-egress"]; ok {
					t.Error("egress network is still there")
				}
			},
		},
		{
			name:      "delete network that is already gone",
			step:      step(reconcile.Delete, observedRes(KindNetwork, bottle.RoleEgress, "n-gone", true)),
			wantCalls: []string{"NetworkRemove n-gone"},
		},
		{
			name:      "delete network in use names the culprit",
			setup:     func(f *fakeEngine) { f.fail["NetworkRemove"] = wrapped(cerrdefs.ErrConflict, "has active endpoints") },
			step:      step(reconcile.Delete, observedRes(KindNetwork, bottle.RoleEgress, "n1", true)),
			wantCalls: []string{"NetworkRemove n1"},
			wantErr:   "docker network inspect bottle-hello-egress",
			wantIs:    []error{cerrdefs.ErrConflict},
		},
		{
			name:    "delete unmanaged network is refused without a call",
			step:    step(reconcile.Delete, observedRes(KindNetwork, bottle.RoleInternal, "n1", false)),
			wantErr: "refusing to remove network bottle-hello-internal",
			wantIs:  []error{reconcile.ErrNotManaged},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEngine()
			if tt.setup != nil {
				tt.setup(f)
			}
			p := newProvider(f, tt.opts)
			err := p.Apply(t.Context(), tt.step)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Apply: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Apply error = %v, want it to contain %q", err, tt.wantErr)
			}
			for _, target := range tt.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("Apply error %v does not wrap %v", err, target)
				}
			}
			if tt.wantErr != "" && len(tt.wantIs) == 0 && errors.Is(err, reconcile.ErrRetry) {
				t.Errorf("Apply error %v wraps ErrRetry, want a final error", err)
			}
			if got := f.callLog(); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("calls =\n%q\nwant\n%q", got, tt.wantCalls)
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

// filterText is an engine filter as sorted key=value pairs.
func filterText(f filters.Args) string {
	var kv []string
	for _, k := range f.Keys() {
		for _, v := range f.Get(k) {
			kv = append(kv, k+"="+v)
		}
	}
	slices.Sort(kv)
	return strings.Join(kv, ",")
}

func TestObserve(t *testing.T) {
	t.Parallel()
	lists := []string{"ContainerList", "ImageList", "NetworkList", "VolumeList"}
	tests := []struct {
		name         string
		bottles      []string
		all          bool
		fail         map[string]error
		wantCalls    []string
		wantNames    []string // the container list's name filter, sorted
		wantVolNames []string // the volume list's name filter, sorted
		wantIDs      []string // resource IDs returned, sorted
		wantFilters  []string // under all: the container and the volume list's filters
		wantErr      string
	}{
		{name: "empty scope makes no call", wantCalls: []string{}},
		{
			// status: every managed bottle, by label, and nothing foreign.
			name: "all without bottles lists by label", all: true,
			wantCalls:   lists,
			wantFilters: []string{"label=" + bottle.LabelName, "label=" + bottle.LabelName},
			wantIDs: []string{"docker-container:hello/agent", "docker-container:other/agent", "docker-network:/",
				"docker-network:hello/internal", "docker-network:other/internal", "docker-volume:hello/work",
				"docker-volume:hello/y", "docker-volume:other/work"},
		},
		{
			// A namesake has no label: the lists go unfiltered, and the
			// foreign bottle-hello-cache is kept as without all, while
			// the unrelated container and volume are not.
			name: "all with a bottle keeps its namesakes", bottles: []string{"hello"}, all: true,
			wantCalls:   lists,
			wantFilters: []string{"", ""},
			wantIDs: []string{"docker-container:hello/agent", "docker-container:other/agent", "docker-network:/",
				"docker-network:hello/internal", "docker-network:other/internal", "docker-volume:hello/",
				"docker-volume:hello/work", "docker-volume:hello/y", "docker-volume:other/work"},
		},
		{
			name:         "one bottle",
			bottles:      []string{"hello"},
			wantCalls:    lists,
			wantNames:    []string{"^/bottle-hello-"},
			wantVolNames: []string{"bottle-hello-"},
			// The foreign bottle-hello-cache comes back unmanaged (so
			// that a plan refuses it); x-bottle-hello-y, which the
			// engine's substring filter lets through, does not.
			wantIDs: []string{"docker-container:hello/agent", "docker-network:/", "docker-network:hello/internal",
				"docker-network:other/internal", "docker-volume:hello/", "docker-volume:hello/work"},
		},
		{
			name:         "two bottles share one list call per kind",
			bottles:      []string{"hello", "other"},
			wantCalls:    lists,
			wantNames:    []string{"^/bottle-hello-", "^/bottle-other-"},
			wantVolNames: []string{"bottle-hello-", "bottle-other-"},
			wantIDs: []string{"docker-container:hello/agent", "docker-container:other/agent", "docker-network:/",
				"docker-network:hello/internal", "docker-network:other/internal", "docker-volume:hello/", "docker-volume:hello/work",
				"docker-volume:other/work"},
		},
		{
			name:      "network list error",
			bottles:   []string{"hello"},
			fail:      map[string]error{"NetworkList": errors.New("EOF")},
			wantCalls: lists,
			wantNames: []string{"^/bottle-hello-"},
			wantErr:   "list networks: EOF",
		},
		{
			name:      "container list error",
			bottles:   []string{"hello"},
			fail:      map[string]error{"ContainerList": errors.New("EOF")},
			wantCalls: lists,
			wantErr:   "list containers: EOF",
		},
		{
			name:      "volume list error",
			bottles:   []string{"hello"},
			fail:      map[string]error{"VolumeList": errors.New("EOF")},
			wantCalls: lists,
			wantErr:   "list volumes: EOF",
		},
		{
			name:      "image list error",
			bottles:   []string{"hello"},
			fail:      map[string]error{"ImageList": errors.New("EOF")},
			wantCalls: lists,
			wantErr:   "list images: EOF",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEngine()
			for _, b := range []string{"hello", "other"} {
				name := bottle.ResourceName(b, bottle.RoleInternal)
				f.networks[name] = network.Summary{Name: name, ID: "id-" + name, Labels: managedLabels(b, bottle.RoleInternal, "h")}
				name = bottle.ResourceName(b, bottle.RoleAgent)
				f.containers[name] = container.Summary{ID: "id-" + name, Names: []string{"/" + name}, State: "exited",
					Labels: managedLabels(b, bottle.RoleAgent, "h")}
				name = bottle.VolumeName(b, "work")
				f.volumes[name] = volume.Volume{Name: name, Labels: managedLabels(b, "work", "h")}
			}
			f.networks["bridge"] = network.Summary{Name: "bridge", ID: "id-bridge"}
			f.containers["unrelated"] = container.Summary{ID: "id-unrelated", Names: []string{"/unrelated"}, State: "running"}
			f.volumes["bottle-hello-cache"] = volume.Volume{Name: "bottle-hello-cache"}
			f.volumes["x-bottle-hello-y"] = volume.Volume{Name: "x-bottle-hello-y", Labels: managedLabels("hello", "y", "h")}
			f.volumes["unrelated"] = volume.Volume{Name: "unrelated"}
			if tt.fail != nil {
				f.fail = tt.fail
			}

			rs, err := newProvider(f, Options{}).Observe(t.Context(), reconcile.Scope{Bottles: tt.bottles, All: tt.all})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Observe error = %v, want it to contain %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Observe: %v", err)
			}
			// The lists run in parallel: compare the log sorted.
			calls := slices.Sorted(slices.Values(f.callLog()))
			if !slices.Equal(calls, tt.wantCalls) {
				t.Errorf("calls = %q, want %q", calls, tt.wantCalls)
			}
			if tt.wantNames != nil {
				if len(f.ctrLists) != 1 {
					t.Fatalf("container lists = %d, want 1", len(f.ctrLists))
				}
				opts := f.ctrLists[0]
				if !opts.All {
					t.Error("ContainerList without All: stopped containers would be missed")
				}
				if keys := opts.Filters.Keys(); !slices.Equal(keys, []string{"name"}) {
					t.Errorf("filter keys = %q, want only name", keys)
				}
				if got := slices.Sorted(slices.Values(opts.Filters.Get("name"))); !slices.Equal(got, tt.wantNames) {
					t.Errorf("name filter = %q, want %q", got, tt.wantNames)
				}
			}
			if tt.wantVolNames != nil {
				if len(f.volLists) != 1 {
					t.Fatalf("volume lists = %d, want 1", len(f.volLists))
				}
				// Only names: a label filter (ANDed with them) would hide
				// a foreign volume of a wanted name.
				opts := f.volLists[0]
				if keys := opts.Filters.Keys(); !slices.Equal(keys, []string{"name"}) {
					t.Errorf("volume filter keys = %q, want only name", keys)
				}
				if got := slices.Sorted(slices.Values(opts.Filters.Get("name"))); !slices.Equal(got, tt.wantVolNames) {
					t.Errorf("volume name filter = %q, want %q", got, tt.wantVolNames)
				}
			}
			if tt.wantFilters != nil {
				if len(f.ctrLists) != 1 || len(f.volLists) != 1 {
					t.Fatalf("container lists = %d, volume lists = %d, want 1 each", len(f.ctrLists), len(f.volLists))
				}
				got := []string{filterText(f.ctrLists[0].Filters), filterText(f.volLists[0].Filters)}
				if !slices.Equal(got, tt.wantFilters) {
					t.Errorf("filters = %q, want %q", got, tt.wantFilters)
				}
				if !f.ctrLists[0].All {
					t.Error("ContainerList without All: stopped containers would be missed")
				}
			}
			// Every tagged image, whatever the bottles: untagged ones name
			// nothing.
			if len(f.imgLists) == 1 {
				if keys, got := f.imgLists[0].Filters.Keys(), f.imgLists[0].Filters.Get("dangling"); !slices.Equal(keys, []string{"dangling"}) || !slices.Equal(got, []string{"false"}) {
					t.Errorf("image list filters %q = %q, want only dangling=false", keys, got)
				}
			} else if tt.bottles != nil {
				t.Errorf("image lists = %d, want 1", len(f.imgLists))
			}
			if tt.wantIDs != nil {
				ids := make([]string, len(rs))
				for i := range rs {
					ids[i] = rs[i].ID()
					// x-bottle-hello-y carries hello's labels under
					// another name: kept, unmanaged, under all.
					copied := rs[i].Name == "x-bottle-hello-y"
					if rs[i].Kind == KindVolume && (!rs[i].Persistent || rs[i].Managed != (rs[i].Role != "" && !copied)) {
						t.Errorf("volume %s: persistent %v, managed %v", rs[i].Name, rs[i].Persistent, rs[i].Managed)
					}
				}
				slices.Sort(ids)
				if !slices.Equal(ids, tt.wantIDs) {
					t.Errorf("observed IDs = %q, want %q", ids, tt.wantIDs)
				}
			}
		})
	}
}

// TestEnsureImageSharesWork starts several creates of containers on the
// same missing image, holds the first inspect until all of them wait, and
// checks that one inspect and one pull served them all. synctest makes the
// "all of them wait" deterministic: singleflight waits on a WaitGroup made
// inside the bubble, which is durably blocking.
func TestEnsureImageSharesWork(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const n = 8
		f := newFakeEngine()
		f.networks["net"] = network.Summary{Name: "net", ID: "id-net"}
		gate := make(chan struct{})
		f.inspectGate = gate
		p := newProvider(f, Options{})
		errs := make(chan error, n)
		for i := range n {
			go func() {
				errs <- p.createContainer(t.Context(), containerConfig{
					Name: fmt.Sprintf("c%d", i), Image: "agent:1", Networks: []endpoint{{Network: "net"}},
				})
			}()
		}
		synctest.Wait()
		waiting := f.count("ImageInspect")
		close(gate)
		if waiting != 1 {
			t.Errorf("ImageInspect calls while all creates wait = %d, want 1", waiting)
		}
		for range n {
			if err := <-errs; err != nil {
				t.Errorf("createContainer: %v", err)
			}
		}
		for method, want := range map[string]int{"ImageInspect": 1, "ImagePull": 1, "ContainerCreate": n, "ContainerStart": n} {
			if got := f.count(method); got != want {
				t.Errorf("%s calls = %d, want %d", method, got, want)
			}
		}
	})
}

// TestUnstartableContainerIsReplaced is the engine restart that left a
// container's task behind (a created agent whose every start answers "task
// ...: already exists"): the run must replace the container, saying why,
// instead of retrying its start until the retries run out.
func TestUnstartableContainerIsReplaced(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	f.images["agent:1"], f.images[bundleRef] = true, true
	p := newProvider(f, Options{BundleImage: bundleRef})
	b := *helloBottle()
	if _, err := reconcile.Run(t.Context(), []reconcile.Provider{p}, []bottle.Bottle{b}, reconcile.Options{}); err != nil {
		t.Fatalf("first apply: %v", err)
	}
	agent := bottle.ResourceName("hello", bottle.RoleAgent)
	c := f.containers[agent]
	c.State, c.Status = "created", "Created"
	f.containers[agent] = c
	f.stuck = map[string]bool{c.ID: true}
	before := f.count("ContainerStart " + c.ID)

	// A new process: nothing remembered from the first run. Its first
	// round starts the agent and fails; the next plan replaces it.
	p = newProvider(f, Options{BundleImage: bundleRef})
	_, err := reconcile.Run(t.Context(), []reconcile.Provider{p}, []bottle.Bottle{b}, reconcile.Options{MaxRounds: 1})
	if err == nil {
		t.Fatal("one round converged: the start of a stuck container cannot succeed")
	}
	for _, want := range []string{"-/+ docker-container:hello/agent: the engine cannot start it (task id-bottle-hello-agent: already exists", "already exists"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("after one round: %v\nwant it to contain %q", err, want)
		}
	}
	res, err := reconcile.Run(t.Context(), []reconcile.Provider{p}, []bottle.Bottle{b}, reconcile.Options{})
	if err != nil || !res.Converged {
		t.Fatalf("the next round: converged %v, %v", res.Converged, err)
	}
	if got := f.containers[agent].State; got != "running" {
		t.Errorf("agent state = %q, want running", got)
	}
	// The fake gives the replacement the same ID: one start of each.
	if n := f.count("ContainerStart "+c.ID) - before; n != 2 {
		t.Errorf("%d starts, want 2: the stuck container's, never retried, and its replacement's\n%s", n, strings.Join(f.callLog(), "\n"))
	}
}

// CopyFromContainer finds no file: an agent's image has no CA bundle here.
func (f *fakeEngine) CopyFromContainer(_ context.Context, id, p string) (io.ReadCloser, container.PathStat, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("CopyFromContainer", id, p); err != nil {
		return nil, container.PathStat{}, err
	}
	return nil, container.PathStat{}, notFound("path " + p)
}
