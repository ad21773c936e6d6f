package dashboard

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"sluice.dev/sluice/gates"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/renderer"
	"sluice.dev/sluice/specs"
)

// Metrics runs Prometheus range queries; *gates.Evaluator is one.
type Metrics interface {
	QueryRange(ctx context.Context, query string, r promv1.Range) (model.Matrix, error)
}

// Series is the data of a release page's charts, aligned as uPlot wants
// it: Data[0] is the x axis (Unix seconds), Data[i] the values of
// Series[i-1], null where a series has no point.
type Series struct {
	From    int64        `json:"from"`
	To      int64        `json:"to"`
	Traffic Chart        `json:"traffic"`
	Gates   []Chart      `json:"gates"`
	Steps   []StepMarker `json:"steps"`
	Errors  []string     `json:"errors,omitempty"`
}

// Chart is one chart's series.
type Chart struct {
	Metric string       `json:"metric,omitempty"`
	Label  string       `json:"label"`
	Unit   string       `json:"unit,omitempty"`
	Query  string       `json:"query,omitempty"`
	Series []SeriesInfo `json:"series"`
	Data   [][]*float64 `json:"data"`
	Error  string       `json:"error,omitempty"`
}

// SeriesInfo says what a series is; Kind picks its style: set, stable,
// candidate, value, min, max, pass, fail, nodata.
type SeriesInfo struct {
	Label string `json:"label"`
	Kind  string `json:"kind"`
}

// StepMarker is a transition drawn on the charts' time axis.
type StepMarker struct {
	T    int64  `json:"t"`
	Step string `json:"step"`
}

// chartPoints is about how many points a chart's Prometheus series gets.
const chartPoints = 240

// timeRange is the span a release's charts cover: its run, with a margin.
func timeRange(run *Run, now time.Time) promv1.Range {
	from, to := run.Started, run.Ended
	if to.IsZero() || to.After(now) {
		to = now
	}
	pad := max(30*time.Second, to.Sub(from)/20)
	from, to = from.Add(-pad), to.Add(pad)
	if to.After(now) {
		to = now
	}
	step := max(time.Second, (to.Sub(from) / chartPoints).Truncate(time.Second))
	return promv1.Range{Start: from.Truncate(time.Second), End: to.Truncate(time.Second), Step: step}
}

// checkPoint is one recorded gate evaluation or weight, from a commit's status.
type checkPoint struct {
	when   time.Time
	step   string
	weight int32
	gates  []record.GateValue
}

// series builds the charts of a release page. Prometheus failures are
// reported in the charts, not as an error: the recorded checks still show.
func (d *Dashboard) series(ctx context.Context, ix *index, v *ReleaseView, now time.Time) (*Series, error) {
	out := &Series{Gates: []Chart{}, Steps: []StepMarker{}}
	if v.Current == nil || v.rel == nil {
		out.Traffic = Chart{Label: "Traffic", Series: []SeriesInfo{}, Data: [][]*float64{{}}}
		return out, nil
	}
	run, rel := v.Current, v.rel
	r := timeRange(run, now)
	out.From, out.To = r.Start.Unix(), r.End.Unix()
	var points []checkPoint
	for _, c := range run.commits {
		st, err := d.store.statusAt(ctx, c.Hash, v.ID)
		if err != nil {
			return nil, err
		}
		if st == nil {
			continue
		}
		points = append(points, checkPoint{when: c.When, step: st.Step, weight: st.Weight, gates: st.Gates})
		out.Steps = append(out.Steps, StepMarker{T: c.When.Unix(), Step: st.Step})
	}
	plan, _ := specs.Plan(rel)
	candidate, stable := rel.Spec.Candidate, rel.Spec.Stable
	window := trafficWindow(rel, r.Step)

	// Traffic: the weight set, against the split observed by version.
	tr := Chart{Label: "Traffic to each version (%)", Unit: "%"}
	tr.Query = fmt.Sprintf(`sum by (destination_version) (rate(istio_requests_total{reporter="destination",destination_service_namespace=%q,destination_service_name=%q}[%s]))`,
		rel.Metadata.Namespace, rel.ServiceName(), model.Duration(window))
	var observed model.Matrix
	if d.metrics != nil {
		m, err := d.metrics.QueryRange(ctx, tr.Query, r)
		if err != nil {
			tr.Error = promError(err)
		}
		observed = m
	} else {
		tr.Error = "no Prometheus configured"
	}
	xs := axis(observed, points)
	tr.Series = []SeriesInfo{{Label: "set: " + candidate, Kind: "set"}}
	set := make([]*float64, len(xs))
	for i, x := range xs {
		p, ok := pointAt(points, x)
		if !ok {
			continue
		}
		if s := stepNamed(plan, p.step); s != nil && len(s.Match) > 0 {
			continue // only matching requests: no share of all traffic to draw
		}
		set[i] = ptr(float64(p.weight))
	}
	tr.Data = [][]*float64{unix(xs), set}
	totals := map[int64]float64{}
	for _, s := range observed {
		for _, p := range s.Values {
			if !math.IsNaN(float64(p.Value)) {
				totals[p.Timestamp.Unix()] += float64(p.Value)
			}
		}
	}
	for _, version := range versionOrder(observed, stable, candidate) {
		kind := "other"
		switch version {
		case stable:
			kind = "stable"
		case candidate:
			kind = "candidate"
		}
		tr.Series = append(tr.Series, SeriesInfo{Label: "observed: " + version, Kind: kind})
		vals := map[int64]float64{}
		for _, s := range observed {
			if string(s.Metric["destination_version"]) == version {
				for _, p := range s.Values {
					vals[p.Timestamp.Unix()] += float64(p.Value)
				}
			}
		}
		col := make([]*float64, len(xs))
		for i, x := range xs {
			if t := totals[x.Unix()]; t > 0 {
				if val, ok := vals[x.Unix()]; ok {
					col[i] = ptr(round(100 * val / t))
				} else {
					col[i] = ptr(0)
				}
			}
		}
		tr.Data = append(tr.Data, col)
	}
	out.Traffic = tr

	// Gates: the gate's query over time, its thresholds, and the checks
	// recorded in Git.
	workload := d.workload(ctx, ix, rel)
	target := gates.Target{Namespace: rel.Metadata.Namespace, Service: rel.ServiceName(), Workload: workload, Version: candidate}
	for _, m := range gateMetrics(plan) {
		info := gateInfo(m)
		ch := Chart{Metric: m.Name, Label: info.Label, Unit: info.Unit}
		var values model.Matrix
		q, err := gates.Query(target, m)
		switch {
		case err != nil:
			ch.Error = err.Error()
		case d.metrics == nil:
			ch.Error = "no Prometheus configured"
		default:
			ch.Query = q
			values, err = d.metrics.QueryRange(ctx, q, r)
			if err != nil {
				ch.Error = promError(err)
			}
		}
		if len(values) > 1 {
			values = values[:1] // a gate's query has one series; Evaluate would refuse more
		}
		var dots []checkPoint
		for _, p := range points {
			if slices.ContainsFunc(p.gates, func(g record.GateValue) bool { return g.Metric == m.Name }) {
				dots = append(dots, p)
			}
		}
		xs := axis(values, dots)
		val := make([]*float64, len(xs))
		if len(values) == 1 {
			byT := map[int64]float64{}
			for _, p := range values[0].Values {
				byT[p.Timestamp.Unix()] = float64(p.Value)
			}
			for i, x := range xs {
				if f, ok := byT[x.Unix()]; ok && !math.IsNaN(f) && !math.IsInf(f, 0) {
					val[i] = ptr(round(f))
				}
			}
		}
		ch.Series = []SeriesInfo{{Label: m.Name, Kind: "value"}}
		ch.Data = [][]*float64{unix(xs), val}
		for _, b := range []struct {
			kind string
			v    *float64
		}{{"min", info.Min}, {"max", info.Max}} {
			if b.v == nil {
				continue
			}
			col := make([]*float64, len(xs))
			for i := range col {
				col[i] = ptr(*b.v)
			}
			ch.Series = append(ch.Series, SeriesInfo{Label: b.kind + " " + fmtFloat(*b.v), Kind: b.kind})
			ch.Data = append(ch.Data, col)
		}
		pass, fail, nodata := make([]*float64, len(xs)), make([]*float64, len(xs)), make([]*float64, len(xs))
		for _, p := range dots {
			i := slices.IndexFunc(xs, func(x time.Time) bool { return x.Unix() == p.when.Unix() })
			for _, g := range p.gates {
				if g.Metric != m.Name || i < 0 {
					continue
				}
				switch {
				case g.Value == nil:
					nodata[i] = ptr(noDataY(info))
				case g.Passed:
					pass[i] = ptr(round(*g.Value))
				default:
					fail[i] = ptr(round(*g.Value))
				}
			}
		}
		ch.Series = append(ch.Series, SeriesInfo{Label: "check passed", Kind: "pass"}, SeriesInfo{Label: "check failed", Kind: "fail"}, SeriesInfo{Label: "no data", Kind: "nodata"})
		ch.Data = append(ch.Data, pass, fail, nodata)
		out.Gates = append(out.Gates, ch)
	}
	return out, nil
}

// workload is the candidate's Deployment, as the renderer names it (the
// gates' queries select it); the service and version when it cannot tell.
func (d *Dashboard) workload(ctx context.Context, ix *index, rel *specs.Release) string {
	key := rel.ID() + "/" + rel.Spec.Candidate
	d.mu.Lock()
	w, ok := d.workloads[key]
	d.mu.Unlock()
	if ok {
		return w
	}
	w = rel.ServiceName() + "-" + rel.Spec.Candidate
	if plan, err := specs.Plan(rel); err == nil && len(plan) > 0 {
		if out, err := renderer.New().Fingerprint(ctx, ix.tree, rel, plan[0]); err == nil && out.Workloads[rel.Spec.Candidate] != "" {
			w = out.Workloads[rel.Spec.Candidate]
		}
	}
	d.mu.Lock()
	if len(d.workloads) > 10000 {
		clear(d.workloads)
	}
	d.workloads[key] = w
	d.mu.Unlock()
	return w
}

// trafficWindow is the rate window of the traffic chart: the release's
// first metric window, as its gates read traffic, and never under a step.
func trafficWindow(rel *specs.Release, step time.Duration) time.Duration {
	w := gates.DefaultWindow
	if ms := rel.Spec.Analysis.Metrics; len(ms) > 0 && ms[0].Interval.Duration > 0 {
		w = ms[0].Interval.Duration
	}
	return max(w, step)
}

// gateMetrics are the metrics a plan's steps check, each once.
func gateMetrics(plan []specs.Step) []specs.Metric {
	var out []specs.Metric
	for _, s := range plan {
		for _, m := range s.Gates.Metrics {
			if !slices.ContainsFunc(out, func(o specs.Metric) bool { return o.Name == m.Name }) {
				out = append(out, m)
			}
		}
	}
	return out
}

// noDataY puts a check without data on its threshold line.
func noDataY(g GateInfo) float64 {
	if g.Min != nil {
		return *g.Min
	}
	if g.Max != nil {
		return *g.Max
	}
	return 0
}

// axis is the sorted union of a matrix's timestamps and the points' times,
// in whole seconds.
func axis(m model.Matrix, points []checkPoint) []time.Time {
	seen := map[int64]bool{}
	var xs []time.Time
	add := func(t time.Time) {
		t = t.Truncate(time.Second)
		if !seen[t.Unix()] {
			seen[t.Unix()] = true
			xs = append(xs, t)
		}
	}
	for _, s := range m {
		for _, p := range s.Values {
			add(p.Timestamp.Time())
		}
	}
	for _, p := range points {
		add(p.when)
	}
	slices.SortFunc(xs, func(a, b time.Time) int { return a.Compare(b) })
	return xs
}

// pointAt is the last point at or before t.
func pointAt(points []checkPoint, t time.Time) (checkPoint, bool) {
	var out checkPoint
	ok := false
	for _, p := range points {
		if p.when.Truncate(time.Second).After(t) {
			break
		}
		out, ok = p, true
	}
	return out, ok
}

func stepNamed(plan []specs.Step, name string) *specs.Step {
	for i := range plan {
		if plan[i].Name == name {
			return &plan[i]
		}
	}
	return nil
}

// versionOrder lists the observed versions: stable, candidate, then others.
func versionOrder(m model.Matrix, stable, candidate string) []string {
	out := []string{stable, candidate}
	for _, s := range m {
		v := string(s.Metric["destination_version"])
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	if candidate == "" || candidate == stable {
		out = slices.DeleteFunc(out, func(v string) bool { return v == "" })
		out = slices.Compact(out)
	}
	return out
}

func unix(xs []time.Time) []*float64 {
	out := make([]*float64, len(xs))
	for i, x := range xs {
		out[i] = ptr(float64(x.Unix()))
	}
	return out
}

// promError says why a query failed, without Prometheus' address (which
// may hold credentials) or the whole query.
func promError(err error) string {
	var pe *gates.PrometheusError
	if errors.As(err, &pe) {
		return "Prometheus did not answer: " + urlInText.ReplaceAllString(pe.Err.Error(), "<prometheus>")
	}
	return urlInText.ReplaceAllString(err.Error(), "<prometheus>")
}

func ptr(f float64) *float64 { return &f }

// round keeps three decimals: enough for a chart, lighter JSON.
func round(f float64) float64 { return math.Round(f*1000) / 1000 }
