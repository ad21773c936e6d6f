package dashboard

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

// Row is one release on the releases page (and in /ui/api/releases).
type Row struct {
	ID        string       `json:"id"`
	Namespace string       `json:"namespace"`
	Name      string       `json:"name"`
	Phase     record.Phase `json:"phase"`
	Stable    string       `json:"stable,omitempty"`
	Candidate string       `json:"candidate,omitempty"`
	Step      string       `json:"step,omitempty"`
	// StepIndex counts from 0; Steps is the plan's length, 0 when unknown.
	StepIndex int   `json:"stepIndex"`
	Steps     int   `json:"steps"`
	Weight    int32 `json:"weight"`
	// Traffic is what the step gives the candidate (a dark launch: its
	// match, no weighted share), TrafficText as sluice status's WEIGHT.
	Traffic      specs.Traffic `json:"traffic"`
	TrafficText  string        `json:"trafficText"`
	FailedChecks int           `json:"failedChecks"`
	Threshold    int           `json:"threshold,omitempty"`
	Message      string        `json:"message,omitempty"`
	// Reason is why the release is where it is, as sluice status's REASON.
	Reason      string             `json:"reason,omitempty"`
	Since       time.Time          `json:"since"`
	Gates       []record.GateValue `json:"gates,omitempty"`
	Window      *WindowState       `json:"window,omitempty"`
	PullRequest *PullRequest       `json:"pullRequest,omitempty"`
	SpecError   string             `json:"specError,omitempty"`
}

// WindowState is a release window's state at a moment.
type WindowState struct {
	Schedule string    `json:"schedule"`
	Duration string    `json:"duration"`
	TimeZone string    `json:"timeZone,omitempty"`
	Open     bool      `json:"open"`
	Next     time.Time `json:"next,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// PullRequest is an approval pull request, without anything the forge's
// API would need.
type PullRequest struct {
	Number int64  `json:"number"`
	URL    string `json:"url,omitempty"`
	Step   string `json:"step,omitempty"`
}

func pullRequest(ref *record.PullRequestRef) *PullRequest {
	if ref == nil {
		return nil
	}
	return &PullRequest{Number: ref.Number, URL: safeURL(ref.URL), Step: ref.Step}
}

// Versions reads "v1 -> v2" while a candidate is in flight, else the stable one.
func (r *Row) Versions() string {
	if r.Candidate != "" && r.Candidate != r.Stable && r.Phase != record.PhasePromoted && r.Phase != record.PhaseSteady {
		return r.Stable + " → " + r.Candidate
	}
	return r.Stable
}

// StepLabel reads "canary-20 (4/9)".
func (r *Row) StepLabel() string {
	if r.Step == "" {
		return "—"
	}
	if r.Steps > 0 && r.Step != string(specs.KindRollback) && r.Step != string(specs.KindStable) {
		return fmt.Sprintf("%s (%d/%d)", r.Step, r.StepIndex+1, r.Steps)
	}
	return r.Step
}

// Path is the release page's path under /ui/.
func (r *Row) Path() string { return "releases/" + r.Namespace + "/" + r.Name }

func windowState(w *specs.Window, now time.Time) *WindowState {
	if w == nil {
		return nil
	}
	ws := &WindowState{Schedule: w.Schedule, Duration: w.Duration.String(), TimeZone: w.TimeZone}
	open, next, err := w.Open(now)
	if err != nil {
		ws.Error = err.Error()
		return ws
	}
	ws.Open = open
	if open {
		// Open is when it opened; the person wants when it closes too,
		// and when it opens after that.
		ws.Next = nextOpening(w, next.Add(w.Duration.Duration))
	} else {
		ws.Next = next
	}
	return ws
}

// nextOpening is the window's first opening after t.
func nextOpening(w *specs.Window, t time.Time) time.Time {
	sched, err := w.Parse()
	if err != nil {
		return time.Time{}
	}
	return sched.Next(t)
}

func newRow(st *record.Status, rel *specs.Release, specErr string, now time.Time) Row {
	ns, name, _ := strings.Cut(st.Release, "/")
	row := Row{
		ID: st.Release, Namespace: ns, Name: name, Phase: st.Phase, Stable: st.Stable, Candidate: st.Candidate,
		Step: st.Step, StepIndex: st.StepIndex, Weight: st.Weight, FailedChecks: st.FailedChecks,
		Message: st.Message, Reason: st.Reason(), Since: st.Since, Gates: st.Gates, PullRequest: pullRequest(st.PullRequest),
		SpecError: specErr,
	}
	var steps []specs.Step
	if rel != nil && rel.Spec.Candidate != "" {
		steps, _ = specs.Plan(rel)
	}
	row.Traffic = record.StepTraffic(st, steps)
	row.TrafficText = row.Traffic.String()
	if rel != nil {
		row.Window = windowState(rel.Spec.Window, now)
		row.Threshold = rel.Spec.Analysis.Threshold
		if row.Threshold == 0 {
			row.Threshold = specs.DefaultThreshold
		}
		if rel.Spec.Candidate == st.Candidate && rel.Spec.Candidate != "" {
			row.Steps = planLength(rel)
		}
	}
	return row
}

// rows are the releases at ix, filtered by namespace and phase ("" for any).
func rows(ix *index, namespace, phase string, now time.Time) []Row {
	out := make([]Row, 0, len(ix.statuses))
	for _, st := range ix.statuses {
		r := newRow(st, ix.specs[st.Release], ix.specErrs[st.Release], now)
		if (namespace != "" && r.Namespace != namespace) || (phase != "" && string(r.Phase) != phase) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// namespaces lists the namespaces of ix's releases, sorted.
func namespaces(ix *index) []string {
	var out []string
	for _, st := range ix.statuses {
		ns, _, _ := strings.Cut(st.Release, "/")
		if !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}

// phases lists every phase, for the filter.
func phases() []record.Phase {
	return []record.Phase{record.PhaseProgressing, record.PhaseWaiting, record.PhaseRolledBack,
		record.PhasePromoted, record.PhaseSteady, record.PhaseInvalid, record.PhaseBlocked, record.PhasePaused}
}

// StepView is one step of the plan on the release page.
type StepView struct {
	Index    int    `json:"index"`
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Traffic  string `json:"traffic"`
	Approval string `json:"approval,omitempty"`
	// State is done, current, failed (the step a rollback happened at),
	// or todo.
	State string `json:"state"`
	Gates string `json:"gates,omitempty"`
	// GatesShort reads "2 gates every 45s" or "available".
	GatesShort string `json:"-"`
}

// Run is one release of a candidate: from its start to its promotion,
// rollback or abandonment, or still in progress.
type Run struct {
	Stable    string    `json:"stable,omitempty"`
	Candidate string    `json:"candidate,omitempty"`
	Started   time.Time `json:"started"`
	Ended     time.Time `json:"ended,omitzero"`
	// Outcome is in progress, promoted, rolled back, abandoned.
	Outcome string `json:"outcome"`
	Why     string `json:"why,omitempty"`
	Commit  string `json:"commit"`
	URL     string `json:"url,omitempty"`

	commits []commitInfo
}

// Outcomes of a run.
const (
	OutcomeInProgress = "in progress"
	OutcomePromoted   = "promoted"
	OutcomeRolledBack = "rolled back"
	OutcomeAbandoned  = "abandoned"
)

// Event is one commit of the timeline.
type Event struct {
	When        time.Time     `json:"when"`
	Action      record.Action `json:"action"`
	Step        string        `json:"step,omitempty"`
	Subject     string        `json:"subject"`
	Author      string        `json:"author"`
	Commit      string        `json:"commit"`
	ShortCommit string        `json:"shortCommit"`
	URL         string        `json:"url,omitempty"`
	PullRequest *PullRequest  `json:"pullRequest,omitempty"`
}

// GateInfo names a gate chart.
type GateInfo struct {
	Metric string   `json:"metric"`
	Label  string   `json:"label"`
	Unit   string   `json:"unit,omitempty"`
	Min    *float64 `json:"min,omitempty"`
	Max    *float64 `json:"max,omitempty"`
}

// Threshold reads ">= 99" or "<= 500 ms".
func (g GateInfo) Threshold() string {
	unit := ""
	if g.Unit != "" {
		unit = " " + g.Unit
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) + unit }
	switch {
	case g.Min != nil && g.Max != nil:
		return f(*g.Min) + " … " + f(*g.Max)
	case g.Min != nil:
		return "≥ " + f(*g.Min)
	case g.Max != nil:
		return "≤ " + f(*g.Max)
	}
	return ""
}

// ReleaseView is everything on a release page (and in /ui/api/releases/NS/NAME).
type ReleaseView struct {
	Row
	Service string     `json:"service"`
	Plan    []StepView `json:"plan"`
	// Current is the run the page is about: the one in progress, or the
	// last one; nil before any.
	Current  *Run       `json:"current,omitempty"`
	Timeline []Event    `json:"timeline"`
	Past     []Run      `json:"past"`
	Gates    []GateInfo `json:"gates"`
	// HistoryTruncated: the history was read only so far back.
	HistoryTruncated bool `json:"historyTruncated,omitempty"`

	rel *specs.Release // the spec of the current run
}

// maxPastRuns bounds the past releases a page lists.
const maxPastRuns = 20

// runs groups a release's commits, oldest first, into runs.
func runs(commits []commitInfo) []*Run {
	var out []*Run
	var cur *Run
	end := func(outcome string, c commitInfo) {
		cur.Outcome, cur.Ended, cur.Why = outcome, c.When, c.Subject
		cur = nil
	}
	for _, c := range commits {
		switch c.Action {
		case record.ActionStart, record.ActionRetry, record.ActionAbandon:
			if cur != nil {
				cur.commits = append(cur.commits, c)
				end(OutcomeAbandoned, c)
			}
			cur = &Run{Started: c.When, Outcome: OutcomeInProgress, Commit: c.Hash.String()}
			out = append(out, cur)
		case record.ActionSteady, record.ActionInvalid, record.ActionResume:
			if cur == nil {
				continue
			}
		}
		if cur == nil {
			continue
		}
		cur.commits = append(cur.commits, c)
		switch c.Action {
		case record.ActionPromote:
			end(OutcomePromoted, c)
		case record.ActionRollback:
			end(OutcomeRolledBack, c)
		}
	}
	return out
}

// view builds a release page's data.
func (d *Dashboard) view(ctx context.Context, ix *index, id string, now time.Time) (*ReleaseView, error) {
	var st *record.Status
	for _, s := range ix.statuses {
		if s.Release == id {
			st = s
			break
		}
	}
	if st == nil {
		return nil, nil
	}
	v := &ReleaseView{Row: newRow(st, ix.specs[id], ix.specErrs[id], now), rel: ix.specs[id]}
	hist, err := d.store.history(ctx, ix)
	if err != nil {
		return nil, err
	}
	v.HistoryTruncated = hist.truncated
	all := runs(hist.byRelease[id])
	if n := len(all); n > 0 {
		v.Current = all[n-1]
		for i := n - 2; i >= 0 && len(v.Past) < maxPastRuns; i-- {
			v.Past = append(v.Past, *all[i])
		}
	}
	// Each run's versions, from its first commit's status; the past runs'
	// reasons from their last commit's.
	for _, r := range append([]*Run{v.Current}, pointers(v.Past)...) {
		if r == nil || len(r.commits) == 0 {
			continue
		}
		r.URL = d.commitURL(r.Commit)
		if s, err := d.store.statusAt(ctx, r.commits[0].Hash, id); err == nil && s != nil {
			r.Stable, r.Candidate = s.Stable, s.Candidate
		}
		r.Why = trimRelease(r.Why, v.Name)
	}
	// The timeline is the current run's commits, or the last ones when
	// no run started (a release that was only ever steady).
	commits := hist.byRelease[id]
	if v.Current != nil {
		commits = v.Current.commits
	} else if len(commits) > maxTimeline {
		commits = commits[len(commits)-maxTimeline:]
	}
	for i := len(commits) - 1; i >= 0; i-- {
		c := commits[i]
		e := Event{When: c.When, Action: c.Action, Step: c.Step, Subject: c.Subject, Author: c.Author,
			Commit: c.Hash.String(), ShortCommit: c.Hash.String()[:7], URL: d.commitURL(c.Hash.String())}
		if s, err := d.store.statusAt(ctx, c.Hash, id); err == nil && s != nil && s.PullRequest != nil {
			e.PullRequest = pullRequest(s.PullRequest)
		}
		v.Timeline = append(v.Timeline, e)
	}
	if v.Past == nil {
		v.Past = []Run{}
	}
	if v.Timeline == nil {
		v.Timeline = []Event{}
	}
	v.rel = d.runSpec(ctx, v, st)
	if v.rel != nil {
		v.Service = v.rel.ServiceName()
		v.Plan, v.Gates = plan(v.rel, st)
	}
	if v.Plan == nil {
		v.Plan = []StepView{}
	}
	if v.Gates == nil {
		v.Gates = []GateInfo{}
	}
	return v, nil
}

// maxTimeline bounds the timeline of a release with no run.
const maxTimeline = 50

func pointers(runs []Run) []*Run {
	out := make([]*Run, len(runs))
	for i := range runs {
		out[i] = &runs[i]
	}
	return out
}

// trimRelease drops the "catalog: " every subject of a release starts with.
func trimRelease(subject, name string) string {
	return strings.TrimPrefix(subject, name+": ")
}

// runSpec is the spec of the current run: the spec at head while it names
// the run's candidate, else (after a promotion edited it) the spec at the
// newest commit of the run that still does.
func (d *Dashboard) runSpec(ctx context.Context, v *ReleaseView, st *record.Status) *specs.Release {
	rel := v.rel
	if rel != nil && (st.Candidate == "" || rel.Spec.Candidate == st.Candidate) {
		return rel
	}
	if v.Current == nil {
		return rel
	}
	cs := v.Current.commits
	for i := len(cs) - 1; i >= 0; i-- {
		if r := d.store.specAt(ctx, cs[i].Hash, st.SpecFile, st.Release); r != nil && r.Spec.Candidate == st.Candidate {
			return r
		}
		if h, ok := parentOf(cs, i); ok {
			// The promote commit edits the spec: its parent holds it.
			if r := d.store.specAt(ctx, h, st.SpecFile, st.Release); r != nil && r.Spec.Candidate == st.Candidate {
				return r
			}
		}
	}
	return rel
}

// parentOf is the commit of the run before cs[i].
func parentOf(cs []commitInfo, i int) (h [20]byte, ok bool) {
	if i == 0 {
		return h, false
	}
	return cs[i-1].Hash, true
}

// plan lays the release's steps out against its status, and the gates
// its steps check.
func plan(rel *specs.Release, st *record.Status) ([]StepView, []GateInfo) {
	steps, err := specs.Plan(rel)
	if err != nil {
		return nil, nil
	}
	var gates []GateInfo
	out := make([]StepView, len(steps))
	for i, s := range steps {
		out[i] = StepView{Index: i, Name: s.Name, Kind: string(s.Kind), Traffic: traffic(s), Approval: stepApproval(s), Gates: gateSummary(s.Gates), GatesShort: gateShort(s.Gates)}
		switch {
		case st.Phase == record.PhasePromoted:
			out[i].State = "done"
		case st.Phase == record.PhaseRolledBack && i == st.StepIndex:
			out[i].State = "failed"
		case i < st.StepIndex:
			out[i].State = "done"
		case i == st.StepIndex && st.Phase != record.PhaseRolledBack && st.Phase != record.PhaseSteady:
			out[i].State = "current"
		default:
			out[i].State = "todo"
		}
		for _, m := range s.Gates.Metrics {
			if !slices.ContainsFunc(gates, func(g GateInfo) bool { return g.Metric == m.Name }) {
				gates = append(gates, gateInfo(m))
			}
		}
	}
	return out, gates
}

func gateInfo(m specs.Metric) GateInfo {
	g := GateInfo{Metric: m.Name, Label: m.Name, Min: m.ThresholdRange.Min, Max: m.ThresholdRange.Max}
	switch m.Name {
	case specs.MetricRequestSuccessRate:
		g.Label, g.Unit = "Request success rate (%)", "%"
	case specs.MetricRequestDuration:
		g.Label, g.Unit = "Request duration p99 (ms)", "ms"
	}
	return g
}

// stepApproval is the approval a step waits for: only its stage's first
// step waits; the others follow once the stage is approved.
func stepApproval(s specs.Step) string {
	if !s.AwaitsApproval {
		return ""
	}
	return s.Approval
}

// traffic says what the candidate gets at a step.
func traffic(s specs.Step) string {
	switch s.Kind {
	case specs.KindDeploy:
		return "no traffic"
	case specs.KindMirror:
		return strconv.FormatFloat(s.MirrorPercent, 'f', -1, 64) + "% mirrored"
	case specs.KindPromote:
		return "100%"
	}
	w := strconv.Itoa(int(s.Weight)) + "%"
	if len(s.Match) > 0 {
		return w + " of " + matchSummary(s.Match)
	}
	return w
}

func matchSummary(ms []specs.Match) string {
	var parts []string
	for _, m := range ms {
		for _, k := range sortedKeys(m.Headers) {
			h := m.Headers[k]
			v := h.Exact
			if v == "" {
				v = h.Prefix + h.Regex
			}
			parts = append(parts, k+"="+v)
		}
		if m.Cookie != nil {
			parts = append(parts, "cookie "+m.Cookie.Name)
		}
		for _, k := range sortedKeys(m.SourceLabels) {
			parts = append(parts, "from "+k+"="+m.SourceLabels[k])
		}
	}
	if len(parts) == 0 {
		return "matching requests"
	}
	return strings.Join(parts, ", ")
}

func gateSummary(g specs.Gates) string {
	if !g.HasChecks() && len(g.Webhooks) == 0 {
		return "available"
	}
	names := make([]string, 0, len(g.Metrics)+len(g.Webhooks))
	for _, m := range g.Metrics {
		names = append(names, m.Name)
	}
	for _, w := range g.Webhooks {
		names = append(names, "webhook "+w.Name+" ("+w.Type+")")
	}
	if !g.HasChecks() {
		return "available; " + strings.Join(names, ", ")
	}
	return fmt.Sprintf("every %s ×%d: %s", g.Interval, g.Iterations, strings.Join(names, ", "))
}

func gateShort(g specs.Gates) string {
	n := len(g.Metrics) + len(g.Hooks(specs.WebhookCheck))
	switch n {
	case 0:
		return "held until available"
	case 1:
		return "1 gate every " + g.Interval.String()
	}
	return fmt.Sprintf("%d gates every %s", n, g.Interval)
}

// planLength is the number of steps a release plans; 0 when it cannot.
func planLength(rel *specs.Release) int {
	plan, err := specs.Plan(rel)
	if err != nil {
		return 0
	}
	return len(plan)
}
