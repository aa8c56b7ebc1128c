package smolvm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/atomicfile"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// kindVolume is the kind of a bottle's named volume: a directory of
// bottle-apply's state directory that smolvm mounts into the machine with
// -v, since smolvm has no volumes of its own.
//
// Layout: StateDir/volumes/BOTTLE/VOLUME/ (mode 0700) holds data/, what
// the machine sees, and volume.json, bottle-apply's claim on it. Observe
// reads that tree (no smolvm call); only a directory with a matching
// volume.json is ever removed, and only by a Delete step (destroy
// --volumes): a volume outlives its machine.
const kindVolume = "volume"

const (
	volumesSubdir    = "volumes"
	volumeDataSubdir = "data"
	volumeRecordFile = "volume.json"
)

// volumeRecord is bottle-apply's claim on a named volume's directory.
type volumeRecord struct {
	Name    string `json:"name"` // bottle.VolumeName
	Bottle  string `json:"bottle"`
	Volume  string `json:"volume"`
	Hash    string `json:"hash"`
	Owner   string `json:"owner,omitempty"`   // uid:gid the data directory was made for
	Version string `json:"version,omitempty"` // bottle-apply's, for humans
}

// volumeConfig is what the provider needs to create a named volume.
type volumeConfig struct {
	Bottle, Volume string
	// User is the agent's uid:gid, whose the data directory is made; ""
	// for the image's own user.
	User   string
	Record volumeRecord
}

// volumeID is the resource ID of a bottle's named volume.
func volumeID(bottleName, volume string) string {
	r := reconcile.Resource{Provider: ProviderName, Kind: kindVolume, Bottle: bottleName, Role: volume}
	return r.ID()
}

// translateVolumes returns the named volumes of a bottle's agent, one per
// name, sorted. It is pure. user is the agent's normalised uid:gid.
func translateVolumes(b *bottle.Bottle, user, version string) []reconcile.Resource {
	name := b.Metadata.Name
	var names []string
	for _, v := range b.Spec.Agent.Volumes {
		if v.Named() && !slices.Contains(names, v.Source) {
			names = append(names, v.Source)
		}
	}
	sort.Strings(names)
	var out []reconcile.Resource
	for _, vol := range names {
		// A volume is never replaced: its hash says only what it is.
		h, inputs := reconcile.Fragment{reconcile.In("volume", vol)}.Hash()
		r := reconcile.Resource{
			Provider: ProviderName, Kind: kindVolume, Bottle: name, Role: vol,
			Name: bottle.VolumeName(name, vol), Hash: h, Inputs: inputs, Persistent: true,
		}
		r.Config = volumeConfig{Bottle: name, Volume: vol, User: user,
			Record: volumeRecord{Name: r.Name, Bottle: name, Volume: vol, Hash: h, Owner: user, Version: version}}
		out = append(out, r)
	}
	return out
}

// volumesRoot is StateDir/volumes.
func (p *Provider) volumesRoot() (string, error) {
	if p.opts.StateDir == "" {
		return "", errors.New("no state directory for smolvm volumes: set $XDG_STATE_HOME or $HOME")
	}
	return filepath.Join(p.opts.StateDir, volumesSubdir), nil
}

// volumeDir is StateDir/volumes/BOTTLE/VOLUME. Bottle and volume names
// are DNS labels (spec validation), checked again here as file names.
func (p *Provider) volumeDir(bottleName, volume string) (string, error) {
	root, err := p.volumesRoot()
	if err != nil {
		return "", err
	}
	if !safeName.MatchString(bottleName) || !safeName.MatchString(volume) {
		return "", fmt.Errorf("internal: volume %q of bottle %q is not a file name", volume, bottleName)
	}
	return filepath.Join(root, bottleName, volume), nil
}

// VolumeDataDir is the host directory that holds a bottle's named volume,
// mounted into its agent machine; "" without a state directory.
func (p *Provider) VolumeDataDir(bottleName, volume string) string {
	dir, err := p.volumeDir(bottleName, volume)
	if err != nil {
		return ""
	}
	return filepath.Join(dir, volumeDataSubdir)
}

// readVolumeRecord returns the record in dir, or nil when there is none or
// it does not claim dir for bottleName and volume.
func readVolumeRecord(dir, bottleName, volume string) (*volumeRecord, error) {
	b, err := os.ReadFile(filepath.Join(dir, volumeRecordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read volume record: %w", err)
	}
	var r volumeRecord
	if err := json.Unmarshal(b, &r); err != nil || r.Bottle != bottleName || r.Volume != volume ||
		r.Name != bottle.VolumeName(bottleName, volume) || r.Hash == "" {
		return nil, nil
	}
	return &r, nil
}

// observeVolumes lists the named volumes of the bottles in scope from the
// state directory. A directory without a matching record is returned
// unmanaged, so that the diff refuses to use or remove it. Under
// scope.All it reads the volumes of every bottle in the state directory
// too, and returns those of bottles outside scope.Bottles only when
// managed.
func (p *Provider) observeVolumes(scope reconcile.Scope) ([]reconcile.Resource, error) {
	if p.opts.StateDir == "" {
		return nil, nil
	}
	root, _ := p.volumesRoot()
	bottles := slices.Clone(scope.Bottles)
	if scope.All {
		entries, err := os.ReadDir(root)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("list smolvm volumes: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() {
				bottles = append(bottles, e.Name())
			}
		}
	}
	slices.Sort(bottles)
	bottles = slices.Compact(bottles)
	var out []reconcile.Resource
	for _, b := range bottles {
		if !safeName.MatchString(b) {
			continue
		}
		named := slices.Contains(scope.Bottles, b)
		entries, err := os.ReadDir(filepath.Join(root, b))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list smolvm volumes of bottle %s: %w", b, err)
		}
		for _, e := range entries {
			vol := e.Name()
			if !e.IsDir() || !safeName.MatchString(vol) {
				continue
			}
			dir := filepath.Join(root, b, vol)
			r := reconcile.Resource{Provider: ProviderName, Kind: kindVolume, Bottle: b, Role: vol,
				Name: bottle.VolumeName(b, vol), EngineID: dir, Persistent: true, State: reconcile.StatePresent,
				// The volume's own directory (its record beside its data):
				// what to remove to remove it.
				Summary: map[string]string{"path": dir}}
			rec, err := readVolumeRecord(dir, b, vol)
			if err != nil {
				return nil, err
			}
			if rec != nil {
				r.Hash = rec.Hash
				_, r.Inputs = reconcile.Fragment{reconcile.In("volume", vol)}.Hash()
			}
			r.Managed = bottle.Owned(r.Bottle, r.Role, r.Hash)
			if fi, err := os.Stat(filepath.Join(dir, volumeDataSubdir)); r.Managed && (err != nil || !fi.IsDir()) {
				r.State, r.Failure = reconcile.StateFailed, "its data directory is missing"
			}
			if r.Managed || named {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// createVolume makes a named volume's directory: the parents 0700 (only
// the invoking user, and root, may enter), then data/ made writable for
// the agent's user, then the record, written last, so that a directory
// is ours only once it is whole. An existing directory without our record
// is refused: it is not bottle-apply's.
//
// Whose data/ is: smolvm shares it with the guest through virtiofs, where
// the guest sees the host's uids. Run as root, bottle-apply chowns data/
// to the agent's uid:gid. Run as a user, it cannot chown to another uid,
// so data/ is mode 0777 instead: any guest uid may write, and the 0700
// parent keeps other host users out. Without spec.agent.user it is the
// invoking user's, 0755, as the guest's root sees it.
func (p *Provider) createVolume(cfg volumeConfig) error {
	dir, err := p.volumeDir(cfg.Bottle, cfg.Volume)
	if err != nil {
		return err
	}
	rec, err := readVolumeRecord(dir, cfg.Bottle, cfg.Volume)
	if err != nil {
		return err
	}
	if rec != nil {
		return nil // made meanwhile: ours all the same
	}
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("create volume %s: %s exists without bottle-apply's record (%s): %w; move it away or remove it",
			cfg.Record.Name, dir, volumeRecordFile, reconcile.ErrNotManaged)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("create volume %s: %w", cfg.Record.Name, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create volume %s: %w", cfg.Record.Name, err)
	}
	data := filepath.Join(dir, volumeDataSubdir)
	if err := os.Mkdir(data, 0o755); err != nil {
		return fmt.Errorf("create volume %s: %w", cfg.Record.Name, err)
	}
	if err := giveData(data, cfg.User); err != nil {
		return fmt.Errorf("create volume %s: %w", cfg.Record.Name, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, volumeRecordFile), cfg.Record); err != nil {
		return fmt.Errorf("create volume %s: %w", cfg.Record.Name, err)
	}
	return nil
}

// giveData makes a volume's data directory writable for the agent's user
// (see createVolume); without a user it leaves it as it is.
func giveData(data, user string) error {
	if user == "" {
		return nil
	}
	uid, gid, err := spec.ParseUser(user)
	if err != nil {
		return fmt.Errorf("internal: %w", err)
	}
	if os.Geteuid() == 0 {
		return os.Chown(data, uid, gid)
	}
	return os.Chmod(data, 0o777) // see createVolume: the 0700 parent guards it
}

// deleteVolume removes a named volume's directory, with the user's data,
// only if our record claims it.
func (p *Provider) deleteVolume(r *reconcile.Resource) error {
	if !r.Managed {
		return fmt.Errorf("internal: refusing to delete volume %s: %w", r.Name, reconcile.ErrNotManaged)
	}
	dir, err := p.volumeDir(r.Bottle, r.Role)
	if err != nil {
		return err
	}
	rec, err := readVolumeRecord(dir, r.Bottle, r.Role)
	if err != nil {
		return fmt.Errorf("delete volume %s: %w", r.Name, err)
	}
	if rec == nil {
		if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
			return nil // gone already
		}
		return fmt.Errorf("delete volume %s: %s has no bottle-apply record: %w", r.Name, dir, reconcile.ErrNotManaged)
	}
	// The record goes last: an interrupted removal leaves a directory that
	// is still ours, which the next destroy --volumes removes.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("delete volume %s: %w", r.Name, err)
	}
	for _, e := range entries {
		if e.Name() == volumeRecordFile {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("delete volume %s: %w", r.Name, err)
		}
	}
	if err := os.Remove(filepath.Join(dir, volumeRecordFile)); err != nil {
		return fmt.Errorf("delete volume %s: %w", r.Name, err)
	}
	if err := os.Remove(dir); err != nil {
		return fmt.Errorf("delete volume %s: %w", r.Name, err)
	}
	_ = os.Remove(filepath.Dir(dir)) // the bottle's directory, once empty
	return nil
}

// writeFileAtomic writes v as JSON to path (atomicfile.Write): a torn file
// never has the final name.
func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'))
}
