package view

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/bottle-apply/bottle-apply/app"
)

// pushDoc is bundle push's JSON document.
type pushDoc struct {
	Ref       string   `json:"ref"`
	Digest    string   `json:"digest"`
	Platforms []string `json:"platforms"`
	Pinned    string   `json:"pinned"`
}

// Pushed shows what bundle push put where, for -o output: as JSON, or the
// pinned reference alone on its first line (for scripts) and where to put
// it.
func Pushed(w io.Writer, output string, r *app.PushResult) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(pushDoc{Ref: r.Ref, Digest: r.Digest, Platforms: r.Platforms, Pinned: r.Pinned})
	}
	_, err := fmt.Fprintf(w, "%s\npushed %s (%s); put the line above in spec.bundle.image to run this bundle image, at this digest\n",
		r.Pinned, r.Ref, strings.Join(r.Platforms, ", "))
	return err
}
