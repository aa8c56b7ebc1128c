package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bottle-apply/bottle-apply/internal/testenv"
)

type reportDoc struct {
	Started   time.Time           `json:"started"`
	DurationS float64             `json:"durationSeconds"`
	Rounds    int                 `json:"rounds"`
	Engine    string              `json:"engineVersion"`
	LoadAvg   [2]string           `json:"loadAvg"` // before and after the measurements
	Compose   compose             `json:"compose"`
	Cases     []caseDoc           `json:"cases"`
	NoopCalls map[string][]string `json:"noopCalls"` // of the first measured round, per tool
	Targets   []targetDoc         `json:"targets"`
	Notes     []string            `json:"notes,omitempty"`

	// Kubernetes is the kubernetes section (kube.go).
	Kubernetes *kubeDoc `json:"kubernetes,omitempty"`
}

type caseDoc struct {
	Name  string   `json:"case"`
	A     *sideDoc `json:"bottleApply"`
	B     *sideDoc `json:"compose,omitempty"`
	Ratio *float64 `json:"ratio,omitempty"` // of the median wall times, A/B
}

type sideDoc struct {
	WallMS      []float64   `json:"wallMs"`
	MedianMS    float64     `json:"medianMs"`
	APICalls    []int       `json:"apiCalls"`
	MedianCalls float64     `json:"medianApiCalls"`
	MaxRSSKiB   int64       `json:"maxRssKiB"`
	MedianRun   []traceCall `json:"medianRunCalls"` // the calls of the run of median wall time
	median      sample
}

type traceCall struct {
	Call    string  `json:"call"`
	StartMS float64 `json:"startMs"` // since the process started
	DurMS   float64 `json:"durMs"`
}

type targetDoc struct {
	Name      string `json:"target"`
	Value     string `json:"value"`
	Holds     *bool  `json:"holds"` // null: cannot tell without compose
	Breakdown string `json:"breakdown,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return 0
	}
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func side(ss []sample) *sideDoc {
	if len(ss) == 0 {
		return nil
	}
	d := &sideDoc{}
	var calls []float64
	for _, s := range ss {
		d.WallMS = append(d.WallMS, ms(s.Wall))
		d.APICalls = append(d.APICalls, len(s.Calls))
		calls = append(calls, float64(len(s.Calls)))
		d.MaxRSSKiB = max(d.MaxRSSKiB, s.RSSKiB)
	}
	d.MedianMS, d.MedianCalls = median(d.WallMS), median(calls)
	byWall := slices.SortedFunc(slices.Values(ss), func(x, y sample) int { return int(x.Wall - y.Wall) })
	d.median = byWall[(len(byWall)-1)/2]
	for _, c := range d.median.Calls {
		d.MedianRun = append(d.MedianRun, traceCall{c.Name, ms(c.Start.Sub(d.median.Start)), ms(c.Dur)})
	}
	return d
}

func (b *bench) report(rounds int, took time.Duration, engine string, comp compose) *reportDoc {
	rep := &reportDoc{Started: time.Now().Add(-took), DurationS: took.Seconds(), Rounds: rounds, Engine: engine,
		Compose: comp, NoopCalls: map[string][]string{}}
	byName := map[string]*caseDoc{}
	for _, r := range b.results {
		c := caseDoc{Name: r.Name, A: side(r.A), B: side(r.B)}
		if c.A != nil && c.B != nil && c.B.MedianMS > 0 {
			ratio := c.A.MedianMS / c.B.MedianMS
			c.Ratio = &ratio
		}
		rep.Cases = append(rep.Cases, c)
		byName[r.Name] = &rep.Cases[len(rep.Cases)-1]
		if strings.Contains(r.Name, "no-op") || strings.Contains(r.Name, "status") {
			for tool, ss := range map[string][]sample{"bottle-apply": r.A, "compose": r.B} {
				for i, s := range ss {
					if w := writes(s.Calls); len(w) > 0 {
						rep.Notes = append(rep.Notes, fmt.Sprintf("%s, round %d: %s changed something: %s", r.Name, i+1, tool, strings.Join(w, ", ")))
					}
				}
			}
		}
	}
	noop := b.get("no-op apply")
	for tool, ss := range map[string][]sample{"bottle-apply": noop.A, "compose": noop.B} {
		if len(ss) > 0 {
			for _, c := range ss[0].Calls {
				rep.NoopCalls[tool] = append(rep.NoopCalls[tool], c.Name)
			}
		}
	}

	ratioTarget := func(name, cas string, limit float64) targetDoc {
		c := byName[cas]
		t := targetDoc{Name: name, Value: "n/a (no compose)"}
		if c.Ratio != nil {
			ok := *c.Ratio <= limit
			t.Value, t.Holds = fmt.Sprintf("%.2f×", *c.Ratio), &ok
		}
		if t.Holds != nil && !*t.Holds {
			t.Breakdown = breakdown(c.A.median)
		}
		return t
	}
	noopA := byName["no-op apply"].A
	callsOK := noopA.MedianCalls <= 5
	callsT := targetDoc{Name: "no-op apply: ≤ 5 API calls (a ping, one list per kind: networks, containers, volumes, images)", Value: fmt.Sprintf("%g", noopA.MedianCalls), Holds: &callsOK}
	if !callsOK {
		callsT.Breakdown = breakdown(noopA.median)
	}
	s1, s20 := byName["scale 1: no-op apply"].A, byName["scale 20: no-op apply"].A
	scale := s20.MedianMS / s1.MedianMS
	scaleOK := scale <= 2
	scaleT := targetDoc{Name: "20-bottle no-op ≤ 2× 1-bottle no-op", Value: fmt.Sprintf("%.2f×", scale), Holds: &scaleOK}
	if !scaleOK {
		scaleT.Breakdown = breakdown(s20.median)
	}
	destroyT := ratioTarget("destroy ≤ 0.5× compose down", "destroy", 0.5)
	if destroyT.Breakdown != "" {
		// How much of it any client would take: the raw calls alone.
		var fl []string
		for _, o := range floorOrders {
			if c := byName[o.name]; c != nil && c.A != nil && c.Ratio != nil {
				fl = append(fl, fmt.Sprintf("%s %.0f ms = %.2f×", strings.TrimPrefix(o.name, "destroy floor: raw calls, "), c.A.MedianMS, *c.Ratio))
			}
		}
		if len(fl) > 0 {
			destroyT.Breakdown += "; the same calls from a client with no process to start (floors): " + strings.Join(fl, ", ")
		}
	}
	// What the self-test adds to a first apply: the medians of the same
	// rounds, with it and with --no-verify.
	verifyT := targetDoc{Name: "self-test adds ≤ 300 ms to first apply", Value: "n/a"}
	if v, n := byName[firstVerified], byName["first apply"]; v != nil && n != nil && v.A != nil && n.A != nil {
		added := v.A.MedianMS - n.A.MedianMS
		ok := added <= 300
		verifyT.Value, verifyT.Holds = fmt.Sprintf("%.0f ms", added), &ok
		if !ok {
			verifyT.Breakdown = breakdown(v.A.median)
		}
	}
	// status reads what a no-op apply reads: no more calls, at every
	// size.
	statusOK := true
	statusT := targetDoc{Name: "status: ≤ the no-op apply's API calls (1 bottle; scale 1; scale 20)", Holds: &statusOK}
	var sv []string
	for _, n := range []string{"", "scale 1: ", "scale 20: "} {
		st, no := byName[n+"status"], byName[n+"no-op apply"]
		if st == nil || no == nil || st.A == nil || no.A == nil {
			continue
		}
		sv = append(sv, fmt.Sprintf("%g/%g", st.A.MedianCalls, no.A.MedianCalls))
		if st.A.MedianCalls > no.A.MedianCalls {
			statusOK = false
			statusT.Breakdown = breakdown(st.A.median)
		}
	}
	statusT.Value = strings.Join(sv, ", ")
	rep.Targets = []targetDoc{
		callsT,
		statusT,
		ratioTarget("no-op apply ≤ 0.5× compose up -d", "no-op apply", 0.5),
		ratioTarget("first apply ≤ 0.8× compose up -d", "first apply", 0.8),
		verifyT,
		destroyT,
		scaleT,
	}
	return rep
}

// writes lists the calls that are not reads.
func writes(calls []testenv.Call) []string {
	var out []string
	for _, c := range calls {
		if !strings.HasPrefix(c.Name, "GET ") && !strings.HasPrefix(c.Name, "HEAD ") {
			out = append(out, c.Name)
		}
	}
	return out
}

// kind names a call without the object it is on: POST /containers/{id}/start.
func kind(c string) string {
	method, path, _ := strings.Cut(c, " ")
	seg := strings.Split(path, "/")
	if len(seg) > 2 && slices.Contains([]string{"containers", "networks", "images", "exec", "volumes"}, seg[1]) &&
		!slices.Contains([]string{"json", "create", "prune", "load"}, seg[2]) {
		seg[2] = "{id}"
	}
	return method + " " + strings.Join(seg, "/")
}

// breakdown says where a run's time went: before its first API call, while
// calls were in flight, after the last answer, and which calls took longest.
func breakdown(s sample) string {
	if len(s.Calls) == 0 {
		return fmt.Sprintf("%.0f ms without any API call", ms(s.Wall))
	}
	first, last := s.Calls[0].Start, s.Calls[0].Start
	type agg struct {
		kind string
		n    int
		sum  time.Duration
	}
	aggs := map[string]*agg{}
	for _, c := range s.Calls {
		if end := c.Start.Add(c.Dur); end.After(last) {
			last = end
		}
		k := kind(c.Name)
		if aggs[k] == nil {
			aggs[k] = &agg{kind: k}
		}
		aggs[k].n++
		aggs[k].sum += c.Dur
	}
	list := make([]*agg, 0, len(aggs))
	for _, a := range aggs {
		list = append(list, a)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].sum > list[j].sum })
	var top []string
	for _, a := range list[:min(5, len(list))] {
		top = append(top, fmt.Sprintf("%s %d× %.0f ms", a.kind, a.n, ms(a.sum)))
	}
	return fmt.Sprintf("median run %.0f ms: %.0f ms until its first API call, %.0f ms with calls in flight (%d calls), %.0f ms after the last answer; engine time by call, summed over parallel calls: %s",
		ms(s.Wall), ms(first.Sub(s.Start)), ms(last.Sub(first)), len(s.Calls), ms(s.Start.Add(s.Wall).Sub(last)), strings.Join(top, ", "))
}

func printReport(w io.Writer, rep *reportDoc) {
	fmt.Fprintf(w, "\nbottle-apply (A) vs docker compose %s (B), engine %s, %d rounds, medians; load average %s before, %s after\n",
		cmp.Or(rep.Compose.Version, "(none)"), rep.Engine, rep.Rounds, rep.LoadAvg[0], rep.LoadAvg[1])
	switch c := rep.Compose; {
	case c.Err != "":
		fmt.Fprintf(w, "NO DOCKER COMPOSE, bottle-apply alone: %s\n\n", c.Err)
	case c.Built:
		fmt.Fprintf(w, "compose: %s, built by this run in %.0f s\n\n", c.Bin, c.BuildSecs)
	default:
		fmt.Fprintf(w, "compose: %s\n\n", c.Bin)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tbottle-apply\tcompose\tratio A/B\tAPI calls A/B\tpeak RSS A/B")
	for _, c := range rep.Cases {
		bt, ratio, bc, brss := "—", "—", "—", "—"
		if c.B != nil {
			bt, bc, brss = fmt.Sprintf("%.0f ms", c.B.MedianMS), fmt.Sprintf("%g", c.B.MedianCalls), fmt.Sprintf("%.1f MiB", float64(c.B.MaxRSSKiB)/1024)
		} else if !strings.HasPrefix(c.Name, "scale") {
			bt, ratio = "n/a", "n/a"
		}
		if c.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *c.Ratio)
		}
		arss := "—" // a floor runs in the bench's own process
		if c.A.MaxRSSKiB > 0 {
			arss = fmt.Sprintf("%.1f MiB", float64(c.A.MaxRSSKiB)/1024)
		}
		fmt.Fprintf(tw, "%s\t%.0f ms\t%s\t%s\t%g / %s\t%s / %s\n", c.Name, c.A.MedianMS, bt, ratio, c.A.MedianCalls, bc, arss, brss)
	}
	tw.Flush()
	// Where a destroy's time goes: the calls of the median runs.
	for _, c := range rep.Cases {
		switch {
		case c.Name == "destroy":
			printTimeline(w, "bottle-apply", c.A)
			printTimeline(w, "compose", c.B)
		case strings.HasPrefix(c.Name, "destroy floor: "):
			printTimeline(w, strings.TrimPrefix(c.Name, "destroy floor: "), c.A)
		}
	}
	for _, tool := range []string{"bottle-apply", "compose"} {
		if calls, ok := rep.NoopCalls[tool]; ok {
			fmt.Fprintf(w, "\nno-op API calls, %s (%d):\n  %s\n", tool, len(calls), strings.Join(calls, "\n  "))
		}
	}
	fmt.Fprintln(w, "\ntargets:")
	printTargets(w, rep.Targets)
	printKube(w, rep.Kubernetes, rep.Rounds)
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func printTargets(w io.Writer, ts []targetDoc) {
	for _, t := range ts {
		verdict := "n/a"
		if t.Holds != nil {
			verdict = map[bool]string{true: "holds", false: "FAILS"}[*t.Holds]
		}
		fmt.Fprintf(w, "  %-5s  %-40s %s\n", verdict, t.Name, t.Value)
		if t.Breakdown != "" {
			fmt.Fprintf(w, "         %s\n", t.Breakdown)
		}
	}
}

// printKube prints the kubernetes section: its table, the calls of a
// no-op and its targets.
func printKube(w io.Writer, k *kubeDoc, rounds int) {
	if k == nil {
		return
	}
	if k.Skipped != "" {
		fmt.Fprintf(w, "\nkubernetes: skipped: %s\n", k.Skipped)
		return
	}
	fmt.Fprintf(w, "\nkubernetes %s at %s, %d rounds, medians; calls through a counting proxy in front of the API server\n\n", k.Version, k.Server, rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tbottle-apply\tAPI calls\twrites\tpeak RSS")
	for _, c := range k.Cases {
		fmt.Fprintf(tw, "%s\t%.0f ms\t%g\t%d\t%.1f MiB\n", c.Name, c.MedianMS, c.MedianCalls, len(c.Writes), float64(c.MaxRSSKiB)/1024)
	}
	tw.Flush()
	for _, c := range k.Cases {
		fmt.Fprintf(w, "\n%s, API calls (%d):\n", c.Name, len(c.Calls))
		for _, call := range c.Calls {
			fmt.Fprintf(w, "  %s\n", shortSelector(call))
		}
	}
	fmt.Fprintln(w, "\nkubernetes targets:")
	printTargets(w, k.Targets)
}

// shortSelector shows a call's label selector unescaped, its list of
// bottle names as their number: labelSelector=io.bottle-apply.name in (20).
func shortSelector(call string) string {
	path, q, ok := strings.Cut(call, "?")
	if !ok {
		return call
	}
	v, err := url.ParseQuery(q)
	sel := v.Get("labelSelector")
	if err != nil || sel == "" {
		return call
	}
	if key, names, ok := strings.Cut(sel, " in ("); ok {
		sel = fmt.Sprintf("%s in (%d names)", key, strings.Count(names, ",")+1)
	}
	return path + "?labelSelector=" + sel
}

// printTimeline prints the calls of a median run: when each started (from
// the process's start) and how long the engine took to answer it.
func printTimeline(w io.Writer, who string, d *sideDoc) {
	if d != nil {
		fmt.Fprintf(w, "\ndestroy, %s, median run (%.0f ms): start, engine time, call\n%s\n", who, ms(d.median.Wall), timeline(d.median))
	}
}

func writeJSON(path string, rep *reportDoc) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
