package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// logTail is how many lines of a dead agent's output an error shows.
const logTail = 20

// AwaitRunning waits until the agent container of each of the bottles
// (ours by label; bottles without a docker agent, such as smolvm ones, are
// skipped) has been running for within since it started, and reports the
// agents that exited meanwhile: the bottle, the exit code and the last
// lines of the agent's output. An agent that started longer than within
// ago and still runs has survived already. It returns as soon as each
// agent is known to have died or survived, and never waits longer than
// within (plus the engine calls).
//
// It watches the engine's events for the agents' deaths rather than
// polling; the events are asked before the agents' state is read, so no
// exit falls between the two. Callers run it alongside the self-test,
// which needs a running agent too: an agent whose command exits at once
// then fails with its own output rather than with a failed probe.
func (p *Provider) AwaitRunning(ctx context.Context, bottles []string, within time.Duration) error {
	if len(bottles) == 0 {
		return nil
	}
	g, err := p.guestEngine()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", bottle.LabelRole+"="+bottle.RoleAgent))
	for _, b := range bottles {
		f.Add("name", "^/"+regexp.QuoteMeta(bottle.ResourceName(b, bottle.RoleAgent))+"$")
	}
	cs, err := g.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("find the agents of %s: %w", strings.Join(bottles, ", "), err)
	}
	agents := map[string]string{} // container ID -> bottle
	ef := filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", string(events.ActionDie)), filters.Arg("event", string(events.ActionOOM)))
	for _, b := range bottles {
		if c, ok := pickOurs(cs, b, bottle.RoleAgent); ok {
			agents[c.ID] = b
			ef.Add("container", c.ID)
		}
	}
	if len(agents) == 0 {
		return nil
	}
	// Events from a little before now: one that happened while the
	// subscription was being set up is replayed. An old one (a death
	// before the last start) is told apart by the inspect below.
	start := time.Now()
	msgs, errs := g.Events(ctx, events.ListOptions{Filters: ef, Since: fmt.Sprint(start.Add(-5 * time.Second).Unix())})
	deadline := map[string]time.Time{} // running agents -> when they have survived
	var dead []error
	check := func(id string) error {
		insp, err := g.ContainerInspect(ctx, id)
		if err != nil {
			return fmt.Errorf("look at the agent of bottle %s: %w", agents[id], err)
		}
		if insp.State != nil && insp.State.Running {
			until := start.Add(within)
			if t, err := time.Parse(time.RFC3339Nano, insp.State.StartedAt); err == nil && t.Add(within).Before(until) {
				until = t.Add(within)
			}
			deadline[id] = until
			return nil
		}
		delete(deadline, id)
		dead = append(dead, p.agentDied(ctx, g, agents[id], insp))
		return nil
	}
	for id := range agents {
		if err := check(id); err != nil {
			return err
		}
	}
	for {
		// Drop those that have survived; the nearest deadline is the
		// next time to look.
		now := time.Now()
		var next time.Time
		for id, t := range deadline {
			if !now.Before(t) {
				delete(deadline, id)
			} else if next.IsZero() || t.Before(next) {
				next = t
			}
		}
		if len(deadline) == 0 {
			return errors.Join(dead...)
		}
		timer := time.NewTimer(time.Until(next))
		select {
		case m := <-msgs:
			timer.Stop()
			if _, watched := deadline[m.Actor.ID]; watched {
				zerolog.Ctx(ctx).Debug().Str("bottle", agents[m.Actor.ID]).Str("event", string(m.Action)).Msg("agent event")
				if err := check(m.Actor.ID); err != nil {
					return err
				}
			}
		case err := <-errs:
			timer.Stop()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("watch the agents of %s: %w", strings.Join(bottles, ", "), err)
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
	}
}

// agentDied is the error for an agent that is not running: its exit code
// and its last lines of output, and what to do.
func (p *Provider) agentDied(ctx context.Context, g guestEngine, bottleName string, insp container.InspectResponse) error {
	name := bottle.ResourceName(bottleName, bottle.RoleAgent)
	what := "is not running"
	if st := insp.State; st != nil {
		what = fmt.Sprintf("exited with code %d", st.ExitCode)
		started, err1 := time.Parse(time.RFC3339Nano, st.StartedAt)
		finished, err2 := time.Parse(time.RFC3339Nano, st.FinishedAt)
		if err1 == nil && err2 == nil && finished.After(started) {
			what += fmt.Sprintf(", %s after its start", finished.Sub(started).Round(100*time.Millisecond))
		}
		if st.OOMKilled {
			what += " (killed: out of memory; see spec.agent.memory)"
		}
		if st.Status != "exited" && st.Status != "dead" {
			what = "is " + st.Status
		}
	}
	out := "(its output could not be read)"
	if tail, err := agentTail(ctx, g, insp); err == nil {
		out = "its last output:\n" + indent(tail)
		if strings.TrimSpace(tail) == "" {
			out = "it wrote nothing"
		}
	}
	return fmt.Errorf("the agent of bottle %s %s; %s\nfix spec.agent.command or the image (see docker logs %s)",
		bottleName, what, out, name)
}

// agentTail reads the last lines the agent wrote, stdout and stderr.
func agentTail(ctx context.Context, g guestEngine, insp container.InspectResponse) (string, error) {
	rc, err := g.ContainerLogs(ctx, insp.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(logTail)})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var buf bytes.Buffer
	lr := io.LimitReader(rc, 64<<10)
	if insp.Config != nil && insp.Config.Tty {
		_, err = io.Copy(&buf, lr)
	} else {
		_, err = stdcopy.StdCopy(&buf, &buf, lr)
	}
	return buf.String(), err
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "  " + strings.Join(lines, "\n  ")
}
