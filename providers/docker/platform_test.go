package docker

import (
	"bytes"
	"debug/elf"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

func TestGoArch(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "AMD64": "amd64",
		"armv7l": "arm", "i686": "386", "riscv64": "riscv64", "s390x": "s390x", "ppc64le": "ppc64le",
	} {
		if got := GoArch(in); got != want {
			t.Errorf("GoArch(%q) = %q, want %q", in, got, want)
		}
	}
}

// The built-in bundle image holds the bottle-bundle build for the engine's
// platform, whatever bottle-apply's own; a platform with no build fails,
// before any import, naming the way out.
func TestBundleImageFollowsEnginePlatform(t *testing.T) {
	t.Parallel()
	builds := testenv.FakeBundleBuilds(t, elf.EM_X86_64, elf.EM_AARCH64)
	rs := hello()
	tests := []struct {
		name         string
		os, arch     string
		wantMachine  elf.Machine
		wantErr      []string
		wantNotRetry bool
	}{
		{name: "amd64 engine", os: "linux", arch: "x86_64", wantMachine: elf.EM_X86_64},
		{name: "arm64 engine", os: "linux", arch: "aarch64", wantMachine: elf.EM_AARCH64},
		{name: "arm64 engine that says arm64", os: "linux", arch: "arm64", wantMachine: elf.EM_AARCH64},
		{
			name: "windows engine", os: "windows", arch: "x86_64",
			wantErr: []string{"make the built-in bundle image " + bundleRef + ": bottle-apply cannot serve the engine's platform: " +
				"the engine runs windows/amd64 containers, and bottle-bundle is a linux program; set spec.bundle.image to a bundle image of your own"},
		},
		{
			name: "an architecture with no build", os: "linux", arch: "riscv64",
			wantErr: []string{"make the built-in bundle image " + bundleRef + ": bottle-apply cannot serve the engine's platform: " +
				"no bottle-bundle build for linux/riscv64: there is no bottle-bundle-linux-riscv64 in " + string(builds) +
				"; set spec.bundle.image to a bundle image of your own"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEngine()
			f.info = system.Info{OSType: tt.os, Architecture: tt.arch}
			for _, r := range []reconcile.Resource{rs[bottle.RoleInternal], rs[bottle.RoleEgress]} {
				name := r.Config.(networkConfig).Name
				f.networks[name] = network.Summary{Name: name, ID: "id-" + name}
			}
			p := newProvider(f, Options{BundleImage: bundleRef, BundleBinary: builds.Path})
			err := p.Apply(t.Context(), step(reconcile.Create, rs[bottle.RoleBundle]))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("Apply succeeded")
				}
				for _, want := range tt.wantErr {
					if err.Error() != want {
						t.Errorf("Apply error =\n%v\nwant\n%s", err, want)
					}
				}
				if !errors.Is(err, ErrPlatform) || errors.Is(err, reconcile.ErrRetry) {
					t.Errorf("Apply error %v: want ErrPlatform, not retried", err)
				}
				if want := []string{"ImageInspect " + bundleRef, "Info"}; !slices.Equal(f.callLog(), want) {
					t.Errorf("calls = %q, want %q", f.callLog(), want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if len(f.imports) != 1 {
				t.Fatalf("imports = %d, want 1", len(f.imports))
			}
			data := f.imports[0].files[bundleimage.BinaryPath[1:]]
			ef, err := elf.NewFile(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("the image's %s is not an ELF executable: %v", bundleimage.BinaryPath, err)
			}
			if ef.Machine != tt.wantMachine {
				t.Errorf("the image holds the build for %s, want %s", ef.Machine, tt.wantMachine)
			}
		})
	}
}

// Planning never asks the engine's platform: a no-op apply is the four
// lists; the platform is asked once, when the image is made, and the
// probe then reuses the answer.
func TestPlatformAskedOnlyToMakeTheImage(t *testing.T) {
	t.Parallel()
	builds := testenv.FakeBundleBuilds(t, elf.EM_X86_64, elf.EM_AARCH64)
	f := newFakeEngine()
	f.info = system.Info{OSType: "linux", Architecture: "aarch64"}
	f.images["agent:1"] = true
	opts := Options{BundleImage: bundleRef, BundleBinary: builds.Path}
	b := []bottle.Bottle{*helloBottle()}

	p := newProvider(f, opts)
	if res, err := reconcile.Run(t.Context(), []reconcile.Provider{p}, b, reconcile.Options{}); err != nil || !res.Converged {
		t.Fatalf("first apply: %v", err)
	}
	if n := f.count("Info"); n != 1 {
		t.Errorf("the first apply asked the platform %d times, want 1 (to make the image)", n)
	}
	probe, err := p.ProbeBinary(t.Context())
	if err != nil || probe != filepath.Join(string(builds), "bottle-bundle-linux-arm64") {
		t.Errorf("ProbeBinary = %q, %v; want the arm64 build", probe, err)
	}
	if n := f.count("Info"); n != 1 {
		t.Errorf("the probe asked the platform again (%d asks)", n)
	}

	// A new process: the image is there, nothing to make.
	before := len(f.callLog())
	p = newProvider(f, opts)
	if res, err := reconcile.Run(t.Context(), []reconcile.Provider{p}, b, reconcile.Options{}); err != nil || res.Plan.Changes() != 0 {
		t.Fatalf("no-op apply: %v", err)
	}
	calls := slices.Sorted(slices.Values(f.callLog()[before:]))
	if want := []string{"ContainerList", "ImageList", "NetworkList", "VolumeList"}; !slices.Equal(calls, want) {
		t.Errorf("no-op apply calls = %q, want %q", calls, want)
	}
}

func TestProbeBinaryNamesTheWayOut(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	f.info = system.Info{OSType: "linux", Architecture: "s390x"}
	p := newProvider(f, Options{BundleImage: bundleRef, BundleBinary: testenv.FakeBundleBuilds(t, elf.EM_X86_64).Path})
	_, err := p.ProbeBinary(t.Context())
	if err == nil || !errors.Is(err, ErrPlatform) || !strings.HasPrefix(err.Error(), "the self-test's probe: bottle-apply cannot serve the engine's platform: no bottle-bundle build for linux/s390x") ||
		!strings.HasSuffix(err.Error(), "skip the self-test with --no-verify") {
		t.Errorf("ProbeBinary error = %v", err)
	}
}

// Without bottle-bundle builds, a bottle that needs the built-in image
// fails to plan, saying what to do; one with its own bundle image plans.
func TestDesiredWithoutBundleBuilds(t *testing.T) {
	t.Parallel()
	p := newProvider(nil, Options{})
	b := helloBottle()
	_, err := p.Desired([]*bottle.Bottle{b}, nil)
	if err == nil || !strings.Contains(err.Error(), "ships no bottle-bundle build") || !strings.Contains(err.Error(), "set spec.bundle.image") {
		t.Errorf("Desired = %v", err)
	}
	b.Spec.Bundle.Image = "my/bundle:1"
	if _, err := p.Desired([]*bottle.Bottle{b}, nil); err != nil {
		t.Errorf("Desired with a bundle image of one's own: %v", err)
	}
}

// TestOneInfoCall: the locks (the engine's ID) and the bottle-bundle build
// (its platform) share one docker info call per provider.
func TestOneInfoCall(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	p := newProvider(f, Options{})
	if _, err := p.EngineInfo(t.Context()); err != nil {
		t.Fatal(err)
	}
	goos, arch, err := p.enginePlatform(t.Context())
	if err != nil || goos != "linux" || arch != "amd64" {
		t.Fatalf("enginePlatform = %s/%s, %v; want linux/amd64", goos, arch, err)
	}
	if _, err := p.EngineInfo(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := f.count("Info"); n != 1 {
		t.Errorf("%d Info calls, want 1", n)
	}
}

// TestConcurrentBundleImport: ten runs that import the built-in image at
// once on Docker 29's containerd store see "already exists" and, until the
// other import shows, "No such image": a run observes again instead of
// failing.
func TestConcurrentBundleImport(t *testing.T) {
	t.Parallel()
	f := newFakeEngine()
	f.fail["ImageImport"] = errors.New("Error response from daemon: creating image docker.io/" + bundleRef +
		" failed because it already exists, but accessing it also failed: No such image: " + bundleRef)
	bin := testenv.WriteELF(t, elf.EM_X86_64, false)
	p := newProvider(f, Options{BundleImage: bundleRef, BundleBinary: func(string) (string, error) { return bin, nil }})
	err := p.ensureImage(t.Context(), bundleRef, true)
	if !errors.Is(err, reconcile.ErrRetry) || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("ensureImage = %v, want the engine's words, to retry", err)
	}
	// Once the other run's image shows, it is used.
	f.images[bundleRef] = true
	if err := p.ensureImage(t.Context(), bundleRef, true); err != nil {
		t.Fatalf("ensureImage with the image there = %v", err)
	}
}
