package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/rs/zerolog"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/bundlebin"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// itEnv is what an integration test needs: a counting client, a provider
// over it, a local agent image.
type itEnv struct {
	c     *client.Client
	cnt   *testenv.Counter
	p     *Provider
	agent string
}

func newIT(t *testing.T) *itEnv {
	t.Helper()
	c, cnt := testenv.CountingDocker(t)
	builds := bundlebin.Dir(filepath.Dir(testenv.BundleBinary(t, runtime.GOARCH)))
	// A test-only bundle tag, removed at the end, so that parallel test
	// packages never remove each other's image.
	ref := "bottle-apply-test/bundle:" + testenv.Name("t")
	t.Cleanup(func() {
		_, _ = c.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true})
	})
	p := newProvider(c, Options{BundleImage: ref, BundleBinary: builds.Path, Version: "test"})
	return &itEnv{c: c, cnt: cnt, p: p, agent: testenv.AgentImage(t, c)}
}

func (e *itEnv) newBottle(t *testing.T, subnet string) bottle.Bottle {
	t.Helper()
	name := testenv.Name("it")
	testenv.CleanupBottle(t, e.c, name)
	b := spec.Bottle{APIVersion: spec.APIVersion, Kind: spec.KindBottle, Metadata: spec.Metadata{Name: name},
		Spec: spec.Spec{Backend: spec.BackendDocker,
			Agent:   spec.Agent{Image: e.agent, Command: []string{"sleep", "infinity"}, Env: map[string]string{"FOO": "bar"}},
			Network: spec.Network{Subnet: subnet},
		}}
	b.Default()
	return bottle.New(b)
}

func (e *itEnv) run(t *testing.T, b []bottle.Bottle, destroy bool) *reconcile.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	ctx = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel).WithContext(ctx)
	res, err := reconcile.Run(ctx, []reconcile.Provider{e.p}, b, reconcile.Options{Destroy: destroy})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if !res.Converged {
		t.Fatalf("run did not converge")
	}
	return res
}

type seen struct {
	nets map[string]network.Summary
	ctrs map[string]container.Summary
}

func (e *itEnv) look(t *testing.T, bottleName string) seen {
	t.Helper()
	ctx := context.Background()
	f := filters.NewArgs(filters.Arg("label", bottle.LabelName+"="+bottleName))
	ns, err := e.c.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := e.c.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	s := seen{nets: map[string]network.Summary{}, ctrs: map[string]container.Summary{}}
	for _, n := range ns {
		s.nets[n.Labels[bottle.LabelRole]] = n
	}
	for _, c := range cs {
		s.ctrs[c.Labels[bottle.LabelRole]] = c
	}
	return s
}

func stepsOf(res *reconcile.Result) []string {
	var out []string
	for _, s := range res.Plan.Steps {
		if s.Action != reconcile.NoOp {
			out = append(out, fmt.Sprintf("%s %s: %s", s.Action, strings.SplitN(s.ResourceID, "/", 2)[1], s.Reason))
		}
	}
	return out
}

func wantSteps(t *testing.T, res *reconcile.Result, want ...string) {
	t.Helper()
	if got := stepsOf(res); !slices.Equal(got, want) {
		t.Fatalf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestIntegrationLifecycle(t *testing.T) {
	t.Parallel()
	e := newIT(t)
	b := e.newBottle(t, "")
	name := b.Metadata.Name

	// Apply from nothing.
	res := e.run(t, []bottle.Bottle{b}, false)
	if res.Plan.Count(reconcile.Create) != 4 || res.Rounds != 1 {
		t.Fatalf("first apply: %d creates in %d rounds:\n%s", res.Plan.Count(reconcile.Create), res.Rounds, res.Plan)
	}
	s := e.look(t, name)
	in, eg := s.nets[bottle.RoleInternal], s.nets[bottle.RoleEgress]
	if !in.Internal || eg.Internal || len(in.IPAM.Config) != 1 {
		t.Fatalf("networks: internal=%+v egress=%+v", in, eg)
	}
	subnet := in.IPAM.Config[0].Subnet
	pfx, err := bottle.ParsePrefix(subnet)
	if err != nil || !strings.HasPrefix(subnet, "10.213.") {
		t.Fatalf("internal subnet %q, want one from the 10.213.0.0/16 pool", subnet)
	}
	bundleIP := spec.DefaultBundleIP(pfx).String()
	bundle, agent := s.ctrs[bottle.RoleBundle], s.ctrs[bottle.RoleAgent]
	if bundle.State != "running" || agent.State != "running" {
		t.Fatalf("bundle %s, agent %s; want both running", bundle.State, agent.State)
	}
	if ep := bundle.NetworkSettings.Networks[in.Name]; ep == nil || ep.IPAddress != bundleIP {
		t.Fatalf("bundle on %s: %+v, want IP %s", in.Name, ep, bundleIP)
	}
	if bundle.NetworkSettings.Networks[eg.Name] == nil {
		t.Fatalf("bundle is not on the egress network: %v", bundle.NetworkSettings.Networks)
	}
	if len(agent.NetworkSettings.Networks) != 1 || agent.NetworkSettings.Networks[in.Name] == nil {
		t.Fatalf("agent networks = %v, want only %s", agent.NetworkSettings.Networks, in.Name)
	}
	for _, l := range []map[string]string{in.Labels, eg.Labels, bundle.Labels, agent.Labels} {
		if l[bottle.LabelName] != name || len(l[bottle.LabelHash]) != 64 {
			t.Fatalf("labels = %v", l)
		}
	}
	insp, err := e.c.ContainerInspect(t.Context(), agent.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(insp.Config.Env, "HTTPS_PROXY=http://"+bundleIP+":8888") || !slices.Contains(insp.Config.Env, "FOO=bar") ||
		!slices.Contains(insp.Config.Env, "NODE_USE_ENV_PROXY=1") {
		t.Fatalf("agent env = %q", insp.Config.Env)
	}
	// The defaults, as the engine took them.
	if h := insp.HostConfig; h.Memory != 8<<30 || h.PidsLimit == nil || *h.PidsLimit != 4096 {
		t.Fatalf("agent limits: memory %d, pids %v; want 8 GiB and 4096", h.Memory, h.PidsLimit)
	}
	binsp, err := e.c.ContainerInspect(t.Context(), bundle.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s := binsp.HostConfig.Sysctls; s["net.ipv4.ip_forward"] != "0" || s["net.ipv6.conf.all.forwarding"] != "0" {
		t.Fatalf("bundle sysctls = %v, want forwarding off", s)
	}
	// And as the kernel has them, read from the bundle's network namespace
	// (the bundle's image has no shell): without the sysctl, a namespace
	// inherits the host's ip_forward, which Docker turns on.
	if got := execInNetns(t, e, bundle.ID, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding"); got != "0\n0\n" {
		t.Fatalf("forwarding in the bundle's namespace: %q, want 0 and 0", got)
	}

	// A second apply changes nothing and writes nothing.
	e.cnt.Reset()
	res = e.run(t, []bottle.Bottle{b}, false)
	calls := e.cnt.Reset()
	if res.Plan.Changes() != 0 || res.Rounds != 0 {
		t.Fatalf("second apply planned:\n%s", res.Plan)
	}
	if w := testenv.Writes(calls); len(w) != 0 {
		t.Fatalf("second apply made write calls: %q", w)
	}
	t.Logf("no-op apply: %d API calls: %q", len(calls), calls)

	// The bundle deleted by hand is recreated; the agent stays.
	if err := e.c.ContainerRemove(t.Context(), bundle.ID, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	res = e.run(t, []bottle.Bottle{b}, false)
	wantSteps(t, res, "Create bundle: not found")
	s = e.look(t, name)
	if s.ctrs[bottle.RoleAgent].ID != agent.ID || s.ctrs[bottle.RoleBundle].State != "running" {
		t.Fatalf("after recreating the bundle: agent %s (was %s), bundle %s", s.ctrs[bottle.RoleAgent].ID, agent.ID, s.ctrs[bottle.RoleBundle].State)
	}

	// The agent stopped by hand is started again.
	timeout := 0
	if err := e.c.ContainerStop(t.Context(), agent.ID, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	res = e.run(t, []bottle.Bottle{b}, false)
	if got := stepsOf(res); len(got) != 1 || !strings.HasPrefix(got[0], "Start agent: stopped (Exited") {
		t.Fatalf("plan after stopping the agent: %q", got)
	}
	s = e.look(t, name)
	if s.ctrs[bottle.RoleAgent].ID != agent.ID || s.ctrs[bottle.RoleAgent].State != "running" {
		t.Fatalf("agent after start: %s %s", s.ctrs[bottle.RoleAgent].ID, s.ctrs[bottle.RoleAgent].State)
	}

	// A changed env replaces only the agent.
	before := s
	b.Spec.Agent.Env = map[string]string{"FOO": "baz"}
	res = e.run(t, []bottle.Bottle{b}, false)
	wantSteps(t, res, "Replace agent: env changed")
	s = e.look(t, name)
	if s.ctrs[bottle.RoleAgent].ID == before.ctrs[bottle.RoleAgent].ID || s.ctrs[bottle.RoleBundle].ID != before.ctrs[bottle.RoleBundle].ID ||
		s.nets[bottle.RoleInternal].ID != before.nets[bottle.RoleInternal].ID {
		t.Fatalf("env change replaced more than the agent")
	}

	// A changed subnet replaces the network, the bundle and the agent.
	before = s
	// From a range no other package takes subnets from (see testenv): a
	// network another package makes meanwhile cannot overlap it.
	newSubnet, _ := bottle.FreeSubnet(netipPool(t, testenv.SubnetsDockerLifecycle), 24, usedSubnets(t, e.c), 0)
	b.Network.Subnet = newSubnet.String()
	b.Network.BundleIP = ""
	b.Default()
	res = e.run(t, []bottle.Bottle{b}, false)
	wantSteps(t, res,
		"Replace internal: subnet changed",
		"Replace agent: ip, proxy changed; network bottle-"+name+"-internal is replaced",
		"Replace bundle: ip changed; network bottle-"+name+"-internal is replaced")
	s = e.look(t, name)
	if s.nets[bottle.RoleInternal].ID == before.nets[bottle.RoleInternal].ID || s.ctrs[bottle.RoleBundle].ID == before.ctrs[bottle.RoleBundle].ID ||
		s.ctrs[bottle.RoleAgent].ID == before.ctrs[bottle.RoleAgent].ID || s.nets[bottle.RoleEgress].ID != before.nets[bottle.RoleEgress].ID {
		t.Fatalf("subnet change did not replace network, bundle and agent (and only them)")
	}
	if got := s.ctrs[bottle.RoleBundle].NetworkSettings.Networks["bottle-"+name+"-internal"].IPAddress; got != spec.DefaultBundleIP(newSubnet).String() {
		t.Fatalf("bundle IP after subnet change = %s", got)
	}

	// Destroy leaves nothing labelled, and destroying again succeeds.
	res = e.run(t, []bottle.Bottle{b}, true)
	if res.Plan.Count(reconcile.Delete) != 4 {
		t.Fatalf("destroy plan:\n%s", res.Plan)
	}
	if left := testenv.Leftovers(t, e.c, name); len(left) != 0 {
		t.Fatalf("left after destroy: %q", left)
	}
	res = e.run(t, []bottle.Bottle{b}, true)
	if res.Plan.Changes() != 0 {
		t.Fatalf("second destroy planned:\n%s", res.Plan)
	}
}

func TestIntegrationRefusesUnlabelledNamesakes(t *testing.T) {
	t.Parallel()
	e := newIT(t)
	cases := []struct {
		kind   string
		create func(name string) (id string, remove func())
		exists func(id string) (labels map[string]string, err error)
	}{
		{KindNetwork, func(name string) (string, func()) {
			n, err := e.c.NetworkCreate(t.Context(), bottle.ResourceName(name, bottle.RoleInternal), network.CreateOptions{Driver: "bridge"})
			if err != nil {
				t.Fatal(err)
			}
			return n.ID, func() { _ = e.c.NetworkRemove(context.Background(), n.ID) }
		}, func(id string) (map[string]string, error) {
			n, err := e.c.NetworkInspect(t.Context(), id, network.InspectOptions{})
			return n.Labels, err
		}},
		{KindContainer, func(name string) (string, func()) {
			c, err := e.c.ContainerCreate(t.Context(), &container.Config{Image: e.agent, Cmd: []string{"sleep", "60"}}, nil, nil, nil,
				bottle.ResourceName(name, bottle.RoleAgent))
			if err != nil {
				t.Fatal(err)
			}
			return c.ID, func() {
				_ = e.c.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
			}
		}, func(id string) (map[string]string, error) {
			c, err := e.c.ContainerInspect(t.Context(), id)
			if err != nil {
				return nil, err
			}
			return c.Config.Labels, nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			b := e.newBottle(t, "")
			name := b.Metadata.Name
			id, remove := tc.create(name)
			t.Cleanup(remove)
			e.cnt.Reset()
			_, err := reconcile.Run(t.Context(), []reconcile.Provider{e.p}, []bottle.Bottle{b}, reconcile.Options{})
			if !errors.Is(err, reconcile.ErrNotManaged) || !strings.Contains(err.Error(), tc.kind+` "bottle-`+name+"-") {
				t.Fatalf("apply error = %v, want a refusal naming the %s", err, tc.kind)
			}
			if w := testenv.Writes(e.cnt.Reset()); len(w) != 0 {
				t.Fatalf("the refused apply wrote: %q", w)
			}
			if left := testenv.Leftovers(t, e.c, name); len(left) != 0 {
				t.Fatalf("the refused apply created %q", left)
			}
			// Destroy leaves it alone too, and says so.
			res, err := reconcile.Run(t.Context(), []reconcile.Provider{e.p}, []bottle.Bottle{b}, reconcile.Options{Destroy: true})
			if err != nil {
				t.Fatalf("destroy: %v", err)
			}
			if len(res.Plan.Warnings) != 1 || !strings.Contains(res.Plan.Warnings[0], "is not managed by bottle-apply") {
				t.Fatalf("destroy warnings = %q", res.Plan.Warnings)
			}
			labels, err := tc.exists(id)
			if err != nil || len(labels) != 0 {
				t.Fatalf("the foreign %s was touched: labels %v, %v", tc.kind, labels, err)
			}
		})
	}
}

func TestIntegrationDirectoryOfThreeBottles(t *testing.T) {
	t.Parallel()
	e := newIT(t)
	dir := t.TempDir()
	var names []string
	for i := range 3 {
		b := e.newBottle(t, "")
		names = append(names, b.Metadata.Name)
		doc := fmt.Sprintf("apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata:\n  name: %s\nspec:\n  agent:\n    image: %s\n    command: [sleep, infinity]\n",
			b.Metadata.Name, e.agent)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("b%d.yaml", i)), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bottles, err := spec.Load([]string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := e.run(t, bottle.NewAll(bottles), false)
	if res.Plan.Count(reconcile.Create) != 12 {
		t.Fatalf("plan:\n%s", res.Plan)
	}
	subnets := map[string]bool{}
	for _, n := range names {
		s := e.look(t, n)
		if len(s.nets) != 2 || len(s.ctrs) != 2 || s.ctrs[bottle.RoleAgent].State != "running" {
			t.Fatalf("bottle %s: %d networks, %d containers", n, len(s.nets), len(s.ctrs))
		}
		subnets[s.nets[bottle.RoleInternal].IPAM.Config[0].Subnet] = true
	}
	if len(subnets) != 3 {
		t.Fatalf("bottles share subnets: %v", subnets)
	}
	// Concurrency: the network creates of different bottles overlapped.
	var nets []reconcile.StepResult
	for _, s := range res.Steps {
		if strings.HasPrefix(s.ResourceID, "docker-network:") && s.Action == reconcile.Create {
			nets = append(nets, s)
		}
	}
	overlap := false
	for i := range nets {
		for j := range nets {
			a, b := nets[i], nets[j]
			if i != j && a.Started.Before(b.Started.Add(b.Duration)) && b.Started.Before(a.Started) {
				overlap = true
			}
		}
	}
	if !overlap {
		t.Fatalf("no two network creates overlapped in time: steps ran one by one")
	}
	if res := e.run(t, bottle.NewAll(bottles), false); res.Plan.Changes() != 0 {
		t.Fatalf("second apply of the directory planned:\n%s", res.Plan)
	}
	e.run(t, bottle.NewAll(bottles), true)
	for _, n := range names {
		if left := testenv.Leftovers(t, e.c, n); len(left) != 0 {
			t.Fatalf("left after destroy: %q", left)
		}
	}
}

func netipPool(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := bottle.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func usedSubnets(t *testing.T, c *client.Client) []netip.Prefix {
	t.Helper()
	ns, err := c.NetworkList(t.Context(), network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, n := range ns {
		for _, cfg := range n.IPAM.Config {
			if p, err := bottle.ParsePrefix(cfg.Subnet); err == nil {
				out = append(out, p)
			}
		}
	}
	return out
}

func TestIntegrationReplaceSafety(t *testing.T) {
	t.Parallel()
	e := newIT(t)
	sub, _ := bottle.FreeSubnet(netipPool(t, testenv.SubnetsDockerReplace), 24, usedSubnets(t, e.c), 0)
	b := e.newBottle(t, sub.String())
	// The bundle takes the address the agent gets by default...
	b.Network.BundleIP = agentAddr(sub, "")
	e.run(t, []bottle.Bottle{b}, false)
	agentBefore := e.look(t, b.Metadata.Name).ctrs[bottle.RoleAgent].ID

	// ...and gives it back: the new agent may only take it once the old
	// bundle is gone.
	b.Network.BundleIP = ""
	b.Default()
	res := e.run(t, []bottle.Bottle{b}, false)
	if res.Plan.Count(reconcile.Replace) != 2 {
		t.Fatalf("plan:\n%s", res.Plan)
	}
	s := e.look(t, b.Metadata.Name)
	if s.ctrs[bottle.RoleAgent].State != "running" || s.ctrs[bottle.RoleBundle].State != "running" {
		t.Fatalf("after swapping addresses: agent %s, bundle %s", s.ctrs[bottle.RoleAgent].State, s.ctrs[bottle.RoleBundle].State)
	}

	// An image that cannot be had does not cost the running agent. The
	// "registry" is a closed port on loopback.
	agent := s.ctrs[bottle.RoleAgent].ID
	if agent == agentBefore {
		t.Fatal("the agent was not replaced when its address changed")
	}
	b.Spec.Agent.Image = "127.0.0.1:1/bottle-apply-test/absent:none"
	_, err := reconcile.Run(t.Context(), []reconcile.Provider{e.p}, []bottle.Bottle{b}, reconcile.Options{})
	if err == nil || !strings.Contains(err.Error(), "is not present locally and pulling it failed") ||
		!strings.Contains(err.Error(), "was left as it is") {
		t.Fatalf("apply with an image that cannot be pulled: %v", err)
	}
	if s := e.look(t, b.Metadata.Name); s.ctrs[bottle.RoleAgent].ID != agent || s.ctrs[bottle.RoleAgent].State != "running" {
		t.Fatalf("the agent was removed for an image that could not be had")
	}
}

func TestIntegrationForeignNetworkIsDrift(t *testing.T) {
	t.Parallel()
	e := newIT(t)
	b := e.newBottle(t, "")
	e.run(t, []bottle.Bottle{b}, false)
	agent := e.look(t, b.Metadata.Name).ctrs[bottle.RoleAgent]
	// A route out added by hand: the default bridge.
	if err := e.c.NetworkConnect(t.Context(), "bridge", agent.ID, nil); err != nil {
		t.Fatal(err)
	}
	res := e.run(t, []bottle.Bottle{b}, false)
	wantSteps(t, res, "Replace agent: also attached to network bridge")
	now := e.look(t, b.Metadata.Name).ctrs[bottle.RoleAgent]
	if len(now.NetworkSettings.Networks) != 1 || now.NetworkSettings.Networks["bridge"] != nil {
		t.Fatalf("agent networks after apply: %v", now.NetworkSettings.Networks)
	}
}

// execInNetns runs sh -c script in a container of the agent image that
// shares the network namespace of the container id, and returns its
// output. The container is removed before it returns.
func execInNetns(t *testing.T, e *itEnv, id, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	name := testenv.Name("netns")
	created, err := e.c.ContainerCreate(ctx, &container.Config{Image: e.agent, Cmd: []string{"sh", "-c", script}},
		&container.HostConfig{NetworkMode: container.NetworkMode("container:" + id)}, nil, nil, name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = e.c.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	}()
	if err := e.c.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitC, errC := e.c.ContainerWait(ctx, created.ID, container.WaitConditionNotRunning)
	select {
	case w := <-waitC:
		if w.StatusCode != 0 {
			t.Fatalf("%s exited %d", script, w.StatusCode)
		}
	case err := <-errC:
		t.Fatal(err)
	}
	rc, err := e.c.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out strings.Builder
	if _, err := stdcopy.StdCopy(&out, io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestIntegrationObserveAll: Scope.All finds a managed bottle that the
// scope does not name, claims a namesake of one it names, ignores a
// foreign container, and lists each kind once, as a scope of one bottle.
func TestIntegrationObserveAll(t *testing.T) {
	t.Parallel()
	e := newIT(t)
	b := e.newBottle(t, "")
	e.run(t, []bottle.Bottle{b}, false)
	named := testenv.Name("it")
	testenv.CleanupBottle(t, e.c, named)
	foreign := testenv.Name("foreign")
	for _, name := range []string{bottle.ResourceName(named, bottle.RoleAgent), foreign} {
		c, err := e.c.ContainerCreate(t.Context(), &container.Config{Image: e.agent, Cmd: []string{"sleep", "60"}}, nil, nil, nil, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.c.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}) })
	}

	count := func(scope reconcile.Scope) ([]reconcile.Resource, []string) {
		t.Helper()
		e.cnt.Reset()
		rs, err := e.p.Observe(t.Context(), scope)
		if err != nil {
			t.Fatalf("Observe(%+v): %v", scope, err)
		}
		calls := e.cnt.Reset()
		slices.Sort(calls)
		return rs, calls
	}
	_, one := count(reconcile.Scope{Bottles: []string{b.Metadata.Name}})
	rs, all := count(reconcile.Scope{Bottles: []string{named}, All: true})
	if !slices.Equal(one, all) {
		t.Errorf("calls with All = %q, want those of one bottle: %q", all, one)
	}
	var ours, namesake int
	for _, r := range rs {
		switch {
		case r.Name == foreign:
			t.Errorf("the foreign container %s was observed", foreign)
		case r.Managed && r.Bottle == b.Metadata.Name && r.Kind == KindContainer:
			ours++
		case !r.Managed && r.Bottle == named && r.Kind == KindContainer:
			namesake++
		}
	}
	if ours != 2 || namesake != 1 {
		t.Errorf("observed %d containers of %s (want agent and bundle) and %d namesakes of %s (want 1)", ours, b.Metadata.Name, namesake, named)
	}
}
