package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrPlatform says that bottle-apply has no bottle-bundle build for the
// engine's platform: neither its built-in bundle nor its probe can run
// there.
var ErrPlatform = errors.New("bottle-apply cannot serve the engine's platform")

// enginePlatform returns the engine's operating system and architecture,
// the latter as Go names it (x86_64 is amd64), from the provider's one
// docker info: asked only when a build must be chosen (never to plan).
func (p *Provider) enginePlatform(ctx context.Context) (goos, goarch string, err error) {
	info, err := p.askInfo(ctx)
	if err != nil {
		return "", "", fmt.Errorf("ask the engine for its platform (docker info): %w", transient(err))
	}
	return info.OS, GoArch(info.Arch), nil
}

// GoArch maps an engine's architecture (uname -m on its host, as docker
// info reports it) to Go's name for it; a name Go shares passes through.
func GoArch(arch string) string {
	switch a := strings.ToLower(arch); a {
	case "x86_64", "x86-64", "amd64":
		return "amd64"
	case "aarch64", "arm64", "armv8", "armv8l":
		return "arm64"
	case "i386", "i486", "i586", "i686", "x86":
		return "386"
	case "armv6l", "armv7l", "armhf", "arm":
		return "arm"
	default:
		return a
	}
}

// bundleBinary returns the bottle-bundle build for the engine's platform.
// The error wraps ErrPlatform when there is none.
func (p *Provider) bundleBinary(ctx context.Context) (string, error) {
	goos, arch, err := p.enginePlatform(ctx)
	if err != nil {
		return "", err
	}
	if goos != "linux" {
		return "", fmt.Errorf("%w: the engine runs %s/%s containers, and bottle-bundle is a linux program", ErrPlatform, goos, arch)
	}
	if p.opts.BundleBinary == nil {
		return "", fmt.Errorf("internal: no bottle-bundle builds to choose from for linux/%s", arch)
	}
	bin, err := p.opts.BundleBinary(arch)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrPlatform, err)
	}
	return bin, nil
}

// ProbeBinary returns the program that the self-test copies into the
// bottles' docker agents as the probe: the bottle-bundle build for the
// engine's platform.
func (p *Provider) ProbeBinary(ctx context.Context) (string, error) {
	bin, err := p.bundleBinary(ctx)
	if errors.Is(err, ErrPlatform) {
		return "", fmt.Errorf("the self-test's probe: %w; skip the self-test with --no-verify", err)
	}
	return bin, err
}
