package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"sluice.dev/sluice/gates"
	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

// BenchmarkPushToFirstStep measures the time from a person's push of a new
// candidate (with an on-demand sync, as a webhook would trigger) to its
// first step applied: the candidate's Deployment exists in the cluster.
func BenchmarkPushToFirstStep(b *testing.B) {
	ctx := b.Context()
	s := newStack(b, "bench-push")
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		version := fmt.Sprintf("v%d", 10+i)
		b.StopTimer()
		if _, err := s.AddVersion(ctx, version); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if _, err := s.PushCandidate(ctx, version); err != nil {
			b.Fatal(err)
		}
		if err := s.TriggerSync(ctx); err != nil {
			b.Fatal(err)
		}
		err := stack.WaitFor(ctx, time.Minute, 5*time.Millisecond, "the candidate's Deployment", func(context.Context) (bool, error) {
			return slices.Contains(deployments(b, s.Namespace), "catalog-"+version), nil
		})
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/push")
}

// BenchmarkBreachToRollback measures the time from the moment a gate's
// breach is visible in Prometheus to all traffic back on stable, with a
// threshold of one failed check.
func BenchmarkBreachToRollback(b *testing.B) {
	env := testEnv.Env(b)
	ctx := b.Context()
	ev, err := gates.New(gates.Options{Address: env.PrometheusURL()})
	if err != nil {
		b.Fatal(err)
	}
	minRate := 99.0
	gate := []specs.Metric{{Name: specs.MetricRequestSuccessRate, ThresholdRange: specs.ThresholdRange{Min: &minRate}, Interval: specs.Duration{Duration: window}}}
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		s := newStackThreshold(b, fmt.Sprintf("bench-breach-%d", i), 1)
		if _, err := s.PushCandidate(ctx, "v2"); err != nil {
			b.Fatal(err)
		}
		if err := s.TriggerSync(ctx); err != nil {
			b.Fatal(err)
		}
		waitStatus(b, s, releaseTimeout, "step canary-10", func(st *record.Status) bool { return st.Step == "canary-10" })
		if err := s.Mesh.SetVersion("v2", 0.5, 20*time.Millisecond); err != nil {
			b.Fatal(err)
		}
		// The breach becomes visible when Prometheus' own answer crosses the threshold.
		target := gates.Target{Namespace: s.Namespace, Service: "catalog", Workload: "catalog-v2", Version: "v2"}
		err := stack.WaitFor(ctx, time.Minute, 20*time.Millisecond, "the breach in Prometheus", func(ctx context.Context) (bool, error) {
			res, err := ev.Evaluate(ctx, target, gate)
			if err != nil {
				return false, err
			}
			return !res[0].NoData && !res[0].Passed, nil
		})
		if err != nil {
			b.Fatal(err)
		}
		visible := time.Now()
		b.StartTimer()
		err = stack.WaitFor(ctx, time.Minute, 5*time.Millisecond, "all traffic on stable", func(context.Context) (bool, error) {
			return slices.Equal(routes(b, s.Namespace, "catalog-mesh"), []string{"v1=100"}), nil
		})
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(visible)
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/rollback")
	b.ReportMetric(float64(interval.Milliseconds()), "ms-interval")
}
