package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// A floor removes a bottle that bottle-apply made with raw Docker API calls
// from this process: no process to start, no plan, no executor. It is the
// least time any client can take to destroy a bottle with a given order of
// calls, and it says how much of bottle-apply's destroy is the engine's.
type floorOrder struct {
	name string
	// detach disconnects every container from its networks before removing
	// it, so that a network can go as soon as its endpoints are gone
	// instead of once its containers are.
	detach bool
}

var floorOrders = []floorOrder{
	{name: "destroy floor: raw calls, bottle-apply's order"},
	{name: "destroy floor: raw calls, detach first", detach: true},
}

// floor lists the bottle's resources by label (in parallel, as
// bottle-apply's observe does) and removes them in the given order, through
// the counting proxy.
func (b *bench) floor(bottleName string, o floorOrder) (sample, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	if b.raw == nil {
		c, err := client.NewClientWithOpts(client.WithHost(b.px.Host()), client.WithAPIVersionNegotiation())
		if err != nil {
			return sample{}, err
		}
		b.raw = c
	}
	b.raw.NegotiateAPIVersion(ctx) // outside the measurement: a ping, the first time
	b.takeCalls()
	s := sample{Start: time.Now()}
	err := rawDestroy(ctx, b.raw, bottleName, o.detach)
	s.Wall = time.Since(s.Start)
	s.Calls = b.takeCalls()
	if err != nil {
		return s, fmt.Errorf("%s: %w", o.name, err)
	}
	return s, nil
}

func rawDestroy(parent context.Context, c *client.Client, bottleName string, detach bool) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", bottle.LabelName+"="+bottleName))
	var (
		ctrs []container.Summary
		nets []network.Summary
		errs [2]error
		wg   sync.WaitGroup
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		ctrs, errs[0] = c.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	}()
	go func() { defer wg.Done(); nets, errs[1] = c.NetworkList(ctx, network.ListOptions{Filters: f}) }()
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return err
	}
	// state[network ID] counts the containers still holding an endpoint on
	// it; free is closed when none is left.
	type netState struct {
		left int
		free chan struct{}
	}
	var mu sync.Mutex
	state := map[string]*netState{}
	for _, n := range nets {
		state[n.ID] = &netState{free: make(chan struct{})}
	}
	attached := make([][]string, len(ctrs))
	for i, ct := range ctrs {
		if ct.NetworkSettings == nil {
			continue
		}
		for _, ep := range ct.NetworkSettings.Networks {
			if st := state[ep.NetworkID]; st != nil {
				st.left++
				attached[i] = append(attached[i], ep.NetworkID)
			}
		}
	}
	// The network fewest containers hold comes free soonest: leave it first
	// (the bundle leaves its egress network before the internal one, which
	// waits for the agent too).
	for _, ids := range attached {
		slices.SortFunc(ids, func(x, y string) int {
			return cmp.Or(state[x].left-state[y].left, strings.Compare(x, y))
		})
	}
	for _, st := range state {
		if st.left == 0 {
			close(st.free)
		}
	}
	release := func(id string) {
		mu.Lock()
		defer mu.Unlock()
		if st := state[id]; st != nil {
			if st.left--; st.left == 0 {
				close(st.free)
			}
		}
	}
	errc := make(chan error, len(ctrs)+len(nets))
	fail := func(err error) {
		errc <- err
		cancel() // the networks it held will not come free
	}
	for i, ct := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if detach {
				for _, id := range attached[i] {
					if err := c.NetworkDisconnect(ctx, id, ct.ID, true); err != nil {
						fail(fmt.Errorf("disconnect %s from %s: %w", ct.ID[:12], id[:12], err))
						return
					}
					release(id)
				}
			}
			if err := c.ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
				fail(fmt.Errorf("remove container %s: %w", ct.ID[:12], err))
				return
			}
			if !detach {
				for _, id := range attached[i] {
					release(id)
				}
			}
		}()
	}
	for _, n := range nets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-state[n.ID].free:
			case <-ctx.Done():
				return // a container failed, or the bench is stopping
			}
			if err := c.NetworkRemove(ctx, n.ID); err != nil {
				fail(fmt.Errorf("remove network %s: %w", n.Name, err))
			}
		}()
	}
	wg.Wait()
	close(errc)
	all := []error{parent.Err()} // the bench is stopping: some networks were left
	for err := range errc {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// timeline prints the calls of a run, one a line, with when each started
// and how long the engine took, relative to the run's start.
func timeline(s sample) string {
	var lines []string
	for _, c := range s.Calls {
		// IDs are shortened as the docker CLI does.
		seg := strings.Split(c.Name, "/")
		for i, p := range seg {
			if len(p) == 64 {
				seg[i] = p[:12]
			}
		}
		lines = append(lines, fmt.Sprintf("    %7.1f ms  %6.1f ms  %s", ms(c.Start.Sub(s.Start)), ms(c.Dur), strings.Join(seg, "/")))
	}
	return strings.Join(lines, "\n")
}
