package spec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/distribution/reference"
	"github.com/go-playground/validator/v10"
	"gopkg.in/yaml.v3"
)

// checks are the custom rules on single string fields, by validate tag. Each
// returns what is wrong with a value, or "". Messages never quote map values:
// agent.env's values may be secrets. (secretEnv's values only name where a
// secret is, so its messages may quote them.)
var checks = map[string]func(string) string{
	"dnslabel":     checkName,
	"dnssubdomain": checkSubdomain,
	"imageref":     checkImage,
	"abspath":      checkAbsPath,
	"envname":      checkEnvName,
	"noproxy":      checkNotProxy,
	"subnet4":      checkSubnet,
	"prefix":       checkPrefix,
	"httpheader":   checkHeader,
	"headerprefix": checkHeaderPrefix,
	"egressrule": func(s string) string {
		if _, err := ParseEgressRule(s); err != nil {
			return err.Error()
		}
		return ""
	},
}

// keyRules are tags that validate a map key; their errors point at the key.
var keyRules = map[string]bool{"envname": true, "noproxy": true, "secretkey": true, "secretfrom": true, "credentialkey": true}

var bottleValidator = sync.OnceValue(func() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(yamlName)
	for tag, check := range checks {
		if err := v.RegisterValidation(tag, func(fl validator.FieldLevel) bool { return check(fl.Field().String()) == "" }); err != nil {
			panic("internal: " + err.Error())
		}
	}
	v.RegisterStructValidation(func(sl validator.StructLevel) {
		n := sl.Current().Interface().(Network)
		if msg := checkBundleIP(n); msg != "" {
			sl.ReportError(n.BundleIP, "bundleIP", "BundleIP", "bundleip", msg)
		}
		if msg := checkEgressSubnet(n); msg != "" {
			sl.ReportError(n.EgressSubnet, "egressSubnet", "EgressSubnet", "egresssubnet", msg)
		}
		reportDuplicates(sl, "allowCIDRs", n.AllowCIDRs, func(s string) (string, bool) {
			p, err := netip.ParsePrefix(s)
			return p.String(), err == nil && p == p.Masked()
		})
	}, Network{})
	v.RegisterStructValidation(func(sl validator.StructLevel) {
		b := sl.Current().Interface().(Bottle)
		// smolvm machine names may not hold "--"; the agent is bottle-NAME-agent.
		if b.Spec.Backend == BackendSmolvm && strings.Contains(b.Metadata.Name, "--") {
			sl.ReportError(b.Metadata.Name, "metadata.name", "Name", "smolvmname",
				fmt.Sprintf("%s holds \"--\", which smolvm machine names may not", quote(b.Metadata.Name)))
		}
		validateKubernetes(sl, b)
		// A limit that silently does nothing is worse than none: the user
		// believes the agent bounded.
		if b.Spec.Backend == BackendSmolvm && b.Spec.Agent.Pids != 0 {
			sl.ReportError(b.Spec.Agent.Pids, "spec.agent.pids", "Pids", "smolvmpids",
				"has no effect on backend smolvm, which has no process limit (a microVM's processes are bounded by its memory); remove it, or use backend: docker")
		}
	}, Bottle{})
	v.RegisterStructValidation(validateSecretEnv, Agent{})
	v.RegisterStructValidation(validateCredentials, Spec{})
	v.RegisterStructValidation(func(sl validator.StructLevel) {
		b := sl.Current().Interface().(Bundle)
		reportDuplicates(sl, "daemons", b.Daemons, func(s string) (string, bool) {
			return s, s == DaemonEgress || s == DaemonDNS
		})
		reportDuplicates(sl, "egress.allow", b.Egress.Allow, func(s string) (string, bool) {
			r, err := ParseEgressRule(s)
			return r.String(), err == nil
		})
		if len(b.Egress.Allow) > 0 && !slices.Contains(b.Daemons, DaemonEgress) && !slices.Contains(b.Daemons, DaemonDNS) {
			sl.ReportError(b.Egress.Allow, "egress.allow", "Allow", "egressdaemon",
				"has no effect: no daemon enforces it; add egress (and dns, optionally) to spec.bundle.daemons")
		}
	}, Bundle{})
	return v
})

// validateSecretEnv checks what the tags on Agent.SecretEnv cannot: a name
// also in env, and each source. Fields are reported as YAML paths under
// spec.agent ("secretEnv.NAME.valueFrom.file"), which fieldPath keeps.
func validateSecretEnv(sl validator.StructLevel) {
	a := sl.Current().Interface().(Agent)
	for _, name := range slices.Sorted(maps.Keys(a.SecretEnv)) {
		field := "secretEnv." + name
		if _, dup := a.Env[name]; dup && checkEnvName(name) == "" && checkNotProxy(name) == "" {
			sl.ReportError(name, field, "", "secretkey",
				"is also set in spec.agent.env; set a variable in env or in secretEnv, not both")
		}
		reportValueFrom(sl, a.SecretEnv[name].ValueFrom, field+".valueFrom")
	}
}

// reportValueFrom checks the source of a secret at field (a valueFrom of
// secretEnv or of spec.bundle.egress.credentials): exactly one of env, a
// valid variable name, and file, a path inside the spec file's directory.
func reportValueFrom(sl validator.StructLevel, from ValueFrom, field string) {
	switch {
	case from.Env == "" && from.File == "":
		sl.ReportError(from, field, "", "secretfrom",
			"needs exactly one of env (a variable of bottle-apply's environment) and file (a path relative to the spec file's directory)")
	case from.Env != "" && from.File != "":
		sl.ReportError(from, field, "", "secretfrom", "has both env and file; set exactly one")
	case from.Env != "":
		if msg := checkEnvName(from.Env); msg != "" {
			sl.ReportError(from.Env, field+".env", "", "secretsource", quote(from.Env)+" is "+msg)
		}
	default:
		if msg := CheckSecretFile(from.File); msg != "" {
			sl.ReportError(from.File, field+".file", "", "secretsource", msg)
		}
	}
}

// CheckSecretFile returns what is wrong with a secretEnv file path, or "":
// it must be relative and stay inside the spec file's directory, so that a
// spec can make bottle-apply read no file outside its own tree.
func CheckSecretFile(file string) string { return checkLocalFile(file, "a secret file") }

// checkLocalFile returns what is wrong with the path of a file the spec
// names, what in messages, or "": it must be relative and stay inside the
// spec file's directory.
func checkLocalFile(file, what string) string {
	switch {
	case filepath.IsAbs(file) || strings.HasPrefix(file, "/"):
		return quote(file) + " is an absolute path; write it relative to the spec file's directory"
	case slices.Contains(strings.Split(file, "/"), ".."):
		return quote(file) + " holds \"..\"; " + what + " must be inside the spec file's directory"
	case !filepath.IsLocal(file):
		return quote(file) + " is not a path inside the spec file's directory"
	case filepath.Clean(file) == ".":
		return quote(file) + " is the spec file's directory itself; name a file in it"
	}
	return ""
}

// reportDuplicates reports each valid element of list equal to an earlier
// one, with the earlier index as the param of a "unique" error.
func reportDuplicates(sl validator.StructLevel, name string, list []string, key func(string) (string, bool)) {
	first := map[string]int{}
	for i, s := range list {
		k, ok := key(s)
		if !ok {
			continue
		}
		if j, dup := first[k]; dup {
			sl.ReportError(s, name+"["+strconv.Itoa(i)+"]", "", "unique", strconv.Itoa(j))
			continue
		}
		first[k] = i
	}
}

// validate checks the decoded bottle and records positioned errors, except
// under fields that failed to decode: those already have theirs.
func (d *document) validate() {
	defer d.validateWorkspace()
	defer d.validateStdinSecrets()
	err := bottleValidator().Struct(&d.bottle)
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		if err != nil {
			d.errorf(d.root, "", "internal: validate: %v", err)
		}
		return
	}
	for _, fe := range verrs {
		field := fieldPath(fe.Namespace())
		if d.decodeFailed(field) || fe.Tag() == "secretfrom" && d.decodeFailedUnder(field) {
			continue // a source whose env or file did not decode: that error says it
		}
		key := keyRules[fe.Tag()]
		if fe.Tag() == "envname" || fe.Tag() == "noproxy" {
			// They check env's names and a credential's agentEnv alike:
			// only a map key's namespace ends in "]".
			key = strings.HasSuffix(fe.Namespace(), "]")
		}
		n, found := d.locate(field, key)
		d.errorf(n, field, "%s", message(fe, field, found))
	}
}

// validateStdinSecrets refuses secret files, credentials' files and trust
// files in a spec read from standard input: there is no directory to read
// them from.
func (d *document) validateStdinSecrets() {
	if d.file != StdinName {
		return
	}
	fromFile := func(from ValueFrom, field string) {
		if from.File == "" || from.Env != "" || CheckSecretFile(from.File) != "" || d.decodeFailed(field) {
			return // no file, or its own error says what to fix
		}
		n, _ := d.locate(field, false)
		d.errorf(n, field, "a spec read from standard input has no directory to read secret files from; "+
			"use valueFrom.env, or pass the spec with -f FILE")
	}
	se := d.bottle.Spec.Agent.SecretEnv
	for _, name := range slices.Sorted(maps.Keys(se)) {
		fromFile(se[name].ValueFrom, "spec.agent.secretEnv."+name+".valueFrom.file")
	}
	e := &d.bottle.Spec.Bundle.Egress
	for i, c := range e.Credentials {
		fromFile(c.ValueFrom, "spec.bundle.egress.credentials["+strconv.Itoa(i)+"].valueFrom.file")
	}
	for i, f := range e.Trust {
		field := "spec.bundle.egress.trust[" + strconv.Itoa(i) + "]"
		if f == "" || CheckTrustFile(f) != "" || d.decodeFailed(field) {
			continue
		}
		n, _ := d.locate(field, false)
		d.errorf(n, field, "a spec read from standard input has no directory to read trust files from; "+
			"pass the spec with -f FILE")
	}
}

// fieldPath turns a validator namespace such as Bottle.spec.agent.env[FOO]
// into the YAML path spec.agent.env.FOO.
func fieldPath(ns string) string {
	_, p, _ := strings.Cut(ns, ".")
	for _, m := range []string{"spec.agent.env", "spec.agent.secretEnv"} {
		if strings.HasPrefix(p, m+"[") && strings.HasSuffix(p, "]") {
			p = m + "." + p[len(m)+1:len(p)-1]
		}
	}
	return p
}

func (d *document) decodeFailed(field string) bool {
	for _, b := range d.bad {
		if b == "" || field == b || strings.HasPrefix(field, b+".") || strings.HasPrefix(field, b+"[") {
			return true
		}
	}
	return false
}

// decodeFailedUnder reports whether a field under field failed to decode.
func (d *document) decodeFailedUnder(field string) bool {
	for _, b := range d.bad {
		if strings.HasPrefix(b, field+".") || strings.HasPrefix(b, field+"[") {
			return true
		}
	}
	return false
}

// locate returns the node of field (its key node if key is set), and
// whether it was there. For a missing field it returns the nearest parent
// that is there: its mapping, or its key when its value is null.
func (d *document) locate(field string, key bool) (*yaml.Node, bool) {
	for p, found := field, true; ; p, found = parent(p), false {
		e, ok := d.nodes[p]
		switch {
		case !ok && p != "":
			continue
		case !ok:
			return d.root, false
		case e.key != nil && (key || isNull(e.val)):
			return e.key, found
		}
		return e.val, found
	}
}

func parent(field string) string {
	return field[:max(strings.LastIndexAny(field, ".["), 0)]
}

var requiredHint = map[string]string{
	"apiVersion":       ` (must be "bottle-apply/v1")`,
	"kind":             ` (must be "Bottle")`,
	"spec.agent.image": " (an image reference such as alpine:3.20)",
}

func message(fe validator.FieldError, field string, found bool) string {
	value, _ := fe.Value().(string)
	switch fe.Tag() {
	case "required":
		if found {
			return "must not be empty" + requiredHint[field]
		}
		return "required field is missing" + requiredHint[field]
	case "eq":
		return fmt.Sprintf("%s is not supported; must be %q", quote(value), fe.Param())
	case "oneof":
		return fmt.Sprintf("%s is not one of: %s", quote(value), strings.ReplaceAll(fe.Param(), " ", ", "))
	case "unique":
		return fmt.Sprintf("%s is already listed at %s[%s]", quote(value), parent(field), fe.Param())
	case "bundleip", "egresssubnet", "smolvmname", "smolvmpids", "secretkey", "secretfrom", "secretsource", "egressdaemon",
		"kubernetesonly", "kubernetesname", "kubernetesnetwork", "kubernetesbundle", "credential", "credentialkey":
		return fe.Param()
	case "min":
		return fmt.Sprintf("%v is below the minimum of %s", fe.Value(), fe.Param())
	case "max":
		return fmt.Sprintf("%v is above the maximum of %s", fe.Value(), fe.Param())
	}
	if check := checks[fe.Tag()]; check != nil {
		return check(value)
	}
	return fmt.Sprintf("internal: failed rule %q", fe.Tag())
}

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	envName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func checkName(s string) string {
	if len(s) > 63 {
		return fmt.Sprintf("%s is %d characters long; a name has at most 63", quote(s), len(s))
	}
	if !dnsLabel.MatchString(s) {
		return fmt.Sprintf("%s is not a DNS label: use lowercase letters, digits and '-', starting and ending with a letter or digit", quote(s))
	}
	return ""
}

// checkSubdomain is Kubernetes' rule for most object names (RFC 1123
// subdomain): a runtime class, for one.
func checkSubdomain(s string) string {
	if len(s) > 253 {
		return fmt.Sprintf("%s is %d characters long; a name has at most 253", quote(s), len(s))
	}
	for _, l := range strings.Split(s, ".") {
		if !dnsLabel.MatchString(l) {
			return fmt.Sprintf("%s is not a DNS subdomain: use lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit", quote(s))
		}
	}
	return ""
}

// validateKubernetes checks what backend kubernetes means for the rest of
// the spec: a cluster allocates the addresses (the bundle's is its
// Service's ClusterIP), pulls the images, and runs the pods on its nodes,
// where no directory of this machine is.
func validateKubernetes(sl validator.StructLevel, b Bottle) {
	if b.Spec.Backend != BackendKubernetes {
		if b.Spec.Kubernetes != (Kubernetes{}) {
			sl.ReportError(b.Spec.Kubernetes, "spec.kubernetes", "Kubernetes", "kubernetesonly",
				"has effect on backend kubernetes only; remove it, or set spec.backend: kubernetes")
		}
		return
	}
	if len(b.Metadata.Name) > MaxKubernetesName && checkName(b.Metadata.Name) == "" {
		sl.ReportError(b.Metadata.Name, "metadata.name", "Name", "kubernetesname",
			fmt.Sprintf("%s is %d characters long; on backend kubernetes a bottle name has at most %d (its StatefulSet's revisions are named after it in a label of at most 63)",
				quote(b.Metadata.Name), len(b.Metadata.Name), MaxKubernetesName))
	}
	n := b.Spec.Network
	for _, f := range []struct{ field, value, what string }{
		{"spec.network.subnet", n.Subnet, "the cluster gives the pods their addresses"},
		{"spec.network.bundleIP", n.BundleIP, "the bundle's address is its Service's ClusterIP, which the cluster allocates"},
		{"spec.network.egressSubnet", n.EgressSubnet, "the bundle goes out through the cluster's pod network"},
	} {
		if f.value != "" {
			sl.ReportError(f.value, f.field, "", "kubernetesnetwork",
				"means nothing on backend kubernetes: "+f.what+"; remove it (network.allowCIDRs keeps its meaning)")
		}
	}
	if b.Spec.Bundle.Image == "" {
		sl.ReportError(b.Spec.Bundle.Image, "spec.bundle.image", "Image", "kubernetesbundle",
			"is required on backend kubernetes: the cluster pulls the bundle image, so it must be in a registry the cluster reaches; "+
				"push the built-in one with `bottle-apply bundle push REGISTRY/bottle-apply/bundle` and set this to the reference it prints")
	}
}

func checkImage(s string) string {
	if _, err := reference.ParseNormalizedNamed(s); err != nil {
		return fmt.Sprintf("%s is not a valid image reference: %v", quote(s), err)
	}
	return ""
}

func checkAbsPath(s string) string {
	if !path.IsAbs(s) {
		return fmt.Sprintf("%s is not an absolute path (e.g. /workspace)", quote(s))
	}
	return ""
}

func checkEnvName(s string) string {
	if !envName.MatchString(s) {
		return "not a valid variable name: must match " + envName.String()
	}
	return ""
}

// proxyVars are the variables bottle-apply sets to point the agent at the
// bundle's proxy, which a spec may not set.
var proxyVars = []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"}

func checkNotProxy(s string) string {
	if slices.Contains(proxyVars, s) {
		return "reserved: set by bottle-apply to point at the bundle's proxy"
	}
	return ""
}

func checkSubnet(s string) string {
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil || !p.Addr().Is4():
		return fmt.Sprintf("%s is not an IPv4 CIDR (e.g. 192.168.240.0/24)", quote(s))
	case p.Bits() < 16 || p.Bits() > 29:
		return fmt.Sprintf("%s has a /%d prefix; the prefix length must be between /16 and /29", quote(s), p.Bits())
	case p != p.Masked():
		return fmt.Sprintf("%s is not a network address; did you mean %q?", quote(s), p.Masked())
	}
	return ""
}

func checkPrefix(s string) string {
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return fmt.Sprintf("%s is not a CIDR (e.g. 10.0.0.0/8 or fd00::/8)", quote(s))
	case p != p.Masked():
		return fmt.Sprintf("%s is not a network address; did you mean %q?", quote(s), p.Masked())
	}
	return ""
}

func checkBundleIP(n Network) string {
	if n.BundleIP == "" {
		return ""
	}
	ip, err := netip.ParseAddr(n.BundleIP)
	if err != nil || !ip.Is4() {
		return fmt.Sprintf("%s is not an IPv4 address", quote(n.BundleIP))
	}
	if n.Subnet == "" {
		return "requires spec.network.subnet to be set"
	}
	if checkSubnet(n.Subnet) != "" {
		return "" // the subnet's own error says what to fix first
	}
	p := netip.MustParsePrefix(n.Subnet)
	switch ip {
	case p.Addr():
		return fmt.Sprintf("%s is the network address of %s; use a host address such as %s", ip, p, DefaultBundleIP(p))
	case broadcast(p):
		return fmt.Sprintf("%s is the broadcast address of %s; use a host address such as %s", ip, p, DefaultBundleIP(p))
	case GatewayIP(p):
		return fmt.Sprintf("%s is the gateway of %s; use another host address such as %s", ip, p, DefaultBundleIP(p))
	}
	if !p.Contains(ip) {
		return fmt.Sprintf("%s is not inside the subnet %s", ip, p)
	}
	return ""
}

// checkEgressSubnet requires the egress subnet not to overlap the bottle's
// own subnet: the bundle sits on both.
func checkEgressSubnet(n Network) string {
	if n.EgressSubnet == "" || n.Subnet == "" || checkSubnet(n.EgressSubnet) != "" || checkSubnet(n.Subnet) != "" {
		return ""
	}
	if e, s := netip.MustParsePrefix(n.EgressSubnet), netip.MustParsePrefix(n.Subnet); e.Overlaps(s) {
		return fmt.Sprintf("%s overlaps spec.network.subnet %s; the bundle's way out needs a range of its own", e, s)
	}
	return ""
}

// broadcast returns the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(a[:])|(1<<(32-p.Bits())-1))
	return netip.AddrFrom4(a)
}
