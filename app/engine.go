package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/internal/atomicfile"
	"github.com/bottle-apply/bottle-apply/internal/xdg"
	"github.com/bottle-apply/bottle-apply/providers/docker"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// Engine is the Docker engine a run talks to: where it is and who it is.
type Engine struct {
	// Endpoint is the address the run reaches it by (DOCKER_HOST, the
	// docker context's, or the default socket).
	Endpoint string
	// ID is the engine's own (docker info's ID): the same whatever the
	// address it is reached by. Empty for an engine that has none.
	ID   string
	OS   string // docker info's OSType: "linux"
	Arch string // docker info's Architecture, the kernel's name: "x86_64", "aarch64"
}

// Platform is the engine's OS and architecture as images name them
// ("linux/amd64", "linux/arm64/v8" is "linux/arm64").
func (e Engine) Platform() string {
	return e.OS + "/" + docker.GoArch(e.Arch)
}

// LockKey names the engine's locks: its ID, so that every address of one
// engine takes the same locks; its address when it has no ID.
func (e Engine) LockKey() string {
	if e.ID != "" {
		return "engine-id:" + e.ID
	}
	return "endpoint:" + e.Endpoint
}

// engineRecordTTL is how long a record of who answers at an address is
// trusted: an engine can be replaced behind an address, and a day of a
// stale record at worst costs one docker info a day.
const engineRecordTTL = 24 * time.Hour

// engineRecord is what bottle-apply remembers of the engine at an
// address, so that a run does not ask it who it is every time: a no-op
// apply stays at three calls (the version ping, two lists).
type engineRecord struct {
	Endpoint string    `json:"endpoint"`
	ID       string    `json:"id"`
	OS       string    `json:"os"`
	Arch     string    `json:"arch"`
	Checked  time.Time `json:"checked"`
	// Socket is when the engine's unix socket was made: an engine that
	// restarts makes it anew, and is then asked again.
	Socket time.Time `json:"socket,omitzero"`
}

// engineRecordPath is where the record of the engine at endpoint lives,
// "" when there is no cache directory.
func engineRecordPath(endpoint string) string {
	dir := xdg.CacheDir("engines")
	if dir == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(endpoint))
	return filepath.Join(dir, hex.EncodeToString(sum[:])[:16], "engine.json")
}

// socketTime is when the unix socket of endpoint was made; zero for
// other addresses, and when it cannot be seen.
func socketTime(endpoint string) time.Time {
	path, ok := strings.CutPrefix(endpoint, "unix://")
	if !ok {
		return time.Time{}
	}
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

// loadEngineRecord returns the record of the engine at endpoint, if one
// is there and still to be trusted at now.
func loadEngineRecord(path, endpoint string, now time.Time) (engineRecord, bool) {
	if path == "" {
		return engineRecord{}, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return engineRecord{}, false
	}
	var r engineRecord
	if json.Unmarshal(b, &r) != nil || r.Endpoint != endpoint || r.ID == "" {
		return engineRecord{}, false
	}
	if now.Sub(r.Checked) > engineRecordTTL || now.Before(r.Checked) || !r.Socket.Equal(socketTime(endpoint)) {
		return engineRecord{}, false
	}
	return r, true
}

// saveEngineRecord writes r at path, whole or not at all.
func saveEngineRecord(path string, r engineRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// writeFileAtomic writes b at path, whole or not at all, making its
// directory (0700) if needed.
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, b)
}

// Engine says which engine the providers talk to: from the record of its
// address when there is one to trust, else by asking the engine (docker
// info, retried as a run's rounds are while the engine restarts) and
// recording the answer. It is looked up once per Providers.
func (ps *Providers) Engine(ctx context.Context) (Engine, error) {
	ps.engineMu.Lock()
	defer ps.engineMu.Unlock()
	if ps.engineInfo != nil {
		return *ps.engineInfo, nil
	}
	host := ps.endpoint.Host
	path := engineRecordPath(host)
	now := time.Now()
	if r, ok := loadEngineRecord(path, host, now); ok {
		e := Engine{Endpoint: host, ID: r.ID, OS: r.OS, Arch: r.Arch}
		ps.engineInfo = &e
		return e, nil
	}
	socket := socketTime(host)
	var e Engine
	err := reconcile.Retry(ctx, "ask the engine who it is", func() error {
		info, err := ps.docker.EngineInfo(ctx)
		e = Engine{Endpoint: host, ID: info.ID, OS: info.OS, Arch: info.Arch}
		return err
	})
	if err != nil {
		return Engine{}, err
	}
	if path != "" && e.ID != "" {
		r := engineRecord{Endpoint: host, ID: e.ID, OS: e.OS, Arch: e.Arch, Checked: now, Socket: socket}
		if err := saveEngineRecord(path, r); err != nil {
			// The next run asks again; nothing else is lost.
			zerolog.Ctx(ctx).Debug().Err(err).Str("path", path).Msg("record the engine")
		}
	}
	ps.engineInfo = &e
	return e, nil
}

// hostCache keeps the addresses of the engine's host beside the engine's
// record (docker.HostCache): learning them takes a container, and a no-op
// apply starts none. They are trusted for the engine they were seen on;
// the host guard that runs before a bundle starts sees them anew.
type hostCache struct {
	mu       sync.Mutex
	engineID string // set once the engine is known; empty loads nothing
}

type hostRecord struct {
	EngineID string    `json:"engineId"`
	Addrs    []string  `json:"addrs"`
	Checked  time.Time `json:"checked"`
}

// path is keyed by the engine, not by its address: every address of one
// engine shares what was learned of its host.
func (c *hostCache) path() string {
	dir := xdg.CacheDir("engines")
	if dir == "" || c.engineID == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(c.engineID))
	return filepath.Join(dir, "by-id", hex.EncodeToString(sum[:])[:16], "host.json")
}

func (c *hostCache) setEngine(id string) {
	c.mu.Lock()
	c.engineID = id
	c.mu.Unlock()
}

// LoadHostAddrs implements docker.HostCache.
func (c *hostCache) LoadHostAddrs() ([]netip.Addr, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	path := c.path()
	if c.engineID == "" || path == "" {
		return nil, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	var r hostRecord
	if json.Unmarshal(b, &r) != nil || r.EngineID != c.engineID {
		return nil, false
	}
	addrs := make([]netip.Addr, 0, len(r.Addrs))
	for _, s := range r.Addrs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, false
		}
		addrs = append(addrs, a)
	}
	return addrs, true
}

// SaveHostAddrs implements docker.HostCache. A failure costs the next run
// a container, nothing else.
func (c *hostCache) SaveHostAddrs(addrs []netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	path := c.path()
	if c.engineID == "" || path == "" {
		return
	}
	r := hostRecord{EngineID: c.engineID, Checked: time.Now().UTC()}
	for _, a := range addrs {
		r.Addrs = append(r.Addrs, a.String())
	}
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	_ = writeFileAtomic(path, append(b, '\n'))
}
