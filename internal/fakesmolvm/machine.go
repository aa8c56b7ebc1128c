package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

const (
	stateCreated = "created"
	stateRunning = "running"
	stateStopped = "stopped"

	defaultName = "default"
	defaultCPUs = 4
	defaultMem  = 8192
	minMem      = 64
)

// nameOpt is -n/--name of start, stop, status (both dialects) and of
// create, delete, update in 1.9.
func nameOpt(required bool) opt {
	return opt{long: "name", short: 'n', value: true, meta: "NAME", required: required}
}

// createOpts are the machine create options; run shares some of them.
func (a *app) createOpts() []opt {
	o := []opt{
		{long: "image", short: 'I', value: true, meta: "IMAGE"},
		{long: "cpus", value: true, meta: "N", check: checkU8},
		{long: "mem", value: true, meta: "MiB", check: checkU32},
		{long: "storage", value: true, meta: "GiB", check: checkU64},
		{long: "overlay", value: true, meta: "GiB", check: checkU64},
		{long: "volume", short: 'v', value: true, multi: true, meta: "HOST:GUEST[:ro]", check: checkVolume},
		{long: "port", short: 'p', value: true, multi: true, meta: "HOST:GUEST", check: checkPort},
		{long: "net"},
		{long: "allow-cidr", value: true, multi: true, meta: "CIDR", check: checkCIDR},
		{long: "allow-host", value: true, multi: true, meta: "HOST"},
		{long: "outbound-localhost-only"},
		{long: "net-backend", value: true, meta: "BACKEND", check: checkNetBackend},
		{long: "gpu"},
		{long: "gpu-vram", value: true, meta: "MiB", check: checkU64},
		{long: "init", value: true, multi: true, meta: "COMMAND"},
		{long: "env", short: 'e', value: true, multi: true, meta: "KEY=VALUE"},
		{long: "workdir", short: 'w', value: true, meta: "DIR"},
		{long: "ssh-agent"},
		{long: "smolfile", short: 's', value: true, meta: "PATH"},
		{long: "from", value: true, meta: "PATH"},
	}
	if a.env.v19 {
		n := nameOpt(false)
		n.optional = true // "--name" alone asks for a generated name
		o = append(o, n,
			opt{long: "label", value: true, multi: true, meta: "KEY=VALUE", check: checkKeyValue("label")},
			opt{long: "dns", value: true, multi: true, meta: "ADDR"},
			opt{long: "network", value: true, meta: "NETWORK"},
			opt{long: "rosetta"},
			opt{long: "cuda"},
			opt{long: "docker-socket"},
			opt{long: "secret-env", value: true, multi: true, meta: "SPEC"},
			opt{long: "secret-file", value: true, multi: true, meta: "SPEC"},
			opt{long: "expose-socket", value: true, multi: true, meta: "SPEC"},
			opt{long: "mount-socket", value: true, multi: true, meta: "SPEC"},
		)
	}
	return o
}

// v19Extras are the 1.9 create options the fake records verbatim.
var v19Extras = []string{"dns", "network", "rosetta", "docker-socket", "secret-env", "secret-file", "expose-socket", "mount-socket"}

func (a *app) createSpec() *cmdSpec {
	s := &cmdSpec{opts: a.createOpts()}
	if a.env.v19 {
		s.usage = "smolvm machine create [OPTIONS] [-- <COMMAND>...]"
		s.trailing, s.trailingLast = "COMMAND", true
	} else {
		s.usage = "smolvm machine create [OPTIONS] [NAME]"
		s.pos = []string{"NAME"}
	}
	return s
}

// resources are the checked --cpus, --mem, --storage, --overlay values.
type resources struct {
	cpus, mem          int
	storage, overlay   *uint64
	cpusSet, memSet    bool
	storageSet, ovlSet bool
}

func (a *app) readResources(op string, p *parsed) (resources, error) {
	r := resources{cpus: defaultCPUs, mem: defaultMem}
	if v, ok := p.vals["cpus"]; ok {
		n, _ := rustUint(v[len(v)-1], 8)
		r.cpus, r.cpusSet = int(n), true
	}
	if v, ok := p.vals["mem"]; ok {
		n, _ := rustUint(v[len(v)-1], 32)
		r.mem, r.memSet = int(n), true
	}
	for _, d := range []struct {
		key string
		dst **uint64
	}{{"storage", &r.storage}, {"overlay", &r.overlay}} {
		if v, ok := p.vals[d.key]; ok {
			n, _ := rustUint(v[len(v)-1], 64)
			if n == 0 {
				return r, failf("config operation failed: %s: %s disk size must be at least 1 GiB, got 0", op, d.key)
			}
			*d.dst = &n
		}
	}
	switch {
	case r.cpus == 0:
		return r, failf("config operation failed: %s: cpus must be at least 1, got 0", op)
	case r.mem < minMem:
		return r, failf("config operation failed: %s: memory must be at least %d MiB, got %d", op, minMem, r.mem)
	}
	return r, nil
}

// checkVolumeHosts requires each -v host path to be an existing directory.
func checkVolumeHosts(op string, vols []string) error {
	for _, v := range vols {
		host := strings.SplitN(v, ":", 2)[0]
		fi, err := os.Stat(host)
		if err != nil {
			return failf("config operation failed: %s: volume host path '%s': %s", op, host, pathErr(err))
		}
		if !fi.IsDir() {
			return failf("config operation failed: %s: volume host path '%s' is not a directory", op, host)
		}
	}
	return nil
}

// packInfo is the content of the .smolmachine sidecar the fake pack writes.
type packInfo struct {
	FakeSmolvmPack int      `json:"fake_smolvm_pack"`
	Image          string   `json:"image"`
	CPUs           int      `json:"cpus"`
	MemoryMiB      int      `json:"memory_mib"`
	Entrypoint     []string `json:"entrypoint"`
	OCIPlatform    string   `json:"oci_platform"`
	FromVM         string   `json:"from_vm"`
	Version        string   `json:"version"`
}

func readPack(path string) (*packInfo, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	var pi packInfo
	if json.Unmarshal(data, &pi) != nil || pi.FakeSmolvmPack == 0 {
		// A single-file pack: the JSON follows the marker line.
		if _, after, ok := bytes.Cut(data, []byte("\n# smolmachine: ")); ok {
			line, _, _ := bytes.Cut(after, []byte("\n"))
			if json.Unmarshal(line, &pi) == nil && pi.FakeSmolvmPack != 0 {
				return &pi, true
			}
		}
		return nil, false
	}
	return &pi, true
}

func (a *app) create(args []string) error {
	spec := a.createSpec()
	p, err := spec.parse(args)
	if err != nil {
		return err
	}
	if p.help {
		return a.help(spec)
	}
	switch {
	case p.has("from") && p.has("image"):
		return conflict(spec, "from", "image")
	case p.has("from") && p.has("smolfile"):
		return conflict(spec, "from", "smolfile")
	}

	var name string
	named := false
	if a.env.v19 {
		if v := p.vals["name"]; len(v) > 0 {
			name, named = v[len(v)-1], true
		}
	} else if len(p.pos) > 0 {
		name, named = p.pos[0], true
	}
	if !named {
		name = generateName()
	}
	const op = "create machine"
	if err := validateName(name); err != nil {
		return failf("config operation failed: %s: %v", op, err)
	}
	res, err := a.readResources(op, p)
	if err != nil {
		return err
	}
	if err := checkVolumeHosts(op, p.vals["volume"]); err != nil {
		return err
	}
	m := &machine{
		Name:                  name,
		State:                 stateCreated,
		StorageGB:             res.storage,
		OverlayGB:             res.overlay,
		Volumes:               nz(p.vals["volume"]),
		Ports:                 nz(p.vals["port"]),
		Entrypoint:            []string{},
		Cmd:                   nz(p.trail),
		Env:                   envList(p.vals["env"]),
		Workdir:               p.str("workdir"),
		Init:                  nz(p.vals["init"]),
		AllowCIDRs:            []string{},
		AllowHosts:            nz(p.vals["allow-host"]),
		OutboundLocalhostOnly: p.has("outbound-localhost-only"),
		NetBackend:            p.str("net-backend"),
		GPU:                   p.has("gpu"),
		CUDA:                  p.has("cuda"),
		SSHAgent:              p.has("ssh-agent"),
		From:                  p.str("from"),
		Smolfile:              p.str("smolfile"),
		Labels:                map[string]string{},
		Extra:                 map[string][]string{},
		CreatedAt:             a.env.now.Unix(),
		CreatedBy:             a.env.version,
	}
	for _, c := range p.vals["allow-cidr"] {
		n, _ := parseCIDR(c)
		m.AllowCIDRs = append(m.AllowCIDRs, n)
	}
	m.Network = p.has("net") || len(m.AllowCIDRs) > 0 || len(m.AllowHosts) > 0
	if v, ok := p.vals["gpu-vram"]; ok {
		n, _ := rustUint(v[len(v)-1], 64)
		m.GPUVramMiB = &n
	}
	for _, l := range p.vals["label"] {
		k, v, _ := strings.Cut(l, "=")
		m.Labels[k] = v
	}
	for _, k := range v19Extras {
		if p.has(k) {
			m.Extra[k] = nz(p.vals[k])
		}
	}
	if m.Smolfile != "" {
		if _, err := os.Stat(m.Smolfile); err != nil {
			return failf("config operation failed: %s: Smolfile '%s': %s", op, m.Smolfile, pathErr(err))
		}
	}
	if m.From != "" {
		fi, err := os.Stat(m.From)
		if err != nil {
			return failf("config operation failed: %s: --from '%s': %s", op, m.From, pathErr(err))
		}
		if fi.IsDir() {
			return failf("config operation failed: %s: --from '%s' is a directory, not a .smolmachine file", op, m.From)
		}
		m.ImageKind = "pack"
		if pi, ok := readPack(m.From); ok {
			if pi.Image != "" {
				img := pi.Image
				m.Image = &img
			}
			if !res.cpusSet && pi.CPUs > 0 {
				res.cpus = pi.CPUs
			}
			if !res.memSet && pi.MemoryMiB > 0 {
				res.mem = pi.MemoryMiB
			}
			m.Entrypoint = nz(pi.Entrypoint)
		}
	}
	m.CPUs, m.MemoryMiB = res.cpus, res.mem
	if img := p.str("image"); p.has("image") {
		kind, err := a.classifyImage(img)
		if err != nil {
			return err
		}
		if kind == "stdin" {
			n, _ := io.Copy(io.Discard, a.stdin)
			if n == 0 {
				return failf("config operation failed: %s: image archive on stdin is empty", op)
			}
		}
		m.Image, m.ImageKind = &img, kind
	}
	if a.env.v19 {
		a.noteFlagsAfterDashDash(spec, p.trail)
	}

	err = a.store.update(func(st *stateFile) error {
		if _, ok := st.Machines[name]; ok {
			msg := fmt.Sprintf("config operation failed: %s: machine '%s' already exists", op, name)
			if a.env.v19 {
				msg += " or is being created"
			}
			return failf("%s", msg)
		}
		st.Machines[name] = m
		return nil
	})
	if err != nil {
		return err
	}
	a.outf("Created machine: %s", name)
	a.outf("  CPUs: %d, Memory: %d MiB", m.CPUs, m.MemoryMiB)
	if len(m.Volumes) > 0 {
		a.outf("  Mounts: %d", len(m.Volumes))
	}
	if len(m.Ports) > 0 {
		a.outf("  Ports: %d", len(m.Ports))
	}
	if len(m.Init) > 0 {
		a.outf("  Init commands: %d", len(m.Init))
	}
	a.outf("\nUse 'smolvm machine start --name %s' to start the machine", name)
	a.outf("Then use 'smolvm machine exec --name %s -- <command>' to run commands", name)
	return nil
}

// noteFlagsAfterDashDash warns, as 1.9 does, about machine flags that
// ended up in the workload command.
func (a *app) noteFlagsAfterDashDash(spec *cmdSpec, trail []string) {
	for _, t := range trail {
		var o *opt
		switch {
		case strings.HasPrefix(t, "--"):
			name, _, _ := strings.Cut(t[2:], "=")
			o = spec.findLong(name)
		case len(t) == 2 && t[0] == '-':
			o = spec.findShort(t[1])
		}
		if o != nil {
			a.errf("note: '%s' comes after '--', so it is part of the workload command, not a machine option; put machine options before '--'", t)
		}
	}
}

func nz(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *app) start(args []string) error {
	spec := &cmdSpec{usage: "smolvm machine start [OPTIONS]", opts: []opt{nameOpt(false)}}
	if a.env.v19 {
		spec.opts = append(spec.opts,
			opt{long: "forkable"},
			opt{long: "fork-pool-size", value: true, meta: "N", check: checkU32})
	}
	p, err := spec.parse(args)
	if err != nil {
		return err
	}
	if p.help {
		return a.help(spec)
	}
	name := p.str("name")
	if !p.has("name") {
		name = defaultName
	}
	var pid int
	var already bool
	err = a.store.update(func(st *stateFile) error {
		m := st.Machines[name]
		if m == nil {
			if p.has("name") {
				return failf("vm not found: %s", name)
			}
			m = &machine{
				Name: name, State: stateCreated, CPUs: defaultCPUs, MemoryMiB: defaultMem,
				Volumes: []string{}, Ports: []string{}, Entrypoint: []string{}, Cmd: []string{},
				Env: []string{}, Init: []string{}, AllowCIDRs: []string{}, AllowHosts: []string{},
				Labels: map[string]string{}, Extra: map[string][]string{},
				CreatedAt: a.env.now.Unix(), CreatedBy: a.env.version,
			}
			st.Machines[name] = m
		}
		if m.State == stateRunning && m.PID != nil {
			pid, already = *m.PID, true
			return errNoSave
		}
		if err := a.hypervisorError(); err != nil {
			return err
		}
		a.errf("Starting machine '%s'...", name)
		if err := a.firstBoot(m, a.store.root(name)); err != nil {
			return err
		}
		if err := attachMounts(a.store.root(name), m.Volumes); err != nil {
			return err
		}
		pid = st.NextPID
		st.NextPID++
		m.State, m.PID, m.Booted = stateRunning, &pid, true
		m.Starts++
		if p.has("forkable") {
			m.Forkable = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	if already {
		a.outf("Machine '%s' already running (PID: %d)", name, pid)
		return nil
	}
	a.outf("Machine '%s' running (PID: %d)", name, pid)
	return nil
}

// firstBoot does what the first start of m does beyond booting: pull a
// registry image, lay out a directory image, run the --init commands.
func (a *app) firstBoot(m *machine, root string) error {
	if m.Booted {
		return nil
	}
	if m.Image != nil {
		switch m.ImageKind {
		case "registry":
			if err := a.pull(*m.Image); err != nil {
				return err
			}
		case "directory":
			if err := copyTree(*m.Image, root); err != nil {
				return fakeError("copy image directory %s: %v", *m.Image, err)
			}
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fakeError("%v", err)
	}
	if len(m.Init) > 0 {
		a.errf("Running %d init command(s)...", len(m.Init))
	}
	for i, c := range m.Init {
		var stderr bytes.Buffer
		code, _, err := runGuest(guestCmd{
			root: root, workdir: m.Workdir, env: m.Env,
			argv:   []string{"sh", "-c", c},
			stdout: io.Discard, stderr: &stderr,
		})
		if err != nil {
			return err
		}
		if code != 0 {
			return failf("agent operation failed: init: init[%d] failed (exit %d): %s", i, code, strings.TrimSpace(stderr.String()))
		}
	}
	return nil
}

func (a *app) stop(args []string) error {
	spec := &cmdSpec{usage: "smolvm machine stop [OPTIONS]", opts: []opt{nameOpt(false)}}
	p, err := spec.parse(args)
	if err != nil {
		return err
	}
	if p.help {
		return a.help(spec)
	}
	name := p.str("name")
	if !p.has("name") {
		name = defaultName
	}
	var msg string
	err = a.store.update(func(st *stateFile) error {
		m := st.Machines[name]
		switch {
		case m == nil && a.env.v19:
			return failf("vm not found: %s", name)
		case m == nil:
			msg = fmt.Sprintf("Machine '%s' not found or not running", name)
			return errNoSave
		case m.State != stateRunning:
			msg = fmt.Sprintf("Machine '%s' is not running (state: %s)", name, m.State)
			return errNoSave
		}
		a.errf("Stopping machine '%s'...", name)
		m.State, m.PID = stateStopped, nil
		msg = "Stopped machine: " + name
		return nil
	})
	if err != nil {
		return err
	}
	a.outf("%s", msg)
	return nil
}

func (a *app) delete(args []string) error {
	spec := &cmdSpec{opts: []opt{{long: "force", short: 'f'}}}
	if a.env.v19 {
		spec.usage = "smolvm machine delete [OPTIONS] --name <NAME>"
		spec.opts = append(spec.opts, nameOpt(true), opt{long: "cascade"})
	} else {
		spec.usage = "smolvm machine delete [OPTIONS] <NAME>"
		spec.pos, spec.required = []string{"NAME"}, 1
	}
	p, err := spec.parse(args)
	if err != nil {
		return err
	}
	if p.help {
		return a.help(spec)
	}
	name := p.str("name")
	if !a.env.v19 {
		name = p.pos[0]
	}
	st, err := a.store.read()
	if err != nil {
		return err
	}
	if st.Machines[name] == nil {
		return failf("vm not found: %s", name)
	}
	if !p.has("force") {
		fmt.Fprintf(a.stderr, "Delete machine '%s'? [y/N] ", name)
		line, _ := bufio.NewReader(a.stdin).ReadString('\n')
		if ans := strings.ToLower(strings.TrimSpace(line)); ans != "y" && ans != "yes" {
			a.outf("Cancelled")
			return nil
		}
	}
	err = a.store.update(func(st *stateFile) error {
		m := st.Machines[name]
		if m == nil {
			return failf("vm not found: %s", name)
		}
		if m.State == stateRunning {
			if a.env.v19 {
				a.errf("Stopping machine '%s'...", name)
			} else if err := a.store.appendLine("orphans.log", name); err != nil {
				return fakeError("orphans.log: %v", err)
			}
		}
		delete(st.Machines, name)
		if err := os.RemoveAll(a.store.root(name)); err != nil {
			return fakeError("%v", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	a.outf("Cleaning up data directory for vm: %s", name)
	a.outf("Deleted machine: %s", name)
	return nil
}

// view is the object "ls --json" and "status --json" print for m.
func (a *app) view(m *machine) map[string]any {
	o := map[string]any{
		"cmd":                       nz(m.Cmd),
		"cpus":                      m.CPUs,
		"created_at":                m.CreatedAt,
		"entrypoint":                nz(m.Entrypoint),
		"ephemeral":                 false,
		"gpu":                       m.GPU,
		"gpu_vram_mib":              m.GPUVramMiB,
		"health_cmd":                nil,
		"health_interval_secs":      nil,
		"health_retries":            nil,
		"health_startup_grace_secs": nil,
		"health_timeout_secs":       nil,
		"image":                     m.Image,
		"memory_mib":                m.MemoryMiB,
		"mounts":                    len(m.Volumes),
		"name":                      m.Name,
		"network":                   m.Network,
		"overlay_gb":                m.OverlayGB,
		"pid":                       m.PID,
		"ports":                     len(m.Ports),
		"restart_count":             0,
		"restart_max_retries":       0,
		"restart_policy":            "never",
		"state":                     m.State,
		"storage_gb":                m.StorageGB,
	}
	if a.env.v19 {
		labels := m.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		o["cuda"] = m.CUDA
		o["cuda_fork_pool_size"] = nil
		o["cuda_vram_limit_mib"] = nil
		o["forkable"] = m.Forkable
		o["forkpoint_held"] = false
		o["labels"] = labels
	}
	extra := m.Extra
	if extra == nil {
		extra = map[string][]string{}
	}
	o["fake"] = map[string]any{
		"allow_cidrs":             nz(m.AllowCIDRs),
		"allow_hosts":             nz(m.AllowHosts),
		"booted":                  m.Booted,
		"cmd":                     nz(m.Cmd),
		"created_by":              m.CreatedBy,
		"env":                     nz(m.Env),
		"extra":                   extra,
		"from":                    m.From,
		"image":                   m.Image,
		"image_kind":              m.ImageKind,
		"init":                    nz(m.Init),
		"mounts":                  mountViews(m.Volumes),
		"labels":                  m.Labels,
		"net_backend":             m.NetBackend,
		"outbound_localhost_only": m.OutboundLocalhostOnly,
		"ports":                   nz(m.Ports),
		"root":                    a.store.root(m.Name),
		"smolfile":                m.Smolfile,
		"ssh_agent":               m.SSHAgent,
		"starts":                  m.Starts,
		"volumes":                 nz(m.Volumes),
		"workdir":                 m.Workdir,
	}
	return o
}

// printJSON prints v as serde_json::to_string_pretty does: two-space
// indent, keys sorted (maps), no HTML escaping.
func (a *app) printJSON(v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fakeError("%v", err)
	}
	_, err := a.stdout.Write(b.Bytes())
	return err
}

func (a *app) list(args []string) error {
	spec := &cmdSpec{usage: "smolvm machine ls [OPTIONS]", opts: []opt{{long: "verbose", short: 'v'}, {long: "json"}}}
	p, err := spec.parse(args)
	if err != nil {
		return err
	}
	if p.help {
		return a.help(spec)
	}
	st, err := a.store.read()
	if err != nil {
		return err
	}
	names := st.sortedNames()
	if p.has("json") {
		out := make([]map[string]any, 0, len(names))
		for _, n := range names {
			out = append(out, a.view(st.Machines[n]))
		}
		return a.printJSON(out)
	}
	if len(names) == 0 {
		a.outf("No machines found")
		return nil
	}
	const row = "%-20s %-12s %5s %10s %7s %7s %8s %8s"
	a.outf(row, "NAME", "STATE", "CPUS", "MEMORY", "MOUNTS", "PORTS", "STORAGE", "OVERLAY")
	a.outf("%s", strings.Repeat("-", 88))
	for _, n := range names {
		m := st.Machines[n]
		storage, overlay := uint64(20), uint64(10)
		if m.StorageGB != nil {
			storage = *m.StorageGB
		}
		if m.OverlayGB != nil {
			overlay = *m.OverlayGB
		}
		a.outf(row, truncate(n, 18), m.State, fmt.Sprint(m.CPUs), fmt.Sprintf("%d MiB", m.MemoryMiB),
			fmt.Sprint(len(m.Volumes)), fmt.Sprint(len(m.Ports)),
			fmt.Sprintf("%d GiB", storage), fmt.Sprintf("%d GiB", overlay))
		if !p.has("verbose") {
			continue
		}
		if m.PID != nil {
			a.outf("  PID: %d", *m.PID)
		}
		for _, v := range m.Volumes {
			parts := strings.Split(v, ":")
			ro := ""
			if len(parts) == 3 && parts[2] == "ro" {
				ro = " (ro)"
			}
			a.outf("  Mount: %s -> %s%s", parts[0], parts[1], ro)
		}
		for _, pm := range m.Ports {
			h, g, ok := strings.Cut(pm, ":")
			if !ok {
				g = h
			}
			a.outf("  Port: %s -> %s", h, g)
		}
		if m.Network {
			a.outf("  Network: enabled")
		}
		for _, c := range m.Init {
			a.outf("  Init: %s", c)
		}
		for _, e := range m.Env {
			a.outf("  Env: %s", e)
		}
		if m.Workdir != "" {
			a.outf("  Workdir: %s", m.Workdir)
		}
		a.outf("  Created: %d", m.CreatedAt)
		a.outf("")
	}
	return nil
}

func (a *app) status(args []string) error {
	spec := &cmdSpec{usage: "smolvm machine status [OPTIONS]", opts: []opt{nameOpt(false), {long: "json"}}}
	p, err := spec.parse(args)
	if err != nil {
		return err
	}
	if p.help {
		return a.help(spec)
	}
	name := p.str("name")
	if !p.has("name") {
		name = defaultName
	}
	st, err := a.store.read()
	if err != nil {
		return err
	}
	m := st.Machines[name]
	if p.has("json") {
		if m == nil {
			return failf("config operation failed: machine status: machine '%s' not found", name)
		}
		return a.printJSON(a.view(m))
	}
	switch {
	case m == nil:
		return failf("vm not found: %s", name)
	case m.State == stateRunning && m.PID != nil:
		a.outf("Machine '%s': running (PID: %d)", name, *m.PID)
	case a.env.v19:
		a.outf("Machine '%s': %s", name, m.State)
	default:
		a.outf("Machine '%s': not running", name)
	}
	return nil
}

// updateMachine is a reduced "machine update": resources and network on
// a stopped machine. The real command also edits volumes, ports, env, GPU.
func (a *app) updateMachine(args []string) error {
	spec := &cmdSpec{opts: []opt{
		{long: "cpus", value: true, meta: "N", check: checkU8},
		{long: "mem", value: true, meta: "MiB", check: checkU32},
		{long: "storage", value: true, meta: "GiB", check: checkU64},
		{long: "overlay", value: true, meta: "GiB", check: checkU64},
		{long: "net"},
	}}
	if a.env.v19 {
		spec.usage = "smolvm machine update [OPTIONS] --name <NAME>"
		spec.opts = append(spec.opts, nameOpt(true))
	} else {
		spec.usage = "smolvm machine update [OPTIONS] <NAME>"
		spec.pos, spec.required = []string{"NAME"}, 1
	}
	p, err := spec.parse(args)
	if err != nil {
		return err
	}
	if p.help {
		return a.help(spec)
	}
	name := p.str("name")
	if !a.env.v19 {
		name = p.pos[0]
	}
	const op = "update machine"
	res, err := a.readResources(op, p)
	if err != nil {
		return err
	}
	err = a.store.update(func(st *stateFile) error {
		m := st.Machines[name]
		if m == nil {
			return failf("vm not found: %s", name)
		}
		if m.State == stateRunning {
			return failf("invalid vm state: expected stopped, got Running")
		}
		grow := func(what string, cur *uint64, def uint64, next *uint64) (*uint64, error) {
			if next == nil {
				return cur, nil
			}
			c := def
			if cur != nil {
				c = *cur
			}
			if *next < c {
				return nil, failf("config operation failed: %s: %s disk cannot be shrunk from %d GiB to %d GiB", op, what, c, *next)
			}
			return next, nil
		}
		var err error
		if m.StorageGB, err = grow("storage", m.StorageGB, 20, res.storage); err != nil {
			return err
		}
		if m.OverlayGB, err = grow("overlay", m.OverlayGB, 10, res.overlay); err != nil {
			return err
		}
		if res.cpusSet {
			m.CPUs = res.cpus
		}
		if res.memSet {
			m.MemoryMiB = res.mem
		}
		if p.has("net") {
			m.Network = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	a.outf("Updated machine: %s", name)
	return nil
}
