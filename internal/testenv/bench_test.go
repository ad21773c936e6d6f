package testenv_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"sluice.dev/sluice/internal/testenv"
)

// BenchmarkStart measures a warm start (binaries built, module cache filled)
// to a fully usable env, and reports the components' memory once started.
// Goal: under 15s on 2 cores. Run with:
//
//	go test ./internal/testenv/ -run '^$' -bench Start -benchtime 3x
func BenchmarkStart(b *testing.B) {
	testenv.SkipIfShort(b, "the local test cluster")
	for _, prom := range []bool{false, true} {
		name := "without-prometheus"
		if prom {
			name = "with-prometheus"
		}
		b.Run(name, func(b *testing.B) {
			var startTotal, stopTotal time.Duration
			var rssTotal uint64
			for b.Loop() {
				ctx, cancel := context.WithTimeout(b.Context(), testenv.MainStartTimeout)
				began := time.Now()
				e, err := testenv.Start(ctx, testenv.Options{Prometheus: prom, Logger: slog.New(slog.DiscardHandler)})
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				startTotal += time.Since(began)
				rss, err := e.MemoryRSS()
				if err != nil {
					b.Fatal(err)
				}
				for _, v := range rss {
					rssTotal += v
				}
				began = time.Now()
				if err := e.Stop(); err != nil {
					b.Fatal(err)
				}
				stopTotal += time.Since(began)
			}
			n := float64(b.N)
			b.ReportMetric(startTotal.Seconds()/n, "start-s/op")
			b.ReportMetric(stopTotal.Seconds()/n, "stop-s/op")
			b.ReportMetric(float64(rssTotal)/n/(1<<20), "rss-MiB")
		})
	}
}
