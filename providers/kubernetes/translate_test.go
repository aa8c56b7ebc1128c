package kubernetes

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	netac "k8s.io/client-go/applyconfigurations/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/secret"
	"github.com/bottle-apply/bottle-apply/spec"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var testCluster = ClusterInfo{APIServer: []string{"10.200.0.10:6443"},
	PodCIDRs: []string{"10.244.0.0/24"}, ServiceCIDRs: []string{"10.96.0.0/16"}, NodeAddrs: []string{"10.200.0.10"},
}

// workBottle is a bottle that uses every part of the translation.
func workBottle(t *testing.T) *bottle.Bottle {
	t.Helper()
	b := bottle.New(spec.Bottle{
		APIVersion: spec.APIVersion, Kind: spec.KindBottle, Metadata: spec.Metadata{Name: "work"},
		Spec: spec.Spec{
			Backend: spec.BackendKubernetes,
			Agent: spec.Agent{Image: "agent:1", Command: []string{"sleep", "infinity"}, Workdir: "/workspace",
				Env: map[string]string{"FOO": "bar"}, User: "1000:1000", CPUs: 2,
				Volumes: []spec.Volume{{Source: "home", Target: "/home/agent"}, {Source: "work", Target: "/workspace"}, {Source: "work", Target: "/ro", ReadOnly: true}},
				Files:   []spec.File{{Path: "/home/agent/.gitconfig", Content: "[user]\n", Mode: "0600"}, {Path: "/etc/agent.conf", Content: "x=1\n"}},
			},
			Network:    spec.Network{AllowCIDRs: []string{"192.168.7.0/24"}},
			Bundle:     spec.Bundle{Image: "registry.example/bottle-apply/bundle:1", Daemons: []string{"egress", "dns"}, Egress: spec.Egress{Allow: []string{"api.example.com"}}},
			Kubernetes: spec.Kubernetes{RuntimeClassName: "gvisor"},
		},
	})
	bs := []bottle.Bottle{b}
	key := []byte("0123456789abcdef0123456789abcdef")
	if err := secret.Resolve(bs, key, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := secret.ResolveFiles(bs, key); err != nil {
		t.Fatal(err)
	}
	return &bs[0]
}

// render is every object of a translation as server-side apply sends it.
func render(t *testing.T, rs []reconcile.Resource, bundleIP string) string {
	t.Helper()
	var docs []string
	for _, r := range rs {
		obj := r.Config.(object)
		var v any = obj.Apply
		if obj.agent != nil {
			ac, err := obj.agent.render(bundleIP)
			if err != nil {
				t.Fatal(err)
			}
			v = ac
		}
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		y, err := yaml.JSONToYAML(js)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, "# "+r.ID()+" depends on "+strings.Join(r.DependsOn, ", ")+"\n"+string(y))
	}
	return strings.Join(docs, "---\n")
}

func TestTranslateGolden(t *testing.T) {
	t.Parallel()
	rs, err := translate(workBottle(t), testCluster, "v-test")
	if err != nil {
		t.Fatal(err)
	}
	got := render(t, rs, "10.96.0.42")
	golden := filepath.Join("testdata", "work.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("translation differs from %s (go test -update rewrites it):\n%s", golden, got)
	}
	if strings.Contains(got, "[user]") {
		t.Error("a file's content is in the rendering outside its Secret's data")
	}
}

// TestTranslateIsolation: the properties the bottle's isolation rests on,
// whatever the golden file says.
func TestTranslateIsolation(t *testing.T) {
	t.Parallel()
	rs, err := translate(workBottle(t), testCluster, "v-test")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]reconcile.Resource{}
	for _, r := range rs {
		ids[r.ID()] = r
	}
	agent := ids[resourceID("work", KindStatefulSet, bottle.RoleAgent)]
	ac, err := agent.Config.(object).agent.render("10.96.0.42")
	if err != nil {
		t.Fatal(err)
	}
	ps := ac.Spec.Template.Spec
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Error("the agent's pod mounts a service-account token")
	}
	if ps.EnableServiceLinks == nil || *ps.EnableServiceLinks {
		t.Error("the agent's pod gets the cluster's services as environment variables")
	}
	if ps.DNSPolicy == nil || *ps.DNSPolicy != "None" || !slices.Equal(ps.DNSConfig.Nameservers, []string{"10.96.0.42"}) {
		t.Errorf("the agent's resolver is not its bundle alone: %v %+v", ps.DNSPolicy, ps.DNSConfig)
	}
	c := ps.Containers[0]
	if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		!slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) != 0 || *sc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("the agent's container is not restricted: %+v", c.SecurityContext)
	}
	for _, want := range []string{"HTTP_PROXY=http://10.96.0.42:8888", "HTTPS_PROXY=http://10.96.0.42:8888"} {
		k, v, _ := strings.Cut(want, "=")
		if !slices.ContainsFunc(c.Env, func(e coreEnv) bool { return *e.Name == k && e.Value != nil && *e.Value == v }) {
			t.Errorf("the agent's env lacks %s", want)
		}
	}
	// Every workload waits for the policy that isolates it.
	if !slices.Contains(agent.DependsOn, resourceID("work", KindNetworkPolicy, bottle.RoleAgent)) {
		t.Errorf("the agent does not wait for its NetworkPolicy: %v", agent.DependsOn)
	}
	dep := ids[resourceID("work", KindDeployment, bottle.RoleBundle)]
	if !slices.Contains(dep.DependsOn, resourceID("work", KindNetworkPolicy, bottle.RoleBundle)) {
		t.Errorf("the bundle does not wait for its NetworkPolicy: %v", dep.DependsOn)
	}
	np := ids[resourceID("work", KindNetworkPolicy, bottle.RoleBundle)].Config.(object).Apply.(*netPolicy)
	except := np.Spec.Egress[0].To[0].IPBlock.Except
	for _, want := range []string{"10.244.0.0/24", "10.96.0.0/16", "10.200.0.10/32", "169.254.0.0/16", "10.0.0.0/8", "192.168.0.0/16"} {
		if !slices.Contains(except, want) {
			t.Errorf("the bundle's way out does not exclude %s: %v", want, except)
		}
	}
	anp := ids[resourceID("work", KindNetworkPolicy, bottle.RoleAgent)].Config.(object).Apply.(*netPolicy)
	if len(anp.Spec.Ingress) != 0 || !slices.Contains(anp.Spec.PolicyTypes, "Ingress") {
		t.Errorf("something may reach the agent: %+v", anp.Spec)
	}
}

// TestTranslateEnvChangesTheAgentAlone: a change of the agent's env
// changes the StatefulSet's hash and no other object's.
func TestTranslateEnvChangesTheAgentAlone(t *testing.T) {
	t.Parallel()
	b := workBottle(t)
	before, err := translate(b, testCluster, "v-test")
	if err != nil {
		t.Fatal(err)
	}
	b.Spec.Agent.Env = map[string]string{"FOO": "baz"}
	after, err := translate(b, testCluster, "v-test")
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		changed := before[i].Hash != after[i].Hash
		if want := before[i].Kind == KindStatefulSet; changed != want {
			t.Errorf("%s: hash changed %v, want %v", before[i].ID(), changed, want)
		}
	}
}

type (
	coreEnv   = coreac.EnvVarApplyConfiguration
	netPolicy = netac.NetworkPolicyApplyConfiguration
)

// TestAllowBlocksKeepTheClusterOut: NetworkPolicy rules add up, so an
// allowCIDRs range that holds the cluster's own ranges must carve them
// out, and one inside them is refused: else allowCIDRs 10.0.0.0/8 opens
// every pod and node to the agent.
func TestAllowBlocksKeepTheClusterOut(t *testing.T) {
	t.Parallel()
	denied := testCluster.denied()
	for _, tc := range []struct {
		allow      string
		wantExcept []string
		wantErr    string
	}{
		{allow: "192.0.2.0/24"},
		{allow: "10.0.0.0/8", wantExcept: []string{"10.200.0.10/32", "10.244.0.0/24", "10.96.0.0/16"}},
		{allow: "0.0.0.0/0", wantExcept: []string{"10.200.0.10/32", "10.244.0.0/24", "10.96.0.0/16", "127.0.0.0/8", "169.254.0.0/16"}},
		{allow: "10.244.0.0/25", wantErr: "lies inside 10.244.0.0/24"},
		{allow: "10.200.0.10/32", wantErr: "lies inside 10.200.0.10/32"},
		{allow: "169.254.169.254/32", wantErr: "lies inside 169.254.0.0/16"},
	} {
		blocks, err := allowBlocks([]string{tc.allow}, denied)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("allowCIDRs %s: %v, want an error with %q", tc.allow, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("allowCIDRs %s: %v", tc.allow, err)
			continue
		}
		got := slices.Clone(blocks[0].Except)
		slices.Sort(got)
		if !slices.Equal(got, tc.wantExcept) {
			t.Errorf("allowCIDRs %s: except %v, want %v", tc.allow, got, tc.wantExcept)
		}
	}
}
