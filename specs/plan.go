package specs

import (
	"fmt"
	"strconv"
	"time"
)

// StepKind is what a step does with traffic.
type StepKind string

// Step kinds. Stable and Rollback are not planned stages: Stable is the
// steady state with no candidate, Rollback sends everything back to stable.
const (
	KindStable     StepKind = "stable"
	KindDeploy     StepKind = "deploy"
	KindDarkLaunch StepKind = "darkLaunch"
	KindWeighted   StepKind = "weighted"
	KindMirror     StepKind = "mirror"
	KindPromote    StepKind = "promote"
	KindRollback   StepKind = "rollback"
)

// Step is one concrete point of a release: the traffic the candidate gets,
// the gates that hold it and whether a person must approve it.
type Step struct {
	Index int      `json:"index"`
	Name  string   `json:"name"`
	Stage string   `json:"stage"`
	Kind  StepKind `json:"kind"`
	// Weight is the candidate's share, in percent, of the requests the step
	// routes to it (all requests, or those matching Match).
	Weight int32 `json:"weight"`
	// Match, when set, limits the candidate's traffic to matching requests.
	Match []Match `json:"match,omitempty"`
	// MirrorPercent is the share of traffic shadowed to the candidate.
	MirrorPercent float64 `json:"mirrorPercent,omitempty"`
	Gates         Gates   `json:"gates"`
	// Approval is the approval its stage needs (manual or pullRequest),
	// set on every step of the stage: once the stage is approved, all its
	// steps may run.
	Approval string `json:"approval,omitempty"`
	// AwaitsApproval marks the one step that waits for the stage's
	// approval before it starts: the stage's first.
	AwaitsApproval bool     `json:"awaitsApproval,omitempty"`
	Versions       []string `json:"versions"`
}

// Gates is how a step is held: a check every Interval, Iterations passing
// checks to advance, Threshold failed checks in the release to roll back.
type Gates struct {
	Interval   time.Duration `json:"interval"`
	Iterations int           `json:"iterations"`
	Threshold  int           `json:"threshold"`
	NoData     string        `json:"noData"`
	Metrics    []Metric      `json:"metrics,omitempty"`
	Webhooks   []Webhook     `json:"webhooks,omitempty"`
}

// Hooks are the step's webhooks of one type, in spec order.
func (g Gates) Hooks(typ string) []Webhook {
	var out []Webhook
	for _, w := range g.Webhooks {
		if w.Type == typ {
			out = append(out, w)
		}
	}
	return out
}

// HasChecks reports whether the step is checked every interval: it has
// metrics or check webhooks. A step without is done once available.
func (g Gates) HasChecks() bool {
	return len(g.Metrics) > 0 || len(g.Hooks(WebhookCheck)) > 0
}

// Plan expands a release into the ordered steps Sluice walks. It is a pure
// function of the spec. A release with no candidate plans one stable step.
func Plan(r *Release) ([]Step, error) {
	s := &r.Spec
	if s.Candidate == "" {
		return []Step{SteadyStep(r)}, nil
	}
	versions := []string{s.Stable, s.Candidate}
	var steps []Step
	add := func(st Stage, name string, kind StepKind, weight int32, match []Match) {
		first := len(steps) == 0 || steps[len(steps)-1].Stage != st.Name
		steps = append(steps, Step{
			Index:          len(steps),
			Name:           name,
			Stage:          st.Name,
			Kind:           kind,
			Weight:         weight,
			Match:          match,
			Gates:          gatesFor(r, st, kind),
			Approval:       st.Approval,
			AwaitsApproval: st.Approval != "" && first,
			Versions:       versions,
		})
	}
	for _, st := range s.Stages {
		switch {
		case st.Deploy != nil:
			add(st, st.Name, KindDeploy, 0, nil)
		case st.DarkLaunch != nil:
			add(st, st.Name, KindDarkLaunch, 100, st.DarkLaunch.Match)
		case st.Weighted != nil:
			for _, w := range st.Weighted.Expand() {
				add(st, st.Name+"-"+strconv.Itoa(int(w)), KindWeighted, w, st.Weighted.Match)
			}
		case st.Mirror != nil:
			add(st, st.Name, KindMirror, 0, nil)
			steps[len(steps)-1].MirrorPercent = st.Mirror.Percent
		case st.Promote != nil:
			// Both versions stay: the old one drains after the promotion
			// is recorded, and is retired by the steady state after it.
			add(st, st.Name, KindPromote, 100, nil)
		}
	}
	seen := map[string]int{}
	for i, step := range steps {
		if j, dup := seen[step.Name]; dup {
			return nil, fmt.Errorf("plan %s: steps %d and %d are both named %q; rename a stage", r.ID(), j, i, step.Name)
		}
		seen[step.Name] = i
	}
	return steps, nil
}

// Expand lists a weighted stage's weights: explicit ones, or stepWeight up
// to maxWeight (10 and 50 give 10, 20, 30, 40, 50).
func (w *WeightedStage) Expand() []int32 {
	if len(w.Weights) > 0 {
		return w.Weights
	}
	var out []int32
	if w.StepWeight <= 0 {
		return nil
	}
	for x := w.StepWeight; x <= w.MaxWeight; x += w.StepWeight {
		out = append(out, x)
	}
	if len(out) > 0 && out[len(out)-1] != w.MaxWeight {
		out = append(out, w.MaxWeight)
	}
	return out
}

// SteadyStep is the state with no candidate: the stable version takes all traffic.
func SteadyStep(r *Release) Step {
	return Step{Name: string(KindStable), Kind: KindStable, Versions: []string{r.Spec.Stable}, Gates: gatesFor(r, Stage{}, KindStable)}
}

// RollbackStep sends all traffic back to the stable version and removes the candidate.
func RollbackStep(r *Release) Step {
	return Step{Name: string(KindRollback), Kind: KindRollback, Versions: []string{r.Spec.Stable}, Gates: gatesFor(r, Stage{}, KindRollback)}
}

// FindStep returns the step of a plan with the given name, or the given
// index when ref is a number; "stable" and "rollback" name the unplanned steps.
func FindStep(r *Release, ref string) (Step, error) {
	switch ref {
	case string(KindStable):
		return SteadyStep(r), nil
	case string(KindRollback):
		return RollbackStep(r), nil
	}
	steps, err := Plan(r)
	if err != nil {
		return Step{}, err
	}
	if i, err := strconv.Atoi(ref); err == nil {
		if i < 0 || i >= len(steps) {
			return Step{}, fmt.Errorf("release %s has steps 0 to %d, not %d", r.ID(), len(steps)-1, i)
		}
		return steps[i], nil
	}
	names := make([]string, 0, len(steps))
	for _, st := range steps {
		if st.Name == ref {
			return st, nil
		}
		names = append(names, st.Name)
	}
	return Step{}, fmt.Errorf("release %s has no step %q (steps: %v, or stable, rollback)", r.ID(), ref, names)
}

func gatesFor(r *Release, st Stage, kind StepKind) Gates {
	a := r.Spec.Analysis
	g := Gates{
		Interval:   a.Interval.Duration,
		Iterations: a.Iterations,
		Threshold:  a.Threshold,
		NoData:     a.NoData,
		Metrics:    a.Metrics,
		Webhooks:   a.Webhooks,
	}
	if g.Interval == 0 {
		g.Interval = DefaultInterval
	}
	if g.Iterations == 0 {
		g.Iterations = DefaultIterations
	}
	if g.Threshold == 0 {
		g.Threshold = DefaultThreshold
	}
	if g.NoData == "" {
		g.NoData = NoDataHold
	}
	switch kind {
	case KindDeploy, KindPromote, KindStable, KindRollback:
		// No request reaches the candidate's metrics at these steps (or there
		// is no candidate), so they hold on availability unless a stage
		// names its own metrics, such as a smoke test query.
		g.Metrics, g.Webhooks = nil, nil
	}
	if o := st.Analysis; o != nil {
		if o.Interval.Duration > 0 {
			g.Interval = o.Interval.Duration
		}
		if o.Iterations > 0 {
			g.Iterations = o.Iterations
		}
		if len(o.Metrics) > 0 {
			g.Metrics = o.Metrics
		}
		if len(o.Webhooks) > 0 {
			g.Webhooks = o.Webhooks
		}
		if o.SkipMetrics {
			g.Metrics = nil
			var keep []Webhook
			for _, w := range g.Webhooks {
				if w.Type != WebhookCheck {
					keep = append(keep, w)
				}
			}
			g.Webhooks = keep
		}
	}
	out := make([]Metric, len(g.Metrics))
	for i, m := range g.Metrics {
		if m.Interval.Duration == 0 {
			m.Interval = Duration{DefaultInterval}
		}
		out[i] = m
	}
	g.Metrics = out
	return g
}
