package spec

import (
	"fmt"
	"maps"
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/go-playground/validator/v10"
)

// This file checks spec.bundle.egress.credentials and trust: what the tags
// on Credential cannot say (validateCredentials, run on Spec, which sees
// the allow list, the agent and the daemons together), and the rules of a
// header's name and prefix (checkHeader, checkHeaderPrefix, run by their
// tags).

// AgentCADir is the agent's directory where bottle-apply puts the bottle's
// CA when it has credentials: spec.agent.files may not write under it.
const AgentCADir = "/etc/bottle-apply"

// The agent's variables that bottle-apply sets to the bottle's CA when it
// has credentials: CAEnvFileVars name the CA alone (a client adds it to
// its own roots), CAEnvBundleVars a bundle of the image's CAs and the
// bottle's (a client reads it instead of its own). CAEnvVars are both: a
// spec with credentials may set none of them, as a client pointed
// elsewhere would refuse the bundle's certificates.
var (
	CAEnvFileVars   = []string{"NODE_EXTRA_CA_CERTS"}
	CAEnvBundleVars = []string{"CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"}
	CAEnvVars       = append(slices.Clone(CAEnvFileVars), CAEnvBundleVars...)
)

// proxyHeaders are the headers the egress proxy owns: those of the
// connection and its framing (RFC 9110 7.6.1, RFC 9112), which a
// credential may not set, as a value of the user's would change how the
// request is carried rather than what it says. Proxy-* is refused apart.
var proxyHeaders = []string{"host", "connection", "content-length", "transfer-encoding", "upgrade", "te", "trailer", "keep-alive"}

// checkHeader returns what is wrong with a credential's header name, or "":
// an HTTP token (RFC 9110 5.1) that is not a header the proxy owns.
func checkHeader(s string) string {
	if s == "" {
		return "" // required says it
	}
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(s, ":"):
		return quote(s) + " is a pseudo-header, which the proxy writes itself from the request; name an ordinary header such as x-api-key"
	case !isToken(s):
		return quote(s) + " is not a header name: use letters, digits and !#$%&'*+-.^_`|~ (such as x-api-key or Authorization)"
	case slices.Contains(proxyHeaders, lower), strings.HasPrefix(lower, "proxy-"):
		return quote(s) + " is a header of the connection, which the proxy owns; name the header the service reads the credential from (such as x-api-key or Authorization)"
	}
	return ""
}

// CheckCredentialHeader returns what is wrong with a credential's header
// name, or "", by the rules of the spec's own check: the bundle applies
// them again to the credentials file it is given, as a connection header
// would not only be carried wrong but could bring the value into an
// error's text ("invalid Connection request header: [value]").
func CheckCredentialHeader(s string) string {
	if s == "" {
		return "the header name is empty"
	}
	return checkHeader(s)
}

// isToken reports whether s is an RFC 9110 token: one or more tchar.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// checkHeaderPrefix returns what is wrong with a credential's prefix, or
// "": it goes into a header's value, where a CR or LF would end the header
// (and let a spec write others), and no control character belongs.
func checkHeaderPrefix(s string) string {
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("holds the control character %U, which a header's value may not; write the prefix on one line, such as \"Bearer \"", r)
		}
	}
	return ""
}

// CheckTrustFile returns what is wrong with a file of
// spec.bundle.egress.trust, or "": like a secret file, it must be relative
// and stay inside the spec file's directory.
func CheckTrustFile(file string) string { return checkLocalFile(file, "a trust file") }

// validateCredentials checks spec.bundle.egress.credentials and trust
// against the rest of the spec: each host an exact name of the allow list,
// each header once per host, each agentEnv a variable of its own, the CA
// variables and directory left to bottle-apply (no file or volume of the
// agent there), and the egress daemon there to add them. Fields are
// reported as paths under spec, which fieldPath keeps.
func validateCredentials(sl validator.StructLevel) {
	s := sl.Current().Interface().(Spec)
	e := &s.Bundle.Egress
	validateTrust(sl, e.Trust)
	if len(e.Credentials) == 0 {
		if len(e.Trust) > 0 {
			sl.ReportError(e.Trust, "bundle.egress.trust", "", "credential",
				"has no effect without spec.bundle.egress.credentials: the bundle verifies with it only the connections it opens to add them; remove it")
		}
		return
	}
	var rules EgressRules
	for _, a := range e.Allow {
		if r, err := ParseEgressRule(a); err == nil {
			rules = append(rules, r)
		}
	}
	type hostHeader struct{ host, header string }
	headers := map[hostHeader]int{}
	agentEnvs := map[string]int{}
	for i, c := range e.Credentials {
		field := "bundle.egress.credentials[" + strconv.Itoa(i) + "]"
		host := NormalizeHost(c.Host)
		if c.Host != "" {
			if msg := checkCredentialHost(c.Host, host, rules); msg != "" {
				sl.ReportError(c.Host, field+".host", "", "credential", msg)
				host = "" // no duplicate to report for a host that is wrong
			}
		}
		if host != "" && c.Header != "" && checkHeader(c.Header) == "" {
			k := hostHeader{host, strings.ToLower(c.Header)}
			if j, dup := headers[k]; dup {
				sl.ReportError(c.Header, field+".header", "", "credential",
					fmt.Sprintf("%s is already set on %s by spec.bundle.egress.credentials[%d]; give each header of a host one credential", quote(c.Header), host, j))
			} else {
				headers[k] = i
			}
		}
		reportValueFrom(sl, c.ValueFrom, field+".valueFrom")
		if name := c.AgentEnv; name != "" && checkEnvName(name) == "" && checkNotProxy(name) == "" {
			switch _, inEnv := s.Agent.Env[name]; {
			case slices.Contains(CAEnvVars, name):
				sl.ReportError(name, field+".agentEnv", "", "credential",
					quote(name)+" is reserved: set by bottle-apply to the bottle's CA; name the variable the client reads its key from")
			case inEnv:
				sl.ReportError(name, field+".agentEnv", "", "credential",
					quote(name)+" is also set in spec.agent.env; the placeholder takes its place: remove it there")
			default:
				if _, inSecret := s.Agent.SecretEnv[name]; inSecret {
					sl.ReportError(name, field+".agentEnv", "", "credential",
						quote(name)+" is also set in spec.agent.secretEnv, which would hand the agent a secret the bundle adds; remove it there")
				} else if j, dup := agentEnvs[name]; dup {
					sl.ReportError(name, field+".agentEnv", "", "credential",
						fmt.Sprintf("%s is already the agentEnv of spec.bundle.egress.credentials[%d]; set each variable once", quote(name), j))
				} else {
					agentEnvs[name] = i
				}
			}
		}
	}
	// What bottle-apply sets in the agent for its CA is its own.
	const reserved = "reserved: set by bottle-apply to the bottle's CA (spec.bundle.egress.credentials)"
	for _, name := range slices.Sorted(maps.Keys(s.Agent.Env)) {
		if slices.Contains(CAEnvVars, name) {
			sl.ReportError(name, "agent.env."+name, "", "credentialkey", reserved)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Agent.SecretEnv)) {
		if slices.Contains(CAEnvVars, name) {
			sl.ReportError(name, "agent.secretEnv."+name, "", "credentialkey", reserved)
		}
	}
	underCADir := func(p string) bool {
		p = path.Clean(p)
		return p == AgentCADir || strings.HasPrefix(p, AgentCADir+"/")
	}
	for i, f := range s.Agent.Files {
		if f.Path != "" && underCADir(f.Path) {
			sl.ReportError(f.Path, "agent.files["+strconv.Itoa(i)+"].path", "", "credential",
				fmt.Sprintf("%s is under %s, where bottle-apply puts the bottle's CA (spec.bundle.egress.credentials); choose another path", quote(f.Path), AgentCADir))
		}
	}
	for i, v := range s.Agent.Volumes {
		if v.Target != "" && underCADir(v.Target) {
			sl.ReportError(v.Target, "agent.volumes["+strconv.Itoa(i)+"].target", "", "credential",
				fmt.Sprintf("%s is under %s, where bottle-apply puts the bottle's CA (spec.bundle.egress.credentials), which a volume would hide; mount it elsewhere", quote(v.Target), AgentCADir))
		}
	}
	// With no daemons at all, the allow list's own error says to add egress.
	if d := s.Bundle.Daemons; len(d) > 0 && !slices.Contains(d, DaemonEgress) {
		sl.ReportError(d, "bundle.daemons", "", "credential",
			"has no egress, which adds spec.bundle.egress.credentials to the agent's requests; add egress to spec.bundle.daemons")
	}
}

// checkCredentialHost returns what is wrong with a credential's host as
// written, host normalized, or "": it must be an exact rule's name of the
// allow list. A credential under a wildcard would go to every name the
// wildcard covers, and the bottle's CA could then stand for all of them.
// Any exact rule does: each gives at least one port (80 and 443 when it
// names none), and the bundle intercepts the ports its rule gives.
func checkCredentialHost(written, host string, rules EgressRules) string {
	add := "add " + quote(host) + " to spec.bundle.egress.allow"
	if strings.Contains(host, "*") {
		return quote(written) + " is a wildcard; credentials go to exact names: name the host itself, and add it to spec.bundle.egress.allow"
	}
	if h, port, ok := strings.Cut(host, ":"); ok && port != "" && !strings.Contains(port, ":") && CheckHost(h) == nil {
		return quote(written) + " has a port; write the host alone (" + quote(h) + "): the bundle adds the credential on the ports its allow rule gives"
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return quote(written) + " is an IP address; credentials go to names of spec.bundle.egress.allow, which an allow rule names"
	}
	if e := CheckHost(host); e != nil {
		return quote(written) + ": " + e.Error()
	}
	for _, r := range rules {
		if !r.Wildcard && r.Host == host {
			return ""
		}
	}
	if r, ok := rules.MatchHost(host); ok {
		return fmt.Sprintf("%s is allowed only by the wildcard rule %s; credentials go to exact names: %s", quote(written), quote(r.String()), add)
	}
	return fmt.Sprintf("%s is not in spec.bundle.egress.allow; credentials go to exact names: %s", quote(written), add)
}

// validateTrust checks each trust file's path, once each.
func validateTrust(sl validator.StructLevel, trust []string) {
	for i, f := range trust {
		if msg := CheckTrustFile(f); msg != "" {
			sl.ReportError(f, "bundle.egress.trust["+strconv.Itoa(i)+"]", "", "credential", msg)
		}
	}
	reportDuplicates(sl, "bundle.egress.trust", trust, func(s string) (string, bool) {
		return filepath.Clean(s), CheckTrustFile(s) == ""
	})
}
