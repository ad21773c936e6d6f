package reconciler

import (
	"testing"
	"time"

	"sluice.dev/sluice/forge"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

// TestRecordedReasons holds the machine's records to what `sluice status`
// makes of them (record.Status.Reason): each wait says what ends it, each
// rollback the gate and its value.
func TestRecordedReasons(t *testing.T) {
	tests := []struct {
		name   string
		spec   func(*specs.Release)
		status *record.Status
		forge  bool
		gates  *GateCheck
		pr     *PullRequestState
		want   string
	}{
		{name: "manual approval: the command and the spec edit", status: at(1, "dark-launch", record.PhaseProgressing), gates: passing,
			want: "approval needed for canary-10: sluice approve web/shop, or add {stage: canary, candidate: v2} to spec.approvals in releases/shop.yaml"},
		{name: "pull request: the one to merge", status: at(3, "canary-20", record.PhaseProgressing), gates: passing, forge: true, pr: pr(forge.StateOpen),
			want: "approval needed for wide-50: merge pull request #7 https://forge/pr/7"},
		{name: "window: until it opens", spec: func(r *specs.Release) {
			r.Spec.Approvals = []specs.Approval{{Stage: "canary", Candidate: "v2"}}
			r.Spec.Window = &specs.Window{Schedule: "0 9 * * *", Duration: specs.Duration{Duration: 30 * time.Minute}}
		}, status: at(1, "dark-launch", record.PhaseProgressing), gates: passing,
			want: "waiting for the window until 2026-11-26T09:00:00Z (0 9 * * * for 30m) to start canary-10"},
		{name: "rollback: the gate and its value", status: with(at(2, "canary-10", record.PhaseProgressing), func(s *record.Status) { s.FailedChecks = 1 }), gates: failing,
			want: "rolled back at canary-10: success-rate 90 < 99, 2/2 checks failed; v2 draining until 2026-11-25T10:01:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rel, steps := machinePlan(t, tc.spec)
			now := t0.Add(30 * time.Second)
			in := Input{
				Now: now, Release: "web/shop", Namespace: "web", Name: "shop", File: "releases/shop.yaml",
				Spec: rel, Status: tc.status, Head: "head", Forge: tc.forge, Revision: "rev2", Plan: steps,
				ProgressDeadline: 10 * time.Minute, ReapplyInterval: 5 * time.Minute,
				Available: up, Gates: tc.gates, PullRequest: tc.pr,
				Memo: Memo{Key: memoKey(tc.status), LastCheck: t0, StepSeen: now},
			}
			d := Decide(in)
			if d.Status == nil {
				t.Fatalf("no record (action %q, note %q)", d.Action, d.Note)
			}
			if got := d.Status.Reason(); got != tc.want {
				t.Errorf("Reason() = %q, want %q", got, tc.want)
			}
		})
	}
}
