package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// recorder is a provider that records the calls it gets.
type recorder struct {
	mu      sync.Mutex
	calls   []string
	fail    string        // "Action resourceID" that fails
	delay   time.Duration // per call
	active  int
	maxBusy int
}

func (r *recorder) Name() string                               { return "docker" }
func (r *recorder) Resolve([]*bottle.Bottle, []Resource) error { return nil }

func (r *recorder) Desired([]*bottle.Bottle, []Resource) ([]Resource, error) {
	return nil, nil
}
func (r *recorder) Observe(context.Context, Scope) ([]Resource, error) { return nil, nil }
func (r *recorder) Apply(ctx context.Context, s Step) error {
	call := s.Action.String() + " " + s.Resource.ID()
	r.mu.Lock()
	r.active++
	r.maxBusy = max(r.maxBusy, r.active)
	r.mu.Unlock()
	select {
	case <-time.After(r.delay):
	case <-ctx.Done():
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active--
	r.calls = append(r.calls, call)
	if call == r.fail {
		return errors.New("boom")
	}
	return nil
}

// before reports whether call a was recorded before call b.
func before(calls []string, a, b string) bool {
	ia, ib := slices.Index(calls, a), slices.Index(calls, b)
	return ia >= 0 && ib >= 0 && ia < ib
}

func TestExecuteOrdersReplaceAroundDependents(t *testing.T) {
	t.Parallel()
	changed := hello
	changed.subnet = "10.0.9"
	plan, err := Diff(changed.desired(), hello.observed(), Scope{Bottles: []string{"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	if _, err := Execute(t.Context(), plan, map[string]Provider{"docker": rec}, time.Second); err != nil {
		t.Fatal(err)
	}
	c := rec.calls
	if len(c) != 6 {
		t.Fatalf("calls = %q, want 3 deletes and 3 creates", c)
	}
	for _, pair := range [][2]string{
		{"Delete docker-container:hello/agent", "Delete docker-network:hello/internal"},
		{"Delete docker-container:hello/bundle", "Delete docker-network:hello/internal"},
		{"Delete docker-network:hello/internal", "Create docker-network:hello/internal"},
		{"Create docker-network:hello/internal", "Create docker-container:hello/bundle"},
		{"Create docker-network:hello/internal", "Create docker-container:hello/agent"},
		{"Delete docker-container:hello/agent", "Create docker-container:hello/agent"},
	} {
		if !before(c, pair[0], pair[1]) {
			t.Errorf("%q did not come before %q in %q", pair[0], pair[1], c)
		}
	}
}

func TestExecuteDestroyOrder(t *testing.T) {
	t.Parallel()
	plan, err := Diff(nil, hello.observed(), Scope{Bottles: []string{"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	res, err := Execute(t.Context(), plan, map[string]Provider{"docker": rec}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("results = %+v", res)
	}
	for _, ctr := range []string{"agent", "bundle"} {
		if !before(rec.calls, "Delete docker-container:hello/"+ctr, "Delete docker-network:hello/internal") {
			t.Errorf("container %s not deleted before its network: %q", ctr, rec.calls)
		}
	}
	if !before(rec.calls, "Delete docker-container:hello/bundle", "Delete docker-network:hello/egress") {
		t.Errorf("bundle not deleted before the egress network: %q", rec.calls)
	}
}

func TestExecuteRunsIndependentStepsInParallel(t *testing.T) {
	t.Parallel()
	var desired []Resource
	var scope []string
	for i := range 5 {
		w := world{bottle: fmt.Sprintf("b%d", i), subnet: fmt.Sprintf("10.0.%d", i), env: "e", bundle: "none"}
		desired = append(desired, w.desired()...)
		scope = append(scope, w.bottle)
	}
	plan, err := Diff(desired, nil, Scope{Bottles: scope})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{delay: 20 * time.Millisecond}
	if _, err := Execute(t.Context(), plan, map[string]Provider{"docker": rec}, time.Second); err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) != 20 {
		t.Fatalf("got %d calls, want 20", len(rec.calls))
	}
	// 10 networks have no dependencies: all may run at once.
	if rec.maxBusy < 5 {
		t.Fatalf("at most %d calls ran at once; independent steps must run in parallel", rec.maxBusy)
	}
}

func TestExecuteFirstErrorCancelsTheRest(t *testing.T) {
	t.Parallel()
	plan, err := Diff(hello.desired(), nil, Scope{Bottles: []string{"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{fail: "Create docker-network:hello/internal"}
	_, err = Execute(t.Context(), plan, map[string]Provider{"docker": rec}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "step #2: create docker-network:hello/internal: boom") {
		t.Fatalf("Execute error = %v", err)
	}
	for _, c := range rec.calls {
		if strings.HasPrefix(c, "Create docker-container") {
			t.Errorf("%s ran after the network it depends on failed", c)
		}
	}
}

func TestExecuteStartsNothingAfterCancel(t *testing.T) {
	t.Parallel()
	plan, err := Diff(hello.desired(), nil, Scope{Bottles: []string{"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	rec := &recorder{}
	_, err = Execute(ctx, plan, map[string]Provider{"docker": rec}, time.Second)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Execute error = %v, want context.Canceled", err)
	}
	if len(rec.calls) != 0 {
		t.Fatalf("calls after cancel: %q", rec.calls)
	}
}

func TestExecuteUnknownProvider(t *testing.T) {
	t.Parallel()
	plan, _ := Diff(hello.desired(), nil, Scope{Bottles: []string{"hello"}})
	if _, err := Execute(t.Context(), plan, map[string]Provider{}, time.Second); err == nil || !strings.Contains(err.Error(), `no provider "docker"`) {
		t.Fatalf("Execute error = %v", err)
	}
}

// blocker is a provider whose Create of the internal network blocks until
// released or until its context is done, recording which.
type blocker struct {
	recorder
	started  chan struct{}
	release  chan struct{}
	finished chan string
}

func (b *blocker) Apply(ctx context.Context, s Step) error {
	if s.Resource.Role != "internal" {
		return b.recorder.Apply(ctx, s)
	}
	close(b.started)
	select {
	case <-b.release:
		b.finished <- "finished"
	case <-ctx.Done():
		b.finished <- "aborted"
	}
	return b.recorder.Apply(ctx, s)
}

func TestExecuteLetsRunningStepsFinishAfterInterrupt(t *testing.T) {
	t.Parallel()
	plan, _ := Diff(hello.desired(), nil, Scope{Bottles: []string{"hello"}})
	b := &blocker{started: make(chan struct{}), release: make(chan struct{}), finished: make(chan string, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := Execute(ctx, plan, map[string]Provider{"docker": b}, time.Minute)
		done <- err
	}()
	<-b.started
	cancel()                          // the interrupt
	time.Sleep(50 * time.Millisecond) // the running step must not be aborted
	close(b.release)
	if got := <-b.finished; got != "finished" {
		t.Fatalf("the running step was %s by the interrupt", got)
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Execute = %v, want it to report the interrupt", err)
	}
	for _, c := range b.calls {
		if strings.HasPrefix(c, "Create docker-container") {
			t.Fatalf("%s started after the interrupt", c)
		}
	}
}

func TestExecuteAbortsRunningStepsAfterTheGrace(t *testing.T) {
	t.Parallel()
	plan, _ := Diff(hello.desired(), nil, Scope{Bottles: []string{"hello"}})
	b := &blocker{started: make(chan struct{}), release: make(chan struct{}), finished: make(chan string, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-b.started
		cancel()
	}()
	_, err := Execute(ctx, plan, map[string]Provider{"docker": b}, 100*time.Millisecond)
	if got := <-b.finished; got != "aborted" || err == nil {
		t.Fatalf("after the grace the running step was %s (err %v), want aborted", got, err)
	}
}
