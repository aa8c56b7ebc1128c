package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

func (a *app) pack(args []string) error {
	spec := &cmdSpec{usage: "smolvm pack <COMMAND>"}
	if len(args) == 0 {
		return usageError(spec, "'smolvm pack' requires a subcommand but one was not provided")
	}
	switch args[0] {
	case "create":
		return a.packCreate(args[1:])
	case "--help", "-h", "help":
		fmt.Fprintln(a.stdout, "Usage: smolvm pack <COMMAND>\n\nCommands: create")
		return nil
	}
	if looksLikeFlag(args[0]) {
		return unexpected(spec, args[0])
	}
	return usageError(spec, fmt.Sprintf("unrecognized subcommand '%s'", args[0]))
}

func (a *app) packCreate(args []string) error {
	spec := &cmdSpec{
		usage: "smolvm pack create [OPTIONS] --output <OUTPUT>",
		opts: []opt{
			{long: "image", short: 'I', value: true, meta: "IMAGE"},
			{long: "from-vm", value: true, meta: "NAME"},
			{long: "output", short: 'o', value: true, meta: "OUTPUT", required: true},
			{long: "cpus", value: true, meta: "N", check: checkU8},
			{long: "mem", value: true, meta: "MiB", check: checkU32},
			{long: "oci-platform", value: true, meta: "PLATFORM"},
			{long: "entrypoint", value: true, multi: true, meta: "ENTRYPOINT"},
			{long: "no-sign"},
			{long: "single-file"},
			{long: "gpu"},
			{long: "smolfile", short: 's', value: true, meta: "PATH"},
		},
	}
	if a.env.v19 {
		spec.opts = append(spec.opts,
			opt{long: "staging-dir", value: true, meta: "DIR"},
			opt{long: "rebase-from-image", value: true, meta: "IMAGE"})
	}
	p, err := spec.parse(args)
	if err != nil {
		return err
	}
	if p.help {
		return a.help(spec)
	}
	switch {
	case p.has("image") && p.has("from-vm"):
		return conflict(spec, "image", "from-vm")
	case !p.has("image") && !p.has("from-vm") && !p.has("smolfile"):
		return usageError(spec, "the following required arguments were not provided:\n  --image <IMAGE>")
	}
	const op = "pack"
	res, err := a.readResources(op, p)
	if err != nil {
		return err
	}
	image := p.str("image")
	if p.has("smolfile") && !p.has("image") && !p.has("from-vm") {
		image, err = smolfileImage(p.str("smolfile"))
		if err != nil {
			return err
		}
	}
	if p.has("from-vm") {
		name := p.str("from-vm")
		st, err := a.store.read()
		if err != nil {
			return err
		}
		m := st.Machines[name]
		switch {
		case m == nil:
			return failf("vm not found: %s", name)
		case m.State == stateRunning:
			return failf("invalid vm state: expected stopped, got Running")
		case !m.Booted:
			return failf("config operation failed: %s: machine '%s' has never been started; start it once before packing it", op, name)
		}
		if m.Image != nil {
			image = *m.Image
		}
	}
	if err := a.hypervisorError(); err != nil {
		return err
	}
	if image != "" && !p.has("from-vm") {
		if err := a.pull(image); err != nil {
			return err
		}
	}

	out := p.str("output")
	info := packInfo{
		FakeSmolvmPack: 1,
		Image:          image,
		CPUs:           res.cpus,
		MemoryMiB:      res.mem,
		Entrypoint:     nz(p.vals["entrypoint"]),
		OCIPlatform:    p.str("oci-platform"),
		FromVM:         p.str("from-vm"),
		Version:        a.env.version,
	}
	meta, err := json.Marshal(info)
	if err != nil {
		return fakeError("%v", err)
	}
	stub := fmt.Sprintf("#!/bin/sh\n# fake smolvm packed machine of image %s\n", strconv.Quote(image))
	if p.has("single-file") {
		stub += "# smolmachine: " + string(meta) + "\n"
	}
	stub += "echo 'fake smolvm: a packed machine cannot run without a hypervisor' >&2\nexit 1\n"
	if err := os.WriteFile(out, []byte(stub), 0o755); err != nil {
		return failf("config operation failed: %s: write %s: %s", op, out, pathErr(err))
	}
	a.outf("Packed: %s (%s)", out, humanBytes(len(stub)))
	if !p.has("single-file") {
		sidecar := out + ".smolmachine"
		if err := os.WriteFile(sidecar, append(meta, '\n'), 0o644); err != nil {
			return failf("config operation failed: %s: write %s: %s", op, sidecar, pathErr(err))
		}
		a.outf("Assets: %s (%s)", sidecar, humanBytes(len(meta)+1))
	}
	a.outf("Run with: %s", out)
	return nil
}

// smolfileImage reads the top-level image key of a Smolfile: the only
// key the fake understands.
func smolfileImage(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", failf("config operation failed: pack: Smolfile '%s': %s", path, pathErr(err))
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			break
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) != "image" {
			continue
		}
		if s, err := strconv.Unquote(strings.TrimSpace(v)); err == nil {
			return s, nil
		}
	}
	return "", failf("config operation failed: pack: Smolfile '%s' sets no image (the fake reads only a top-level image key)", path)
}

func humanBytes(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
