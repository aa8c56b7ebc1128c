package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

// secretEnvVar is the variable of bottle-apply's environment the test's
// spec reads a secret from.
const secretEnvVar = "BOTTLE_E2E_API_KEY"

func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "sk-test-" + hex.EncodeToString(b)
}

// TestE2ESecretsNeverShown applies a bottle whose agent gets one secret
// from the environment and one from a file next to the spec, through every
// kind of run (debug logs in both formats, JSON output, dry runs, a value
// changed, a run that fails), and checks that no byte bottle-apply writes
// holds a secret's value, while the agent does receive them.
func TestE2ESecretsNeverShown(t *testing.T) {
	t.Parallel()
	c := testenv.Docker(t)
	bin := testenv.Binary(t)
	img := testenv.AgentImage(t, c)
	path, name := example(t, c, "hello.yaml", img)
	dir := filepath.Dir(path)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	withSecrets := strings.Replace(string(raw), "      GREETING: hello\n", "      GREETING: hello\n"+
		"    secretEnv:\n"+
		"      API_KEY:\n        valueFrom: {env: "+secretEnvVar+"}\n"+
		"      FILE_TOKEN:\n        valueFrom: {file: secrets/token}\n", 1)
	if withSecrets == string(raw) {
		t.Fatal("the example has no GREETING to put secretEnv after")
	}
	if err := os.WriteFile(path, []byte(withSecrets), 0o644); err != nil {
		t.Fatal(err)
	}
	writeToken := func(v string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "secrets", "token"), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The key lives in a state directory of the test's own, kept for all
	// runs: the same key, the same digests.
	state := t.TempDir()
	var planted []string // every value any run may know
	envKey, fileTok := randomSecret(t), randomSecret(t)
	planted = append(planted, envKey, fileTok)
	writeToken(fileTok)

	// runWith runs bottle-apply with the given value of secretEnvVar and
	// searches all it writes for every value planted so far.
	runWith := func(what, value string, args ...string) (int, string, string) {
		t.Helper()
		code, out, errs := runCLI(t, bin, "", []string{"XDG_STATE_HOME=" + state, secretEnvVar + "=" + value}, args...)
		for _, v := range planted {
			for stream, text := range map[string]string{"stdout": out, "stderr": errs} {
				if strings.Contains(text, v) {
					t.Errorf("%s: %s shows a secret's value:\n%s", what, stream, text)
				}
			}
		}
		return code, out, errs
	}
	run := func(what string, args ...string) (int, string, string) {
		t.Helper()
		return runWith(what, envKey, args...)
	}
	mustExit := func(what string, want, code int, out, errs string) {
		t.Helper()
		if code != want {
			t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", what, code, want, out, errs)
		}
	}
	// agentHas checks the agent's environment from inside. The values are
	// in this command's argv, so its output is not searched.
	agentHas := func(what, key, tok string) {
		t.Helper()
		code, out, errs := runCLI(t, bin, "", nil, "exec", name, "--", "sh", "-c",
			`test "$API_KEY" = "`+key+`" && test "$FILE_TOKEN" = "`+tok+`" && echo same`)
		if code != 0 || out != "same\n" {
			t.Fatalf("%s: the agent lacks its secrets: exit %d, stdout %q, stderr %q", what, code, out, errs)
		}
	}
	type result struct {
		Changed bool   `json:"changed"`
		Error   string `json:"error"`
		Plan    struct {
			Steps []struct {
				Resource string `json:"resource"`
				Reason   string `json:"reason"`
			} `json:"steps"`
		} `json:"plan"`
	}
	parse := func(what, out string) result {
		t.Helper()
		var r result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%s: stdout is not JSON: %v\n%s", what, err, out)
		}
		return r
	}

	// Create, with every engine call logged.
	code, out, errs := run("first apply", "-f", path, "--log-level", "debug")
	mustExit("first apply", 0, code, out, errs)
	if !strings.Contains(out, "+   docker-container:"+name+"/agent") {
		t.Fatalf("first apply: no agent created:\n%s", out)
	}
	agentHas("first apply", envKey, fileTok)

	// Nothing changed: the key and the digests are stable.
	code, out, errs = run("second apply", "-f", path, "--log-level", "debug", "--log-format", "json", "-o", "json", "--detailed-exitcode")
	mustExit("second apply", 0, code, out, errs)
	if r := parse("second apply", out); r.Changed {
		t.Fatalf("second apply changed something: %s", out)
	}

	// The labels hold digests only.
	id := containerID(t, c, "bottle-"+name+"-agent")
	inspect, err := c.ContainerInspect(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	labels, _ := json.Marshal(inspect.Config.Labels)
	for _, v := range planted {
		if strings.Contains(string(labels), v) {
			t.Errorf("the agent's labels hold a secret: %s", labels)
		}
	}
	if !strings.Contains(inspect.Config.Labels["io.bottle-apply.inputs"], "secretEnv=") {
		t.Errorf("inputs label %q lacks secretEnv", inspect.Config.Labels["io.bottle-apply.inputs"])
	}

	// A new value in the environment: a dry run names the change, in text
	// and in JSON, and changes nothing.
	envKey = randomSecret(t)
	planted = append(planted, envKey)
	code, out, errs = run("dry run", "-f", path, "--dry-run", "--detailed-exitcode", "--log-level", "debug")
	mustExit("dry run", 2, code, out, errs)
	if !strings.Contains(out, "-/+ docker-container:"+name+"/agent  secretEnv changed") {
		t.Fatalf("dry run: no replace for the new secret:\n%s", out)
	}
	code, out, errs = run("json dry run", "-f", path, "--dry-run", "-o", "json", "--log-level", "debug", "--log-format", "json")
	mustExit("json dry run", 0, code, out, errs)
	if r := parse("json dry run", out); !strings.Contains(out, `"secretEnv changed"`) || r.Error != "" {
		t.Fatalf("json dry run: %s", out)
	}
	if containerID(t, c, "bottle-"+name+"-agent") != id {
		t.Fatal("a dry run replaced the agent")
	}

	// Apply it, and a new file value too.
	fileTok = randomSecret(t)
	planted = append(planted, fileTok)
	writeToken(fileTok)
	code, out, errs = run("apply new values", "-f", path, "-o", "json", "--log-level", "debug", "--log-format", "json")
	mustExit("apply new values", 0, code, out, errs)
	if r := parse("apply new values", out); !r.Changed {
		t.Fatalf("apply new values changed nothing: %s", out)
	}
	agentHas("apply new values", envKey, fileTok)
	appliedKey, appliedTok := envKey, fileTok

	// A run that fails: the new image cannot be pulled (nothing listens on
	// 127.0.0.1:1), with new values on the way.
	envKey = randomSecret(t)
	planted = append(planted, envKey)
	broken := strings.Replace(withSecrets, "image: "+img, "image: 127.0.0.1:1/absent:x", 1)
	if broken == withSecrets {
		t.Fatal("no image to replace")
	}
	if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = run("failed apply", "-f", path, "--log-level", "debug")
	mustExit("failed apply", 1, code, out, errs)
	if !strings.Contains(out+errs, "absent") {
		t.Errorf("failed apply: the error does not name the image:\n%s\n%s", out, errs)
	}
	code, out, errs = run("failed json apply", "-f", path, "-o", "json", "--log-level", "debug", "--log-format", "json")
	mustExit("failed json apply", 1, code, out, errs)
	if r := parse("failed json apply", out); r.Error == "" {
		t.Errorf("failed json apply: no error in %s", out)
	}

	// A secret that is not set: a clear error, nothing changed.
	if err := os.WriteFile(path, []byte(withSecrets), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runWith("unset secret", "", "-f", path, "--log-level", "debug")
	mustExit("unset secret", 1, code, out, errs)
	if !strings.Contains(errs, "set "+secretEnvVar+" in the environment") || strings.Contains(out, "docker-container") {
		t.Errorf("unset secret: stdout %q, stderr %q", out, errs)
	}
	agentHas("after the failed runs", appliedKey, appliedTok)

	// Destroy needs no secret.
	code, out, errs = runWith("destroy", "", "-f", path, "--destroy", "--log-level", "debug")
	mustExit("destroy", 0, code, out, errs)
	if left := testenv.Leftovers(t, c, name); len(left) != 0 {
		t.Fatalf("left after destroy: %q", left)
	}
	key, err := os.Stat(filepath.Join(state, "bottle-apply", "secret.key"))
	if err != nil || key.Mode().Perm() != 0o600 {
		t.Errorf("secret key: %v, %v", key, err)
	}
}
