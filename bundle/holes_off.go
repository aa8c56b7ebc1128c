//go:build !bottleholes

package bundle

// holes is empty in every build but a test's: nothing can open a hole.
var holes holeSet
