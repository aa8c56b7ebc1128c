package spec

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// invalidCases maps each testdata/invalid-*.yaml (or the paths given) to the
// exact text of the error Load returns.
var invalidCases = []struct {
	name  string
	paths []string // nil: testdata/name
	want  []string
}{
	{"invalid-alias-bomb.yaml", nil, []string{
		"testdata/invalid-alias-bomb.yaml:8:8: too many nodes after expanding aliases (more than 100000): a bottle needs far fewer; check the anchors (&) and aliases (*) this one expands",
	}},
	{"invalid-allowcidrs.yaml", nil, []string{
		"testdata/invalid-allowcidrs.yaml:11:9: spec.network.allowCIDRs[1]: \"bogus\" is not a CIDR (e.g. 10.0.0.0/8 or fd00::/8)",
		"testdata/invalid-allowcidrs.yaml:12:9: spec.network.allowCIDRs[2]: \"10.1.2.3/8\" is not a network address; did you mean \"10.0.0.0/8\"?",
		"testdata/invalid-allowcidrs.yaml:13:9: spec.network.allowCIDRs[3]: \"10.0.0.0/8\" is already listed at spec.network.allowCIDRs[0]",
		"testdata/invalid-allowcidrs.yaml:15:9: spec.network.allowCIDRs[5]: \"FD00::/8\" is already listed at spec.network.allowCIDRs[4]",
		"testdata/invalid-allowcidrs.yaml:16:9: spec.network.allowCIDRs[6]: \"1.2.3.4/33\" is not a CIDR (e.g. 10.0.0.0/8 or fd00::/8)",
	}},
	{"invalid-backend.yaml", nil, []string{
		"testdata/invalid-backend.yaml:6:12: spec.backend: \"podman\" is not one of: docker, smolvm, kubernetes",
	}},
	{"invalid-bundleip-format.yaml", nil, []string{
		"testdata/invalid-bundleip-format.yaml:4:78: spec.network.bundleIP: \"300.1.1.1\" is not an IPv4 address",
		"testdata/invalid-bundleip-format.yaml:9:78: spec.network.bundleIP: \"fd00::2\" is not an IPv4 address",
	}},
	{"invalid-bundleip-no-subnet.yaml", nil, []string{
		"testdata/invalid-bundleip-no-subnet.yaml:9:15: spec.network.bundleIP: requires spec.network.subnet to be set",
	}},
	{"invalid-bundleip-range.yaml", nil, []string{
		"testdata/invalid-bundleip-range.yaml:4:78: spec.network.bundleIP: 192.168.1.2 is not inside the subnet 192.168.240.0/24",
		"testdata/invalid-bundleip-range.yaml:9:78: spec.network.bundleIP: 192.168.240.0 is the network address of 192.168.240.0/24; use a host address such as 192.168.240.2",
		"testdata/invalid-bundleip-range.yaml:14:78: spec.network.bundleIP: 192.168.240.255 is the broadcast address of 192.168.240.0/24; use a host address such as 192.168.240.2",
		"testdata/invalid-bundleip-range.yaml:19:73: spec.network.bundleIP: 10.1.0.1 is the gateway of 10.1.0.0/16; use another host address such as 10.1.0.2",
	}},
	{"invalid-credentials.yaml", nil, []string{
		"testdata/invalid-credentials.yaml:11:7: spec.agent.env.SSL_CERT_FILE: reserved: set by bottle-apply to the bottle's CA (spec.bundle.egress.credentials)",
		"testdata/invalid-credentials.yaml:14:7: spec.agent.secretEnv.NODE_EXTRA_CA_CERTS: reserved: set by bottle-apply to the bottle's CA (spec.bundle.egress.credentials)",
		"testdata/invalid-credentials.yaml:16:16: spec.agent.files[0].path: \"/etc/bottle-apply/ca.pem\" is under /etc/bottle-apply, where bottle-apply puts the bottle's CA (spec.bundle.egress.credentials); choose another path",
		"testdata/invalid-credentials.yaml:18:9: spec.agent.volumes[0].target: \"/etc/bottle-apply\" is under /etc/bottle-apply, where bottle-apply puts the bottle's CA (spec.bundle.egress.credentials), which a volume would hide; mount it elsewhere",
		"testdata/invalid-credentials.yaml:20:14: spec.bundle.daemons: has no egress, which adds spec.bundle.egress.credentials to the agent's requests; add egress to spec.bundle.daemons",
		"testdata/invalid-credentials.yaml:25:44: spec.bundle.egress.credentials[1].header: \"X-Api-Key\" is already set on api.example.com by spec.bundle.egress.credentials[0]; give each header of a host one credential",
		"testdata/invalid-credentials.yaml:26:18: spec.bundle.egress.credentials[2].host: \"*.cdn.example.com\" is a wildcard; credentials go to exact names: name the host itself, and add it to spec.bundle.egress.allow",
		"testdata/invalid-credentials.yaml:27:18: spec.bundle.egress.credentials[3].host: \"x.cdn.example.com\" is allowed only by the wildcard rule \"*.cdn.example.com\"; credentials go to exact names: add \"x.cdn.example.com\" to spec.bundle.egress.allow",
		"testdata/invalid-credentials.yaml:28:18: spec.bundle.egress.credentials[4].host: \"other.example.com\" is not in spec.bundle.egress.allow; credentials go to exact names: add \"other.example.com\" to spec.bundle.egress.allow",
		"testdata/invalid-credentials.yaml:29:18: spec.bundle.egress.credentials[5].host: \"10.0.0.1\" is an IP address; credentials go to names of spec.bundle.egress.allow, which an allow rule names",
		"testdata/invalid-credentials.yaml:30:18: spec.bundle.egress.credentials[6].host: \"a..b\": the name has an empty label",
		"testdata/invalid-credentials.yaml:31:11: spec.bundle.egress.credentials[7].host: required field is missing",
		"testdata/invalid-credentials.yaml:32:11: spec.bundle.egress.credentials[8].header: required field is missing",
		"testdata/invalid-credentials.yaml:33:43: spec.bundle.egress.credentials[9].header: must not be empty",
		"testdata/invalid-credentials.yaml:34:43: spec.bundle.egress.credentials[10].header: \"Host\" is a header of the connection, which the proxy owns; name the header the service reads the credential from (such as x-api-key or Authorization)",
		"testdata/invalid-credentials.yaml:35:43: spec.bundle.egress.credentials[11].header: \"Proxy-Authorization\" is a header of the connection, which the proxy owns; name the header the service reads the credential from (such as x-api-key or Authorization)",
		"testdata/invalid-credentials.yaml:36:43: spec.bundle.egress.credentials[12].header: \"Transfer-Encoding\" is a header of the connection, which the proxy owns; name the header the service reads the credential from (such as x-api-key or Authorization)",
		"testdata/invalid-credentials.yaml:37:43: spec.bundle.egress.credentials[13].header: \":authority\" is a pseudo-header, which the proxy writes itself from the request; name an ordinary header such as x-api-key",
		"testdata/invalid-credentials.yaml:38:43: spec.bundle.egress.credentials[14].header: \"x api key\" is not a header name: use letters, digits and !#$%&'*+-.^_`|~ (such as x-api-key or Authorization)",
		"testdata/invalid-credentials.yaml:39:66: spec.bundle.egress.credentials[15].prefix: holds the control character U+000D, which a header's value may not; write the prefix on one line, such as \"Bearer \"",
		"testdata/invalid-credentials.yaml:40:46: spec.bundle.egress.credentials[16].valueFrom: needs exactly one of env (a variable of bottle-apply's environment) and file (a path relative to the spec file's directory)",
		"testdata/invalid-credentials.yaml:41:11: spec.bundle.egress.credentials[17].valueFrom: needs exactly one of env (a variable of bottle-apply's environment) and file (a path relative to the spec file's directory)",
		"testdata/invalid-credentials.yaml:42:46: spec.bundle.egress.credentials[18].valueFrom: has both env and file; set exactly one",
		"testdata/invalid-credentials.yaml:43:63: spec.bundle.egress.credentials[19].valueFrom.env: \"BAD-NAME\" is not a valid variable name: must match ^[A-Za-z_][A-Za-z0-9_]*$",
		"testdata/invalid-credentials.yaml:44:64: spec.bundle.egress.credentials[20].valueFrom.file: \"/etc/shadow\" is an absolute path; write it relative to the spec file's directory",
		"testdata/invalid-credentials.yaml:45:64: spec.bundle.egress.credentials[21].valueFrom.file: \"../token\" holds \"..\"; a secret file must be inside the spec file's directory",
		"testdata/invalid-credentials.yaml:46:77: spec.bundle.egress.credentials[22].agentEnv: not a valid variable name: must match ^[A-Za-z_][A-Za-z0-9_]*$",
		"testdata/invalid-credentials.yaml:47:77: spec.bundle.egress.credentials[23].agentEnv: reserved: set by bottle-apply to point at the bundle's proxy",
		"testdata/invalid-credentials.yaml:48:77: spec.bundle.egress.credentials[24].agentEnv: \"SHARED\" is also set in spec.agent.env; the placeholder takes its place: remove it there",
		"testdata/invalid-credentials.yaml:49:77: spec.bundle.egress.credentials[25].agentEnv: \"SECRET_TOO\" is also set in spec.agent.secretEnv, which would hand the agent a secret the bundle adds; remove it there",
		"testdata/invalid-credentials.yaml:50:77: spec.bundle.egress.credentials[26].agentEnv: \"API_KEY\" is already the agentEnv of spec.bundle.egress.credentials[0]; set each variable once",
		"testdata/invalid-credentials.yaml:51:77: spec.bundle.egress.credentials[27].agentEnv: \"CURL_CA_BUNDLE\" is reserved: set by bottle-apply to the bottle's CA; name the variable the client reads its key from",
		"testdata/invalid-credentials.yaml:52:67: spec.bundle.egress.credentials[28].value: unknown field (known fields: host, header, prefix, valueFrom, agentEnv)",
		"testdata/invalid-credentials.yaml:53:77: spec.bundle.egress.credentials[29].agentEnv: expected a string, got a list",
		"testdata/invalid-credentials.yaml:54:18: spec.bundle.egress.credentials[30].host: \"api.example.com:443\" has a port; write the host alone (\"api.example.com\"): the bundle adds the credential on the ports its allow rule gives",
		"testdata/invalid-credentials.yaml:55:31: spec.bundle.egress.trust[1]: \"/etc/ssl/root.pem\" is an absolute path; write it relative to the spec file's directory",
		"testdata/invalid-credentials.yaml:55:50: spec.bundle.egress.trust[2]: \"../root.pem\" holds \"..\"; a trust file must be inside the spec file's directory",
		"testdata/invalid-credentials.yaml:55:63: spec.bundle.egress.trust[3]: \"./certs/root.pem\" is already listed at spec.bundle.egress.trust[0]",
		"testdata/invalid-credentials.yaml:55:81: spec.bundle.egress.trust[4]: \".\" is the spec file's directory itself; name a file in it",
		"testdata/invalid-credentials.yaml:65:43: spec.bundle.egress.trust: has no effect without spec.bundle.egress.credentials: the bundle verifies with it only the connections it opens to add them; remove it",
	}},
	{"invalid-daemons.yaml", nil, []string{
		"testdata/invalid-daemons.yaml:9:23: spec.bundle.daemons[1]: \"ntp\" is not one of: egress, dns",
		"testdata/invalid-daemons.yaml:9:33: spec.bundle.daemons[3]: \"egress\" is already listed at spec.bundle.daemons[0]",
	}},
	{"invalid-duplicate-key.yaml", nil, []string{
		"testdata/invalid-duplicate-key.yaml:10:7: spec.agent.env.A: duplicate key (first defined at line 9)",
		"testdata/invalid-duplicate-key.yaml:11:5: spec.agent.image: duplicate key (first defined at line 7)",
	}},
	{"invalid-duplicate-name.yaml", nil, []string{
		"testdata/invalid-duplicate-name.yaml:11:9: metadata.name: duplicate bottle name \"twin\" (first defined at testdata/invalid-duplicate-name.yaml:4)",
	}},
	{"invalid-empty-values.yaml", nil, []string{
		"testdata/invalid-empty-values.yaml:2:7: kind: must not be empty (must be \"Bottle\")",
		"testdata/invalid-empty-values.yaml:4:9: metadata.name: must not be empty",
		"testdata/invalid-empty-values.yaml:7:5: spec.agent.image: must not be empty (an image reference such as alpine:3.20)",
	}},
	{"invalid-empty.yaml", nil, []string{
		"testdata/invalid-empty.yaml:1:1: no bottle in file (it is empty or holds only comments)",
	}},
	{"invalid-env.yaml", nil, []string{
		"testdata/invalid-env.yaml:10:7: spec.agent.env.1FOO: not a valid variable name: must match ^[A-Za-z_][A-Za-z0-9_]*$",
		"testdata/invalid-env.yaml:11:7: spec.agent.env.FOO-BAR: not a valid variable name: must match ^[A-Za-z_][A-Za-z0-9_]*$",
		"testdata/invalid-env.yaml:12:7: spec.agent.env.HTTP_PROXY: reserved: set by bottle-apply to point at the bundle's proxy",
		"testdata/invalid-env.yaml:13:7: spec.agent.env.no_proxy: reserved: set by bottle-apply to point at the bundle's proxy",
	}},
	{"invalid-header.yaml", nil, []string{
		"testdata/invalid-header.yaml:1:13: apiVersion: \"bottle-apply/v2\" is not supported; must be \"bottle-apply/v1\"",
		"testdata/invalid-header.yaml:2:7: kind: \"Botle\" is not supported; must be \"Bottle\"",
	}},
	{"invalid-image.yaml", nil, []string{
		"testdata/invalid-image.yaml:7:12: spec.agent.image: \"Ubuntu:latest\" is not a valid image reference: invalid reference format: repository name (library/Ubuntu) must be lowercase",
		"testdata/invalid-image.yaml:9:12: spec.bundle.image: \"bad image\" is not a valid image reference: invalid reference format",
	}},
	{"invalid-key-type.yaml", nil, []string{
		"testdata/invalid-key-type.yaml:9:9: spec.agent.env: expected a string key, got a list",
	}},
	{"invalid-merge-key.yaml", nil, []string{
		"testdata/invalid-merge-key.yaml:7:5: spec.agent: merge keys (<<) are not supported",
		"testdata/invalid-merge-key.yaml:7:5: spec.agent.image: required field is missing (an image reference such as alpine:3.20)",
	}},
	{"invalid-missing-header.yaml", nil, []string{
		"testdata/invalid-missing-header.yaml:2:1: apiVersion: required field is missing (must be \"bottle-apply/v1\")",
		"testdata/invalid-missing-header.yaml:2:1: kind: required field is missing (must be \"Bottle\")",
	}},
	{"invalid-missing-image.yaml", nil, []string{
		"testdata/invalid-missing-image.yaml:7:5: spec.agent.image: required field is missing (an image reference such as alpine:3.20)",
		"testdata/invalid-missing-image.yaml:9:1: spec.agent.image: required field is missing (an image reference such as alpine:3.20)",
	}},
	{"invalid-missing-name.yaml", nil, []string{
		"testdata/invalid-missing-name.yaml:3:11: metadata.name: required field is missing",
		"testdata/invalid-missing-name.yaml:9:1: metadata.name: required field is missing",
		"testdata/invalid-missing-name.yaml:13:1: metadata.name: required field is missing",
	}},
	{"invalid-multi-doc.yaml", nil, []string{
		"testdata/invalid-multi-doc.yaml:6:12: spec.backend: \"firecracker\" is not one of: docker, smolvm, kubernetes",
		"testdata/invalid-multi-doc.yaml:21:35: spec.agent.workdir: \"relative\" is not an absolute path (e.g. /workspace)",
	}},
	{"invalid-name.yaml", nil, []string{
		"testdata/invalid-name.yaml:4:9: metadata.name: \"My_App\" is not a DNS label: use lowercase letters, digits and '-', starting and ending with a letter or digit",
		"testdata/invalid-name.yaml:11:9: metadata.name: \"a-name-that-is-far-too-long-to-be-a-dns-label-because-it-has-64c\" is 64 characters long; a name has at most 63",
		"testdata/invalid-name.yaml:18:9: metadata.name: \"-dash\" is not a DNS label: use lowercase letters, digits and '-', starting and ending with a letter or digit",
	}},
	{"invalid-not-mapping.yaml", nil, []string{
		"testdata/invalid-not-mapping.yaml:1:1: expected a mapping, got a list",
	}},
	{"invalid-egress.yaml", nil, []string{
		"testdata/invalid-egress.yaml:14:11: spec.bundle.egress.allow[2]: \"10.0.0.1\" is an IP address; allow addresses with network.allowCIDRs, rules name hosts",
		"testdata/invalid-egress.yaml:15:11: spec.bundle.egress.allow[3]: \"a..b\": the name has an empty label",
		"testdata/invalid-egress.yaml:16:11: spec.bundle.egress.allow[4]: \"x.example:0\" has port \"0\"; a port is a number from 1 to 65535, or * for any",
		"testdata/invalid-egress.yaml:17:11: spec.bundle.egress.allow[5]: \"x.example:\" ends with \":\"; write a port number or * after it, or leave the port out (80 and 443)",
		"testdata/invalid-egress.yaml:18:11: spec.bundle.egress.allow[6]: \"ex*.com\": a wildcard may only be the whole first label, as in *.example.com",
		"testdata/invalid-egress.yaml:19:11: spec.bundle.egress.allow[7]: \"API.Example.com.\" is already listed at spec.bundle.egress.allow[0]",
		"testdata/invalid-egress.yaml:20:11: spec.bundle.egress.allow[8]: \"*\" would allow every host, which a bottle exists to prevent; list the hosts the agent needs",
		"testdata/invalid-egress.yaml:21:11: spec.bundle.egress.allow[9]: \"host.example:99999\" has port \"99999\"; a port is a number from 1 to 65535, or * for any",
		"testdata/invalid-egress.yaml:22:7: spec.bundle.egress.deny: unknown field (did you mean \"dns\"?)",
		"testdata/invalid-egress.yaml:33:14: spec.bundle.egress.allow: has no effect: no daemon enforces it; add egress (and dns, optionally) to spec.bundle.daemons",
	}},
	{"invalid-egress-dns.yaml", nil, []string{
		"testdata/invalid-egress-dns.yaml:11:24: spec.bundle.egress.dns.maxNameLength: 254 is above the maximum of 253",
		"testdata/invalid-egress-dns.yaml:12:25: spec.bundle.egress.dns.maxLabelLength: expected a whole number, got a number",
		"testdata/invalid-egress-dns.yaml:13:28: spec.bundle.egress.dns.newNamesPerMinute: expected a whole number, got a string",
		"testdata/invalid-egress-dns.yaml:14:9: spec.bundle.egress.dns.perSecond: unknown field (known fields: maxNameLength, maxLabelLength, newNamesPerMinute)",
		"testdata/invalid-egress-dns.yaml:22:59: spec.bundle.egress.dns.newNamesPerMinute: 10001 is above the maximum of 10000",
	}},
	{"invalid-egress-subnet.yaml", nil, []string{
		"testdata/invalid-egress-subnet.yaml:10:19: spec.network.egressSubnet: 10.9.0.16/28 overlaps spec.network.subnet 10.9.0.0/24; the bundle's way out needs a range of its own",
		"testdata/invalid-egress-subnet.yaml:15:56: spec.network.egressSubnet: \"10.9.1.5/28\" is not a network address; did you mean \"10.9.1.0/28\"?",
	}},
	{"invalid-kubernetes.yaml", nil, []string{
		"testdata/invalid-kubernetes.yaml:8:13: spec.network.subnet: means nothing on backend kubernetes: the cluster gives the pods their addresses; remove it (network.allowCIDRs keeps its meaning)",
		"testdata/invalid-kubernetes.yaml:9:15: spec.network.bundleIP: means nothing on backend kubernetes: the bundle's address is its Service's ClusterIP, which the cluster allocates; remove it (network.allowCIDRs keeps its meaning)",
		"testdata/invalid-kubernetes.yaml:10:19: spec.network.egressSubnet: means nothing on backend kubernetes: the bundle goes out through the cluster's pod network; remove it (network.allowCIDRs keeps its meaning)",
		"testdata/invalid-kubernetes.yaml:18:3: spec.bundle.image: is required on backend kubernetes: the cluster pulls the bundle image, so it must be in a registry the cluster reaches; push the built-in one with `bottle-apply bundle push REGISTRY/bottle-apply/bundle` and set this to the reference it prints",
		"testdata/invalid-kubernetes.yaml:21:15: spec.agent.volumes[0].source: \"./src\" is a host directory, which backend kubernetes cannot mount: the pods run on the cluster's nodes, not on this machine; use a named volume (a PersistentVolumeClaim), and copy work in with bottle-apply cp",
		"testdata/invalid-kubernetes.yaml:28:15: spec.kubernetes: has effect on backend kubernetes only; remove it, or set spec.backend: kubernetes",
		"testdata/invalid-kubernetes.yaml:37:27: spec.kubernetes.namespace: \"Team_A\" is not a DNS label: use lowercase letters, digits and '-', starting and ending with a letter or digit",
		"testdata/invalid-kubernetes.yaml:37:53: spec.kubernetes.runtimeClassName: \"gvisor..x\" is not a DNS subdomain: use lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit",
		"testdata/invalid-kubernetes.yaml:37:87: spec.kubernetes.extra: unknown field (known fields: context, namespace, runtimeClassName)",
		"testdata/invalid-kubernetes.yaml:41:18: metadata.name: \"a-bottle-name-that-is-far-too-long-for-k8s\" is 42 characters long; on backend kubernetes a bottle name has at most 39 (its StatefulSet's revisions are named after it in a label of at most 63)",
	}},
	{"invalid-resources.yaml", nil, []string{
		"testdata/invalid-resources.yaml:4:9: metadata.name: \"xn--smol\" holds \"--\", which smolvm machine names may not",
		"testdata/invalid-resources.yaml:10:13: spec.agent.memory: 32 is below the minimum of 64",
		"testdata/invalid-resources.yaml:15:37: spec.agent.cpus: 65 is above the maximum of 64",
		"testdata/invalid-resources.yaml:15:49: spec.agent.memory: expected a whole number, got a string",
		"testdata/invalid-resources.yaml:23:11: spec.agent.pids: 4194305 is above the maximum of 4194304",
		"testdata/invalid-resources.yaml:28:37: spec.agent.pids: expected a whole number, got a number",
		"testdata/invalid-resources.yaml:33:37: spec.agent.pids: expected a whole number, got a string",
		"testdata/invalid-resources.yaml:40:32: spec.agent.pids: has no effect on backend smolvm, which has no process limit (a microVM's processes are bounded by its memory); remove it, or use backend: docker",
	}},
	{"invalid-secret-env.yaml", nil, []string{
		"testdata/invalid-secret-env.yaml:13:7: spec.agent.secretEnv.1BAD: not a valid variable name: must match ^[A-Za-z_][A-Za-z0-9_]*$",
		"testdata/invalid-secret-env.yaml:15:7: spec.agent.secretEnv.HTTPS_PROXY: reserved: set by bottle-apply to point at the bundle's proxy",
		"testdata/invalid-secret-env.yaml:17:7: spec.agent.secretEnv.SHARED: is also set in spec.agent.env; set a variable in env or in secretEnv, not both",
		"testdata/invalid-secret-env.yaml:20:9: spec.agent.secretEnv.NEITHER.valueFrom: needs exactly one of env (a variable of bottle-apply's environment) and file (a path relative to the spec file's directory)",
		"testdata/invalid-secret-env.yaml:21:7: spec.agent.secretEnv.NOSOURCE.valueFrom: needs exactly one of env (a variable of bottle-apply's environment) and file (a path relative to the spec file's directory)",
		"testdata/invalid-secret-env.yaml:23:9: spec.agent.secretEnv.BOTH.valueFrom: has both env and file; set exactly one",
		"testdata/invalid-secret-env.yaml:27:26: spec.agent.secretEnv.BADVAR.valueFrom.env: \"ANTHROPIC-API-KEY\" is not a valid variable name: must match ^[A-Za-z_][A-Za-z0-9_]*$",
		"testdata/invalid-secret-env.yaml:29:27: spec.agent.secretEnv.ABSOLUTE.valueFrom.file: \"/etc/shadow\" is an absolute path; write it relative to the spec file's directory",
		"testdata/invalid-secret-env.yaml:31:27: spec.agent.secretEnv.PARENT.valueFrom.file: \"../outside/token\" holds \"..\"; a secret file must be inside the spec file's directory",
		"testdata/invalid-secret-env.yaml:33:27: spec.agent.secretEnv.INNER_PARENT.valueFrom.file: \"keys/../token\" holds \"..\"; a secret file must be inside the spec file's directory",
		"testdata/invalid-secret-env.yaml:35:27: spec.agent.secretEnv.DOT.valueFrom.file: \"./\" is the spec file's directory itself; name a file in it",
		"testdata/invalid-secret-env.yaml:37:29: spec.agent.secretEnv.TYPO.valueFrom.fiel: unknown field (did you mean \"file\"?)",
		"testdata/invalid-secret-env.yaml:38:7: spec.agent.secretEnv.LITERAL.valueFrom: needs exactly one of env (a variable of bottle-apply's environment) and file (a path relative to the spec file's directory)",
		"testdata/invalid-secret-env.yaml:39:9: spec.agent.secretEnv.LITERAL.value: unknown field (known fields: valueFrom)",
	}},
	{"invalid-secret-type.yaml", nil, []string{
		"testdata/invalid-secret-type.yaml:9:10: spec.agent.secretEnv.A: expected a mapping, got a string",
		"testdata/invalid-secret-type.yaml:11:20: spec.agent.secretEnv.B.valueFrom: expected a mapping, got a list",
		"testdata/invalid-secret-type.yaml:14:16: spec.agent.secretEnv.C.valueFrom.env: expected a string, got a mapping",
		"testdata/invalid-secret-type.yaml:24:16: spec.agent.secretEnv: expected a mapping, got a list",
	}},
	{"invalid-secrets-field.yaml", nil, []string{
		"testdata/invalid-secrets-field.yaml:9:5: spec.agent.secrets: unknown field (known fields: image, command, workdir, env, cpus, memory, pids, secretEnv, user, volumes, files)",
		"testdata/invalid-secrets-field.yaml:11:5: spec.agent.Secrets: unknown field (known fields: image, command, workdir, env, cpus, memory, pids, secretEnv, user, volumes, files)",
	}},
	{"invalid-subnet.yaml", nil, []string{
		"testdata/invalid-subnet.yaml:12:13: spec.network.subnet: \"10.0.0.0/33\" is not an IPv4 CIDR (e.g. 192.168.240.0/24)",
		"testdata/invalid-subnet.yaml:17:50: spec.network.subnet: \"fd00::/64\" is not an IPv4 CIDR (e.g. 192.168.240.0/24)",
		"testdata/invalid-subnet.yaml:22:50: spec.network.subnet: \"10.0.0.0/8\" has a /8 prefix; the prefix length must be between /16 and /29",
		"testdata/invalid-subnet.yaml:27:50: spec.network.subnet: \"10.0.0.0/30\" has a /30 prefix; the prefix length must be between /16 and /29",
		"testdata/invalid-subnet.yaml:32:50: spec.network.subnet: \"192.168.240.5/24\" is not a network address; did you mean \"192.168.240.0/24\"?",
	}},
	{"invalid-syntax-second-doc.yaml", nil, []string{
		"testdata/invalid-syntax-second-doc.yaml:6:35: spec.agent.workdir: \"tmp\" is not an absolute path (e.g. /workspace)",
		"testdata/invalid-syntax-second-doc.yaml:10:1: yaml: did not find expected ',' or '}'",
	}},
	{"invalid-syntax.yaml", nil, []string{
		"testdata/invalid-syntax.yaml:6:1: yaml: did not find expected key",
	}},
	{"invalid-tag.yaml", nil, []string{
		"testdata/invalid-tag.yaml:7:12: spec.agent.image: unsupported tag \"!!binary\": write a plain string",
		"testdata/invalid-tag.yaml:8:14: spec.agent.workdir: unsupported tag \"!custom\": write a plain string",
	}},
	{"invalid-type-list.yaml", nil, []string{
		"testdata/invalid-type-list.yaml:8:14: spec.agent.command: expected a list, got a string",
		"testdata/invalid-type-list.yaml:10:17: spec.network.allowCIDRs: expected a list, got a string",
		"testdata/invalid-type-list.yaml:12:14: spec.bundle.daemons: expected a list, got a mapping",
	}},
	{"invalid-type-mapping.yaml", nil, []string{
		"testdata/invalid-type-mapping.yaml:3:11: metadata: expected a mapping, got a string",
		"testdata/invalid-type-mapping.yaml:7:10: spec.agent.env: expected a mapping, got a list",
		"testdata/invalid-type-mapping.yaml:8:12: spec.network: expected a mapping, got a number",
		"testdata/invalid-type-mapping.yaml:9:11: spec.bundle: expected a mapping, got a boolean",
	}},
	{"invalid-type-string.yaml", nil, []string{
		"testdata/invalid-type-string.yaml:4:9: metadata.name: expected a string, got a list",
		"testdata/invalid-type-string.yaml:7:12: spec.agent.image: expected a string, got a mapping",
		"testdata/invalid-type-string.yaml:8:22: spec.agent.command[1]: expected a string, got a mapping",
	}},
	{"invalid-unknown-anchor.yaml", nil, []string{
		"testdata/invalid-unknown-anchor.yaml:7:12: yaml: unknown anchor 'img' referenced",
	}},
	{"invalid-unknown-field-list.yaml", nil, []string{
		"testdata/invalid-unknown-field-list.yaml:5:3: metadata.labels: unknown field (known fields: name)",
		"testdata/invalid-unknown-field-list.yaml:9:1: status: unknown field (known fields: apiVersion, kind, metadata, spec)",
	}},
	{"invalid-unknown-field-suggest.yaml", nil, []string{
		"testdata/invalid-unknown-field-suggest.yaml:1:1: kind: required field is missing (must be \"Bottle\")",
		"testdata/invalid-unknown-field-suggest.yaml:2:1: Kind: unknown field (did you mean \"kind\"?)",
		"testdata/invalid-unknown-field-suggest.yaml:7:5: spec.agent.imagee: unknown field (did you mean \"image\"?)",
		"testdata/invalid-unknown-field-suggest.yaml:7:5: spec.agent.image: required field is missing (an image reference such as alpine:3.20)",
		"testdata/invalid-unknown-field-suggest.yaml:8:3: spec.netwrok: unknown field (did you mean \"network\"?)",
	}},
	{"invalid-workdir.yaml", nil, []string{
		"testdata/invalid-workdir.yaml:8:14: spec.agent.workdir: \"workspace\" is not an absolute path (e.g. /workspace)",
	}},
	{"invalid-volumes.yaml", nil, []string{
		"testdata/invalid-volumes.yaml:10:9: spec.agent.volumes[0]: \"a:/a:ro:x\" has 4 parts separated by \":\"; the short form is SOURCE:TARGET[:ro] (write a path that holds \":\" in the long form, with source and target)",
		"testdata/invalid-volumes.yaml:11:9: spec.agent.volumes[1]: \"b:/b:rx\" has the option \"rx\"; the short form takes only ro or rw (SOURCE:TARGET[:ro])",
		"testdata/invalid-volumes.yaml:12:9: spec.agent.volumes[2]: \"work\" has no target; write SOURCE:TARGET, such as ./src:/workspace or work:/home/agent",
		"testdata/invalid-volumes.yaml:13:9: spec.agent.volumes[3].target: \"relative\" is not an absolute path (e.g. /workspace)",
		"testdata/invalid-volumes.yaml:14:9: spec.agent.volumes[4].target: \"/\" would hide the agent's whole filesystem; mount the volume at a directory such as /workspace",
		"testdata/invalid-volumes.yaml:16:9: spec.agent.volumes[6].target: \"/data/\" is not a clean path; write \"/data\"",
		"testdata/invalid-volumes.yaml:17:9: spec.agent.volumes[7].target: \"/data\" is already the target of spec.agent.volumes[5]; give each volume a target of its own",
		"testdata/invalid-volumes.yaml:18:9: spec.agent.volumes[8].source: required field is missing",
		"testdata/invalid-volumes.yaml:18:9: spec.agent.volumes[8].target: required field is missing",
		"testdata/invalid-volumes.yaml:19:9: spec.agent.volumes[9].source: \"foo/bar\" is neither a host directory nor a volume name: a host directory starts with \".\" or \"/\" (./src, /srv/cache), a volume name is a DNS label (work)",
		"testdata/invalid-volumes.yaml:20:9: spec.agent.volumes[10].source: \"~/h\" is neither a host directory nor a volume name: a host directory starts with \".\" or \"/\" (./src, /srv/cache), a volume name is a DNS label (work); \"~\" is not expanded: write the directory's absolute path",
		"testdata/invalid-volumes.yaml:21:9: spec.agent.volumes[11].source: \"Work\" is neither a host directory nor a volume name: a host directory starts with \".\" or \"/\" (./src, /srv/cache), a volume name is a DNS label (work)",
		"testdata/invalid-volumes.yaml:22:9: spec.agent.volumes[12]: expected a mapping (source, target, readOnly) or a string SOURCE:TARGET[:ro], got a number",
		"testdata/invalid-volumes.yaml:23:46: spec.agent.volumes[13].readOnly: expected true or false, got a string",
		"testdata/invalid-volumes.yaml:24:52: spec.agent.volumes[14].allowSensitive: has no effect on a named volume (it lets a host directory be or hold /etc, /usr or your home directory); remove it",
		"testdata/invalid-volumes.yaml:25:9: spec.agent.volumes[15].source: required field is missing",
		"testdata/invalid-volumes.yaml:26:29: spec.agent.volumes[16].target: \"/m/../n\" is not a clean path; write \"/n\"",
		"testdata/invalid-volumes.yaml:26:48: spec.agent.volumes[16].readOnly: expected true or false, got a string",
		"testdata/invalid-volumes.yaml:27:33: spec.agent.volumes[17].mode: unknown field (known fields: source, target, readOnly, allowSensitive)",
		"testdata/invalid-volumes.yaml:28:9: spec.agent.volumes[18].source: must not be empty",
		"testdata/invalid-volumes.yaml:29:9: spec.agent.volumes[19]: \"./q:/q:ro:\" has 4 parts separated by \":\"; the short form is SOURCE:TARGET[:ro] (write a path that holds \":\" in the long form, with source and target)",
		"testdata/invalid-volumes.yaml:30:9: spec.agent.volumes[20]: must not be empty; write SOURCE:TARGET, such as ./src:/workspace or work:/home/agent",
		"testdata/invalid-volumes.yaml:31:9: spec.agent.volumes[21]: unsupported tag \"!!binary\": write a plain string",
		"testdata/invalid-volumes.yaml:32:18: spec.agent.volumes[22].source: \"./a:b\" holds \":\", which a mount (HOST:GUEST on smolvm) cannot carry; rename the directory, or mount its parent",
		"testdata/invalid-volumes.yaml:33:32: spec.agent.volumes[23].target: \"/s:t\" holds \":\", which a mount (HOST:GUEST on smolvm) cannot carry; choose a target without it",
	}},
	{"invalid-files.yaml", nil, []string{
		"testdata/invalid-files.yaml:9:11: spec.agent.user: \"root\" is not a numeric uid[:gid] (e.g. \"1000\" or \"1000:1000\"): \"root\" is not a number; user names are not supported, as the agent's image may not know them",
		"testdata/invalid-files.yaml:14:9: spec.agent.files[0]: has both source and content; set exactly one",
		"testdata/invalid-files.yaml:15:9: spec.agent.files[1]: needs exactly one of source (a file relative to the spec file's directory) and content (the file's text)",
		"testdata/invalid-files.yaml:17:16: spec.agent.files[3].path: \"/home\" is a directory that spec.agent.volumes[0] is mounted under (at /home/agent), not a file; choose another path",
		"testdata/invalid-files.yaml:18:16: spec.agent.files[4].path: \"relative\" is not an absolute path (e.g. /root/.claude.json)",
		"testdata/invalid-files.yaml:19:16: spec.agent.files[5].path: \"/\" is the root directory, not a file; name a file such as /root/.claude.json",
		"testdata/invalid-files.yaml:20:16: spec.agent.files[6].path: \"/etc/a\" is already written by spec.agent.files[0]; list each file once",
		"testdata/invalid-files.yaml:21:32: spec.agent.files[7].source: \"../outside\" holds \"..\"; a file's source must be inside the spec file's directory",
		"testdata/invalid-files.yaml:22:32: spec.agent.files[8].source: \"/etc/shadow\" is an absolute path; write it relative to the spec file's directory",
		"testdata/invalid-files.yaml:23:42: spec.agent.files[9].mode: \"0999\" is not an octal file mode between 0000 and 0777 (e.g. \"0600\")",
		"testdata/invalid-files.yaml:24:42: spec.agent.files[10].mode: \"rw\" is not an octal file mode between 0000 and 0777 (e.g. \"0600\")",
		"testdata/invalid-files.yaml:25:43: spec.agent.files[11].owner: \"1000:agent\" is not a numeric uid[:gid] (e.g. \"1000\" or \"1000:1000\"): \"agent\" is not a number; user names are not supported, as the agent's image may not know them",
		"testdata/invalid-files.yaml:26:43: spec.agent.files[12].owner: \"-1\" is not a numeric uid[:gid] (e.g. \"1000\" or \"1000:1000\"): \"-1\" is not a number; user names are not supported, as the agent's image may not know them",
		"testdata/invalid-files.yaml:27:16: spec.agent.files[13].path: \"/etc/i/\" is not a clean path; write \"/etc/i\"",
		"testdata/invalid-files.yaml:28:33: spec.agent.files[14].content: expected a string, got a list",
		"testdata/invalid-files.yaml:30:16: spec.agent.files[16].path: \"/cache/x\" is inside spec.agent.volumes[1], mounted read-only at /cache, where it cannot be written; put the file elsewhere, or make the volume writable",
		"testdata/invalid-files.yaml:31:16: spec.agent.files[17].path: \"/home/agent\" is where spec.agent.volumes[0] is mounted, a directory; name a file in it or elsewhere",
		"testdata/invalid-files.yaml:42:11: spec.agent.user: smolvm runs the agent's command as root and has no user flag; drop command or user, or use backend: docker",
		"testdata/invalid-files.yaml:54:43: spec.agent.files[0].owner: \"99999999999\" is not a numeric uid[:gid] (e.g. \"1000\" or \"1000:1000\"): 99999999999 is above the largest id, 4294967294",
	}},
	{"invalid-host-dirs.yaml", nil, []string{
		"testdata/invalid-host-dirs.yaml:10:9: spec.agent.volumes[0].source: \"/\" is the host's root directory, which holds the container engine's socket and state; mount a directory that holds only what the agent needs",
		"testdata/invalid-host-dirs.yaml:11:9: spec.agent.volumes[1].source: \"/var\" contains /var/run, where the container engine keeps its socket; a bottle must never reach it: mount a directory that holds only what the agent needs",
		"testdata/invalid-host-dirs.yaml:12:9: spec.agent.volumes[2].source: \"/var/lib\" contains /var/lib/docker, where docker keeps its state; a bottle must never reach it: mount a directory that holds only what the agent needs",
		"testdata/invalid-host-dirs.yaml:13:9: spec.agent.volumes[3].source: \"/run\" is inside /run, where the container engine keeps its socket; a bottle must never reach it: mount another directory",
		"testdata/invalid-host-dirs.yaml:14:9: spec.agent.volumes[4].source: \"/proc\" is inside /proc, where the kernel shows the host's processes; a bottle must never reach it: mount another directory",
		"testdata/invalid-host-dirs.yaml:15:9: spec.agent.volumes[5].source: \"/var/run/docker.sock\" is inside /var/run, where the container engine keeps its socket; a bottle must never reach it: mount another directory",
		"testdata/invalid-host-dirs.yaml:16:9: spec.agent.volumes[6].source: \"/sys/fs\" is inside /sys, where the kernel shows the host's devices and settings; a bottle must never reach it: mount another directory",
		"testdata/invalid-host-dirs.yaml:17:9: spec.agent.volumes[7].source: \"/dev\" is inside /dev, where the host's devices are; a bottle must never reach it: mount another directory",
		"testdata/invalid-host-dirs.yaml:18:9: spec.agent.volumes[8].source: \"/boot/\" (resolved to /boot) is inside /boot, where the host's kernel and boot loader are; a bottle must never reach it: mount another directory",
		"testdata/invalid-host-dirs.yaml:19:9: spec.agent.volumes[9].source: \"/var/lib/docker\" is inside /var/lib/docker, where docker keeps its state; a bottle must never reach it: mount another directory",
		"testdata/invalid-host-dirs.yaml:20:9: spec.agent.volumes[10].source: \"/etc\" is the host's /etc, which the agent could then read and change; mount a directory below it, or set allowSensitive: true on this volume if that is what you want",
		"testdata/invalid-host-dirs.yaml:21:9: spec.agent.volumes[11].source: \"/usr\" is the host's /usr, which the agent could then read; mount a directory below it, or set allowSensitive: true on this volume if that is what you want",
		"testdata/invalid-host-dirs.yaml:23:18: spec.agent.volumes[13].source: \"/\" is the host's root directory, which holds the container engine's socket and state; mount a directory that holds only what the agent needs",
		"testdata/invalid-host-dirs.yaml:24:9: spec.agent.volumes[14].source: \"./no-such-dir-here\" (resolved to $TESTDATA/no-such-dir-here) does not exist; create it, or fix the path (relative paths start at the spec file's directory)",
		"testdata/invalid-host-dirs.yaml:25:9: spec.agent.volumes[15].source: \"/var/lib/containers/storage\" is inside /var/lib/containers, where podman keeps its state; a bottle must never reach it: mount another directory",
		"testdata/invalid-host-dirs.yaml:26:9: spec.agent.volumes[16].source: \"/var/snap\" contains /var/snap/docker, where docker installed as a snap keeps its state; a bottle must never reach it: mount a directory that holds only what the agent needs",
	}},
	{"duplicate names across files", []string{"testdata/dup/a.yaml", "testdata/dup/b.yml"}, []string{
		"testdata/dup/b.yml:5:9: metadata.name: duplicate bottle name \"shared\" (first defined at testdata/dup/a.yaml:4)",
	}},
	{"duplicate names across a directory", []string{"testdata/dup"}, []string{
		"testdata/dup/b.yml:5:9: metadata.name: duplicate bottle name \"shared\" (first defined at testdata/dup/a.yaml:4)",
	}},
	{"errors of several files in argument order", []string{"testdata/invalid-workdir.yaml", "testdata/invalid-backend.yaml", "testdata/valid-minimal.yaml"}, []string{
		"testdata/invalid-workdir.yaml:8:14: spec.agent.workdir: \"workspace\" is not an absolute path (e.g. /workspace)",
		"testdata/invalid-backend.yaml:6:12: spec.backend: \"podman\" is not one of: docker, smolvm, kubernetes",
	}},
	{"missing file", []string{"testdata/valid-minimal.yaml", "testdata/no-such-file.yaml"}, []string{
		"testdata/no-such-file.yaml: no such file or directory",
	}},
}

func TestLoadInvalid(t *testing.T) {
	t.Parallel()
	for _, tt := range invalidCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			paths := tt.paths
			if paths == nil {
				paths = []string{filepath.Join("testdata", tt.name)}
			}
			bottles, err := Load(paths, nil)
			if bottles != nil {
				t.Errorf("Load returned bottles with an error: %+v", bottles)
			}
			if err == nil {
				t.Fatal("Load returned no error")
			}
			// Messages name resolved paths: where this checkout is.
			abs, _ := filepath.Abs("testdata")
			want := strings.ReplaceAll(strings.Join(tt.want, "\n"), "$TESTDATA", abs)
			if got := err.Error(); got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				if _, ok := e.(*FieldError); !ok {
					t.Errorf("error %q is a %T, want *FieldError", e, e)
				}
			}
		})
	}
}

// TestInvalidFilesCovered keeps every invalid-*.yaml in the table above.
func TestInvalidFilesCovered(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/invalid-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !slices.ContainsFunc(invalidCases, func(c struct {
			name  string
			paths []string
			want  []string
		}) bool {
			return c.name == filepath.Base(f)
		}) {
			t.Errorf("%s has no case in invalidCases", f)
		}
	}
	if len(invalidCases) < 20 {
		t.Errorf("only %d invalid cases", len(invalidCases))
	}
}

// TestParseGenerated covers inputs that are awkward to keep as files.
func TestParseGenerated(t *testing.T) {
	t.Parallel()
	minimal, err := os.ReadFile("testdata/valid-minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pad := func(n int) []byte { // a valid file of exactly n bytes
		return append(minimal, "#"+strings.Repeat("x", n-len(minimal)-2)+"\n"...)
	}
	tests := []struct {
		name string
		data []byte
		want string // "" for no error
	}{
		{"largest file", pad(MaxFileSize), ""},
		{"file too large", pad(MaxFileSize + 1), "gen.yaml: file is larger than the limit of 1048576 bytes (1 MiB)"},
		{"control character", []byte("apiVersion: bottle-apply/v1\nkind: Bot\x01tle\n"), "gen.yaml:2:10: yaml: control character U+0001 is not allowed"},
		{"invalid UTF-8", []byte("apiVersion: bottle-apply/v1\n# caf\xe9\n"), "gen.yaml:2:6: yaml: invalid UTF-8 (the file must be UTF-8 encoded)"},
		{"empty key", []byte(bottleYAML("x") + "\"\": {\"\": x}\n"), "gen.yaml:5:1: unknown field (known fields: apiVersion, kind, metadata, spec)"},
		{"alias cycle", []byte("a: &s [x, *s]\n"), "gen.yaml:1:11: alias *s is inside the node its anchor marks, so it would expand forever"},
		{"alias cycle in a bottle", []byte("apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata: {name: x}\nspec: &s {agent: {image: alpine, command: *s}}\n"),
			"gen.yaml:4:43: alias *s is inside the node its anchor marks, so it would expand forever"},
		{"only a separator", []byte("---\n"), "gen.yaml:1:1: no bottle in file (it is empty or holds only comments)"},
		{"only comments", []byte("# nothing\n---\n# here\n"), "gen.yaml:1:1: no bottle in file (it is empty or holds only comments)"},
		{"scalar document", []byte("--- hello\n"), "gen.yaml:1:5: expected a mapping, got a string"},
		{"non-string key", []byte("? {a: b}\n: c\n"), "gen.yaml:1:1: apiVersion: required field is missing (must be \"bottle-apply/v1\")\n" +
			"gen.yaml:1:1: kind: required field is missing (must be \"Bottle\")\n" +
			"gen.yaml:1:1: metadata.name: required field is missing\n" +
			"gen.yaml:1:1: spec.agent.image: required field is missing (an image reference such as alpine:3.20)\n" +
			"gen.yaml:1:3: expected a string key, got a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bottles, err := Parse("gen.yaml", tt.data)
			if tt.want == "" {
				if err != nil || len(bottles) != 1 {
					t.Fatalf("Parse = %d bottles, %v; want 1 bottle", len(bottles), err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %s", err, tt.want)
			}
		})
	}
}

func TestLoadTooLarge(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(file, make([]byte, 3*MaxFileSize), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load([]string{file}, nil)
	if want := file + ": file is larger than the limit of 1048576 bytes (1 MiB)"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

func TestLoadValid(t *testing.T) {
	t.Parallel()
	header := func(name string, line int, spec Spec) Bottle {
		return Bottle{APIVersion: APIVersion, Kind: KindBottle, Metadata: Metadata{Name: name}, Spec: spec, Source: Source{File: "", Line: line}}
	}
	tests := []struct {
		file string
		want []Bottle
	}{
		{"valid-minimal.yaml", []Bottle{header("minimal", 1, Spec{Backend: BackendDocker, Agent: Agent{Image: "alpine"}})}},
		{"valid-full.yaml", []Bottle{header("full-1", 2, Spec{
			Backend: BackendSmolvm,
			Agent: Agent{
				Image:   "ghcr.io/example/agent:1.2.3",
				Command: []string{"/bin/agent", "--port", "8080"},
				Workdir: "/workspace",
				Env:     map[string]string{"PORT": "8080", "DEBUG": "true", "EMPTY": "", "_private": "x"},
			},
			Network: Network{Subnet: "10.20.0.0/16", BundleIP: "10.20.3.4", AllowCIDRs: []string{"10.0.0.0/8", "fd00::/8"}},
			Bundle: Bundle{
				Image:   "ghcr.io/example/bundle@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
				Daemons: []string{DaemonEgress, DaemonDNS},
				Egress: Egress{Allow: []string{"*.example.com", "api.example.com", "git.example.com:8443"},
					DNS: EgressDNS{MaxNameLength: 80, MaxLabelLength: 32, NewNamesPerMinute: 120},
					Credentials: []Credential{
						{Host: "api.example.com", Header: "x-api-key", ValueFrom: ValueFrom{Env: "EXAMPLE_API_KEY"}, AgentEnv: "EXAMPLE_API_KEY"},
						{Host: "Git.Example.com.", Header: "Authorization", Prefix: "Bearer ", ValueFrom: ValueFrom{File: "secrets/git-token"}},
					},
					Trust: []string{"certs/corp-root.pem"}},
			},
		})}},
		{"valid-multi-doc.yaml", []Bottle{
			header("first", 2, Spec{Backend: BackendDocker, Agent: Agent{Image: "alpine:3.20", Memory: 2048, Pids: 512},
				Network: Network{Subnet: "192.168.240.0/24", BundleIP: "192.168.240.2"}}),
			header("second", 11, Spec{Backend: BackendDocker, Agent: Agent{Image: "busybox"},
				Network: Network{Subnet: "172.30.8.0/29", BundleIP: "172.30.8.2"}}),
		}},
		{"valid-anchors.yaml", []Bottle{header("anchors", 2, Spec{
			Backend: BackendDocker,
			Agent:   Agent{Image: "alpine", Command: []string{"sleep", "infinity"}, Env: map[string]string{"NAME": "anchors"}},
			Bundle:  Bundle{Daemons: []string{DaemonDNS}},
		})}},
		{"valid-secrets.yaml", []Bottle{header("secrets", 2, Spec{
			Backend: BackendDocker,
			Agent: Agent{Image: "alpine", Env: map[string]string{"MODEL": "sonnet"}, SecretEnv: map[string]SecretSource{
				"ANTHROPIC_API_KEY": {ValueFrom{Env: "ANTHROPIC_API_KEY"}},
				"GITHUB_TOKEN":      {ValueFrom{File: "secrets/github-token"}},
				"npm_token":         {ValueFrom{File: "./npm token.txt"}},
			}},
		})}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join("testdata", tt.file)
			for i := range tt.want {
				tt.want[i].Source.File = file
			}
			got, err := Load([]string{file}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Load:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestValidFilesCovered(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("testdata/valid-*.yaml")
	if len(files) != 5 { // each has a case in TestLoadValid
		t.Errorf("testdata has %d valid-*.yaml files, TestLoadValid covers 5: %v", len(files), files)
	}
}

func TestLoadExamples(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	// Examples with files of their own have a directory each.
	nested, _ := filepath.Glob("../examples/*/*.yaml")
	if len(nested) == 0 {
		t.Fatal("no examples/*/*.yaml: examples/claude-code/bottle.yaml is gone")
	}
	files = append(files, nested...)
	// Manifests for a cluster (examples/kubernetes-rbac.yaml) are not specs.
	files = slices.DeleteFunc(files, func(file string) bool {
		data, err := os.ReadFile(file)
		return err == nil && !strings.Contains(string(data), "apiVersion: "+APIVersion)
	})
	for _, file := range files {
		if _, err := Load([]string{file}, nil); err != nil {
			t.Errorf("example %s:\n%v", file, err)
		}
	}
	if _, err := Load(files, nil); err != nil { // names are unique across examples
		t.Errorf("all examples:\n%v", err)
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func bottleYAML(name string) string {
	return "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata: {name: " + name + "}\nspec: {agent: {image: alpine}}\n"
}

func TestLoadSources(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"b.yaml":         bottleYAML("b"),
		"a.yml":          bottleYAML("a"),
		"c.json":         "ignored",
		"notes.txt":      "ignored",
		"sub/d.yaml":     bottleYAML("d"), // not recursive
		"dir.yaml/e.yml": bottleYAML("e"), // a directory, even if named like a file
	})
	tests := []struct {
		name    string
		paths   []string
		stdin   string
		want    []string // File:name of each bottle
		wantErr string
	}{
		{"directory", []string{dir}, "", []string{dir + "/a.yml:a", dir + "/b.yaml:b"}, ""},
		{"stdin", []string{"-"}, bottleYAML("in"), []string{"<stdin>:in"}, ""},
		{"two files", []string{dir + "/b.yaml", "testdata/valid-multi-doc.yaml"}, "",
			[]string{dir + "/b.yaml:b", "testdata/valid-multi-doc.yaml:first", "testdata/valid-multi-doc.yaml:second"}, ""},
		{"stdin between files", []string{dir + "/b.yaml", "-", dir + "/a.yml"}, bottleYAML("in"),
			[]string{dir + "/b.yaml:b", "<stdin>:in", dir + "/a.yml:a"}, ""},
		{"stdin twice", []string{"-", "-"}, bottleYAML("in"), nil, `<stdin>: standard input ("-") can be read only once`},
		{"empty stdin", []string{"-"}, "", nil, "<stdin>:1:1: no bottle in file (it is empty or holds only comments)"},
		{"missing directory", []string{filepath.Join(dir, "sub", "none")}, "", nil, dir + "/sub/none: no such file or directory"},
		{"no paths", nil, "", nil, "no spec files given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bottles, err := Load(tt.paths, strings.NewReader(tt.stdin))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || bottles != nil {
					t.Fatalf("Load = %v, %v; want error %s", bottles, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, b := range bottles {
				got = append(got, b.Source.File+":"+b.Metadata.Name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("bottles %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoadErrorsUnwrap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"empty/README": "x"})
	_, err := Load([]string{filepath.Join(dir, "missing.yaml"), filepath.Join(dir, "empty"), "-"}, nil)
	want := strings.Join([]string{
		dir + "/missing.yaml: no such file or directory",
		dir + "/empty: directory has no *.yaml or *.yml files",
		"<stdin>: no standard input to read",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("errors.Is(err, fs.ErrNotExist) = false")
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.File != dir+"/missing.yaml" {
		t.Errorf("errors.As found %+v", fe)
	}
}

// TestEnvValuesNotEchoed plants a secret in agent.env values that are wrong
// in every way we report, and checks no message repeats it.
func TestEnvValuesNotEchoed(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-planted"
	for name, env := range map[string]string{
		"mapping value":  "env:\n      KEY: {token: SECRET}",
		"list value":     "env:\n      KEY: [SECRET]",
		"tagged value":   "env:\n      KEY: !vault SECRET",
		"binary value":   "env:\n      KEY: !!binary SECRET",
		"invalid name":   "env:\n      1KEY: SECRET",
		"reserved name":  "env:\n      HTTPS_PROXY: http://SECRET@proxy",
		"duplicate name": "env:\n      KEY: SECRET\n      KEY: SECRET",
		"list key":       "env:\n      ? [SECRET]\n      : x",
		"not a mapping":  "env: KEY=SECRET",
		"list":           "env: [KEY=SECRET]",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			doc := "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata: {name: x}\nspec:\n  agent:\n    image: alpine\n    " +
				strings.ReplaceAll(env, "SECRET", secret) + "\n"
			_, err := Parse("env.yaml", []byte(doc))
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error echoes the secret: %v", err)
			}
		})
	}
}

func TestFieldError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  FieldError
		want string
	}{
		{FieldError{File: "b.yaml", Line: 12, Column: 13, Field: "spec.network.subnet", Msg: "bad"}, "b.yaml:12:13: spec.network.subnet: bad"},
		{FieldError{File: "b.yaml", Line: 1, Column: 1, Msg: "yaml: bad"}, "b.yaml:1:1: yaml: bad"},
		{FieldError{File: "b.yaml", Msg: "no such file or directory", Err: fs.ErrNotExist}, "b.yaml: no such file or directory"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// invalidDirCases are specs that need a directory of their own: each is
// written as bottle.yaml into a temporary directory, with files, and loaded
// from there (or from standard input). In files, a name ending in "/" is a
// directory and a value "-> TARGET" a symlink; in the spec and in want,
// $DIR stands for the directory and $RUN for what /var/run resolves to.
var invalidDirCases = []struct {
	name  string
	files map[string]string
	stdin bool
	want  []string
}{
	{"missing host directory", map[string]string{"bottle.yaml": volumeSpec("./src:/workspace")}, false, []string{
		`$DIR/bottle.yaml:8:9: spec.agent.volumes[0].source: "./src" (resolved to $DIR/src) does not exist; create it, or fix the path (relative paths start at the spec file's directory)`,
	}},
	{"missing absolute host directory", map[string]string{"bottle.yaml": volumeSpec("{source: $DIR/src, target: /workspace}")}, false, []string{
		`$DIR/bottle.yaml:8:18: spec.agent.volumes[0].source: "$DIR/src" does not exist; create it, or fix the path`,
	}},
	{"host directory is a file", map[string]string{"bottle.yaml": volumeSpec("./src:/workspace"), "src": "x"}, false, []string{
		`$DIR/bottle.yaml:8:9: spec.agent.volumes[0].source: "./src" (resolved to $DIR/src) is not a directory; a volume's source must be a directory`,
	}},
	{"symlink to /var/run", map[string]string{"bottle.yaml": volumeSpec("./run:/run"), "run": "-> /var/run"}, false, []string{
		`$DIR/bottle.yaml:8:9: spec.agent.volumes[0].source: "./run" (resolved to $RUN) is inside $RUN, where the container engine keeps its socket; a bottle must never reach it: mount another directory`,
	}},
	{"symlink to /", map[string]string{"bottle.yaml": volumeSpec("./root:/host"), "root": "-> /"}, false, []string{
		`$DIR/bottle.yaml:8:9: spec.agent.volumes[0].source: "./root" (resolved to /) is the host's root directory, which holds the container engine's socket and state; mount a directory that holds only what the agent needs`,
	}},
	{"symlink to /etc", map[string]string{"bottle.yaml": volumeSpec("./etc:/host-etc:ro"), "etc": "-> /etc"}, false, []string{
		`$DIR/bottle.yaml:8:9: spec.agent.volumes[0].source: "./etc" (resolved to /etc) is the host's /etc, which the agent could then read; mount a directory below it, or set allowSensitive: true on this volume if that is what you want`,
	}},
	{"allowSensitive on an ordinary directory", map[string]string{
		"bottle.yaml": volumeSpec("{source: ./src, target: /src, allowSensitive: true}"), "src/": ""}, false, []string{
		`$DIR/bottle.yaml:8:55: spec.agent.volumes[0].allowSensitive: has no effect: "./src" (resolved to $DIR/src) neither is nor holds /etc, /usr or your home directory; remove it`,
	}},
	// The agent must not edit its own bottle: a writable host directory
	// may not hold the spec, a secret file or a file's source.
	{"writable mount of the spec's directory", map[string]string{"bottle.yaml": volumeSpec(".:/workspace")}, false, []string{
		`$DIR/bottle.yaml:8:9: spec.agent.volumes[0].source: "." holds the spec file itself ($DIR/bottle.yaml): the agent could rewrite its own bottle (mount more of the host, widen its egress) before your next apply; mount a directory that does not hold the spec, or add readOnly: true`,
	}},
	{"writable symlink to the spec's directory", map[string]string{"bottle.yaml": volumeSpec("./self:/workspace"), "self": "-> ."}, false, []string{
		`$DIR/bottle.yaml:8:9: spec.agent.volumes[0].source: "./self" holds the spec file itself ($DIR/bottle.yaml): the agent could rewrite its own bottle (mount more of the host, widen its egress) before your next apply; mount a directory that does not hold the spec, or add readOnly: true`,
	}},
	{"writable mount of a secret file", map[string]string{"bottle.yaml": volumeSpec("./keys:/keys") +
		"    secretEnv:\n      TOKEN: {valueFrom: {file: keys/token}}\n", "keys/token": "x"}, false, []string{
		`$DIR/bottle.yaml:8:9: spec.agent.volumes[0].source: "./keys" holds the secret file of spec.agent.secretEnv.TOKEN ($DIR/keys/token): the agent could replace the secret it is given (with a key of its own, or another file beside the spec) before your next apply; mount a directory that does not hold it, or add readOnly: true`,
	}},
	{"writable mount of a missing secret file", map[string]string{"bottle.yaml": volumeSpec("./keys:/keys") +
		"    secretEnv:\n      TOKEN: {valueFrom: {file: keys/new/token}}\n", "keys/": ""}, false, []string{
		`$DIR/bottle.yaml:8:9: spec.agent.volumes[0].source: "./keys" holds the secret file of spec.agent.secretEnv.TOKEN ($DIR/keys/new/token): the agent could replace the secret it is given (with a key of its own, or another file beside the spec) before your next apply; mount a directory that does not hold it, or add readOnly: true`,
	}},
	{"writable mount of a credential's value file", map[string]string{"bottle.yaml": volumeSpec("./keys:/keys") +
		"  bundle:\n    daemons: [egress]\n    egress:\n      allow: [api.example.com]\n" +
		"      credentials: [{host: api.example.com, header: x-api-key, valueFrom: {env: KEY}}, {host: api.example.com, header: authorization, valueFrom: {file: keys/token}}]\n",
		"keys/token": "x"}, false, []string{
		`$DIR/bottle.yaml:8:9: spec.agent.volumes[0].source: "./keys" holds the value file of spec.bundle.egress.credentials[1].valueFrom.file ($DIR/keys/token): the agent could replace the credential the bundle adds for api.example.com (with a key of its own, to watch what is done with it) before your next apply; mount a directory that does not hold it, or add readOnly: true`,
	}},
	{"writable mount of a trust file", map[string]string{"bottle.yaml": volumeSpec("./certs:/certs") +
		"  bundle:\n    daemons: [egress]\n    egress:\n      allow: [api.example.com]\n" +
		"      credentials: [{host: api.example.com, header: x-api-key, valueFrom: {env: KEY}}]\n      trust: [root.pem, certs/corp.pem]\n",
		"certs/": ""}, false, []string{
		`$DIR/bottle.yaml:8:9: spec.agent.volumes[0].source: "./certs" holds the trust file spec.bundle.egress.trust[1] ($DIR/certs/corp.pem): the agent could make the bundle trust a CA of its own upstream, and so read the credentials the bundle sends; mount a directory that does not hold it, or add readOnly: true`,
	}},
	{"writable mount of a file's source", map[string]string{"bottle.yaml": volumeSpec("./conf:/conf") +
		"    files: [{path: /etc/sudoers.d/agent, source: conf/sudoers}]\n", "conf/sudoers": "x"}, false, []string{
		`$DIR/bottle.yaml:8:9: spec.agent.volumes[0].source: "./conf" holds the source of spec.agent.files[0] ($DIR/conf/sudoers): the agent could choose what every create writes to /etc/sudoers.d/agent in the agent; mount a directory that does not hold it, or add readOnly: true`,
	}},
	// A host directory inside a writable one could be swapped for a
	// symlink between the check and the mount.
	{"host directory inside a writable one", map[string]string{"bottle.yaml": volumeSpec("./work:/work") +
		"      - ./work/cache:/cache:ro\n", "work/cache/": ""}, false, []string{
		`$DIR/bottle.yaml:9:9: spec.agent.volumes[1].source: "./work/cache" (resolved to $DIR/work/cache) lies inside $DIR/work, which bottle vol mounts writable (spec.agent.volumes[0], at $DIR/bottle.yaml:8): its agent could swap this directory for a symlink (to /var/run, say) between the check and the mount; mount the outer directory only, or make the outer one read-only`,
	}},
	{"host directory inside the spec's directory", map[string]string{"bottle.yaml": volumeSpec("./cache:/cache") +
		"      - .:/workspace\n", "cache/": ""}, false, []string{
		`$DIR/bottle.yaml:8:9: spec.agent.volumes[0].source: "./cache" (resolved to $DIR/cache) lies inside $DIR, which bottle vol mounts writable (spec.agent.volumes[1], at $DIR/bottle.yaml:9): its agent could swap this directory for a symlink (to /var/run, say) between the check and the mount; mount the outer directory only, or make the outer one read-only`,
		`$DIR/bottle.yaml:9:9: spec.agent.volumes[1].source: "." holds the spec file itself ($DIR/bottle.yaml): the agent could rewrite its own bottle (mount more of the host, widen its egress) before your next apply; mount a directory that does not hold the spec, or add readOnly: true`,
	}},
	{"host directory named through a writable one", map[string]string{"bottle.yaml": volumeSpec("./work:/work") +
		"      - ./work/link:/cache:ro\n", "work/link": "-> ../elsewhere", "elsewhere/": ""}, false, []string{
		`$DIR/bottle.yaml:9:9: spec.agent.volumes[1].source: "./work/link" (resolved to $DIR/elsewhere) lies inside $DIR/work, which bottle vol mounts writable (spec.agent.volumes[0], at $DIR/bottle.yaml:8): its agent could swap this directory for a symlink (to /var/run, say) between the check and the mount; mount the outer directory only, or make the outer one read-only`,
	}},
	{"host directory inside a writable one of another bottle", map[string]string{"bottle.yaml": volumeSpec("./work:/work") +
		"---\n" + strings.Replace(volumeSpec("./work/cache:/cache:ro"), "name: vol", "name: other", 1), "work/cache/": ""}, false, []string{
		`$DIR/bottle.yaml:17:9: spec.agent.volumes[0].source: "./work/cache" (resolved to $DIR/work/cache) lies inside $DIR/work, which bottle vol mounts writable (spec.agent.volumes[0], at $DIR/bottle.yaml:8): its agent could swap this directory for a symlink (to /var/run, say) between the check and the mount; mount the outer directory only, or make the outer one read-only`,
	}},
	// A file of spec.agent.files under a host directory would be written
	// onto the host.
	{"file inside a host directory", map[string]string{"bottle.yaml": volumeSpec("./src:/workspace") +
		"    files: [{path: /workspace/.git/hooks/pre-commit, content: x}]\n", "src/": ""}, false, []string{
		`$DIR/bottle.yaml:9:20: spec.agent.files[0].path: "/workspace/.git/hooks/pre-commit" is inside spec.agent.volumes[0] (at /workspace) and would be written into the host directory "./src" on every create; put the file there on the host yourself, or choose a path outside it`,
	}},
	{"stdin with a relative host directory", map[string]string{"bottle.yaml": volumeSpec("./src:/workspace"), "src/": ""}, true, []string{
		`<stdin>:8:9: spec.agent.volumes[0].source: "./src" is relative, but a spec read from standard input has no directory for it to start at; write an absolute path, or pass the spec with -f FILE`,
	}},
	{"stdin with a file source", map[string]string{"bottle.yaml": volumeSpec("$DIR/src:/workspace") +
		"    files: [{path: /etc/x, source: x}]\n", "src/": "", "x": "y"}, true, []string{
		`<stdin>:9:36: spec.agent.files[0].source: a spec read from standard input has no directory to read files from; use content, or pass the spec with -f FILE`,
	}},
}

// volumeSpec is a bottle with one volume, written in YAML at line 8,
// column 9.
func volumeSpec(volume string) string {
	return "apiVersion: bottle-apply/v1\nkind: Bottle\nmetadata: {name: vol}\nspec:\n  agent:\n    image: alpine\n    volumes:\n      - " +
		volume + "\n"
}

func TestLoadInvalidDirs(t *testing.T) {
	t.Parallel()
	run, runErr := filepath.EvalSymlinks("/var/run")
	for _, tt := range invalidDirCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if runErr != nil && strings.Contains(strings.Join(tt.want, ""), "$RUN") {
				t.Skipf("this host has no /var/run: %v", runErr)
			}
			var err error
			dir := t.TempDir()
			r := strings.NewReplacer("$DIR", dir, "$RUN", run)
			for name, data := range tt.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				switch target, link := strings.CutPrefix(data, "-> "); {
				case strings.HasSuffix(name, "/"):
					err = os.MkdirAll(p, 0o755)
				case link:
					err = os.Symlink(target, p)
				default:
					err = os.WriteFile(p, []byte(r.Replace(data)), 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			paths, stdin := []string{filepath.Join(dir, "bottle.yaml")}, io.Reader(nil)
			if tt.stdin {
				f, err := os.Open(paths[0])
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				paths, stdin = []string{Stdin}, f
			}
			bottles, err := Load(paths, stdin)
			if err == nil || bottles != nil {
				t.Fatalf("Load = %v, %v; want an error", bottles, err)
			}
			if want := r.Replace(strings.Join(tt.want, "\n")); err.Error() != want {
				t.Errorf("error:\n%s\nwant:\n%s", err, want)
			}
		})
	}
}
