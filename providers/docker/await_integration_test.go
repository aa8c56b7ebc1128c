package docker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/guest"
)

// TestIntegrationAwaitRunning: an agent whose command exits is reported
// with its code and output; one that runs is let go within the bound.
func TestIntegrationAwaitRunning(t *testing.T) {
	t.Parallel()
	e := newIT(t)
	dies, lives := e.newBottle(t, ""), e.newBottle(t, "")
	// The agent dies when the test says so, during the wait: however
	// slow the engine is to make the bottle.
	dies.Spec.Agent.Command = []string{"sh", "-c", "echo starting; while [ ! -e /die ]; do sleep 0.2; done; echo boom; exit 3"}
	lives.Spec.Agent.Command = []string{"sleep", "300"}
	e.run(t, []bottle.Bottle{lives, dies}, false)

	// The bound is wide: an agent counts as survived once it has run for
	// the bound since its start, and a loaded engine may take seconds to
	// run the exec below. The wait must end at the death, not the bound.
	const within = 2 * time.Minute
	kill := make(chan error, 1)
	time.AfterFunc(time.Second, func() {
		g, err := e.p.Guest(context.Background(), dies.Metadata.Name, bottle.RoleAgent)
		if err == nil {
			_, err = g.Exec(context.Background(), guest.ExecOptions{Cmd: []string{"sh", "-c", "touch /die"}}, guest.Stdio{})
		}
		kill <- err
	})
	start := time.Now()
	err := e.p.AwaitRunning(t.Context(), []string{dies.Metadata.Name}, within)
	if kerr := <-kill; kerr != nil {
		t.Fatalf("tell the agent to die: %v", kerr)
	}
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
	if took > within/2 {
		t.Errorf("AwaitRunning took %s: it waited for the bound (%s), not for the death", took, within)
	}

	// The running agent is let go at the bound, and only the dead one
	// (dead already when asked) is blamed.
	const short = 3 * time.Second
	start = time.Now()
	err = e.p.AwaitRunning(t.Context(), []string{dies.Metadata.Name, lives.Metadata.Name}, short)
	if err == nil || !strings.Contains(err.Error(), "code 3") {
		t.Fatalf("AwaitRunning of a dead and a running agent: %v", err)
	}
	if strings.Contains(err.Error(), lives.Metadata.Name) {
		t.Errorf("the running agent is blamed too: %v", err)
	}
	if took := time.Since(start); took > short+5*time.Second {
		t.Errorf("AwaitRunning of a running agent took %s, bound %s", took, short)
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
