package view

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bottle-apply/bottle-apply/app"
	"github.com/bottle-apply/bottle-apply/reconcile"
	"github.com/bottle-apply/bottle-apply/verify"
)

// Apply shows a run of apply, destroy, --dry-run or --verify. A command
// picks one, from -o, and gives it everything it has to show.
type Apply interface {
	// Plan shows the first plan, before anything changes.
	Plan(p *reconcile.Plan)
	// Result shows what the run did, once, at the end; err is the run's.
	Result(r *app.Result, err error) error
}

// NewApply returns the view for -o output ("text" or "json") on w; color
// paints the text view's plan.
func NewApply(output string, w io.Writer, color bool) Apply {
	if output == "json" {
		return jsonApply{w}
	}
	return textApply{w, color}
}

type textApply struct {
	w     io.Writer
	color bool
}

func (v textApply) Plan(p *reconcile.Plan) { _ = Render(v.w, p, v.color) }

func (v textApply) Result(r *app.Result, err error) error {
	if r.Command == "verify" {
		Verify(v.w, r.Verify)
		return nil
	}
	// The summary follows a change that went through, or whose only
	// failure is a hole the self-test found.
	if !r.Changed() || r.DryRun || (err != nil && !errors.Is(err, verify.ErrHoles)) {
		return nil
	}
	verb := "Apply"
	if r.Command == "destroy" {
		verb = "Destroy"
	}
	p := r.Run.Plan
	fmt.Fprintf(v.w, "\n%s complete: %d created, %d started, %d replaced, %d deleted in %s.\n", verb,
		p.Count(reconcile.Create), p.Count(reconcile.Start), p.Count(reconcile.Replace), p.Count(reconcile.Delete),
		r.Took.Round(time.Millisecond))
	Verify(v.w, r.Verify)
	return nil
}

type jsonApply struct{ w io.Writer }

func (jsonApply) Plan(*reconcile.Plan) {}

// resultDoc is a run's JSON document.
type resultDoc struct {
	Command    string                 `json:"command"`
	Bottles    []string               `json:"bottles"`
	DryRun     bool                   `json:"dryRun"`
	Plan       *PlanDoc               `json:"plan,omitempty"`
	Steps      []reconcile.StepResult `json:"steps"`
	Rounds     int                    `json:"rounds"`
	Changed    bool                   `json:"changed"`
	Converged  bool                   `json:"converged"`
	DurationMS int64                  `json:"durationMs"`
	// Verify holds the self-test of each bottle tested.
	Verify []verify.Report `json:"verify,omitempty"`
	Error  string          `json:"error,omitempty"`
}

func (v jsonApply) Result(r *app.Result, err error) error {
	doc := resultDoc{Command: r.Command, Bottles: r.Bottles, DryRun: r.DryRun, Steps: []reconcile.StepResult{},
		DurationMS: r.Took.Milliseconds(), Verify: r.Verify}
	if res := r.Run; res != nil {
		if res.Plan != nil {
			pd := Doc(res.Plan)
			doc.Plan = &pd
		}
		if res.Steps != nil {
			doc.Steps = res.Steps
		}
		doc.Rounds, doc.Changed, doc.Converged = res.Rounds, res.Changed(), res.Converged
	}
	if err != nil {
		doc.Error = err.Error()
	}
	enc := json.NewEncoder(v.w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
