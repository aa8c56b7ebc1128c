package main

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/providers/kubernetes"
)

// kubeCredentialEnvVar is the variable of bottle-apply's environment the
// kube credentials test's spec reads the credential from.
const kubeCredentialEnvVar = "BOTTLE_E2E_KUBE_CREDENTIAL"

// kubeCredentialSpec is kubeSpec with a credential for api.example.com
// whose value comes from kubeCredentialEnvVar, and a placeholder in the
// agent's EXAMPLE_API_KEY.
func kubeCredentialSpec(t *testing.T, name, agentImage, bundleImage string) string {
	t.Helper()
	plain := kubeSpec(name, agentImage, bundleImage, "hello")
	allow := "      allow: [api.example.com]\n"
	s := strings.Replace(plain, allow, allow+`      credentials:
        - host: api.example.com
          header: x-api-key
          valueFrom: {env: `+kubeCredentialEnvVar+`}
          agentEnv: EXAMPLE_API_KEY
`, 1)
	if s == plain {
		t.Fatal("the kube spec has no egress allow to put credentials after")
	}
	return s
}

// kubeApplyDoc is the part of an apply's JSON result the credentials
// test reads: the plan's actions.
type kubeApplyDoc struct {
	Plan struct {
		Steps []struct {
			Action   string `json:"action"`
			Resource string `json:"resource"`
		} `json:"steps"`
	} `json:"plan"`
}

// TestKubeE2ECredentials: a bottle with a credential on the cluster. The
// agent holds the placeholder and the bottle's CA, never the value: not
// in its env, its files, its processes' environments nor any object of
// its own; the value is in the credentials Secret, which the bundle's pod
// alone mounts, at bottle.BundleSecretsFile. bottle-apply never prints
// it. Rotating the value replaces the bundle and its Secret, and not the
// agent.
func TestKubeE2ECredentials(t *testing.T) {
	k, bin, agent, bundle := kubeImages(t)
	kb := newKubeBottle(t, k, agent, bundle)
	kb.write(t, kubeCredentialSpec(t, kb.name, agent, bundle))
	ns := bottle.NamePrefix + kb.name
	// The secrets' key and the bottle's CA live in a state directory of
	// the test's own, kept for all runs (the cleanup's destroy too).
	kb.env = append(kb.env, "XDG_STATE_HOME="+t.TempDir())
	var planted []string // every value a run was given

	// run applies with value and checks that nothing bottle-apply writes
	// holds any value planted so far.
	run := func(what, value string, args ...string) (string, string) {
		t.Helper()
		planted = append(planted, value)
		env := append(slices.Clone(kb.env), kubeCredentialEnvVar+"="+value)
		out, errs := kb.apply(t, bin, env, 0, args...)
		for _, v := range planted {
			if strings.Contains(out, v) || strings.Contains(errs, v) {
				t.Errorf("%s: bottle-apply's output shows the credential's value", what)
			}
		}
		return out, errs
	}
	// inAgent runs a shell command in the agent, stdin given to it: the
	// values reach the agent's commands through stdin, never their argv,
	// so that a search of the agent cannot find the search itself.
	inAgent := func(stdin, cmd string) (int, string) {
		t.Helper()
		code, o, e := runCLI(t, bin, stdin, kb.env, "exec", "-i", kb.name, "--", "sh", "-c", cmd)
		return code, strings.TrimSpace(o + e)
	}
	// agentNeverHolds checks the agent's view: its env, its files, every
	// process's environment it can read.
	agentNeverHolds := func(what string) {
		t.Helper()
		for i, v := range planted {
			// The search's own grep holds the value in its argv, so
			// /proc/*/cmdline is not searched: the agent's command's is.
			code, o := inAgent(v+"\n", `read -r v; env | grep -cF -- "$v"; `+
				`grep -rlsF -- "$v" /etc /home /root /tmp /workspace /var /run /opt /proc/[0-9]*/environ /proc/1/cmdline; echo searched`)
			if code != 0 || o != "0\nsearched" {
				t.Errorf("%s: the agent holds value %d (of %d planted): exit %d, found %q", what, i+1, len(planted), code, o)
			}
		}
	}
	// objectsNeverHold checks every object of the agent's, and the
	// bundle's workload, as the API returns them (a Secret's data
	// decoded).
	objectsNeverHold := func(what string) {
		t.Helper()
		for _, obj := range []string{"statefulset/" + bottle.ResourceName(kb.name, bottle.RoleAgent),
			"pod/" + bottle.ResourceName(kb.name, bottle.RoleAgent) + "-0",
			"secret/" + bottle.ResourceName(kb.name, kubernetes.RoleFiles),
			"deployment/" + bottle.ResourceName(kb.name, bottle.RoleBundle),
			"networkpolicy/" + bottle.ResourceName(kb.name, bottle.RoleAgent),
		} {
			js := k.Kubectl(t, "", "-n", ns, "get", obj, "-o", "json")
			text := js
			var sec struct {
				Data map[string]string `json:"data"`
			}
			if strings.HasPrefix(obj, "secret/") && json.Unmarshal([]byte(js), &sec) == nil {
				for _, d := range sec.Data {
					raw, _ := base64.StdEncoding.DecodeString(d)
					text += string(raw)
				}
			}
			for _, v := range planted {
				if strings.Contains(text, v) {
					t.Errorf("%s: %s holds the credential's value", what, obj)
				}
			}
			if !strings.HasPrefix(obj, "deployment/") && strings.Contains(js, bottle.ResourceName(kb.name, kubernetes.RoleCredentials)) {
				t.Errorf("%s: %s names the credentials Secret", what, obj)
			}
		}
	}
	// secretHolds checks the credentials Secret holds value, for the
	// bundle: its file's content (the bundle's image has no shell to
	// read it in the pod with).
	secretHolds := func(what, value string) {
		t.Helper()
		enc := k.Kubectl(t, "", "-n", ns, "get", "secret", bottle.ResourceName(kb.name, kubernetes.RoleCredentials), "-o", `jsonpath={.data.credentials\.json}`)
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
		if err != nil {
			t.Fatalf("%s: the credentials Secret's credentials.json is not base64: %v", what, err)
		}
		var f bottle.BundleSecrets
		if err := json.Unmarshal(raw, &f); err != nil {
			t.Fatalf("%s: the credentials Secret's credentials.json is not the bundle's file: %v", what, err)
		}
		if len(f.Credentials) != 1 || f.Credentials[0].Host != "api.example.com" || f.Credentials[0].Header != "x-api-key" ||
			f.Credentials[0].Value != value || f.CAKey == "" || f.CACert == "" {
			t.Errorf("%s: the credentials Secret does not hold the credential given, with the CA", what)
		}
	}

	value := randomSecret(t)
	out, errs := run("first apply", value)
	t.Logf("first apply:\n%s%s", out, errs)
	if !strings.Contains(out, "kubernetes-secret:"+kb.name+"/credentials") {
		t.Errorf("the plan does not make the credentials Secret:\n%s", out)
	}

	// The bundle read its Secret and intercepts the credentialed host:
	// the self-test's handshake gets a certificate of the bottle's CA.
	if code, vout, verr := runCLI(t, bin, "", kb.env, "-f", kb.spec, "--verify", "-o", "json"); code != 0 || !strings.Contains(vout, `"got": "intercepted"`) {
		t.Errorf("--verify exited %d without an interception check that passed:\n%s\n%s", code, vout, verr)
	}

	// The agent: the placeholder and the CA variables, the CA's files.
	code, o := inAgent("", `echo "$EXAMPLE_API_KEY"; echo "$NODE_EXTRA_CA_CERTS $SSL_CERT_FILE $CURL_CA_BUNDLE $REQUESTS_CA_BUNDLE $GIT_SSL_CAINFO"`)
	wantEnv := bottle.CredentialPlaceholder + "\n" + bottle.AgentCAFile + " " + strings.Repeat(bottle.AgentCABundle+" ", 3) + bottle.AgentCABundle
	if code != 0 || o != wantEnv {
		t.Errorf("the agent's env: exit %d\n%s\nwant\n%s", code, o, wantEnv)
	}
	// The CA's last line of base64 is in the bundle too.
	code, o = inAgent("", `grep -c "BEGIN CERTIFICATE" `+bottle.AgentCAFile+`; `+
		`grep -cF "$(tail -n 2 `+bottle.AgentCAFile+` | head -n 1)" `+bottle.AgentCABundle+`; stat -c '%a %u' `+bottle.AgentCAFile)
	if lines := strings.Split(o, "\n"); code != 0 || len(lines) != 3 || lines[0] != "1" || lines[1] == "0" || lines[2] != "644 0" {
		t.Errorf("the agent's CA files: exit %d\n%s\nwant one certificate in %s, found in %s, mode 644, root's", code, o, bottle.AgentCAFile, bottle.AgentCABundle)
	}
	agentNeverHolds("first apply")
	objectsNeverHold("first apply")
	secretHolds("first apply", value)

	// The bundle's pod mounts the Secret at the file it is told of, and the
	// agent's pod mounts nothing of it.
	podJS := k.Kubectl(t, "", "-n", ns, "get", "pods", "-l", bottle.LabelName+"="+kb.name+","+bottle.LabelRole+"="+bottle.RoleBundle, "-o", "json")
	var pods struct {
		Items []struct {
			Spec struct {
				Volumes []struct {
					Name   string `json:"name"`
					Secret *struct {
						SecretName string `json:"secretName"`
					} `json:"secret"`
				} `json:"volumes"`
				Containers []struct {
					Env []struct {
						Name  string `json:"name"`
						Value string `json:"value"`
					} `json:"env"`
					VolumeMounts []struct {
						Name      string `json:"name"`
						MountPath string `json:"mountPath"`
						ReadOnly  bool   `json:"readOnly"`
					} `json:"volumeMounts"`
				} `json:"containers"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(podJS), &pods); err != nil || len(pods.Items) != 1 {
		t.Fatalf("the bundle's pods: %v, %d", err, len(pods.Items))
	}
	ps := pods.Items[0].Spec
	vol := ""
	for _, v := range ps.Volumes {
		if v.Secret != nil && v.Secret.SecretName == bottle.ResourceName(kb.name, kubernetes.RoleCredentials) {
			vol = v.Name
		}
	}
	mounted, told := false, false
	for _, m := range ps.Containers[0].VolumeMounts {
		mounted = mounted || vol != "" && m.Name == vol && m.MountPath == bottle.BundleSecretsDir && m.ReadOnly
	}
	for _, e := range ps.Containers[0].Env {
		told = told || e.Name == "BOTTLE_CREDENTIALS_FILE" && e.Value == bottle.BundleSecretsFile
	}
	if !mounted || !told {
		t.Errorf("the bundle's pod: the Secret mounted read-only at %s %v, told %s %v", bottle.BundleSecretsDir, mounted, bottle.BundleSecretsFile, told)
	}

	// Rotation: the bundle and its Secret are replaced, the agent is not.
	agentBefore, bundleBefore := kb.podUID(t, bottle.RoleAgent), kb.podUID(t, bottle.RoleBundle)
	rotated := randomSecret(t)
	out, _ = run("rotation", rotated, "-o", "json")
	var doc kubeApplyDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("rotation: stdout is not JSON: %v\n%s", err, out)
	}
	var changed []string
	for _, s := range doc.Plan.Steps {
		if s.Action != "noop" {
			changed = append(changed, s.Action+" "+s.Resource)
		}
	}
	slices.Sort(changed)
	want := []string{"replace kubernetes-deployment:" + kb.name + "/bundle", "replace kubernetes-secret:" + kb.name + "/credentials"}
	if !slices.Equal(changed, want) {
		t.Errorf("rotation: the plan's changes %q, want %q", changed, want)
	}
	if a := kb.podUID(t, bottle.RoleAgent); a != agentBefore {
		t.Errorf("rotation replaced the agent's pod (pod %s, was %s)", a, agentBefore)
	}
	if b := kb.podUID(t, bottle.RoleBundle); b == bundleBefore || b == "" {
		t.Errorf("rotation did not make a new bundle pod (pod %q, was %s)", b, bundleBefore)
	}
	secretHolds("rotation", rotated)
	agentNeverHolds("rotation")
	objectsNeverHold("rotation")

	// The same value again: nothing to do.
	out, _ = run("no-op", rotated, "-o", "json")
	doc = kubeApplyDoc{}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("no-op: stdout is not JSON: %v\n%s", err, out)
	}
	for _, s := range doc.Plan.Steps {
		if s.Action != "noop" {
			t.Errorf("no-op apply: %s %s", s.Action, s.Resource)
		}
	}

	// Destroy: the credentials Secret goes with the bottle.
	run("destroy", rotated, "--destroy", "--volumes")
	if left := kb.labelled(t); left != "" {
		t.Errorf("after destroy --volumes, left: %s", left)
	}
}
