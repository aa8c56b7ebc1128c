package docker

import (
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// imageIndex is what one image list says of the local images: the content
// ID each tag names now, and the built-in bundle images of every
// bottle-apply build.
type imageIndex struct {
	byRef   map[string]string // normalized name:tag -> image ID
	bundles []bundleImage
}

// bundleImage is a built-in bundle image the engine holds, by one of its
// tags.
type bundleImage struct {
	Ref, ID string
	Created time.Time
}

// indexImages reads an image list. bundleRepo is the repository of the
// built-in bundle image ("" for none): an image tagged there that carries
// bottle-apply's version label is one. It is pure.
func indexImages(imgs []image.Summary, bundleRepo string) imageIndex {
	idx := imageIndex{byRef: map[string]string{}}
	for _, img := range imgs {
		for _, tag := range img.RepoTags {
			key, ok := normalRef(tag)
			if !ok {
				continue // "<none>:<none>"
			}
			idx.byRef[key] = img.ID
			if _, ours := img.Labels[bottle.LabelVersion]; ours && bundleRepo != "" && repoOf(tag) == bundleRepo {
				idx.bundles = append(idx.bundles, bundleImage{Ref: tag, ID: img.ID, Created: time.Unix(img.Created, 0)})
			}
		}
	}
	slices.SortFunc(idx.bundles, func(a, b bundleImage) int { return strings.Compare(a.Ref, b.Ref) })
	return idx
}

// id returns the content ID that ref names in the engine now: "" when the
// engine does not have it, and for a reference by digest, whose content
// cannot change under it.
func (idx *imageIndex) id(ref string) string {
	if idx == nil {
		return ""
	}
	key, ok := normalRef(ref)
	if !ok {
		return ""
	}
	return idx.byRef[key]
}

// normalRef is ref as the engine resolves it ("alpine" is
// "docker.io/library/alpine:latest"); false for what is no name:tag.
func normalRef(ref string) (string, bool) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", false
	}
	if _, digested := named.(reference.Digested); digested {
		return "", false
	}
	return reference.TagNameOnly(named).String(), true
}

// repoOf is the normalized repository of ref, "" when ref is no name.
func repoOf(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ""
	}
	return named.Name()
}

// setListed keeps the last image list for Desired and PruneBundleImages.
func (p *Provider) setListed(idx imageIndex) {
	p.listedMu.Lock()
	defer p.listedMu.Unlock()
	p.listed = &idx
}

func (p *Provider) lastListed() *imageIndex {
	p.listedMu.Lock()
	defer p.listedMu.Unlock()
	return p.listed
}

// ListedImageID returns the content ID that ref named in the last image
// list Observe made, "" when the engine did not have it (or nothing was
// listed). It costs no call: the smolvm provider asks it to plan.
func (p *Provider) ListedImageID(ref string) string { return p.lastListed().id(ref) }
