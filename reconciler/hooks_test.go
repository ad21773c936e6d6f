package reconciler

import (
	"slices"
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

// hooked gives the release webhooks: spec-wide ones, and the deploy
// stage's own.
func hooked(release, deploy []specs.Webhook) func(*specs.Release) {
	return func(r *specs.Release) {
		r.Spec.Approvals = []specs.Approval{{Stage: "canary", Candidate: "v2"}, {Stage: "wide", Candidate: "v2"}}
		r.Spec.Analysis.Webhooks = release
		if deploy != nil {
			r.Spec.Stages[0].Analysis = &specs.AnalysisOverride{Webhooks: deploy}
		}
	}
}

var (
	smoke  = specs.Webhook{Name: "smoke", Type: specs.WebhookPreStep, URL: "http://smoke.test/"}
	health = specs.Webhook{Name: "health", Type: specs.WebhookCheck, URL: "http://health.test/"}
)

func hookValues(name string, code int) *HookCheck {
	return &HookCheck{Values: []record.GateValue{record.WebhookValue(name, specs.WebhookPreStep, code, code >= 200 && code < 300, "")}}
}

func TestMachineHooks(t *testing.T) {
	passedAt := func(step string) *HookCheck { h := hookValues("smoke", 200); h.Step = step; return h }
	failedAt := func(step string) *HookCheck { h := hookValues("smoke", 503); h.Step = step; return h }
	tests := []struct {
		name    string
		release []specs.Webhook
		deploy  []specs.Webhook
		status  *record.Status
		memo    func(*Memo)
		gates   *GateCheck
		hooks   *HookCheck

		action  record.Action
		step    string // of the new record
		subject string
		need    Need
		preStep string // Decision.PreStep
	}{
		{name: "pre-step: asked for before the next step takes traffic", release: []specs.Webhook{smoke},
			status: at(1, "dark-launch", record.PhaseProgressing), gates: passing, need: NeedHooks, preStep: "canary-10"},
		{name: "pre-step: passed, the advance records its value", release: []specs.Webhook{smoke},
			status: at(1, "dark-launch", record.PhaseProgressing), gates: passing, hooks: passedAt("canary-10"),
			action: record.ActionAdvance, step: "canary-10", subject: "shop: dark-launch -> 10% (success-rate 99.9 >= 99, webhook smoke 200)", need: NeedAvailability},
		{name: "pre-step: failed, rolled back before the step takes traffic", release: []specs.Webhook{smoke},
			status: at(1, "dark-launch", record.PhaseProgressing), gates: passing, hooks: failedAt("canary-10"),
			action: record.ActionRollback, step: "rollback", subject: "shop: rolled back at 10% (webhook smoke 503, pre-step failed, 10% took no traffic)"},
		{name: "pre-step: an outcome for another step is not this one's", release: []specs.Webhook{smoke},
			status: at(1, "dark-launch", record.PhaseProgressing), gates: passing, hooks: passedAt("dark-launch"), need: NeedHooks, preStep: "canary-10"},
		{name: "pre-step: once passed, not run again", release: []specs.Webhook{smoke},
			status: at(1, "dark-launch", record.PhaseProgressing), gates: passing,
			memo:   func(m *Memo) { m.PreStep, m.PreStepValues = "canary-10", passedAt("canary-10").Values },
			action: record.ActionAdvance, step: "canary-10", subject: "webhook smoke 200", need: NeedAvailability},
		{name: "pre-step: not while the gates fail", release: []specs.Webhook{smoke},
			status: at(1, "dark-launch", record.PhaseProgressing), gates: failing,
			action: record.ActionCheck, step: "dark-launch", subject: "check failed at dark-launch"},
		{name: "pre-step: the first step's run once it is up", deploy: []specs.Webhook{smoke},
			status: at(0, "deploy", record.PhaseProgressing), need: NeedHooks, preStep: "deploy"},
		{name: "pre-step: the first step's failure rolls back", deploy: []specs.Webhook{smoke},
			status: at(0, "deploy", record.PhaseProgressing), hooks: failedAt("deploy"),
			action: record.ActionRollback, step: "rollback", subject: "shop: rolled back at deploy (webhook smoke 503, pre-step failed, deploy took no traffic)"},
		{name: "pre-step: the first step's pass lets it go on", deploy: []specs.Webhook{smoke},
			status: at(0, "deploy", record.PhaseProgressing), hooks: passedAt("deploy"),
			action: record.ActionAdvance, step: "dark-launch", subject: "shop: deploy -> dark-launch (available)", need: NeedAvailability},
		{name: "check: a failed check webhook is a failed check", release: []specs.Webhook{health},
			status: at(1, "dark-launch", record.PhaseProgressing),
			gates:  &GateCheck{Verdict: VerdictFail, Values: append(slices.Clone(passing.Values), record.WebhookValue("health", specs.WebhookCheck, 500, false, ""))},
			action: record.ActionCheck, step: "dark-launch", subject: "shop: check failed at dark-launch (webhook health 500, 1/2 checks failed)"},
		{name: "check: at the threshold it rolls back", release: []specs.Webhook{health},
			status: with(at(1, "dark-launch", record.PhaseProgressing), func(s *record.Status) { s.FailedChecks = 1 }),
			gates:  &GateCheck{Verdict: VerdictFail, Values: []record.GateValue{record.WebhookValue("health", specs.WebhookCheck, 0, false, "timeout")}},
			action: record.ActionRollback, step: "rollback", subject: "shop: rolled back at dark-launch (webhook health timeout, 2/2 checks failed)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rel, steps := machinePlan(t, hooked(tc.release, tc.deploy))
			in := Input{Now: t0.Add(30 * time.Second), Release: "web/shop", Namespace: "web", Name: "shop", File: "releases/shop.yaml",
				Spec: rel, Revision: "rev2", Plan: steps, Status: tc.status, ProgressDeadline: 10 * time.Minute, ReapplyInterval: 5 * time.Minute,
				Memo: Memo{Key: memoKey(tc.status), LastCheck: t0, StepSeen: t0}, Available: up, Gates: tc.gates, Hooks: tc.hooks}
			if tc.memo != nil {
				tc.memo(&in.Memo)
			}
			d := Decide(in)
			if d.Action != tc.action {
				t.Fatalf("action %q, want %q (subject %q, note %q, need %v)", d.Action, tc.action, d.Subject, d.Note, d.Need)
			}
			if tc.action != "" && (d.Status.Step != tc.step || !strings.Contains(d.Subject, tc.subject)) {
				t.Errorf("record at %s, subject %q; want %s, %q", d.Status.Step, d.Subject, tc.step, tc.subject)
			}
			if d.Need != tc.need {
				t.Errorf("need %v, want %v", d.Need, tc.need)
			}
			pre := ""
			if d.PreStep != nil {
				pre = d.PreStep.Name
			}
			if pre != tc.preStep {
				t.Errorf("pre-step hooks of %q, want %q", pre, tc.preStep)
			}
			if d.Need == NeedHooks && d.Memo.Passed != in.Memo.Passed {
				t.Errorf("asking for the hooks counted the check: memo %+v", d.Memo)
			}
		})
	}
}

// TestMachineWalkHooks walks a release whose every checked step has a
// pre-step webhook: each runs exactly once, before its step is recorded,
// and its value is in that step's record.
func TestMachineWalkHooks(t *testing.T) {
	rel, steps := machinePlan(t, hooked([]specs.Webhook{smoke, health}, nil))
	in := Input{Now: t0, Release: "web/shop", Namespace: "web", Name: "shop", File: "releases/shop.yaml",
		Spec: rel, Revision: "rev2", Plan: steps, ProgressDeadline: 10 * time.Minute, ReapplyInterval: 5 * time.Minute}
	var ran, recorded []string
	for reconcile := 0; reconcile < 100 && (in.Status == nil || in.Status.Phase != record.PhasePromoted); reconcile++ {
		in.Available, in.Gates, in.Hooks = nil, nil, nil
		var d Decision
		for round := 0; ; round++ {
			if round == maxRounds {
				t.Fatalf("reconcile %d did not settle", reconcile)
			}
			d = Decide(in)
			in.Memo = d.Memo
			if d.Action != "" {
				in.Status = d.Status
				in.Available, in.Gates, in.Hooks = nil, nil, nil
				recorded = append(recorded, d.Subject)
			}
			if d.Need == NeedNothing {
				break
			}
			switch d.Need {
			case NeedAvailability:
				in.Available = up
			case NeedGates:
				in.Gates = passing
			case NeedHooks:
				ran = append(ran, d.PreStep.Name)
				in.Hooks = &HookCheck{Step: d.PreStep.Name, Values: hookValues("smoke", 200).Values}
			}
		}
		if d.Requeue <= 0 && in.Status.Phase != record.PhasePromoted {
			t.Fatalf("reconcile %d: the release stopped at %s %s", reconcile, in.Status.Phase, in.Status.Step)
		}
		in.Now = in.Now.Add(d.Requeue)
	}
	// Spec-wide hooks apply to the steps with metrics: not deploy, not promote.
	if want := []string{"dark-launch", "canary-10", "canary-20", "wide-50"}; !slices.Equal(ran, want) {
		t.Errorf("pre-step hooks ran before %v, want %v", ran, want)
	}
	for _, subj := range recorded {
		if strings.Contains(subj, "-> 10%") && !strings.Contains(subj, "webhook smoke 200") {
			t.Errorf("advance %q does not show the pre-step's value", subj)
		}
	}
	if in.Status.Phase != record.PhasePromoted {
		t.Fatalf("ended %s at %s:\n%s", in.Status.Phase, in.Status.Step, strings.Join(recorded, "\n"))
	}
}
