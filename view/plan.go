// Package view renders what bottle-apply has to say, for humans (text,
// optionally in color) and for machines (JSON): plans, apply results,
// self-test reports and egress decisions. A command picks its view once,
// from -o, and hands everything it prints to it.
package view

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/bottle-apply/bottle-apply/reconcile"
)

const (
	ansiReset  = "\x1b[0m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiRed    = "\x1b[31m"
	ansiBold   = "\x1b[1m"
)

func actionColor(a reconcile.Action) string {
	switch a {
	case reconcile.Create:
		return ansiGreen
	case reconcile.Delete:
		return ansiRed
	default:
		return ansiYellow
	}
}

// Render prints the plan for humans, terraform style: one line per change
// with its symbol and reason, the resource's attributes under creates and
// replaces, NoOp steps hidden, and a summary line.
func Render(w io.Writer, p *reconcile.Plan, color bool) error {
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return code + s + ansiReset
	}
	var b strings.Builder
	if p.Changes() == 0 {
		b.WriteString(paint(ansiBold, "No changes.") + " Reality matches the spec.\n")
		kept(&b, p)
		_, err := io.WriteString(w, b.String())
		return err
	}
	width := 0
	for _, s := range p.Steps {
		if s.Action != reconcile.NoOp {
			width = max(width, len(s.ResourceID))
		}
	}
	b.WriteString("bottle-apply will perform these actions:\n\n")
	for _, s := range p.Steps {
		if s.Action == reconcile.NoOp {
			continue
		}
		fmt.Fprintf(&b, "  %s %-*s  %s\n", paint(actionColor(s.Action), fmt.Sprintf("%-3s", s.Action.Symbol())),
			width, s.ResourceID, s.Reason)
		if s.Action == reconcile.Create || s.Action == reconcile.Replace {
			fmt.Fprintf(&b, "        %s\n", attrs(&s.Resource))
		}
		if s.Action == reconcile.Replace {
			if k := s.Resource.Keeps; k != "" {
				fmt.Fprintf(&b, "        keeps: %s\n", k)
			}
			if d := s.Resource.Discards; d != "" {
				fmt.Fprintf(&b, "        discards: %s\n", d)
			}
		}
	}
	fmt.Fprintf(&b, "\n%s %d to create, %d to start, %d to replace, %d to delete.\n",
		paint(ansiBold, "Plan:"), p.Count(reconcile.Create), p.Count(reconcile.Start), p.Count(reconcile.Replace), p.Count(reconcile.Delete))
	kept(&b, p)
	_, err := io.WriteString(w, b.String())
	return err
}

// kept says which persistent resources (named volumes) stay although no
// bottle of the spec uses them any more, and how to remove them.
func kept(b *strings.Builder, p *reconcile.Plan) {
	rs := p.Kept
	if len(rs) == 0 {
		return
	}
	what := "1 named volume, which holds the agent's work and outlives it"
	if len(rs) > 1 {
		what = fmt.Sprintf("%d named volumes, which hold the agent's work and outlive it", len(rs))
	}
	if slices.ContainsFunc(rs, func(r reconcile.Resource) bool { return r.Summary["holds"] != "" }) {
		what = fmt.Sprintf("%d resources that hold the agent's work and outlive it", len(rs))
	}
	fmt.Fprintf(b, "\nKept %s:\n", what)
	for i := range rs {
		fmt.Fprintf(b, "  %s  %s\n", rs[i].ID(), removeHint(&rs[i]))
	}
	if slices.ContainsFunc(rs, func(r reconcile.Resource) bool { return slices.Contains(p.Pruned, r.Bottle) }) {
		b.WriteString("`bottle-apply --set SET --prune --volumes -f FILE` removes the volumes of the bottles it prunes.\n")
		return
	}
	b.WriteString("`bottle-apply --destroy --volumes -f FILE` removes a bottle's volumes with it.\n")
}

// removeHint says how to remove one kept volume by hand.
func removeHint(r *reconcile.Resource) string {
	if cmd := r.Summary["remove"]; cmd != "" {
		return "(remove it alone with " + cmd + ")"
	}
	if path := r.Summary["path"]; path != "" {
		return "(" + path + "; remove it alone with rm -r " + shellQuote(path) + ")"
	}
	return "(remove it alone with docker volume rm " + shellQuote(r.Name) + ")"
}

// shellQuote makes s one word for a POSIX shell.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func attrs(r *reconcile.Resource) string {
	parts := []string{"name=" + r.Name}
	keys := make([]string, 0, len(r.Summary))
	for k := range r.Summary {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+r.Summary[k])
	}
	return strings.Join(parts, " ")
}

// StepDoc is one step in machine-readable output.
type StepDoc struct {
	ID        int               `json:"id"`
	Action    reconcile.Action  `json:"action"`
	Resource  string            `json:"resource"`
	Name      string            `json:"name"`
	Bottle    string            `json:"bottle"`
	Reason    string            `json:"reason,omitempty"`
	DependsOn []int             `json:"dependsOn,omitempty"`
	Summary   map[string]string `json:"attributes,omitempty"`
	// Keeps and Discards are set on replaces (see reconcile.Resource).
	Keeps    string `json:"keeps,omitempty"`
	Discards string `json:"discards,omitempty"`
}

// PlanDoc is the plan in machine-readable output. NoOp steps are included
// so that a consumer sees every resource of the bottles.
type PlanDoc struct {
	Steps    []StepDoc      `json:"steps"`
	Changes  map[string]int `json:"changes"`
	Warnings []string       `json:"warnings,omitempty"`
	// Kept are the named volumes kept although not in the spec (or on a
	// destroy without --volumes).
	Kept []KeptDoc `json:"kept,omitempty"`
	// Pruned names the bottles of the spec set that the plan deletes as
	// they left the specs (--prune).
	Pruned []string `json:"pruned,omitempty"`
}

// KeptDoc is a kept volume in machine-readable output.
type KeptDoc struct {
	Resource string `json:"resource"`
	Name     string `json:"name"`
	Bottle   string `json:"bottle"`
	Path     string `json:"path,omitempty"`
}

// Doc returns the plan's machine-readable form.
func Doc(p *reconcile.Plan) PlanDoc {
	d := PlanDoc{Steps: make([]StepDoc, 0, len(p.Steps)), Warnings: p.Warnings, Pruned: p.Pruned, Changes: map[string]int{
		"create": p.Count(reconcile.Create), "start": p.Count(reconcile.Start), "replace": p.Count(reconcile.Replace), "delete": p.Count(reconcile.Delete),
	}}
	for _, s := range p.Steps {
		sd := StepDoc{
			ID: s.ID, Action: s.Action, Resource: s.ResourceID, Name: s.Resource.Name,
			Bottle: s.Resource.Bottle, Reason: s.Reason, DependsOn: s.DependsOn, Summary: s.Resource.Summary,
		}
		if s.Action == reconcile.Replace {
			sd.Keeps, sd.Discards = s.Resource.Keeps, s.Resource.Discards
		}
		d.Steps = append(d.Steps, sd)
	}
	for i := range p.Kept {
		r := &p.Kept[i]
		d.Kept = append(d.Kept, KeptDoc{Resource: r.ID(), Name: r.Name, Bottle: r.Bottle, Path: r.Summary["path"]})
	}
	return d
}
