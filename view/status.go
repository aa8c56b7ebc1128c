package view

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bottle-apply/bottle-apply/app"
)

// Status prints what status found: a table a person reads at a glance
// (as docker compose ps and kubectl get), then the drift reasons of the
// bottles that drifted; or, asJSON, one document. now dates the ages.
func Status(w io.Writer, r *app.StatusResult, asJSON bool, now time.Time) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(statusDocOf(r))
	}
	if len(r.Bottles) == 0 {
		_, err := io.WriteString(w, "No bottles.\n")
		return err
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	head := "NAME\tBACKEND\tSTATE\tAGENT\tBUNDLE\tSUBNET\tBUNDLE-IP\tAGE\tVOLUMES"
	if r.Specs {
		head += "\tSYNC"
	}
	fmt.Fprintln(tw, head)
	for _, s := range r.Bottles {
		age := "-"
		if !s.Created.IsZero() {
			age = humanAge(now.Sub(s.Created))
		}
		line := strings.Join([]string{s.Name, dash(s.Backend), s.State, s.Agent, s.Bundle, dash(s.Subnet), dash(s.BundleAddress),
			age, volumes(s.Volumes)}, "\t")
		if r.Specs {
			line += "\t" + s.Sync
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range r.Bottles {
		if len(s.Reasons) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s: an apply would\n", s.Name)
		for _, reason := range s.Reasons {
			fmt.Fprintf(&b, "  %s\n", reason)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// volumes lists the named volumes, marking the absent ones.
func volumes(vs []app.VolumeStatus) string {
	if len(vs) == 0 {
		return "-"
	}
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.Name
		if !v.Present {
			names[i] += "(missing)"
		}
	}
	return strings.Join(names, ",")
}

// humanAge is an age as kubectl shows it: 45s, 12m, 5h, 3d.
func humanAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// StatusDoc is status in machine-readable form.
type StatusDoc struct {
	Bottles  []BottleDoc `json:"bottles"`
	Warnings []string    `json:"warnings,omitempty"`
}

// BottleDoc is one bottle of StatusDoc. InSync and Sync are there with
// specs (-f) only.
type BottleDoc struct {
	Name          string        `json:"name"`
	Backend       string        `json:"backend"`
	State         string        `json:"state"`
	InSync        *bool         `json:"inSync,omitempty"`
	Sync          string        `json:"sync,omitempty"`
	Reasons       []string      `json:"reasons,omitempty"`
	Agent         string        `json:"agent"`
	Bundle        string        `json:"bundle"`
	Subnet        string        `json:"subnet,omitempty"`
	BundleAddress string        `json:"bundleAddress,omitempty"`
	Created       *time.Time    `json:"created,omitempty"`
	Volumes       []VolumeDoc   `json:"volumes,omitempty"`
	Resources     []ResourceDoc `json:"resources"`
}

// VolumeDoc is a named volume of a bottle.
type VolumeDoc struct {
	Name    string `json:"name"`
	Present bool   `json:"present"`
}

// ResourceDoc is one observed resource of a bottle.
type ResourceDoc struct {
	Role     string     `json:"role"`
	Kind     string     `json:"kind"`
	Provider string     `json:"provider"`
	Name     string     `json:"name"`
	State    string     `json:"state"`
	Status   string     `json:"status,omitempty"`
	Created  *time.Time `json:"created,omitempty"`
}

func statusDocOf(r *app.StatusResult) StatusDoc {
	d := StatusDoc{Bottles: make([]BottleDoc, 0, len(r.Bottles)), Warnings: r.Warnings}
	for _, s := range r.Bottles {
		bd := BottleDoc{Name: s.Name, Backend: s.Backend, State: s.State, Agent: s.Agent, Bundle: s.Bundle,
			Subnet: s.Subnet, BundleAddress: s.BundleAddress, Created: timeOrNil(s.Created), Reasons: s.Reasons,
			Resources: make([]ResourceDoc, 0, len(s.Resources))}
		if r.Specs {
			inSync := s.InSync
			bd.InSync, bd.Sync = &inSync, s.Sync
		}
		for _, v := range s.Volumes {
			bd.Volumes = append(bd.Volumes, VolumeDoc(v))
		}
		for _, rs := range s.Resources {
			bd.Resources = append(bd.Resources, ResourceDoc{Role: rs.Role, Kind: rs.Kind, Provider: rs.Provider, Name: rs.Name,
				State: rs.State, Status: rs.Status, Created: timeOrNil(rs.Created)})
		}
		d.Bottles = append(d.Bottles, bd)
	}
	return d
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
