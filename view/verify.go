package view

import (
	"fmt"
	"io"
	"time"

	"github.com/bottle-apply/bottle-apply/verify"
)

// Verify writes the verdict of each self-test report for humans.
func Verify(w io.Writer, reports []verify.Report) {
	for _, r := range reports {
		switch {
		case r.Error != "":
			fmt.Fprintf(w, "Verify %s: could not run: %s\n", r.Bottle, r.Error)
		case r.Skipped != "":
			fmt.Fprintf(w, "Verify %s: %s.\n", r.Bottle, r.Skipped)
		case r.OK:
			fmt.Fprintf(w, "Verify %s: %d checks passed in %s.\n",
				r.Bottle, len(r.Results), (time.Duration(r.DurationMS) * time.Millisecond).String())
			for _, res := range r.Results {
				if res.Unproven() {
					fmt.Fprintf(w, "  (passed without reaching what it checks: %s: %s)\n", res.Name, res.Detail)
				}
			}
		default:
			fmt.Fprintf(w, "Verify %s: %d of %d checks FAILED:\n", r.Bottle, len(r.Holes), len(r.Results))
			for _, h := range r.Holes {
				fmt.Fprintf(w, "  - %s\n", h)
			}
		}
	}
}
