package docker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
)

// TestIntegrationAwaitRunning: an agent whose command exits is reported
// with its code and output; one that runs is let go within the bound.
func TestIntegrationAwaitRunning(t *testing.T) {
	t.Parallel()
	e := newIT(t)
	dies, lives := e.newBottle(t, ""), e.newBottle(t, "")
	dies.Spec.Agent.Command = []string{"sh", "-c", "echo starting; sleep 3; echo boom; exit 3"}
	lives.Spec.Agent.Command = []string{"sleep", "60"}
	e.run(t, []bottle.Bottle{lives}, false)
	// The run converges before the agent dies, unless the engine is slow
	// enough for the agent to die before the run's last look.
	if _, err := reconcile.Run(t.Context(), []reconcile.Provider{e.p}, []bottle.Bottle{dies}, reconcile.Options{MaxRounds: 1}); err != nil &&
		!errors.Is(err, reconcile.ErrNotConverged) {
		t.Fatalf("apply: %v", err)
	}

	const within = 5 * time.Second
	start := time.Now()
	err := e.p.AwaitRunning(t.Context(), []string{dies.Metadata.Name, lives.Metadata.Name}, within)
	took := time.Since(start)
	t.Logf("AwaitRunning: %v (after %s)", err, took)
	if err == nil {
		t.Fatal("AwaitRunning: nil, want the agent that exited")
	}
	for _, want := range []string{"the agent of bottle " + dies.Metadata.Name + " exited with code 3", "boom", "starting", "fix spec.agent.command"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("AwaitRunning error:\n%v\nwant it to contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), lives.Metadata.Name) {
		t.Errorf("the running agent is blamed too: %v", err)
	}
	if took > within+10*time.Second {
		t.Errorf("AwaitRunning took %s, bound %s", took, within)
	}

	start = time.Now()
	if err := e.p.AwaitRunning(t.Context(), []string{lives.Metadata.Name}, within); err != nil {
		t.Fatalf("AwaitRunning of a running agent: %v", err)
	}
	if took := time.Since(start); took > within+5*time.Second {
		t.Errorf("AwaitRunning of a running agent took %s, bound %s", took, within)
	}
	// An agent already dead when asked is reported at once.
	start = time.Now()
	if err := e.p.AwaitRunning(t.Context(), []string{dies.Metadata.Name}, time.Minute); err == nil || !strings.Contains(err.Error(), "code 3") {
		t.Fatalf("AwaitRunning of a dead agent: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("AwaitRunning of a dead agent took %s", took)
	}
}
