package app

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
	"github.com/bottle-apply/bottle-apply/internal/bundleimage"
)

// PushOptions are bundle push's flags.
type PushOptions struct {
	// Insecure lets the registry be reached over plain HTTP.
	Insecure bool
}

// PushResult is what bundle push put where.
type PushResult struct {
	// Ref is the reference pushed to, its tag (or digest) filled in.
	Ref string
	// Digest is the image index's.
	Digest string
	// Platforms are those of the index's images, sorted: "linux/amd64".
	Platforms []string
	// Pinned is the repository at the digest, for spec.bundle.image.
	Pinned string
}

// PushBundle builds the built-in bundle image of every bottle-bundle
// build shipped beside bottle-apply, one image an architecture under an
// OCI image index, and pushes it to ref with the docker CLI's credentials:
// a cluster, which pulls its images, can then run the built-in bundle. A
// ref without a tag gets the built-in image's (the one the docker provider
// names it by), so that the tag follows the builds.
func PushBundle(ctx context.Context, o *Options, ref string, po PushOptions) (*PushResult, error) {
	bs, err := shippedBundles()
	if err != nil {
		return nil, err
	}
	builds, err := bs.dir.All()
	if err != nil {
		return nil, err
	}
	if len(builds) == 0 {
		return nil, fmt.Errorf("%w beside bottle-apply in %s (%s<arch>): build them with make build, or install bottle-apply with the builds of its release", bundlebin.ErrNoBuild, bs.dir, bundlebin.Prefix)
	}
	return pushBundle(ctx, builds, o.Version, ref, po, authn.DefaultKeychain)
}

// pushBundle is PushBundle of the given builds, with the credentials of
// keys.
func pushBundle(ctx context.Context, builds []string, version, ref string, po PushOptions, keys authn.Keychain) (*PushResult, error) {
	builtin, err := bundleimage.Ref(builds)
	if err != nil {
		return nil, err
	}
	_, tag, _ := strings.Cut(builtin, ":")
	target, err := pushTarget(ref, tag, po.Insecure)
	if err != nil {
		return nil, err
	}
	idx, platforms, err := bundleimage.Index(builds, version)
	if err != nil {
		return nil, fmt.Errorf("make the built-in bundle image: %w", err)
	}
	digest, err := idx.Digest()
	if err != nil {
		return nil, fmt.Errorf("make the built-in bundle image: %w", err)
	}
	if d, ok := target.(name.Digest); ok && d.DigestStr() != digest.String() {
		return nil, fmt.Errorf("bundle push %s: the built-in bundle image of this bottle-apply's builds is %s, not %s: push it by tag, or at its own digest", ref, digest, d.DigestStr())
	}

	log := zerolog.Ctx(ctx)
	log.Info().Str("ref", target.Name()).Strs("platforms", platforms).Str("digest", digest.String()).Msg("pushing the built-in bundle image")
	updates := make(chan v1.Update, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		logProgress(log, target.Name(), updates, 2*time.Second)
	}()
	err = remote.WriteIndex(target, idx,
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(keys),
		remote.WithUserAgent("bottle-apply/"+version),
		remote.WithProgress(updates))
	<-done
	if err != nil {
		return nil, pushError(target, po.Insecure, err)
	}
	pinned := target.Context().Digest(digest.String())
	log.Info().Str("ref", target.Name()).Str("pinned", pinned.Name()).Msg("pushed the built-in bundle image")
	return &PushResult{Ref: target.Name(), Digest: digest.String(), Platforms: platforms, Pinned: pinned.Name()}, nil
}

// pushTarget is where bundle push puts the image: ref as given when it
// has a tag or a digest, else at tag (the built-in image's). insecure
// allows plain HTTP.
func pushTarget(ref, tag string, insecure bool) (name.Reference, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	if strings.Contains(ref, "://") {
		return nil, fmt.Errorf("bundle push %s: want a repository without a scheme (registry.example.com/team/bundle); --insecure allows plain HTTP", ref)
	}
	if repo, err := name.NewRepository(ref, opts...); err == nil {
		return repo.Tag(tag), nil
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("bundle push %s: %w: want REGISTRY/REPOSITORY, with a :TAG or @sha256:DIGEST if you like (registry.example.com/team/bundle)", ref, err)
	}
	return r, nil
}

// logProgress logs how much of the push is done, every interval at most,
// until updates is closed.
func logProgress(log *zerolog.Logger, ref string, updates <-chan v1.Update, interval time.Duration) {
	last := time.Now()
	for u := range updates {
		if u.Error != nil || time.Since(last) < interval || u.Total == 0 {
			continue
		}
		last = time.Now()
		log.Info().Str("ref", ref).Str("progress", fmt.Sprintf("%.1f of %.1f MB", float64(u.Complete)/1e6, float64(u.Total)/1e6)).Msg("pushing")
	}
}

// pushError says what failed on which registry, and what to do about it.
func pushError(target name.Reference, insecure bool, err error) error {
	reg := target.Context().RegistryStr()
	login := "docker login " + reg
	if reg == name.DefaultRegistry {
		login = "docker login"
	}
	head := fmt.Sprintf("push the built-in bundle image to %s", target.Name())
	var te *transport.Error
	var x509Unknown x509.UnknownAuthorityError
	var x509Host x509.HostnameError
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || hasCode(te, transport.UnauthorizedErrorCode)):
		return fmt.Errorf("%s: %s refused the push as unauthorized: %w; log in with %s (bottle-apply uses the docker CLI's credentials)", head, reg, err, login)
	case errors.As(err, &te) && (te.StatusCode == http.StatusForbidden || hasCode(te, transport.DeniedErrorCode)):
		return fmt.Errorf("%s: %s denied the push to %s: %w; check that the account of %s may push there, or push to a repository of your own", head, reg, target.Context().RepositoryStr(), err, login)
	case errors.As(err, &te) && hasCode(te, transport.NameUnknownErrorCode):
		return fmt.Errorf("%s: %s has no repository %s: %w; create it first (some registries do not create repositories on push)", head, reg, target.Context().RepositoryStr(), err)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") && !insecure:
		return fmt.Errorf("%s: %s answers plain HTTP, not HTTPS: %w; pass --insecure to push over HTTP", head, reg, err)
	case errors.As(err, &x509Unknown) || errors.As(err, &x509Host) || strings.Contains(err.Error(), "x509: "):
		return fmt.Errorf("%s: the TLS certificate of %s is not trusted: %w; add the registry's CA to the system's trust store (or SSL_CERT_FILE), or pass --insecure for a registry that also answers plain HTTP", head, reg, err)
	case errors.As(err, &dnsErr) || errors.As(err, &opErr):
		return fmt.Errorf("%s: cannot reach %s: %w; check the registry's address and that it runs", head, reg, err)
	}
	return fmt.Errorf("%s: %w", head, err)
}

// hasCode reports whether the registry's answer carries the error code.
func hasCode(te *transport.Error, code transport.ErrorCode) bool {
	for _, d := range te.Errors {
		if d.Code == code {
			return true
		}
	}
	return false
}
