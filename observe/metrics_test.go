package observe

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"sluice.dev/sluice/reconciler"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func f(v float64) *float64 { return &v }

// TestMetrics drives Metrics through a release's life, as the reconciler
// would, and compares the exposition with testdata/metrics.txt.
func TestMetrics(t *testing.T) {
	m := NewMetrics()
	ctx := t.Context()
	const id = "istioinaction/catalog"
	m.GitSynced(20*time.Millisecond, nil)
	m.GitSynced(time.Second, errors.New("fetch: connection refused"))
	m.Reconciled("shop/cart", 5*time.Millisecond, &record.Status{Release: "shop/cart", Phase: record.PhaseSteady, Stable: "v7", Step: "stable"}, nil)
	m.Reconciled("shop/invalid", 5*time.Millisecond, &record.Status{Release: "shop/invalid", Phase: record.PhaseInvalid}, nil)

	start := &record.Status{Release: id, Phase: record.PhaseProgressing, Stable: "v1", Candidate: "v2", Step: "deploy"}
	m.Committed("start", 0, nil)
	m.Transition(ctx, reconciler.Transition{Release: id, Namespace: "istioinaction", Name: "catalog", Action: "start", Status: start})
	m.Reconciled(id, 30*time.Millisecond, start, nil)

	pass := []record.GateValue{
		{Metric: "request-success-rate", Value: f(100), Min: f(99), Passed: true},
		{Metric: "request-duration", Value: f(49.5), Max: f(500), Passed: true},
	}
	m.GatesEvaluated(id, pass)
	canary := &record.Status{Release: id, Phase: record.PhaseProgressing, Stable: "v1", Candidate: "v2", Step: "canary-20", StepIndex: 3, Weight: 20, Gates: pass}
	m.Committed("advance", 2, nil) // lost two races to a person's pushes
	m.Transition(ctx, reconciler.Transition{Release: id, Namespace: "istioinaction", Name: "catalog", Action: "advance", Status: canary})

	fail := []record.GateValue{
		{Metric: "request-success-rate", Value: f(90), Min: f(99), Passed: false},
		{Metric: "request-duration", Passed: false}, // no data
	}
	m.GatesEvaluated(id, fail)
	m.Committed("rollback", 0, errors.New("push: remote hung up"))
	m.Committed("rollback", 0, nil)
	rolled := &record.Status{Release: id, Phase: record.PhaseRolledBack, Stable: "v1", Candidate: "v2", Step: "rollback", StepIndex: 3, FailedChecks: 1, Gates: fail}
	m.Transition(ctx, reconciler.Transition{Release: id, Namespace: "istioinaction", Name: "catalog", Action: "rollback", Status: rolled})
	m.Reconciled(id, 40*time.Millisecond, rolled, errors.New("apply: conflict"))

	// A dark launch: the status says 100 (of the matching requests); the
	// reconciler's traffic says which requests, and no weighted share.
	dark := &record.Status{Release: "shop/search", Phase: record.PhaseProgressing, Stable: "v1", Candidate: "v2", Step: "dark-launch", StepIndex: 1, Weight: 100}
	m.Reconciled("shop/search", 10*time.Millisecond, dark, nil)
	m.Traffic("shop/search", specs.Traffic{Match: "x-istio-cohort=internal", MatchWeight: 100})
	// Before the reconciler says, the recorded weight stands.
	m.Reconciled("shop/web", 10*time.Millisecond, &record.Status{Release: "shop/web", Phase: record.PhaseProgressing, Stable: "v1", Candidate: "v2", Step: "canary-10", StepIndex: 2, Weight: 10}, nil)

	m.Reconciled("shop/gone", time.Millisecond, &record.Status{Release: "shop/gone", Phase: record.PhasePromoted}, nil)
	m.Removed("shop/gone")
	m.SetLeader(true)

	names := []string{
		"sluice_releases", "sluice_release_info", "sluice_release_step_index",
		"sluice_release_candidate_weight_percent", "sluice_release_candidate_match_weight_percent", "sluice_release_failed_checks",
		"sluice_gate_value", "sluice_gate_passed", "sluice_gate_checks_total",
		"sluice_git_sync_errors_total", "sluice_git_commits_total", "sluice_git_commit_errors_total",
		"sluice_git_push_retries_total", "sluice_release_transitions_total", "sluice_release_rollbacks_total",
		"sluice_leader",
	}
	families := gather(t, m.Registry())
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, name := range names {
		mf := families[name]
		if mf == nil {
			t.Errorf("no %s", name)
			continue
		}
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	got := buf.Bytes()
	golden := filepath.Join("testdata", "metrics.txt")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./observe -run TestMetrics -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("metrics differ from %s:\n%s", golden, got)
	}

	// Durations vary; their counts do not.
	for name, want := range map[string]uint64{"sluice_git_sync_duration_seconds": 2, "sluice_reconcile_duration_seconds": 7} {
		var n uint64
		for _, metric := range families[name].GetMetric() {
			n += metric.GetHistogram().GetSampleCount()
		}
		if n != want {
			t.Errorf("%s: %d observations, want %d", name, n, want)
		}
	}
	var all []*dto.MetricFamily
	for _, mf := range families {
		all = append(all, mf)
	}
	problems, err := promlint.NewWithMetricFamilies(all).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func gather(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// TestWebhookGateChecks: a webhook gate counts as a check like a metric;
// one that did not answer failed, it did not lack data.
func TestWebhookGateChecks(t *testing.T) {
	m := NewMetrics()
	const id = "shop/cart"
	m.GatesEvaluated(id, []record.GateValue{
		record.WebhookValue("smoke", "check", 200, true, ""),
		record.WebhookValue("contract", "check", 0, false, "timeout"),
	})
	for _, tc := range []struct{ metric, result string }{{"smoke", "pass"}, {"contract", "fail"}} {
		var c dto.Metric
		if err := m.gateChecks.WithLabelValues("shop", "cart", tc.metric, tc.result).Write(&c); err != nil {
			t.Fatal(err)
		}
		if got := c.GetCounter().GetValue(); got != 1 {
			t.Errorf("sluice_gate_checks_total{metric=%q,result=%q} = %g, want 1", tc.metric, tc.result, got)
		}
	}
}

// TestShardsHeld: sluice_shards_held is the number of shards last set.
func TestShardsHeld(t *testing.T) {
	m := NewMetrics()
	for _, n := range []int{0, 3, 2} {
		m.SetShardsHeld(n)
		mf := gather(t, m.Registry())["sluice_shards_held"]
		if mf == nil || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() != float64(n) {
			t.Errorf("after SetShardsHeld(%d): %v", n, mf)
		}
	}
}

// TestPushRetriesCounted: every commit's push retries add up.
func TestPushRetriesCounted(t *testing.T) {
	m := NewMetrics()
	m.Committed(record.ActionAdvance, 2, nil)
	m.Committed(record.ActionAdvance, 0, nil)
	m.Committed(record.ActionPromote, 1, nil)
	mf := gather(t, m.Registry())["sluice_git_push_retries_total"]
	if mf == nil || mf.GetMetric()[0].GetCounter().GetValue() != 3 {
		t.Errorf("sluice_git_push_retries_total = %v, want 3", mf)
	}
}
