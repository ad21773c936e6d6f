package cluster

import (
	"log/slog"
	"testing"
	"time"
)

// BenchmarkApply100 applies the first step of 100 releases, then the same
// step again, which must write nothing.
func BenchmarkApply100(b *testing.B) {
	env := testEnv.Env(b)
	const releases = 100
	cfg, counter := CountingConfig(env.RESTConfig())
	// Measure Sluice and the API server, not client-side throttling
	// (New's default of 50 requests/s would dominate).
	cfg.QPS = -1
	a, err := New(cfg, Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	// One release per namespace, as the renderer places them.
	sets := func() []Set {
		out := make([]Set, releases)
		for i := range out {
			out[i] = shopSet(b, newNamespace(b), "shared.yaml", "deployment-v1.yaml", "destinationrule.yaml", "vs-stable.yaml")
		}
		return out
	}
	applyAll := func(b *testing.B, sets []Set) {
		for _, s := range sets {
			if _, err := a.Apply(ctx, s, ApplyOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	report := func(b *testing.B, elapsed time.Duration) {
		n := float64(b.N)
		b.ReportMetric(float64(counter.Total())/n, "requests/op")
		b.ReportMetric(float64(counter.Writes())/n, "writes/op")
		b.ReportMetric(float64(elapsed.Milliseconds())/n/releases, "ms/release")
	}

	b.Run("first", func(b *testing.B) {
		var elapsed time.Duration
		counter.Reset()
		for range b.N {
			b.StopTimer()
			s := sets()
			b.StartTimer()
			start := time.Now()
			applyAll(b, s)
			elapsed += time.Since(start)
		}
		report(b, elapsed)
	})
	b.Run("unchanged", func(b *testing.B) {
		s := sets()
		applyAll(b, s)
		counter.Reset()
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			applyAll(b, s)
		}
		report(b, time.Since(start))
		if w := counter.Writes(); w != 0 {
			b.Errorf("unchanged applies sent %d writes: %v", w, counter.Snapshot())
		}
	})
}
