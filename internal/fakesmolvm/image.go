package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// hypervisorError is the platform error of a VM boot, or nil when the
// fake hypervisor works.
func (a *app) hypervisorError() error {
	const op = "agent operation failed: start machine: "
	switch a.env.hypervisor {
	case "kvm-missing":
		return failf(op + "kvm not available: KVM not available. Ensure KVM kernel module is loaded.")
	case "kvm-permission":
		return failf(op + "kvm permission denied: Cannot access /dev/kvm. Add your user to the 'kvm' group.")
	case "macos-entitlement":
		if a.env.v19 {
			return failf(op + "krun_start_enter returned: -22 (the smolvm binary lacks the com.apple.security.hypervisor entitlement)")
		}
		return failf(op + "krun_start_enter returned: -22")
	}
	return nil
}

// looksLocal reports whether smolvm 1.9 reads an --image value as a local
// archive: "/", "./", "../" or a .tar, .tar.gz, .tgz name.
func looksLocal(v string) bool {
	for _, p := range []string{"/", "./", "../"} {
		if strings.HasPrefix(v, p) {
			return true
		}
	}
	for _, s := range []string{".tar", ".tar.gz", ".tgz"} {
		if strings.HasSuffix(v, s) {
			return true
		}
	}
	return false
}

// classifyImage sorts a machine create --image value the way the dialect
// does. 0.8 knows registry references only; 1.9 also takes "-" (an
// archive on stdin), an existing directory (a root filesystem) and a local
// archive, which must exist.
func (a *app) classifyImage(v string) (string, error) {
	if !a.env.v19 {
		return "registry", nil
	}
	if v == "-" {
		return "stdin", nil
	}
	if fi, err := os.Stat(v); err == nil && fi.IsDir() {
		return "directory", nil
	}
	if looksLocal(v) {
		fi, err := os.Stat(v)
		if err != nil {
			return "", failf("config operation failed: create machine: image archive '%s': %v", v, pathErr(err))
		}
		if !fi.Mode().IsRegular() {
			return "", failf("config operation failed: create machine: image archive '%s' is not a file", v)
		}
		return "archive", nil
	}
	return "registry", nil
}

// pathErr is the part of an *os.PathError after the path, Rust-style.
func pathErr(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, os.ErrNotExist) {
		return "No such file or directory (os error 2)"
	}
	return err.Error()
}

// imageRef is a parsed registry reference.
type imageRef struct {
	host, repo, tag, digest string
}

func (r imageRef) String() string {
	s := r.host + "/" + r.repo
	if r.digest != "" {
		return s + "@" + r.digest
	}
	return s + ":" + r.tag
}

// parseRef reads a reference the way Docker does: the first component is
// a registry host when it has a '.' or a ':' or is "localhost"; Docker
// Hub names get "library/"; the tag defaults to latest.
func parseRef(ref string) (imageRef, error) {
	var r imageRef
	if ref == "" || strings.ContainsAny(ref, " \t\n") || looksLocal(ref) || strings.HasPrefix(ref, "-") {
		return r, fmt.Errorf("invalid reference format: %q", ref)
	}
	rest := ref
	if first, after, ok := strings.Cut(ref, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		r.host, rest = first, after
	} else {
		r.host = "docker.io"
	}
	if name, dg, ok := strings.Cut(rest, "@"); ok {
		rest, r.digest = name, dg
	}
	if i := strings.LastIndex(rest, ":"); i >= 0 && !strings.Contains(rest[i:], "/") {
		rest, r.tag = rest[:i], rest[i+1:]
	}
	if r.tag == "" && r.digest == "" {
		r.tag = "latest"
	}
	if r.host == "docker.io" && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	if rest == "" || strings.ToLower(rest) != rest {
		return r, fmt.Errorf("invalid reference format: %q", ref)
	}
	r.repo = rest
	return r, nil
}

// loopbackHost reports whether host is a loopback address with a port.
func loopbackHost(host string) bool {
	h, port, err := net.SplitHostPort(host)
	if err != nil || port == "" {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// pull stands in for a registry pull of ref. It prints progress on
// stderr and fails with a smolvm-style error unless the reference is
// served (see FAKE_SMOLVM_REGISTRY_IMAGES and FAKE_SMOLVM_PULL_CHECK).
func (a *app) pull(ref string) error {
	a.errf("Pulling image %s...", ref)
	fail := func(why string) error {
		return failf("agent operation failed: pull image: failed to pull '%s': %s", ref, why)
	}
	r, err := parseRef(ref)
	if err != nil {
		return fail(err.Error())
	}
	if a.env.pullCheck && loopbackHost(r.host) {
		if err := checkManifest(r); err != nil {
			return fail(err.Error())
		}
		return nil
	}
	for _, served := range a.env.registry {
		if s, err := parseRef(served); err == nil && s == r {
			return nil
		}
	}
	return fail("MANIFEST_UNKNOWN: manifest unknown (the fake registry serves only FAKE_SMOLVM_REGISTRY_IMAGES)")
}

var manifestTypes = []string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}

// checkManifest GETs the manifest of r from its loopback registry.
func checkManifest(r imageRef) error {
	ref := r.tag
	if r.digest != "" {
		ref = r.digest
	}
	u := &url.URL{Scheme: "http", Host: r.host, Path: "/v2/" + r.repo + "/manifests/" + ref}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", strings.Join(manifestTypes, ", "))
	client := &http.Client{
		// No proxy: the request must reach the loopback registry itself.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if !loopbackHost(req.URL.Host) {
				return fmt.Errorf("refusing redirect to non-loopback %s", req.URL.Host)
			}
			return nil
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %v", u, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}
