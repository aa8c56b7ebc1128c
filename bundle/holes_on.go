//go:build bottleholes

package bundle

// openHoles is set by the test that builds a bundle with holes, with
// -ldflags "-X github.com/bottle-apply/bottle-apply/bundle.openHoles=host,sni".
// It exists only in builds with the bottleholes tag.
var openHoles string

var holes = parseHoles(openHoles)
