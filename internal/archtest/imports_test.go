package archtest

import (
	"bytes"
	"encoding/json"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// A rule forbids some imports to some packages. Paths are relative to the
// module ("reconcile", "providers/docker"); under(p, "app") holds for app
// and everything below it. Only the packages' own files count: tests may
// import what they need, whatever their package.
type rule struct {
	name      string
	applies   func(pkg string) bool
	forbidden func(pkg, imp string) bool
}

var rules = []rule{
	{
		name:    "reconcile imports no provider, app, cmd, verify nor view",
		applies: func(p string) bool { return under(p, "reconcile") },
		forbidden: func(_, imp string) bool {
			return under(imp, "providers") || under(imp, "app") || under(imp, "cmd") || under(imp, "verify") || under(imp, "view")
		},
	},
	{
		name:      "spec imports no other package of the module",
		applies:   func(p string) bool { return under(p, "spec") },
		forbidden: func(_, imp string) bool { return !under(imp, "spec") },
	},
	{
		name:      "bottle imports no package of the module but spec",
		applies:   func(p string) bool { return under(p, "bottle") },
		forbidden: func(_, imp string) bool { return !under(imp, "bottle") && !under(imp, "spec") },
	},
	{
		name:      "a provider imports no other provider",
		applies:   func(p string) bool { return provider(p) != "" },
		forbidden: func(p, imp string) bool { return provider(imp) != "" && provider(imp) != provider(p) },
	},
	{
		name: "only cmd/, app and hack/ import providers",
		applies: func(p string) bool {
			return provider(p) == "" && !under(p, "cmd") && !under(p, "app") && !under(p, "hack")
		},
		forbidden: func(_, imp string) bool { return provider(imp) != "" },
	},
	{
		name:      "verify imports no provider",
		applies:   func(p string) bool { return under(p, "verify") },
		forbidden: func(_, imp string) bool { return provider(imp) != "" },
	},
	{
		// The kubernetes provider builds the manifest the bundle reads:
		// place must not bring the bundle's daemons along.
		name:      "place imports no package of the module but bottle and spec",
		applies:   func(p string) bool { return under(p, "place") },
		forbidden: func(_, imp string) bool { return !under(imp, "place") && !under(imp, "bottle") && !under(imp, "spec") },
	},
	{
		name:      "view imports no provider",
		applies:   func(p string) bool { return under(p, "view") },
		forbidden: func(_, imp string) bool { return provider(imp) != "" },
	},
}

// ruledPackages are the packages the rules name: each must exist, or a
// rule would hold for want of its package (after a rename, say).
var ruledPackages = []string{"reconcile", "spec", "bottle", "providers/docker", "providers/smolvm", "providers/kubernetes", "place", "app", "cmd/bottle-apply", "hack/bench", "verify", "view"}

// under reports whether p is dir or a package below it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// provider is the provider p belongs to ("providers/docker" for
// providers/docker and its subpackages), or "".
func provider(p string) string {
	parts := strings.SplitN(p, "/", 3)
	if len(parts) < 2 || parts[0] != "providers" {
		return ""
	}
	return parts[0] + "/" + parts[1]
}

// violations checks imports (a package to the packages of the module it
// imports, all relative to the module) against the rules: one line a
// forbidden import, "pkg → import: rule[; rule]", sorted.
func violations(imports map[string][]string) []string {
	var out []string
	for pkg, imps := range imports {
		for _, imp := range imps {
			var broken []string
			for _, r := range rules {
				if r.applies(pkg) && r.forbidden(pkg, imp) {
					broken = append(broken, r.name)
				}
			}
			if len(broken) > 0 {
				out = append(out, pkg+" → "+imp+": "+strings.Join(broken, "; "))
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestImportRules(t *testing.T) {
	t.Parallel()
	imports := moduleImports(t)
	for _, p := range ruledPackages {
		if _, ok := imports[p]; !ok {
			t.Errorf("the rules name %s, which the module does not have: update the rules", p)
		}
	}
	if v := violations(imports); len(v) > 0 {
		t.Errorf("%d forbidden imports (package → import: the rule it breaks):\n  %s", len(v), strings.Join(v, "\n  "))
	}
}

// TestRulesCatch checks that each rule does catch what it forbids, on a
// made-up module.
func TestRulesCatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pkg, imp string
		want     string // "" for allowed
	}{
		{"reconcile", "spec", ""},
		{"reconcile", "providers/docker", "reconcile → providers/docker: reconcile imports no provider, app, cmd, verify nor view; only cmd/, app and hack/ import providers"},
		{"reconcile", "app", "reconcile → app: reconcile imports no provider, app, cmd, verify nor view"},
		{"reconcile", "cmd/bottle-apply", "reconcile → cmd/bottle-apply: reconcile imports no provider, app, cmd, verify nor view"},
		{"reconcile", "verify", "reconcile → verify: reconcile imports no provider, app, cmd, verify nor view"},
		{"reconcile", "view", "reconcile → view: reconcile imports no provider, app, cmd, verify nor view"},
		{"spec", "secret", "spec → secret: spec imports no other package of the module"},
		{"spec/internal/x", "spec", ""},
		{"bottle", "spec", ""},
		{"bottle", "reconcile", "bottle → reconcile: bottle imports no package of the module but spec"},
		{"providers/docker", "reconcile", ""},
		{"providers/docker", "providers/docker/internal/x", ""},
		{"providers/docker", "providers/smolvm", "providers/docker → providers/smolvm: a provider imports no other provider"},
		{"providers/podman", "providers/docker/sub", "providers/podman → providers/docker/sub: a provider imports no other provider"},
		{"cmd/bottle-apply", "providers/docker", ""},
		{"app", "providers/smolvm", ""},
		{"hack/bench", "providers/docker", ""},
		{"bundle", "providers/docker", "bundle → providers/docker: only cmd/, app and hack/ import providers"},
		{"internal/testenv", "providers/smolvm", "internal/testenv → providers/smolvm: only cmd/, app and hack/ import providers"},
		{"verify", "providers/docker", "verify → providers/docker: only cmd/, app and hack/ import providers; verify imports no provider"},
		{"view", "providers/smolvm", "view → providers/smolvm: only cmd/, app and hack/ import providers; view imports no provider"},
		{"view", "app", ""},
	} {
		t.Run(tc.pkg+"→"+tc.imp, func(t *testing.T) {
			t.Parallel()
			got := violations(map[string][]string{tc.pkg: {tc.imp}})
			var want []string
			if tc.want != "" {
				want = []string{tc.want}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("violations = %q, want %q", got, want)
			}
		})
	}
}

// listed is what go list says of a package.
type listed struct {
	ImportPath, Dir                   string
	GoFiles, CgoFiles, IgnoredGoFiles []string
	Error                             *struct{ Err string }
}

// moduleImports lists the module's packages with go list, then reads the
// imports of each one's own files, for every platform (build constraints
// ignored): a package to the packages of the module it imports, relative
// to the module.
func moduleImports(t *testing.T) map[string][]string {
	t.Helper()
	root := goCmd(t, "", "env", "GOMOD")
	if root == "" || root == "/dev/null" {
		t.Fatal("not in a Go module")
	}
	root = filepath.Dir(root)
	module := goCmd(t, root, "list", "-m")
	dec := json.NewDecoder(strings.NewReader(goCmd(t, root, "list", "-e",
		"-json=ImportPath,Dir,GoFiles,CgoFiles,IgnoredGoFiles,Error", "./...")))
	imports := map[string][]string{}
	fset := token.NewFileSet()
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Error != nil {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		pkg := rel(module, p.ImportPath)
		seen := map[string]bool{}
		imports[pkg] = []string{}
		for _, name := range slices.Concat(p.GoFiles, p.CgoFiles, p.IgnoredGoFiles) {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range f.Imports {
				path, err := strconv.Unquote(s.Path.Value)
				if err != nil {
					t.Fatalf("%s: %v", fset.Position(s.Pos()), err)
				}
				if imp := rel(module, path); imp != "" && !seen[imp] {
					seen[imp] = true
					imports[pkg] = append(imports[pkg], imp)
				}
			}
		}
	}
	if len(imports) == 0 {
		t.Fatal("go list found no package")
	}
	return imports
}

// rel is path relative to the module, or "" when path is outside it.
func rel(module, path string) string {
	if r, ok := strings.CutPrefix(path, module+"/"); ok {
		return r
	}
	return ""
}

// goCmd runs the go command in dir and returns its trimmed stdout.
func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}
