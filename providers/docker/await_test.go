package docker

import (
	"context"
	"encoding/binary"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// awaitEngine is the fake engine with what AwaitRunning needs on top:
// events, inspect and logs. The other guest calls are not used.
type awaitEngine struct {
	*fakeEngine
	amu      sync.Mutex
	msgs     chan events.Message
	states   map[string]*container.State // by ID
	logs     map[string]string
	eventOpt events.ListOptions
}

var _ guestEngine = (*awaitEngine)(nil)

func (a *awaitEngine) Events(_ context.Context, o events.ListOptions) (<-chan events.Message, <-chan error) {
	a.mu.Lock()
	_ = a.record("Events")
	a.mu.Unlock()
	a.eventOpt = o
	return a.msgs, make(chan error)
}

func (a *awaitEngine) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	a.mu.Lock()
	_ = a.record("ContainerInspect", id)
	a.mu.Unlock()
	a.amu.Lock()
	defer a.amu.Unlock()
	st := *a.states[id]
	return container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: id, State: &st}, Config: &container.Config{}}, nil
}

func (a *awaitEngine) ContainerLogs(_ context.Context, id string, o container.LogsOptions) (io.ReadCloser, error) {
	a.mu.Lock()
	_ = a.record("ContainerLogs", id, o.Tail)
	a.mu.Unlock()
	// Multiplexed, as the engine sends a container's output without a
	// terminal: stream 1, big-endian length.
	out := a.logs[id]
	hdr := make([]byte, 8)
	hdr[0] = 1
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(out)))
	return io.NopCloser(strings.NewReader(string(hdr) + out)), nil
}

func (a *awaitEngine) die(id string, code int) {
	a.amu.Lock()
	a.states[id] = &container.State{Status: "exited", ExitCode: code,
		StartedAt: "2026-01-01T00:00:00Z", FinishedAt: "2026-01-01T00:00:02Z"}
	a.amu.Unlock()
	a.msgs <- events.Message{Type: events.ContainerEventType, Action: events.ActionDie, Actor: events.Actor{ID: id}}
}

func (a *awaitEngine) ImageSave(context.Context, []string, ...client.ImageSaveOption) (io.ReadCloser, error) {
	panic("unused")
}

func (a *awaitEngine) ContainerExecCreate(context.Context, string, container.ExecOptions) (container.ExecCreateResponse, error) {
	panic("unused")
}

func (a *awaitEngine) ContainerExecAttach(context.Context, string, container.ExecAttachOptions) (types.HijackedResponse, error) {
	panic("unused")
}

func (a *awaitEngine) ContainerExecInspect(context.Context, string) (container.ExecInspect, error) {
	panic("unused")
}

func (a *awaitEngine) ContainerExecResize(context.Context, string, container.ResizeOptions) error {
	panic("unused")
}

func (a *awaitEngine) CopyFromContainer(context.Context, string, string) (io.ReadCloser, container.PathStat, error) {
	panic("unused")
}

// newAwaitEngine has the running agents of the bottles, started now.
func newAwaitEngine(bottles ...string) *awaitEngine {
	a := &awaitEngine{fakeEngine: newFakeEngine(), msgs: make(chan events.Message), states: map[string]*container.State{}, logs: map[string]string{}}
	for _, b := range bottles {
		name := bottle.ResourceName(b, bottle.RoleAgent)
		a.containers[name] = container.Summary{ID: "id-" + name, Names: []string{"/" + name}, State: "running",
			Labels: managedLabels(b, bottle.RoleAgent, "h")}
		a.states["id-"+name] = &container.State{Status: "running", Running: true, StartedAt: time.Now().Format(time.RFC3339Nano)}
	}
	return a
}

func TestAwaitRunning(t *testing.T) {
	t.Parallel()
	t.Run("a death is reported with code and output, the others watched to the bound", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := newAwaitEngine("dies", "lives")
			a.logs["id-bottle-dies-agent"] = "starting\nboom\n"
			p := newProvider(a, Options{})
			done := make(chan error)
			start := time.Now()
			go func() { done <- p.AwaitRunning(t.Context(), []string{"dies", "lives", "smolvm"}, time.Minute) }()
			synctest.Wait()
			a.die("id-bottle-dies-agent", 3)
			// The other agent is watched to the bound.
			select {
			case err := <-done:
				t.Fatalf("returned before the running agent's bound: %v", err)
			case <-time.After(30 * time.Second):
			}
			err := <-done
			if took := time.Since(start); took != time.Minute {
				t.Errorf("returned after %s, want the bound, 1m", took)
			}
			want := "the agent of bottle dies exited with code 3, 2s after its start; its last output:\n  starting\n  boom\n" +
				"fix spec.agent.command or the image (see docker logs bottle-dies-agent)"
			if err == nil || err.Error() != want {
				t.Errorf("error:\n%v\nwant:\n%s", err, want)
			}
			// The events are asked before any state is read.
			calls := a.callLog()
			if ev, in := slices.Index(calls, "Events"), slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, "ContainerInspect") }); ev < 0 || in < ev {
				t.Errorf("calls %q: the events must be asked before the first inspect", calls)
			}
			if !slices.Contains(calls, "ContainerLogs id-bottle-dies-agent 20") {
				t.Errorf("calls %q: want the last 20 lines of the dead agent", calls)
			}
			f := a.eventOpt.Filters
			if !slices.Equal(slices.Sorted(slices.Values(f.Get("container"))), []string{"id-bottle-dies-agent", "id-bottle-lives-agent"}) ||
				!f.ExactMatch("event", "die") || !f.ExactMatch("event", "oom") || a.eventOpt.Since == "" {
				t.Errorf("events asked with %+v", a.eventOpt)
			}
		})
	})
	t.Run("agents that ran long enough return at once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := newAwaitEngine("old")
			a.states["id-bottle-old-agent"].StartedAt = time.Now().Add(-time.Hour).Format(time.RFC3339Nano)
			start := time.Now()
			if err := newProvider(a, Options{}).AwaitRunning(t.Context(), []string{"old"}, time.Minute); err != nil || time.Since(start) != 0 {
				t.Errorf("AwaitRunning = %v after %s, want nil at once", err, time.Since(start))
			}
		})
	})
	t.Run("all dead returns before the bound", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := newAwaitEngine("dies")
			p := newProvider(a, Options{})
			done := make(chan error)
			go func() { done <- p.AwaitRunning(t.Context(), []string{"dies"}, time.Minute) }()
			synctest.Wait()
			start := time.Now()
			a.die("id-bottle-dies-agent", 1)
			if err := <-done; err == nil || !strings.Contains(err.Error(), "code 1") || time.Since(start) != 0 {
				t.Errorf("AwaitRunning = %v after %s", err, time.Since(start))
			}
		})
	})
	t.Run("no docker agents makes no watch", func(t *testing.T) {
		a := newAwaitEngine()
		if err := newProvider(a, Options{}).AwaitRunning(t.Context(), []string{"smolvm"}, time.Minute); err != nil || slices.Contains(a.callLog(), "Events") {
			t.Errorf("AwaitRunning = %v, calls %q", err, a.callLog())
		}
	})
}
