package record

import (
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/specs"
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
	f := func(x float64) *float64 { return &x }
	tests := []struct {
		name string
		st   Status
		want string
	}{
		{"progressing", Status{Phase: PhaseProgressing}, ""},
		{"manual approval: the command and the spec edit",
			Status{Release: "shop/catalog", Phase: PhaseWaiting, Message: "canary-10 waits for approval: add {stage: canary, candidate: v2} to spec.approvals in r.yaml"},
			"approval needed for canary-10: sluice approve shop/catalog, or add {stage: canary, candidate: v2} to spec.approvals in r.yaml"},
		{"pull request approval: its URL",
			Status{Release: "shop/catalog", Phase: PhaseWaiting, Message: "canary-10 waits for approval: merge pull request #7 https://git.example.com/p/r/pulls/7",
				PullRequest: &PullRequestRef{Number: 7, URL: "https://git.example.com/p/r/pulls/7", Branch: "sluice/shop/catalog/canary-10", Step: "canary-10"}},
			"approval needed for canary-10: merge pull request #7 https://git.example.com/p/r/pulls/7"},
		{"pull request without a URL: its branch",
			Status{Phase: PhaseWaiting, PullRequest: &PullRequestRef{Number: 7, Branch: "sluice/shop/catalog/canary-10", Step: "canary-10"}},
			"approval needed for canary-10: merge pull request #7 branch sluice/shop/catalog/canary-10"},
		{"pull request recorded before the ref was",
			Status{Phase: PhaseWaiting, Message: "canary-10 waits for approval: merge pull request #7 https://x/7"},
			"approval needed for canary-10: merge pull request #7 https://x/7"},
		{"window: until when",
			Status{Phase: PhaseWaiting, Message: "canary-10 waits for the release window (0 9 * * 1-5 for 8h0m0s), next open at 2026-11-26T08:00:00Z"},
			"waiting for the window until 2026-11-26T08:00:00Z (0 9 * * 1-5 for 8h0m0s) to start canary-10"},
		{"a wait this Sluice does not know: its message",
			Status{Phase: PhaseWaiting, Message: "canary-10 waits for approval by pull request, but Sluice runs without a forge (--forge)"},
			"canary-10 waits for approval by pull request, but Sluice runs without a forge (--forge)"},
		{"invalid: the first error", Status{Phase: PhaseInvalid, Message: "r.yaml:3: spec.stable: required\nr.yaml:4: spec.routes: required"}, "invalid: r.yaml:3: spec.stable: required"},
		{"no data k of n since T", Status{Phase: PhaseProgressing, NoData: &NoDataHold{Since: at, Last: at, Checks: 1, Allowed: 5}}, "no data: held 1 of 5 checks since 2026-11-25T10:00:00Z"},
		{"rolled back: the gate and value, and the drain",
			Status{Phase: PhaseRolledBack, Message: "rolled back at canary-10: success-rate 90 < 99, 5/5 checks failed", Draining: []Drain{{Version: "v2", Until: at}}},
			"rolled back at canary-10: success-rate 90 < 99, 5/5 checks failed; v2 draining until 2026-11-25T10:00:00Z"},
		{"rolled back without a message: the failing gates",
			Status{Phase: PhaseRolledBack, Gates: []GateValue{{Metric: "request-success-rate", Value: f(90), Min: f(99)}, {Metric: "request-duration", Value: f(20), Max: f(500), Passed: true}}},
			"rolled back: success-rate 90 < 99"},
		{"blocked: the error", Status{Phase: PhaseBlocked, Message: "apply: namespaces \"shop\" not found\nmore detail"}, `blocked: apply: namespaces "shop" not found`},
		{"blocked, message already says so", Status{Phase: PhaseBlocked, Message: "Blocked: rbac refused"}, "Blocked: rbac refused"},
		{"paused: where, and how to resume", Status{Phase: PhasePaused, Message: "paused at canary-10 by spec.paused; remove it (sluice resume shop/web) to go on"},
			"paused at canary-10 by spec.paused; remove it (sluice resume shop/web) to go on"},
		{"a phase of a newer Sluice", Status{Phase: Phase("Frozen"), Message: "by jane"}, "frozen: by jane"},
		{"promoted, still draining", Status{Phase: PhasePromoted, Message: "ignored", Draining: []Drain{{Version: "v1", Until: at}}}, "v1 draining until 2026-11-25T10:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.st.Reason(); got != tc.want {
				t.Errorf("Reason() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStepTraffic(t *testing.T) {
	internal := []specs.Match{{Headers: map[string]specs.StringMatch{"x-istio-cohort": {Exact: "internal"}}}}
	plan := []specs.Step{
		{Index: 0, Name: "deploy", Kind: specs.KindDeploy},
		{Index: 1, Name: "dark-launch", Kind: specs.KindDarkLaunch, Weight: 100, Match: internal},
		{Index: 2, Name: "canary-10", Kind: specs.KindWeighted, Weight: 10},
	}
	dark := specs.Traffic{Match: "x-istio-cohort=internal", MatchWeight: 100}
	tests := []struct {
		name string
		st   *Status
		plan []specs.Step
		want specs.Traffic
	}{
		{"dark launch: its match, no weighted share", &Status{Phase: PhaseProgressing, Step: "dark-launch", StepIndex: 1, Weight: 100}, plan, dark},
		{"waiting at the dark launch", &Status{Phase: PhaseWaiting, Step: "dark-launch", StepIndex: 1, Weight: 100}, plan, dark},
		{"weighted", &Status{Phase: PhaseProgressing, Step: "canary-10", StepIndex: 2, Weight: 10}, plan, specs.Traffic{Weight: 10}},
		{"rolled back", &Status{Phase: PhaseRolledBack, Step: "rollback", StepIndex: 1}, plan, specs.Traffic{}},
		{"the plan changed under the record: the recorded weight", &Status{Phase: PhaseProgressing, Step: "canary-20", StepIndex: 2, Weight: 20}, plan, specs.Traffic{Weight: 20}},
		{"no plan", &Status{Phase: PhasePromoted, Step: "promote", StepIndex: 7, Weight: 100}, nil, specs.Traffic{Weight: 100}},
		{"no status", nil, plan, specs.Traffic{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := StepTraffic(tc.st, tc.plan); got != tc.want {
				t.Errorf("StepTraffic = %+v, want %+v", got, tc.want)
			}
		})
	}
}
