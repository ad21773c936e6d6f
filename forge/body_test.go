package forge_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sluice.dev/sluice/forge"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func f(v float64) *float64 { return &v }

func TestPullRequestBodyGolden(t *testing.T) {
	steps := []forge.StepLine{
		{Name: "deploy", Weight: 0, Done: true},
		{Name: "canary-10", Weight: 10, Current: true},
		{Name: "canary-50", Weight: 50},
		{Name: "promote", Weight: 100},
	}
	cases := []struct {
		name string
		s    forge.Summary
	}{
		{"gates", forge.Summary{
			Release: "istioinaction/catalog", Stable: "v1", Candidate: "v2", Step: "canary-50", Steps: steps,
			Gates: []forge.GateLine{
				{Metric: "request-success-rate", Value: f(99.87654), Min: f(99), Passed: true},
				{Metric: "request-duration", Value: f(612.3), Max: f(500)},
				{Metric: "error-budget", Min: f(0), Max: f(1)},
			},
			CheckedAt: time.Date(2026, 11, 25, 9, 30, 0, 0, time.UTC), FailedChecks: 1, Threshold: 5,
		}},
		{"no-gates-note", forge.Summary{
			Release: "shop/cart", Stable: "v7", Candidate: "v8", Step: "promote", Steps: steps,
			Note: "Sluice rolled the release back: request-success-rate 91 < 99.",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := forge.PullRequestBody(tc.s)
			path := filepath.Join("testdata", "body-"+tc.name+".golden.md")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("body differs from %s (go test ./forge -run Golden -update):\n%s", path, got)
			}
		})
	}
}
