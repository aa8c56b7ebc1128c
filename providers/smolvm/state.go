package smolvm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// record is bottle-apply's claim on a machine where smolvm cannot label it
// (before 1.8): StateDir/NAME.json, written after a successful create and
// removed after delete. A machine is managed if it bears the reserved name
// prefix and a record with a bottle, a role and a hash.
type record struct {
	Name    string            `json:"name"`
	Bottle  string            `json:"bottle"`
	Role    string            `json:"role"`
	Hash    string            `json:"hash"`
	Inputs  map[string]string `json:"inputs,omitempty"`
	Version string            `json:"version,omitempty"` // bottle-apply's, for humans
	// User is spec.agent.user as uid:gid (labelUser where there are
	// labels); "" for the image's own user.
	User string `json:"user,omitempty"`
	// Set is the spec set the machine was made with (bottle.LabelSet
	// where there are labels).
	Set string `json:"set,omitempty"`
	// ImageID is the content ID the machine was made of (labelImageID
	// where there are labels); "" for an image from a registry.
	ImageID string `json:"imageID,omitempty"`
}

// safeName matches smolvm machine names, which are also safe file names.
var safeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

func (p *Provider) recordPath(name string) (string, error) {
	if p.opts.StateDir == "" {
		return "", errors.New("no state directory for smolvm machine records: set $XDG_STATE_HOME or $HOME")
	}
	if !safeName.MatchString(name) {
		return "", fmt.Errorf("internal: machine name %q is not a file name", name)
	}
	return filepath.Join(p.opts.StateDir, name+".json"), nil
}

// readRecord returns the record of a machine, or nil when there is none (or
// it is unreadable: the machine is then not bottle-apply's).
func (p *Provider) readRecord(name string) (*record, error) {
	if p.opts.StateDir == "" {
		return nil, nil
	}
	path, err := p.recordPath(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read machine record: %w", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil || r.Name != name {
		return nil, nil
	}
	return &r, nil
}

// writeRecord writes a record atomically: a torn record never has the
// final name.
func (p *Provider) writeRecord(r record) error {
	path, err := p.recordPath(r.Name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write machine record: %w", err)
	}
	if err := writeFileAtomic(path, r); err != nil {
		return fmt.Errorf("write machine record %s: %w", path, err)
	}
	return nil
}

func (p *Provider) removeRecord(name string) error {
	if p.opts.StateDir == "" {
		return nil
	}
	path, err := p.recordPath(name)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove machine record: %w", err)
	}
	return nil
}
