package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// firstPID is the made-up pid of the first machine started in a state
// directory; each start takes the next number.
const firstPID = 41000

// machine is one record of machines.json.
type machine struct {
	Name      string   `json:"name"`
	State     string   `json:"state"` // created, running, stopped
	PID       *int     `json:"pid"`
	CPUs      int      `json:"cpus"`
	MemoryMiB int      `json:"memory_mib"`
	StorageGB *uint64  `json:"storage_gb"`
	OverlayGB *uint64  `json:"overlay_gb"`
	Volumes   []string `json:"volumes"`
	Ports     []string `json:"ports"`
	Network   bool     `json:"network"`
	Image     *string  `json:"image"`
	// ImageKind is registry, archive, directory, stdin, pack or "".
	ImageKind             string              `json:"image_kind"`
	Entrypoint            []string            `json:"entrypoint"`
	Cmd                   []string            `json:"cmd"`
	Env                   []string            `json:"env"`
	Workdir               string              `json:"workdir"`
	Init                  []string            `json:"init"`
	AllowCIDRs            []string            `json:"allow_cidrs"`
	AllowHosts            []string            `json:"allow_hosts"`
	OutboundLocalhostOnly bool                `json:"outbound_localhost_only"`
	NetBackend            string              `json:"net_backend"`
	GPU                   bool                `json:"gpu"`
	GPUVramMiB            *uint64             `json:"gpu_vram_mib"`
	CUDA                  bool                `json:"cuda"`
	Forkable              bool                `json:"forkable"`
	SSHAgent              bool                `json:"ssh_agent"`
	From                  string              `json:"from"`
	Smolfile              string              `json:"smolfile"`
	Labels                map[string]string   `json:"labels"`
	Extra                 map[string][]string `json:"extra"` // 1.9 options kept verbatim
	CreatedAt             int64               `json:"created_at"`
	CreatedBy             string              `json:"created_by"` // FAKE_SMOLVM_VERSION at create
	Booted                bool                `json:"booted"`     // started at least once
	Starts                int                 `json:"starts"`
}

type stateFile struct {
	NextPID  int                 `json:"next_pid"`
	Machines map[string]*machine `json:"machines"`
}

func (st *stateFile) sortedNames() []string {
	names := make([]string, 0, len(st.Machines))
	for n := range st.Machines {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// store is the state directory.
type store struct{ dir string }

func (s *store) path(parts ...string) string {
	return filepath.Join(append([]string{s.dir}, parts...)...)
}

// root is the host directory standing in for the guest filesystem of name.
func (s *store) root(name string) string { return s.path("roots", name) }

func flock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func (s *store) load() (*stateFile, error) {
	st := &stateFile{NextPID: firstPID, Machines: map[string]*machine{}}
	data, err := os.ReadFile(s.path("machines.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("parse %s: %w", s.path("machines.json"), err)
	}
	if st.Machines == nil {
		st.Machines = map[string]*machine{}
	}
	return st, nil
}

// save writes machines.json atomically: a temp file, then a rename.
func (s *store) save(st *stateFile) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(s.dir, ".machines-*.json")
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.path("machines.json"))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// errNoSave, returned by an update function, ends the update without
// writing and without an error.
var errNoSave = errors.New("no save")

// update runs fn on the state under the lock and saves it when fn returns
// nil. Any error leaves the state on disk unchanged.
func (s *store) update(fn func(st *stateFile) error) error {
	unlock, err := flock(s.path(".lock"))
	if err != nil {
		return fakeError("%v", err)
	}
	defer unlock()
	st, err := s.load()
	if err != nil {
		return fakeError("%v", err)
	}
	if err := fn(st); err != nil {
		if errors.Is(err, errNoSave) {
			return nil
		}
		return err
	}
	if err := s.save(st); err != nil {
		return fakeError("save state: %v", err)
	}
	return nil
}

// read returns a snapshot of the state, taken under the lock.
func (s *store) read() (*stateFile, error) {
	var snap *stateFile
	err := s.update(func(st *stateFile) error {
		snap = st
		return errNoSave
	})
	return snap, err
}

// logArgv appends one JSON array, the argv after the program name.
func (s *store) logArgv(args []string) error {
	if args == nil {
		args = []string{}
	}
	line, err := json.Marshal(args)
	if err != nil {
		return err
	}
	return s.appendLine("argv.log", string(line))
}

func (s *store) appendLine(file, line string) error {
	unlock, err := flock(s.path(".log.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	f, err := os.OpenFile(s.path(file), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
