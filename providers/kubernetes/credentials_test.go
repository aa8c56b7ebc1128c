package kubernetes

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	appsac "k8s.io/client-go/applyconfigurations/apps/v1"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/ca"
	"github.com/bottle-apply/bottle-apply/place"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/spec"
)

// Test values that must never leave the credentials Secret.
const (
	testCredential = "sk-test-7f3a9c1e5b2d4f6a8c0e"
	testCAKey      = "-----BEGIN PRIVATE KEY-----\nTESTCAKEYMATERIAL0123456789\n-----END PRIVATE KEY-----\n"
	testCACert     = "-----BEGIN CERTIFICATE-----\nTESTCACERTIFICATE\n-----END CERTIFICATE-----\n"
)

// setCredential gives b one resolved credential of value: its digest
// stands in for the keyed one of package secret (it changes with the
// value).
func setCredential(b *bottle.Bottle, value string) {
	sum := sha256.Sum256([]byte(value))
	b.Credentials = []bottle.Credential{{Host: "api.example.com", Header: "x-api-key", Value: value,
		Digest: hex.EncodeToString(sum[:8]), AgentEnv: "EXAMPLE_API_KEY"}}
}

// credBottle is workBottle with a credential for api.example.com, its CA
// and a trusted certificate.
func credBottle(t *testing.T) *bottle.Bottle {
	t.Helper()
	b := workBottle(t)
	b.Spec.Bundle.Egress.Credentials = []spec.Credential{{Host: "api.example.com", Header: "x-api-key",
		ValueFrom: spec.ValueFrom{Env: "EXAMPLE_API_KEY"}, AgentEnv: "EXAMPLE_API_KEY"}}
	setCredential(b, testCredential)
	b.CA = &bottle.CA{Cert: []byte(testCACert), Key: []byte(testCAKey), Fingerprint: "fa11"}
	b.Trust, b.TrustDigest = []byte("-----BEGIN CERTIFICATE-----\nTRUSTED\n-----END CERTIFICATE-----\n"), "7a57"
	return b
}

func TestTranslateCredentialsGolden(t *testing.T) {
	t.Parallel()
	rs, err := translate(credBottle(t), testCluster, "v-test")
	if err != nil {
		t.Fatal(err)
	}
	got := render(t, rs, "10.96.0.42")
	// The joined CA bundle holds the roots bottle-apply carries, a few
	// hundred kilobytes that change with their module: the golden file
	// shows where they go, not what they are. Their digest is in the
	// hashes, which -update rewrites with a new module.
	joined := bottle.CAFiles([]byte(testCACert), ca.FallbackRootsPEM())[1].Content
	got = strings.ReplaceAll(got, base64.StdEncoding.EncodeToString(joined), "<the roots and the bottle's CA, base64>")
	golden := filepath.Join("testdata", "credentials.golden")
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
}

// byID indexes a translation.
func byID(rs []reconcile.Resource) map[string]reconcile.Resource {
	ids := map[string]reconcile.Resource{}
	for _, r := range rs {
		ids[r.ID()] = r
	}
	return ids
}

// secrets are what must never leave the credentials Secret, by the name
// a failure gives them (never their value).
var secrets = map[string]string{"the credential's value": testCredential, "the CA's key": testCAKey}

// leaks says where the JSON of an object holds one of the secrets, as is
// or in base64 (a Secret's data), and looks inside a Secret's decoded
// data too.
func leaks(t *testing.T, v any) []string {
	t.Helper()
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for name, s := range secrets {
		if strings.Contains(string(js), s) || strings.Contains(string(js), base64.StdEncoding.EncodeToString([]byte(s))) {
			out = append(out, "its JSON holds "+name)
		}
	}
	if sec, ok := v.(*coreac.SecretApplyConfiguration); ok {
		for k, d := range sec.Data {
			for name, s := range secrets {
				if strings.Contains(string(d), s) {
					out = append(out, "its key "+k+" holds "+name)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// applyOf is an object as server-side apply sends it.
func applyOf(t *testing.T, r reconcile.Resource) any {
	t.Helper()
	obj := r.Config.(object)
	if obj.agent == nil {
		return obj.Apply
	}
	ac, err := obj.agent.render("10.96.0.42")
	if err != nil {
		t.Fatal(err)
	}
	return ac
}

// TestTranslateCredentialsOnlyInTheirSecret is the attack: the value and
// the CA's key are looked for in every object of the bottle, whole, as
// the API would get it. Only the credentials Secret may hold them; a
// value put in the bundle's env, an annotation, the files Secret or the
// agent's pod fails it.
func TestTranslateCredentialsOnlyInTheirSecret(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(*bottle.Bottle)
	}{
		{name: "with files and volumes", setup: func(*bottle.Bottle) {}},
		{name: "no files", setup: func(b *bottle.Bottle) { b.Spec.Agent.Files, b.Files = nil, nil }},
		{name: "no user, no volumes", setup: func(b *bottle.Bottle) {
			b.Spec.Agent.User, b.Spec.Agent.Volumes = "", nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := credBottle(t)
			tc.setup(b)
			rs, err := translate(b, testCluster, "v-test")
			if err != nil {
				t.Fatal(err)
			}
			credID := resourceID("work", KindSecret, RoleCredentials)
			seen := false
			for _, r := range rs {
				v := applyOf(t, r)
				if r.ID() == credID {
					seen = true
					continue
				}
				if l := leaks(t, v); len(l) > 0 {
					t.Errorf("%s: %s", r.ID(), strings.Join(l, "; "))
				}
				// What the plan and status show of it: inputs and summary.
				if l := leaks(t, []any{r.Inputs, r.Summary, r.Keeps, r.Discards}); len(l) > 0 {
					t.Errorf("%s: what the plan shows of it: %s", r.ID(), strings.Join(l, "; "))
				}
			}
			if !seen {
				t.Fatalf("no %s among %d objects", credID, len(rs))
			}
			// The secret's own annotations (hash, inputs) hold no value either.
			sec := byID(rs)[credID].Config.(object).Apply.(*coreac.SecretApplyConfiguration)
			if l := leaks(t, sec.Annotations); len(l) > 0 {
				t.Errorf("the credentials Secret's annotations: %s", strings.Join(l, "; "))
			}
		})
	}
}

// TestTranslateCredentialsSecret: the Secret holds what the bundle reads,
// and is labelled as the bottle's.
func TestTranslateCredentialsSecret(t *testing.T) {
	t.Parallel()
	rs, err := translate(credBottle(t), testCluster, "v-test")
	if err != nil {
		t.Fatal(err)
	}
	r := byID(rs)[resourceID("work", KindSecret, RoleCredentials)]
	sec, ok := r.Config.(object).Apply.(*coreac.SecretApplyConfiguration)
	if !ok {
		t.Fatalf("no credentials Secret: %+v", r)
	}
	if *sec.Name != "bottle-work-credentials" || *sec.Namespace != "bottle-work" || sec.Labels[bottle.LabelRole] != RoleCredentials ||
		sec.Labels[bottle.LabelName] != "work" || sec.Annotations[annHash] != r.Hash || r.Hash == "" {
		t.Errorf("the credentials Secret is not the bottle's: %s/%s %v %v", *sec.Namespace, *sec.Name, sec.Labels, sec.Annotations)
	}
	if len(sec.Data) != 1 {
		t.Errorf("the credentials Secret has keys %v, want %s alone", slices.Sorted(maps.Keys(sec.Data)), credentialsKey)
	}
	var got bottle.BundleSecrets
	if err := json.Unmarshal(sec.Data[credentialsKey], &got); err != nil {
		t.Fatalf("%s: %v", credentialsKey, err)
	}
	want := []bottle.BundleCredential{{Host: "api.example.com", Header: "x-api-key", Value: testCredential}}
	if !slices.Equal(got.Credentials, want) || got.CAKey != testCAKey || got.CACert != testCACert || !strings.Contains(got.Trust, "TRUSTED") {
		t.Errorf("%s does not hold the credentials, the CA and the trusted certificates", credentialsKey)
	}
	// Its hash stands for digests, not values.
	for _, in := range []string{"credentials", "credentialCA", "trust"} {
		if _, ok := r.Inputs[in]; !ok {
			t.Errorf("the credentials Secret's hash lacks input %s: %v", in, r.Inputs)
		}
	}
	// The bundle is deleted before it, and made after it.
	dep := byID(rs)[resourceID("work", KindDeployment, bottle.RoleBundle)]
	if !slices.Contains(dep.DependsOn, r.ID()) {
		t.Errorf("the bundle does not wait for its credentials: %v", dep.DependsOn)
	}
	obs := []reconcile.Resource{{Provider: ProviderName, Kind: KindDeployment, Bottle: "work", Role: bottle.RoleBundle}}
	observedDeps(obs)
	if !slices.Contains(obs[0].DependsOn, r.ID()) {
		t.Errorf("an observed bundle is not deleted before its credentials: %v", obs[0].DependsOn)
	}
}

// TestTranslateCredentialsBundle: the bundle mounts the Secret read-only
// at bottle.BundleSecretsDir, mode 0400, reads it as root (its owner), and
// is told the path.
func TestTranslateCredentialsBundle(t *testing.T) {
	t.Parallel()
	rs, err := translate(credBottle(t), testCluster, "v-test")
	if err != nil {
		t.Fatal(err)
	}
	r := byID(rs)[resourceID("work", KindDeployment, bottle.RoleBundle)]
	dep := r.Config.(object).Apply.(*appsac.DeploymentApplyConfiguration)
	ps := dep.Spec.Template.Spec
	var vol *coreac.VolumeApplyConfiguration
	for i := range ps.Volumes {
		if s := ps.Volumes[i].Secret; s != nil && *s.SecretName == "bottle-work-credentials" {
			vol = &ps.Volumes[i]
		}
	}
	if vol == nil {
		t.Fatalf("the bundle's pod does not mount the credentials Secret: %+v", ps.Volumes)
	}
	s := vol.Secret
	if *s.DefaultMode != 0o400 || len(s.Items) != 1 || *s.Items[0].Key != credentialsKey || *s.Items[0].Path != credentialsKey || *s.Items[0].Mode != 0o400 {
		t.Errorf("the credentials volume is not %s alone, mode 0400: %+v", credentialsKey, s)
	}
	if bottle.BundleSecretsFile != bottle.BundleSecretsDir+"/"+credentialsKey {
		t.Errorf("the file is at %s, the bundle reads %s", bottle.BundleSecretsDir+"/"+credentialsKey, bottle.BundleSecretsFile)
	}
	c := ps.Containers[0]
	mounted := slices.ContainsFunc(c.VolumeMounts, func(m coreac.VolumeMountApplyConfiguration) bool {
		return *m.Name == *vol.Name && *m.MountPath == bottle.BundleSecretsDir && m.ReadOnly != nil && *m.ReadOnly
	})
	if !mounted {
		t.Errorf("the bundle does not mount its credentials read-only at %s: %+v", bottle.BundleSecretsDir, c.VolumeMounts)
	}
	if !slices.ContainsFunc(c.Env, func(e coreEnv) bool {
		return *e.Name == "BOTTLE_CREDENTIALS_FILE" && e.Value != nil && *e.Value == bottle.BundleSecretsFile
	}) {
		t.Errorf("the bundle is not told where its credentials are: %+v", c.Env)
	}
	// Root owns the Secret's files (no fsGroup): the bundle runs as root,
	// and nothing else in the pod gets the group.
	if sc := c.SecurityContext; sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.RunAsGroup == nil || *sc.RunAsGroup != 0 {
		t.Errorf("the bundle does not run as the owner of its credentials (root): %+v", sc)
	}
	if psc := ps.SecurityContext; psc.FSGroup != nil || len(psc.SupplementalGroups) > 0 {
		t.Errorf("the bundle's pod gives a group access to its credentials: %+v", psc)
	}
	if !slices.Contains(c.SecurityContext.Capabilities.Drop, "ALL") || !slices.Equal(c.SecurityContext.Capabilities.Add, []corev1.Capability{"NET_BIND_SERVICE"}) {
		t.Errorf("the bundle's capabilities changed: %+v", c.SecurityContext.Capabilities)
	}
	if dep.Spec.Template.Annotations[annHash] != r.Hash {
		t.Errorf("the bundle's pod template does not carry its hash (a rotation would not make a new pod): %v", dep.Spec.Template.Annotations)
	}
}

// TestTranslateCredentialsAgent: the agent gets the placeholder and the
// CA variables, the CA's files through the files Secret, and nothing of
// the credentials Secret.
func TestTranslateCredentialsAgent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(*bottle.Bottle)
	}{
		{name: "with files", setup: func(*bottle.Bottle) {}},
		{name: "no files", setup: func(b *bottle.Bottle) { b.Spec.Agent.Files, b.Files = nil, nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := credBottle(t)
			tc.setup(b)
			rs, err := translate(b, testCluster, "v-test")
			if err != nil {
				t.Fatal(err)
			}
			ids := byID(rs)
			agent := ids[resourceID("work", KindStatefulSet, bottle.RoleAgent)]
			filesID := resourceID("work", KindSecret, RoleFiles)
			if !slices.Contains(agent.DependsOn, filesID) {
				t.Errorf("the agent does not wait for the Secret of its files: %v", agent.DependsOn)
			}
			if slices.Contains(agent.DependsOn, resourceID("work", KindSecret, RoleCredentials)) {
				t.Errorf("the agent depends on the credentials Secret: %v", agent.DependsOn)
			}
			ac := applyOf(t, agent).(*appsac.StatefulSetApplyConfiguration)
			ps := ac.Spec.Template.Spec
			if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
				t.Error("the agent's pod mounts a service-account token, which could read Secrets")
			}
			for _, v := range ps.Volumes {
				if v.Secret != nil && *v.Secret.SecretName != "bottle-work-files" {
					t.Errorf("the agent's pod mounts Secret %s", *v.Secret.SecretName)
				}
				if v.Projected != nil {
					t.Errorf("the agent's pod has a projected volume %s", *v.Name)
				}
			}
			c := ps.Containers[0]
			env := map[string]string{}
			for _, e := range c.Env {
				if e.ValueFrom != nil {
					t.Errorf("the agent's %s comes from elsewhere: %+v", *e.Name, e.ValueFrom)
				}
				env[*e.Name] = *e.Value
			}
			want := map[string]string{"EXAMPLE_API_KEY": bottle.CredentialPlaceholder, "NODE_EXTRA_CA_CERTS": bottle.AgentCAFile,
				"SSL_CERT_FILE": bottle.AgentCABundle, "CURL_CA_BUNDLE": bottle.AgentCABundle, "REQUESTS_CA_BUNDLE": bottle.AgentCABundle,
				"GIT_SSL_CAINFO": bottle.AgentCABundle}
			for k, v := range want {
				if env[k] != v {
					t.Errorf("the agent's %s is %q, want %q", k, env[k], v)
				}
			}
			// The CA's files: in the files Secret, put in place by the init
			// container, mounted at their paths.
			files := ids[filesID].Config.(object).Apply.(*coreac.SecretApplyConfiguration)
			if len(files.Data) != len(b.Files)+2 {
				t.Errorf("the files Secret has %d keys, want %d (the spec's files and the CA's two)", len(files.Data), len(b.Files)+2)
			}
			for i, f := range bottle.CAFiles([]byte(testCACert), ca.FallbackRootsPEM()) {
				if got := files.Data[place.Key(len(b.Files)+i)]; string(got) != string(f.Content) {
					t.Errorf("the files Secret's %s is not the content of %s", place.Key(len(b.Files)+i), f.Path)
				}
			}
			for _, p := range []string{bottle.AgentCAFile, bottle.AgentCABundle} {
				if !slices.ContainsFunc(c.VolumeMounts, func(m coreac.VolumeMountApplyConfiguration) bool {
					return *m.MountPath == p && *m.Name == filesOut
				}) {
					t.Errorf("the agent does not get %s from its init container: %+v", p, c.VolumeMounts)
				}
			}
			if !slices.ContainsFunc(ps.InitContainers, func(ic coreac.ContainerApplyConfiguration) bool {
				return *ic.Name == containerFiles && slices.ContainsFunc(ic.Env, func(e coreEnv) bool {
					return *e.Name == "BOTTLE_PLACE" && strings.Contains(*e.Value, bottle.AgentCABundle)
				})
			}) {
				t.Error("no init container puts the CA bundle in place")
			}
		})
	}
}

// TestTranslateCredentialChanges: what each change replaces. A rotated
// value replaces the bundle and its Secret, never the agent; a new CA
// replaces the agent and its files too.
func TestTranslateCredentialChanges(t *testing.T) {
	t.Parallel()
	bundle := resourceID("work", KindDeployment, bottle.RoleBundle)
	creds := resourceID("work", KindSecret, RoleCredentials)
	agent := resourceID("work", KindStatefulSet, bottle.RoleAgent)
	files := resourceID("work", KindSecret, RoleFiles)
	for _, tc := range []struct {
		name   string
		change func(*bottle.Bottle)
		want   []string
	}{
		{name: "rotated value", change: func(b *bottle.Bottle) { setCredential(b, "sk-test-rotated-0000000000") },
			want: []string{bundle, creds}},
		{name: "trusted certificates", change: func(b *bottle.Bottle) { b.TrustDigest = "0ther" },
			want: []string{bundle, creds}},
		{name: "new CA", change: func(b *bottle.Bottle) {
			b.CA = &bottle.CA{Cert: []byte("-----BEGIN CERTIFICATE-----\nNEWCA\n-----END CERTIFICATE-----\n"), Key: []byte(testCAKey), Fingerprint: "0ca2"}
		}, want: []string{bundle, creds, files, agent}},
		{name: "placeholder's name", change: func(b *bottle.Bottle) {
			b.Spec.Bundle.Egress.Credentials[0].AgentEnv = "OTHER_KEY"
		}, want: []string{agent}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := credBottle(t)
			before, err := translate(b, testCluster, "v-test")
			if err != nil {
				t.Fatal(err)
			}
			tc.change(b)
			after, err := translate(b, testCluster, "v-test")
			if err != nil {
				t.Fatal(err)
			}
			if len(after) != len(before) {
				t.Fatalf("%d objects before, %d after", len(before), len(after))
			}
			var changed []string
			for i := range before {
				if before[i].ID() != after[i].ID() {
					t.Fatalf("object %d: %s before, %s after", i, before[i].ID(), after[i].ID())
				}
				if before[i].Hash != after[i].Hash {
					changed = append(changed, before[i].ID())
				}
			}
			slices.Sort(changed)
			if !slices.Equal(changed, tc.want) {
				t.Errorf("changed %v, want %v", changed, tc.want)
			}
		})
	}
}

// TestDesiredRefusesUnreadCredentials: a bottle whose credentials were
// not read gets no bundle, rather than one without them.
func TestDesiredRefusesUnreadCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(*bottle.Bottle)
	}{
		{name: "values not read", setup: func(b *bottle.Bottle) { b.Credentials = nil }},
		{name: "no CA", setup: func(b *bottle.Bottle) { b.CA = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := credBottle(t)
			tc.setup(b)
			p := New(Options{Version: "v-test"})
			_, err := p.Desired([]*bottle.Bottle{b}, nil)
			if err == nil || !strings.Contains(err.Error(), "internal:") || !strings.Contains(err.Error(), "credentials") {
				t.Fatalf("Desired = %v, want an internal error about the credentials", err)
			}
			if strings.Contains(err.Error(), testCredential) {
				t.Error("the error holds the value")
			}
		})
	}
}

// TestCredentialsSecretObservedAndDeleted: the credentials Secret is
// observed as the bottle's, a look-alike elsewhere is not, a destroy
// deletes the bundle before it, and a spec that drops its credentials
// deletes it; the delete reaches the cluster.
func TestCredentialsSecretObservedAndDeleted(t *testing.T) {
	t.Parallel()
	meta := func(ns, name, role string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labelsOf("work", role), Annotations: map[string]string{annHash: "h"}}
	}
	objects := func() []runtime.Object {
		return []runtime.Object{
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bottle-work", Labels: labelsOf("work", RoleNamespace), Annotations: map[string]string{annHash: "h"}}},
			&corev1.Secret{ObjectMeta: meta("bottle-work", "bottle-work-credentials", RoleCredentials)},
			&corev1.Secret{ObjectMeta: meta("elsewhere", "bottle-work-credentials", RoleCredentials)},
			&appsv1.Deployment{ObjectMeta: meta("bottle-work", "bottle-work-bundle", bottle.RoleBundle)},
		}
	}
	credID := resourceID("work", KindSecret, RoleCredentials)
	depID := resourceID("work", KindDeployment, bottle.RoleBundle)
	for _, tc := range []struct {
		name    string
		desired func(t *testing.T, p *Provider) []reconcile.Resource
		// bundleFirst: the bundle's delete comes before the Secret's.
		bundleFirst bool
	}{
		{name: "destroy", desired: func(*testing.T, *Provider) []reconcile.Resource { return nil }, bundleFirst: true},
		{name: "credentials dropped from the spec", desired: func(t *testing.T, p *Provider) []reconcile.Resource {
			b := workBottle(t)
			if err := p.Resolve([]*bottle.Bottle{b}, nil); err != nil {
				t.Fatal(err)
			}
			rs, err := p.Desired([]*bottle.Bottle{b}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return rs
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cs := fake.NewClientset(objects()...)
			p := New(Options{PodCIDRs: []string{"10.244.0.0/16"}, ServiceCIDRs: []string{"10.96.0.0/12"}})
			if err := p.Use([]bottle.Bottle{*workBottle(t)}); err != nil {
				t.Fatal(err)
			}
			p.cluster = &Cluster{Client: cs}
			scope := reconcile.Scope{Bottles: []string{"work"}}
			observed, err := p.Observe(t.Context(), scope)
			if err != nil {
				t.Fatal(err)
			}
			var creds []reconcile.Resource
			for _, r := range observed {
				if r.ID() == credID {
					creds = append(creds, r)
				}
			}
			if len(creds) != 1 || !creds[0].Managed || creds[0].Summary["namespace"] != "bottle-work" {
				t.Fatalf("observed credentials Secrets %+v, want the one in bottle-work, managed", creds)
			}
			plan, err := reconcile.Diff(tc.desired(t, p), observed, scope)
			if err != nil {
				t.Fatal(err)
			}
			var del *reconcile.Step
			stepOf := map[string]int{}
			for i := range plan.Steps {
				s := &plan.Steps[i]
				stepOf[s.ResourceID] = s.ID
				if s.ResourceID == credID && s.Action == reconcile.Delete {
					del = s
				}
			}
			if del == nil {
				t.Fatalf("the plan does not delete %s:\n%s", credID, plan)
			}
			if tc.bundleFirst && !slices.Contains(del.DependsOn, stepOf[depID]) {
				t.Errorf("the credentials' delete does not wait for the bundle's:\n%s", plan)
			}
			if err := p.Apply(t.Context(), *del); err != nil {
				t.Fatal(err)
			}
			if _, err := cs.CoreV1().Secrets("bottle-work").Get(t.Context(), "bottle-work-credentials", metav1.GetOptions{}); err == nil {
				t.Error("the credentials Secret is still there after its delete")
			}
			if _, err := cs.CoreV1().Secrets("elsewhere").Get(t.Context(), "bottle-work-credentials", metav1.GetOptions{}); err != nil {
				t.Errorf("the look-alike elsewhere was touched: %v", err)
			}
		})
	}
}

// TestTranslateRefusesAFileAtTheCA: a file of the spec where the agent
// gets the bottle's CA is refused with its index, rather than a pod the
// cluster refuses for two mounts at one path.
func TestTranslateRefusesAFileAtTheCA(t *testing.T) {
	t.Parallel()
	for _, p := range []string{bottle.AgentCAFile, bottle.AgentCABundle} {
		b := credBottle(t)
		b.Files[1].Path = p
		_, err := translate(b, testCluster, "v-test")
		if err == nil || !strings.Contains(err.Error(), "spec.agent.files[1]") || !strings.Contains(err.Error(), p) {
			t.Errorf("a file at %s: %v, want an error naming spec.agent.files[1]", p, err)
		}
		// Without credentials the path is the user's.
		b = workBottle(t)
		b.Files[1].Path = p
		if _, err := translate(b, testCluster, "v-test"); err != nil {
			t.Errorf("a file at %s without credentials: %v", p, err)
		}
	}
}
