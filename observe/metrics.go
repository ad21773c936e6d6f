// Package observe makes what Sluice's reconciler does visible: Prometheus
// metrics (Metrics) and Kubernetes Events on each release's VirtualService
// (Events). Both implement reconciler.Observer.
package observe

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"sluice.dev/sluice/reconciler"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

// Metrics exports Sluice's metrics on its own registry. It implements
// reconciler.Observer. Labels carry release names, phases, steps, actions
// and gate names only: nothing secret.
type Metrics struct {
	reg *prometheus.Registry

	reconcileDuration *prometheus.HistogramVec
	gitSyncDuration   prometheus.Histogram
	gitSyncErrors     prometheus.Counter
	commits           *prometheus.CounterVec
	commitErrors      prometheus.Counter
	pushRetries       prometheus.Counter
	transitions       *prometheus.CounterVec
	rollbacks         *prometheus.CounterVec
	gateChecks        *prometheus.CounterVec
	leader            prometheus.Gauge
	shardsHeld        prometheus.Gauge
	drift             *prometheus.CounterVec
	invalidFiles      prometheus.Gauge

	state *releaseState
}

// NewMetrics returns Metrics registered, with Go's and the process's
// collectors, on a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		reconcileDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_reconcile_duration_seconds",
			Help:    "Time one reconcile of one release took, by result (ok or error).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"result"}),
		gitSyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_git_sync_duration_seconds",
			Help:    "Time one fetch of the watched branch took, failed ones included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		gitSyncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_git_sync_errors_total",
			Help: "Fetches of the watched branch that failed.",
		}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_git_commits_total",
			Help: "Transitions committed and pushed to Git, by action.",
		}, []string{"action"}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_git_commit_errors_total",
			Help: "Transitions that could not be committed and pushed (they are retried).",
		}),
		pushRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_git_push_retries_total",
			Help: "Pushes lost to a concurrent pusher and retried on the new head.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_release_transitions_total",
			Help: "Transitions of each release, by action.",
		}, []string{"namespace", "release", "action"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_release_rollbacks_total",
			Help: "Rollbacks of each release.",
		}, []string{"namespace", "release"}),
		gateChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_gate_checks_total",
			Help: "Evaluations of each gate of each release, by result (pass, fail or no_data).",
		}, []string{"namespace", "release", "metric", "result"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_leader",
			Help: "1 while this replica leads (reconciles), 0 while it stands by.",
		}),
		shardsHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_shards_held",
			Help: "Shards of releases this replica holds (sluice run --shards); 0 without shards.",
		}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_drift_reverted_total",
			Help: "Fields of a release's objects that were changed by hand (or by another controller) and that Sluice put back, by object kind.",
		}, []string{"namespace", "release", "kind"}),
		invalidFiles: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_spec_files_invalid",
			Help: "Release spec files that do not parse far enough to name a release (a YAML syntax error); their releases are counted Invalid in sluice_releases.",
		}),
		state: newReleaseState(),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.reconcileDuration, m.gitSyncDuration, m.gitSyncErrors,
		m.commits, m.commitErrors, m.pushRetries,
		m.transitions, m.rollbacks, m.gateChecks, m.leader, m.shardsHeld,
		m.drift, m.invalidFiles,
		m.state,
	)
	return m
}

// Registry is what /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetLeader records whether this replica leads.
func (m *Metrics) SetLeader(leading bool) {
	if leading {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}

// SetShardsHeld records how many shards this replica holds.
func (m *Metrics) SetShardsHeld(n int) { m.shardsHeld.Set(float64(n)) }

var (
	_ reconciler.Observer        = (*Metrics)(nil)
	_ reconciler.TrafficObserver = (*Metrics)(nil)
)

// Traffic implements reconciler.TrafficObserver: what the release's step
// gives the candidate, so that a dark launch reports its match and no
// weighted share rather than the 100% the status records.
func (m *Metrics) Traffic(release string, t specs.Traffic) { m.state.setTraffic(release, t) }

// GitSynced implements reconciler.Observer.
func (m *Metrics) GitSynced(elapsed time.Duration, err error) {
	m.gitSyncDuration.Observe(elapsed.Seconds())
	if err != nil {
		m.gitSyncErrors.Inc()
	}
}

// Reconciled implements reconciler.Observer.
func (m *Metrics) Reconciled(release string, elapsed time.Duration, st *record.Status, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.reconcileDuration.WithLabelValues(result).Observe(elapsed.Seconds())
	if st != nil {
		m.state.setStatus(release, st)
	}
}

// Removed implements reconciler.Observer.
func (m *Metrics) Removed(release string) { m.state.remove(release) }

// GatesEvaluated implements reconciler.Observer.
func (m *Metrics) GatesEvaluated(release string, values []record.GateValue) {
	ns, name := splitID(release)
	for _, g := range values {
		result := "pass"
		switch {
		case g.Value == nil && g.Webhook == "":
			// A webhook that did not answer failed; only a metric lacks data.
			result = "no_data"
		case !g.Passed:
			result = "fail"
		}
		m.gateChecks.WithLabelValues(ns, name, g.Metric, result).Inc()
	}
	m.state.setGates(release, values)
}

// Committed implements reconciler.Observer.
func (m *Metrics) Committed(_ record.Action, retries int, err error) {
	m.pushRetries.Add(float64(retries))
	if err != nil {
		m.commitErrors.Inc()
	}
}

// Transition implements reconciler.Observer.
func (m *Metrics) Transition(_ context.Context, t reconciler.Transition) {
	m.commits.WithLabelValues(string(t.Action)).Inc()
	m.transitions.WithLabelValues(t.Namespace, t.Name, string(t.Action)).Inc()
	if t.Action == record.ActionRollback {
		m.rollbacks.WithLabelValues(t.Namespace, t.Name).Inc()
	}
	if t.Status != nil {
		m.state.setStatus(t.Release, t.Status)
	}
}

// Drifted implements reconciler.Observer.
func (m *Metrics) Drifted(_ context.Context, d reconciler.Drift) {
	for _, f := range d.Fields {
		m.drift.WithLabelValues(d.Namespace, d.Name, f.Object.Kind).Inc()
	}
}

// SpecFilesInvalid implements reconciler.Observer.
func (m *Metrics) SpecFilesInvalid(files []string) { m.invalidFiles.Set(float64(len(files))) }

func splitID(id string) (namespace, name string) {
	ns, name, ok := strings.Cut(id, "/")
	if !ok {
		return "", id
	}
	return ns, name
}

// releaseState exports each release's current state, as last reported,
// as gauges. A collector built at scrape time, rather than gauge vectors,
// drops the series of a release's old step or phase by construction.
type releaseState struct {
	mu       sync.Mutex
	releases map[string]*releaseSnapshot

	descReleases, descInfo, descStepIndex, descWeight *prometheus.Desc
	descMatchWeight                                   *prometheus.Desc
	descFailedChecks, descGateValue, descGatePassed   *prometheus.Desc
	descNoData, descDraining                          *prometheus.Desc
}

type releaseSnapshot struct {
	namespace, name string
	phase           record.Phase
	step            string
	stepIndex       int
	weight          int32
	// traffic is what the step gives the candidate, once the reconciler
	// said (nil until then: weight alone is known).
	traffic      *specs.Traffic
	failedChecks int
	stable       string
	candidate    string
	gates        []record.GateValue
	noData       int
	draining     int
}

func newReleaseState() *releaseState {
	rel := []string{"namespace", "release"}
	return &releaseState{
		releases: map[string]*releaseSnapshot{},
		descReleases: prometheus.NewDesc("sluice_releases",
			"Releases by phase.", []string{"phase"}, nil),
		descInfo: prometheus.NewDesc("sluice_release_info",
			"A release's phase, step and versions, as recorded in Git (always 1).",
			[]string{"namespace", "release", "phase", "step", "stable", "candidate"}, nil),
		descStepIndex: prometheus.NewDesc("sluice_release_step_index",
			"The index in the release's plan of the step the cluster holds.", rel, nil),
		descWeight: prometheus.NewDesc("sluice_release_candidate_weight_percent",
			"The share, in percent, of all requests the release's candidate gets by weight at its step: 0 at a step that routes only matching requests to it, such as a dark launch (see sluice_release_candidate_match_weight_percent).", rel, nil),
		descMatchWeight: prometheus.NewDesc("sluice_release_candidate_match_weight_percent",
			"At a step that routes requests by match (a dark launch, a weighted stage with a match), the share, in percent, of the requests matching `match` that the release's candidate gets (100 for a dark launch); absent at other steps.",
			[]string{"namespace", "release", "match"}, nil),
		descFailedChecks: prometheus.NewDesc("sluice_release_failed_checks",
			"Failed checks of the release's candidate so far.", rel, nil),
		descGateValue: prometheus.NewDesc("sluice_gate_value",
			"A gate's value at its last evaluation (absent without data).",
			[]string{"namespace", "release", "metric"}, nil),
		descGatePassed: prometheus.NewDesc("sluice_gate_passed",
			"1 when a gate passed at its last evaluation, else 0.",
			[]string{"namespace", "release", "metric"}, nil),
		descNoData: prometheus.NewDesc("sluice_release_nodata_checks",
			"Checks in a row without data that hold the release's step (0 when its gates have data).", rel, nil),
		descDraining: prometheus.NewDesc("sluice_release_draining_versions",
			"Versions of the release that lost their traffic and still run until their drain ends.", rel, nil),
	}
}

// allPhases lists every phase, so sluice_releases shows zeros too.
func allPhases() []record.Phase {
	return record.Phases()
}

func (s *releaseState) setStatus(id string, st *record.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.get(id)
	if r.step != st.Step || r.stepIndex != st.StepIndex || r.phase != st.Phase || r.weight != st.Weight {
		r.traffic = nil // another step: its traffic is not known yet
	}
	r.phase, r.step, r.stepIndex, r.weight = st.Phase, st.Step, st.StepIndex, st.Weight
	r.failedChecks, r.stable, r.candidate = st.FailedChecks, st.Stable, st.Candidate
	r.noData, r.draining = 0, len(st.Draining)
	if st.NoData != nil {
		r.noData = st.NoData.Checks
	}
	if len(st.Gates) > 0 && len(r.gates) == 0 {
		r.gates = slices.Clone(st.Gates)
	}
}

func (s *releaseState) setTraffic(id string, t specs.Traffic) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.get(id).traffic = &t
}

func (s *releaseState) setGates(id string, values []record.GateValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.get(id).gates = slices.Clone(values)
}

// get returns the release's snapshot, creating it; the caller holds s.mu.
func (s *releaseState) get(id string) *releaseSnapshot {
	r := s.releases[id]
	if r == nil {
		ns, name := splitID(id)
		r = &releaseSnapshot{namespace: ns, name: name}
		s.releases[id] = r
	}
	return r
}

func (s *releaseState) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.releases, id)
}

// Describe implements prometheus.Collector.
func (s *releaseState) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.descReleases, s.descInfo, s.descStepIndex, s.descWeight, s.descMatchWeight, s.descFailedChecks, s.descGateValue, s.descGatePassed, s.descNoData, s.descDraining} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *releaseState) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	count := map[record.Phase]int{}
	for _, r := range s.releases {
		if r.phase == "" {
			continue // gates seen before any status: not counted yet
		}
		count[r.phase]++
		ch <- prometheus.MustNewConstMetric(s.descInfo, prometheus.GaugeValue, 1, r.namespace, r.name, string(r.phase), r.step, r.stable, r.candidate)
		ch <- prometheus.MustNewConstMetric(s.descStepIndex, prometheus.GaugeValue, float64(r.stepIndex), r.namespace, r.name)
		weight := r.weight
		if t := r.traffic; t != nil {
			weight = t.Weight
			if t.Match != "" {
				ch <- prometheus.MustNewConstMetric(s.descMatchWeight, prometheus.GaugeValue, float64(t.MatchWeight), r.namespace, r.name, t.Match)
			}
		}
		ch <- prometheus.MustNewConstMetric(s.descWeight, prometheus.GaugeValue, float64(weight), r.namespace, r.name)
		ch <- prometheus.MustNewConstMetric(s.descFailedChecks, prometheus.GaugeValue, float64(r.failedChecks), r.namespace, r.name)
		ch <- prometheus.MustNewConstMetric(s.descNoData, prometheus.GaugeValue, float64(r.noData), r.namespace, r.name)
		ch <- prometheus.MustNewConstMetric(s.descDraining, prometheus.GaugeValue, float64(r.draining), r.namespace, r.name)
		for _, g := range r.gates {
			if g.Value != nil {
				ch <- prometheus.MustNewConstMetric(s.descGateValue, prometheus.GaugeValue, *g.Value, r.namespace, r.name, g.Metric)
			}
			passed := 0.0
			if g.Passed {
				passed = 1
			}
			ch <- prometheus.MustNewConstMetric(s.descGatePassed, prometheus.GaugeValue, passed, r.namespace, r.name, g.Metric)
		}
	}
	for _, p := range allPhases() {
		ch <- prometheus.MustNewConstMetric(s.descReleases, prometheus.GaugeValue, float64(count[p]), string(p))
	}
}
