package main

import (
	"testing"
	"time"

	"sluice.dev/sluice/specs"
)

func TestDescribeGates(t *testing.T) {
	min99 := 99.0
	metric := specs.Metric{Name: "request-success-rate", ThresholdRange: specs.ThresholdRange{Min: &min99}, Interval: specs.Duration{Duration: time.Minute}}
	smoke := specs.Webhook{Name: "smoke-test", Type: specs.WebhookPreStep}
	health := specs.Webhook{Name: "health", Type: specs.WebhookCheck}
	for _, tc := range []struct {
		g    specs.Gates
		want string
	}{
		{specs.Gates{}, "available"},
		{specs.Gates{Interval: 45 * time.Second, Iterations: 1, Metrics: []specs.Metric{metric}},
			"every 45s x1: request-success-rate >=99/1m"},
		{specs.Gates{Interval: 45 * time.Second, Iterations: 1, Metrics: []specs.Metric{metric}, Webhooks: []specs.Webhook{smoke, health}},
			"every 45s x1: request-success-rate >=99/1m; webhook smoke-test (pre-step); webhook health (check)"},
		{specs.Gates{Interval: 45 * time.Second, Iterations: 2, Webhooks: []specs.Webhook{health}}, "every 45s x2; webhook health (check)"},
		{specs.Gates{Interval: 45 * time.Second, Iterations: 1, Webhooks: []specs.Webhook{smoke}}, "available; webhook smoke-test (pre-step)"},
	} {
		if got := describeGates(tc.g); got != tc.want {
			t.Errorf("describeGates(%+v) = %q, want %q", tc.g, got, tc.want)
		}
	}
}
