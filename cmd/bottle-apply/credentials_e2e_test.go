package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/bottle-apply/bottle-apply/bottle"
	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// The names of the credentials test's stand-ins for the internet.
const (
	credHost   = "api.cred.test"    // has the credential
	plainHost  = "plain.test"       // allowed, no credential
	upstreamCN = "upstream test CA" // the stand-ins' own CA
)

// credentialsSpec is a bottle whose agent (the client image) may reach
// credHost, with a credential from secrets/token set as x-api-key (and a
// placeholder in API_KEY), and plainHost; the bundle trusts the
// stand-ins' CA (certs/upstream.pem).
func credentialsSpec(name, image string, cidrs ...string) string {
	return fmt.Sprintf(`apiVersion: bottle-apply/v1
kind: Bottle
metadata:
  name: %s
spec:
  backend: docker
  agent:
    image: %s
    command: ["sleep", "infinity"]
  network:
    allowCIDRs: [%s]
  bundle:
    daemons: [egress, dns]
    egress:
      allow: [%s, %s]
      credentials:
        - host: %s
          header: x-api-key
          valueFrom: {file: secrets/token}
          agentEnv: API_KEY
      trust: [certs/upstream.pem]
`, name, image, strings.Join(cidrs, ", "), credHost, plainHost, credHost)
}

// tlsServer runs a stand-in that echoes over TLS on port 443, on the
// bottle's egress network under alias, and returns its address and a
// function that returns its log (one line a request).
func tlsServer(t *testing.T, c *client.Client, image, bottleName, alias string, cert, key []byte) (string, func() string) {
	t.Helper()
	ctx := t.Context()
	name := "bottle-apply-test-" + testenv.Name(strings.Split(alias, ".")[0])
	net := bottle.ResourceName(bottleName, bottle.RoleEgress)
	created, err := c.ContainerCreate(ctx,
		&container.Config{Image: image, Cmd: []string{"-name", alias, "-http", "80", "-https", "443"},
			Env: []string{"TESTSERVER_CERT=" + string(cert), "TESTSERVER_KEY=" + string(key), "TESTSERVER_REDIRECT=https://" + plainHost + "/landing"}},
		&container.HostConfig{NetworkMode: container.NetworkMode(net)},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{net: {Aliases: []string{alias}}}},
		nil, name)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = c.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	})
	if err := c.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	insp, err := c.ContainerInspect(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	logs := func() string {
		rc, err := c.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return string(b)
	}
	return insp.NetworkSettings.Networks[net].IPAddress, logs
}

// echoed is what the stand-in answers (testserver's Echo).
type echoed struct {
	Method, Host, Path, Proto, SNI string
	Header                         map[string][]string
}

// TestE2ECredentials is issue 16's proof on the real engine: the bundle
// adds the credential on the way out, the agent never holds it, and
// nothing else is intercepted.
func TestE2ECredentials(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	agentImage := testenv.ClientImage(t, c)
	serverImage := testenv.TestServerImage(t, c)
	dir, state := t.TempDir(), t.TempDir()
	name := testenv.Name("cred")
	testenv.CleanupBottle(t, c, name)
	upCA, upCert := testenv.ServerCerts(t, upstreamCN, credHost, plainHost)
	caPEM, certPEM, keyPEM := upCA.Cert, upCert.Cert, upCert.Key
	value := randomSecret(t)
	planted := []string{value}
	write := func(rel string, data []byte) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("certs/upstream.pem", caPEM)
	write("secrets/token", []byte(value+"\n"))
	specFile := filepath.Join(dir, "bottle.yaml")
	apply := func(what string, spec string) (string, string) {
		t.Helper()
		write("bottle.yaml", []byte(spec))
		code, out, errOut := runCLI(t, bin, "", []string{"XDG_STATE_HOME=" + state}, "-f", specFile, "-o", "json")
		if code != 0 {
			t.Fatalf("%s: apply exited %d\n%s\n%s", what, code, out, errOut)
		}
		for _, v := range planted {
			if strings.Contains(out+errOut, v) {
				t.Errorf("%s: the apply's output shows the credential's value:\n%s\n%s", what, out, errOut)
			}
		}
		return out, errOut
	}
	apply("first apply", credentialsSpec(name, agentImage))

	// The stand-ins sit on the egress network, at private addresses that
	// allowCIDRs must hold.
	apiIP, apiLog := tlsServer(t, c, serverImage, name, credHost, certPEM, keyPEM)
	plainIP, plainLog := tlsServer(t, c, serverImage, name, plainHost, certPEM, keyPEM)
	out, _ := apply("apply with allowCIDRs", credentialsSpec(name, agentImage, apiIP+"/32", plainIP+"/32"))
	// The apply's self-test (it failed the apply otherwise) proved the
	// interception of the credentialed host, and none of the other.
	for _, want := range []string{`"got": "intercepted"`, `"got": "not-intercepted"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the apply's self-test has no interception check that %s:\n%s", want, out)
		}
	}

	// Applied again, nothing changes: the CA is the one kept.
	if steps := planSteps(t, func() string {
		o, _ := apply("no-op apply", credentialsSpec(name, agentImage, apiIP+"/32", plainIP+"/32"))
		return o
	}(), name); len(steps) != 0 {
		t.Errorf("an unchanged spec applied again changes %v", steps)
	}
	// --verify alone, with no secret read, checks the interception
	// against the CA kept for the bottle.
	code, vout, verr := runCLI(t, bin, "", []string{"XDG_STATE_HOME=" + state}, "-f", specFile, "--verify", "-o", "json")
	if code != 0 || !strings.Contains(vout, `"got": "intercepted"`) {
		t.Errorf("--verify exited %d without an interception check that passed:\n%s\n%s", code, vout, verr)
	}
	// status -f tells the bottle in sync.
	code, sout, serr := runCLI(t, bin, "", []string{"XDG_STATE_HOME=" + state}, "status", "-f", specFile, "-o", "json")
	if code != 0 || !strings.Contains(sout, `"inSync": true`) {
		t.Errorf("status -f exited %d, not in sync:\n%s\n%s", code, sout, serr)
	}

	exec := func(stdin string, cmd ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, bin, stdin, []string{"XDG_STATE_HOME=" + state}, append([]string{"exec", "-i", name, "--"}, cmd...)...)
	}
	get := func(what string, cmd ...string) echoed {
		t.Helper()
		code, out, errOut := exec("", cmd...)
		if code != 0 {
			t.Fatalf("%s: exited %d\n%s\n%s", what, code, out, errOut)
		}
		var e echoed
		body := out[strings.Index(out, "{"):]
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatalf("%s: not the stand-in's echo: %v\n%s", what, err, out)
		}
		return e
	}

	// curl, a Go client and Node's fetch, with no flags: the header
	// arrives, with the value; the agent's own value of it is replaced.
	clients := []struct {
		what string
		cmd  []string
	}{
		{"curl", []string{"curl", "-sS", "-H", "x-api-key: the-agent-s-own", "https://" + credHost + "/echo"}},
		{"Go", []string{"httpget", "https://" + credHost + "/echo"}},
	}
	if testenv.NodeBinary() != "" {
		clients = append(clients, struct {
			what string
			cmd  []string
		}{"Node", []string{"node", "-e", `fetch("https://` + credHost + `/echo").then(r => r.text()).then(console.log, e => { console.error(e); process.exit(1) })`}})
	} else {
		t.Log("no Node 22.21 or later at hand (hack/ensure-deps.sh caches one where npm is): curl and Go only")
	}
	for _, tc := range clients {
		e := get(tc.what, tc.cmd...)
		if got := e.Header["X-Api-Key"]; len(got) != 1 || got[0] != value {
			t.Errorf("%s: the stand-in got x-api-key %q; want the credential's value, once", tc.what, got)
		}
		if e.Host != credHost || e.SNI != credHost {
			t.Errorf("%s: the stand-in got Host %q, SNI %q; want %s", tc.what, e.Host, e.SNI, credHost)
		}
	}
	// The agent sees the bottle's CA on the credentialed host, and the
	// stand-in's own certificate on the other: a plain tunnel.
	for host, want := range map[string]string{credHost: "bottle-apply CA", plainHost: upstreamCN} {
		code, out, errOut := exec("", "httpget", "-issuer", "https://"+host+"/")
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("the certificate the agent got for %s was issued by %q (exit %d, %s); want %q", host, strings.TrimSpace(out), code, errOut, want)
		}
	}
	if e := get("curl to the other host", "curl", "-sSk", "https://"+plainHost+"/echo"); len(e.Header["X-Api-Key"]) != 0 {
		t.Errorf("the host without a credential got x-api-key %q", e.Header["X-Api-Key"])
	}

	// Another Host inside the intercepted tunnel: refused, and nothing
	// reaches the stand-in.
	code, out2, errOut := exec("", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: "+plainHost, "https://"+credHost+"/smuggled")
	if code != 0 || strings.TrimSpace(out2) != "403" {
		t.Errorf("a request for Host %s inside the tunnel to %s: exit %d, status %q (%s); want 403", plainHost, credHost, code, out2, errOut)
	}
	// A redirect goes back to the agent, not followed.
	code, out2, errOut = exec("", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "https://"+credHost+"/redirect")
	if code != 0 || strings.TrimSpace(out2) != "302" {
		t.Errorf("the stand-in's redirect: exit %d, status %q (%s); want the 302 itself", code, out2, errOut)
	}
	// Plain HTTP to the credentialed host: refused.
	code, out2, errOut = exec("", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://"+credHost+"/plain")
	if code != 0 || strings.TrimSpace(out2) != "403" {
		t.Errorf("plain HTTP to %s: exit %d, status %q (%s); want 403", credHost, code, out2, errOut)
	}
	time.Sleep(200 * time.Millisecond) // the stand-ins' logs
	if l := apiLog(); strings.Contains(l, "/smuggled") || strings.Contains(l, "/plain") {
		t.Errorf("a refused request reached the stand-in:\n%s", l)
	}
	if l := plainLog(); strings.Contains(l, "/landing") {
		t.Errorf("the bundle followed the redirect:\n%s", l)
	}

	// The agent's view never holds the value: its environment (the
	// placeholder is there instead), its files, every process's
	// environment. The value comes in on stdin, so that no command line
	// holds it.
	code, env, _ := exec("", "env")
	if code != 0 || !strings.Contains(env, "API_KEY="+bottle.CredentialPlaceholder) || !strings.Contains(env, "SSL_CERT_FILE="+bottle.AgentCABundle) {
		t.Errorf("the agent's environment lacks the placeholder or the CA variables:\n%s", env)
	}
	search := `read v; grep -rlsF "$v" /etc /root /tmp /bin /usr /run /home 2>/dev/null; cat /proc/[0-9]*/environ 2>/dev/null | grep -cF "$v"`
	_, found, _ := exec(value+"\n", "sh", "-c", search)
	if strings.TrimSpace(found) != "0" {
		t.Errorf("the agent holds the credential's value: %q", found)
	}
	// Neither the bundle's nor the agent's inspect shows it.
	for _, role := range []string{bottle.RoleBundle, bottle.RoleAgent} {
		insp, err := c.ContainerInspect(t.Context(), bottle.ResourceName(name, role))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(insp)
		if strings.Contains(string(raw), value) {
			t.Errorf("docker inspect of the %s shows the credential's value", role)
		}
	}
	// The decision log names the credential, never its value.
	code, logs, _ := runCLI(t, bin, "", []string{"XDG_STATE_HOME=" + state}, "logs", name, "-o", "json")
	if code != 0 || strings.Contains(logs, value) || !strings.Contains(logs, "x-api-key") {
		t.Errorf("the decision log (exit %d) shows the value or does not name the credential:\n%s", code, logs)
	}

	// Rotating the value replaces the bundle, not the agent.
	rotated := randomSecret(t)
	planted = append(planted, rotated)
	write("secrets/token", []byte(rotated+"\n"))
	out, _ = apply("rotation", credentialsSpec(name, agentImage, apiIP+"/32", plainIP+"/32"))
	steps := planSteps(t, out, name)
	if steps[bottle.RoleBundle] != "replace" || steps[bottle.RoleAgent] != "" {
		t.Errorf("rotating the value: the plan's steps by role are %v; want the bundle replaced and the agent left alone\n%s", steps, out)
	}
	if e := get("curl after the rotation", "curl", "-sS", "https://"+credHost+"/echo"); len(e.Header["X-Api-Key"]) != 1 || e.Header["X-Api-Key"][0] != rotated {
		t.Errorf("after the rotation the stand-in got x-api-key %q; want the new value", e.Header["X-Api-Key"])
	}

	// A wiped state directory: the CA is made anew, and the plan says the
	// agent is replaced for it (a dry run keeps nothing).
	if err := os.RemoveAll(filepath.Join(state, "bottle-apply", "ca")); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, bin, "", []string{"XDG_STATE_HOME=" + state}, "-f", specFile, "--dry-run")
	if code != 0 || !regexp.MustCompile(`(?m)^\s*-/\+ \S+/agent\s+credentialCA changed`).MatchString(out+errOut) {
		t.Errorf("a dry run without the kept CA (exit %d) does not say the agent is replaced for it:\n%s\n%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(state, "bottle-apply", "ca")); !os.IsNotExist(err) {
		t.Errorf("a dry run kept a CA: %v", err)
	}
}

// planSteps reads an apply's -o json output: the action of each step of
// the plan that changes something, by the role of the bottle's resource.
func planSteps(t *testing.T, out, name string) map[string]string {
	t.Helper()
	var res struct {
		Plan struct {
			Steps []struct {
				Action string `json:"action"`
				Name   string `json:"name"`
			} `json:"steps"`
		} `json:"plan"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("apply -o json: %v\n%s", err, out)
	}
	steps := map[string]string{}
	for _, s := range res.Plan.Steps {
		if s.Action != "noop" {
			steps[strings.TrimPrefix(s.Name, "bottle-"+name+"-")] = s.Action
		}
	}
	return steps
}

// TestE2ESmolvmCredentials: on smolvm (the fake), the machine gets the
// bottle's CA and the placeholder and never the value, which goes to the
// docker bundle alone; rotating it replaces the bundle, not the machine.
func TestE2ESmolvmCredentials(t *testing.T) {
	t.Parallel()
	e := newSmolEnv(t, "1.9.3")
	value := randomSecret(t)
	dir := filepath.Dir(e.path)
	writeValue := func(v string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "secrets", "token"), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeValue(value)
	raw, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	spec := string(raw) + `  bundle:
    daemons: [egress, dns]
    egress:
      allow: [` + credHost + `]
      credentials:
        - {host: ` + credHost + `, header: Authorization, prefix: "Bearer ", valueFrom: {file: secrets/token}, agentEnv: GH_TOKEN}
`
	if err := os.WriteFile(e.path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	noValue := func(what, text string) {
		t.Helper()
		if strings.Contains(text, value) {
			t.Errorf("%s shows the credential's value:\n%s", what, text)
		}
	}
	out := e.mustApply("-o", "json")
	noValue("the apply", out)
	noValue("the smolvm command lines", strings.Join(e.argv(), "\n"))
	m := e.machine()
	if m == nil {
		t.Fatal("no machine")
	}
	js, _ := json.Marshal(m)
	noValue("the machine's record", string(js))
	for _, want := range []string{"GH_TOKEN=" + bottle.CredentialPlaceholder, "NODE_EXTRA_CA_CERTS=" + bottle.AgentCAFile, "SSL_CERT_FILE=" + bottle.AgentCABundle} {
		if !strings.Contains(string(js), want) {
			t.Errorf("the machine's environment lacks %s:\n%s", want, js)
		}
	}
	root := filepath.Join(e.state, "roots", bottle.ResourceName(e.name, bottle.RoleAgent))
	caPEM, err := os.ReadFile(filepath.Join(root, bottle.AgentCAFile))
	if err != nil || !strings.Contains(string(caPEM), "BEGIN CERTIFICATE") {
		t.Fatalf("the machine has no CA at %s: %v", bottle.AgentCAFile, err)
	}
	joined, err := os.ReadFile(filepath.Join(root, bottle.AgentCABundle))
	if err != nil || !strings.HasSuffix(string(joined), string(caPEM)) || strings.Count(string(joined), "BEGIN CERTIFICATE") < 100 {
		t.Errorf("the machine's %s is not the roots then the bottle's CA (%v)", bottle.AgentCABundle, err)
	}
	// The bundle, a docker container, is told where the file is, never
	// what it holds.
	c := testenv.Docker(t)
	insp, err := c.ContainerInspect(t.Context(), bottle.ResourceName(e.name, bottle.RoleBundle))
	if err != nil {
		t.Fatal(err)
	}
	ij, _ := json.Marshal(insp)
	noValue("docker inspect of the bundle", string(ij))
	if !strings.Contains(string(ij), "BOTTLE_CREDENTIALS_FILE="+bottle.BundleSecretsFile) {
		t.Errorf("the bundle is not told where its credentials are")
	}

	writeValue(randomSecret(t))
	out = e.mustApply("-o", "json")
	if steps := planSteps(t, out, e.name); steps[bottle.RoleBundle] != "replace" || len(steps) != 1 {
		t.Errorf("rotating the value: the plan's steps are %v; want the bundle replaced, nothing else", steps)
	}
}
