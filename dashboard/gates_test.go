package dashboard

import (
	"testing"
	"time"

	"sluice.dev/sluice/specs"
)

func TestGateSummaryWithWebhooks(t *testing.T) {
	rate := specs.Metric{Name: "request-success-rate"}
	smoke := specs.Webhook{Name: "smoke-test", Type: specs.WebhookPreStep}
	health := specs.Webhook{Name: "health", Type: specs.WebhookCheck}
	for _, tc := range []struct {
		g            specs.Gates
		summary, brf string
	}{
		{specs.Gates{Interval: time.Minute, Iterations: 1}, "available", "held until available"},
		{specs.Gates{Interval: time.Minute, Iterations: 1, Metrics: []specs.Metric{rate}, Webhooks: []specs.Webhook{smoke, health}},
			"every 1m0s ×1: request-success-rate, webhook smoke-test (pre-step), webhook health (check)", "2 gates every 1m0s"},
		{specs.Gates{Interval: time.Minute, Iterations: 1, Webhooks: []specs.Webhook{health}}, "every 1m0s ×1: webhook health (check)", "1 gate every 1m0s"},
		{specs.Gates{Interval: time.Minute, Iterations: 1, Webhooks: []specs.Webhook{smoke}}, "available; webhook smoke-test (pre-step)", "held until available"},
	} {
		if got := gateSummary(tc.g); got != tc.summary {
			t.Errorf("gateSummary = %q, want %q", got, tc.summary)
		}
		if got := gateShort(tc.g); got != tc.brf {
			t.Errorf("gateShort = %q, want %q", got, tc.brf)
		}
	}
}
