package record

import (
	"strings"
	"testing"
	"time"
)

func TestStatusRoundTrip(t *testing.T) {
	v := 99.5
	s := &Status{Release: "n/a", SpecFile: "a.yaml", Phase: PhaseProgressing, Stable: "v1", Candidate: "v2", Step: "canary-20", StepIndex: 3, Weight: 20,
		Gates: []GateValue{{Metric: "request-success-rate", Value: &v, Min: &v, Passed: true}}}
	data, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseStatus(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.Step != "canary-20" || back.Weight != 20 || *back.Gates[0].Value != 99.5 || !strings.HasPrefix(string(data), "# Written by Sluice") {
		t.Errorf("round trip: %+v\n%s", back, data)
	}
}

func TestGateValueString(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	cases := []struct {
		g    GateValue
		want string
	}{
		{GateValue{Metric: "request-success-rate", Value: f(99.84), Min: f(99)}, "success-rate 99.8 >= 99"},
		{GateValue{Metric: "request-success-rate", Value: f(93.1), Min: f(99)}, "success-rate 93.1 < 99"},
		{GateValue{Metric: "request-duration", Value: f(212), Max: f(500)}, "p99 212ms <= 500ms"},
		{GateValue{Metric: "request-duration", Value: f(612.26), Max: f(500)}, "p99 612.3ms > 500ms"},
		{GateValue{Metric: "error-budget", Max: f(1)}, "error-budget no data"},
		{WebhookValue("smoke-test", "pre-step", 200, true, ""), "webhook smoke-test 200"},
		{WebhookValue("smoke-test", "check", 503, false, ""), "webhook smoke-test 503"},
		{WebhookValue("smoke-test", "check", 0, false, "timeout"), "webhook smoke-test timeout"},
	}
	for _, tc := range cases {
		if got := tc.g.String(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.g, got, tc.want)
		}
	}
}

func TestStatusReason(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		st   Status
		want string
	}{
		{Status{Phase: PhaseProgressing}, ""},
		{Status{Phase: PhaseWaiting, Message: "canary-10 waits for approval: add {stage: canary, candidate: v2} to spec.approvals in r.yaml"},
			"canary-10 waits for approval: add {stage: canary, candidate: v2} to spec.approvals in r.yaml"},
		{Status{Phase: PhaseInvalid, Message: "r.yaml:3: spec.stable: required\nr.yaml:4: spec.routes: required"}, "r.yaml:3: spec.stable: required"},
		{Status{Phase: PhaseProgressing, NoData: &NoDataHold{Since: at, Last: at, Checks: 1, Allowed: 5}}, "no data: held 1 of 5 checks since 2026-11-25T10:00:00Z"},
		{Status{Phase: PhaseRolledBack, Message: "rolled back at canary-10: success-rate 90 < 99", Draining: []Drain{{Version: "v2", Until: at}}},
			"rolled back at canary-10: success-rate 90 < 99; v2 draining until 2026-11-25T10:00:00Z"},
	}
	for _, tc := range tests {
		if got := tc.st.Reason(); got != tc.want {
			t.Errorf("Reason() = %q, want %q", got, tc.want)
		}
	}
}
