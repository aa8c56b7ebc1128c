package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Status is what GET /status on the status endpoint answers.
type Status struct {
	Bottle string `json:"bottle"`
	// Ready is true once every daemon listens, until shutdown begins.
	Ready     bool           `json:"ready"`
	Daemons   []DaemonStatus `json:"daemons"`
	Decisions DecisionCounts `json:"decisions"`
}

// DaemonStatus is one running daemon and the address it listens on.
type DaemonStatus struct {
	Name   string `json:"name"`
	Listen string `json:"listen"`
}

// DecisionCounts counts egress and DNS decisions since the bundle started.
type DecisionCounts struct {
	Allow int64 `json:"allow"`
	Deny  int64 `json:"deny"`
}

// statusState is shared by the daemons (counters) and the status endpoint.
type statusState struct {
	bottle  string
	daemons []DaemonStatus // written before serving starts, read-only after
	ready   atomic.Bool
	allow   atomic.Int64
	deny    atomic.Int64
}

func (s *statusState) snapshot() Status {
	return Status{
		Bottle:    s.bottle,
		Ready:     s.ready.Load(),
		Daemons:   s.daemons,
		Decisions: DecisionCounts{Allow: s.allow.Load(), Deny: s.deny.Load()},
	}
}

type statusServer struct {
	ln  net.Listener
	srv *http.Server
}

func listenStatus(addr netip.AddrPort, st *statusState, log zerolog.Logger) (*statusServer, error) {
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("status: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st.snapshot())
	})
	return &statusServer{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          httpErrorLog(log, "status"),
	}}, nil
}

func (s *statusServer) addr() string { return s.ln.Addr().String() }

func (s *statusServer) serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("status: %w", err)
	}
	return nil
}

func (s *statusServer) shutdown(ctx context.Context) {
	_ = s.ln.Close() // when serve never ran
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
}

// QueryStatus asks the status endpoint at addr (DefaultStatusAddr when
// empty) for the bundle's status. The caller checks Status.Ready.
func QueryStatus(ctx context.Context, addr string) (Status, error) {
	if addr == "" {
		addr = DefaultStatusAddr
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return Status{}, fmt.Errorf("query bundle status at %s: %w", addr, err)
	}
	// No proxy from the environment: the endpoint is on loopback.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return Status{}, fmt.Errorf("query bundle status at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return Status{}, fmt.Errorf("query bundle status at %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(b)))
	}
	var st Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("query bundle status at %s: decode: %w", addr, err)
	}
	return st, nil
}

// httpErrorLog routes an http.Server's own messages (accept errors,
// panics) to the JSON log at warn level, each cut to maxReasonLen bytes.
func httpErrorLog(log zerolog.Logger, daemon string) *stdlog.Logger {
	return stdlog.New(logWriter{log: log, daemon: daemon}, "", 0)
}

type logWriter struct {
	log    zerolog.Logger
	daemon string
}

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Warn().Str(FieldDaemon, w.daemon).Msg(clip(strings.TrimSpace(string(p)), maxReasonLen))
	return len(p), nil
}

// PrintStatus asks the status endpoint of the bundle this runs in
// (BOTTLE_STATUS_ADDR, else DefaultStatusAddr) and writes its answer as
// JSON to w; it fails unless the daemons are ready. It is `status` of the
// bundle program.
func PrintStatus(ctx context.Context, w io.Writer, getenv func(string) string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := QueryStatus(ctx, strings.TrimSpace(getenv("BOTTLE_STATUS_ADDR")))
	if err != nil {
		return err
	}
	if err := json.NewEncoder(w).Encode(st); err != nil {
		return err
	}
	if !st.Ready {
		return errors.New("the bundle's daemons are not ready")
	}
	return nil
}
