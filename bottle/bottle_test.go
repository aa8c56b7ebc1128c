package bottle

import (
	"slices"
	"testing"

	"github.com/bottle-apply/bottle-apply/spec"
)

// The agent's env: the spec's, the secrets', the proxy variables and
// NODE_USE_ENV_PROXY=1, which a value the spec gives it (any value) wins
// over.
func TestAgentEnv(t *testing.T) {
	t.Parallel()
	const proxy = "http://10.9.0.2:8888"
	proxyVars := []string{"HTTPS_PROXY=" + proxy, "HTTP_PROXY=" + proxy, "NO_PROXY=localhost,127.0.0.1",
		"http_proxy=" + proxy, "https_proxy=" + proxy, "no_proxy=localhost,127.0.0.1"}
	with := func(extra ...string) []string {
		out := append(slices.Clone(proxyVars), extra...)
		slices.Sort(out)
		return out
	}
	tests := []struct {
		name    string
		env     map[string]string
		secrets []Secret
		want    []string
	}{
		{"default", nil, nil, with("NODE_USE_ENV_PROXY=1")},
		{"spec env beside it", map[string]string{"FOO": "bar"}, nil, with("FOO=bar", "NODE_USE_ENV_PROXY=1")},
		{"spec sets 0", map[string]string{"NODE_USE_ENV_PROXY": "0"}, nil, with("NODE_USE_ENV_PROXY=0")},
		{"spec sets empty", map[string]string{"NODE_USE_ENV_PROXY": ""}, nil, with("NODE_USE_ENV_PROXY=")},
		{"spec sets 1", map[string]string{"NODE_USE_ENV_PROXY": "1"}, nil, with("NODE_USE_ENV_PROXY=1")},
		{"a secret sets it", nil, []Secret{{Name: "NODE_USE_ENV_PROXY", Value: "0"}}, with("NODE_USE_ENV_PROXY=0")},
		{"another secret", nil, []Secret{{Name: "API_KEY", Value: "k"}}, with("API_KEY=k", "NODE_USE_ENV_PROXY=1")},
		{"case matters", map[string]string{"node_use_env_proxy": "0"}, nil, with("NODE_USE_ENV_PROXY=1", "node_use_env_proxy=0")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := New(spec.Bottle{Metadata: spec.Metadata{Name: "x"},
				Spec: spec.Spec{Agent: spec.Agent{Image: "alpine", Env: tt.env}, Network: spec.Network{BundleIP: "10.9.0.2"}}})
			b.Secrets = tt.secrets
			if got := b.AgentEnv(); !slices.Equal(got, tt.want) {
				t.Errorf("AgentEnv =\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
}

func TestDNSLimitsEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   spec.EgressDNS
		want []string
	}{
		{spec.EgressDNS{}, nil},
		{spec.EgressDNS{MaxLabelLength: 20}, []string{"BOTTLE_DNS_MAX_LABEL_LENGTH=20"}},
		{spec.EgressDNS{MaxNameLength: 90, MaxLabelLength: 30, NewNamesPerMinute: 5},
			[]string{"BOTTLE_DNS_MAX_NAME_LENGTH=90", "BOTTLE_DNS_MAX_LABEL_LENGTH=30", "BOTTLE_DNS_NEW_NAMES_PER_MINUTE=5"}},
	} {
		if got := DNSLimitsEnv(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("DNSLimitsEnv(%+v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
