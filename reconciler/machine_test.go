package reconciler

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/forge"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

// t0 is when the recorded step began in every row.
var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func machineRelease(t *testing.T, edit func(*specs.Release)) *specs.Release {
	t.Helper()
	rels, err := specs.Parse("releases/shop.yaml", []byte(machineSpec))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(rels[0])
	}
	return rels[0]
}

// at is a record of candidate v2 (revision rev2) at step (index i) in phase.
// machinePlan is machineRelease with its plan.
func machinePlan(t *testing.T, edit func(*specs.Release)) (*specs.Release, []specs.Step) {
	t.Helper()
	rel := machineRelease(t, edit)
	steps, err := specs.Plan(rel)
	if err != nil {
		t.Fatal(err)
	}
	return rel, steps
}

func at(i int, step string, phase record.Phase) *record.Status {
	weights := map[string]int32{"dark-launch": 100, "canary-10": 10, "canary-20": 20, "wide-50": 50, "promote": 100}
	return &record.Status{Release: "web/shop", SpecFile: "releases/shop.yaml", Phase: phase, Since: t0,
		Stable: "v1", Candidate: "v2", Revision: "rev2", Step: step, StepIndex: i, Weight: weights[step], Commit: "c0ffee"}
}

func with(st *record.Status, f func(*record.Status)) *record.Status {
	s := *st
	f(&s)
	return &s
}

func val(x float64) *float64 { return &x }

var (
	passing = &GateCheck{Verdict: VerdictPass, Values: []record.GateValue{{Metric: "request-success-rate", Value: val(99.9), Min: val(99), Passed: true}}}
	failing = &GateCheck{Verdict: VerdictFail, Values: []record.GateValue{{Metric: "request-success-rate", Value: val(90), Min: val(99)}}}
	noData  = &GateCheck{Verdict: VerdictNoData, Values: []record.GateValue{{Metric: "request-success-rate", Min: val(99)}}}
	promErr = &GateCheck{Err: errors.New("prometheus: 503 Service Unavailable")}
	up      = &Availability{OK: true}
	down    = &Availability{Workload: "shop-v2", Reason: "0/1 replicas available"}
	prRef   = &record.PullRequestRef{Number: 7, URL: "https://forge/pr/7", Branch: "sluice/web/shop/wide-50", Step: "wide-50"}
)

func pr(state forge.State) *PullRequestState {
	return &PullRequestState{Number: 7, URL: "https://forge/pr/7", Branch: "sluice/web/shop/wide-50", State: state, By: "jane", Proposed: true}
}

// checked is the memo of a step whose workloads came up and whose gates
// were last checked at t0+last; passed counts as in Memo, and dataSeen
// (when set) is when a check last had data.
type checked struct {
	last     time.Duration
	passed   int
	dataSeen time.Duration
}

// noDataRun is a recorded run of n checks without data, the last at t0.
func noDataRun(n int) func(*record.Status) {
	return func(s *record.Status) {
		s.NoData = &record.NoDataHold{Since: t0.Add(-time.Duration(n-1) * 30 * time.Second), Last: t0, Checks: n, Allowed: 2}
	}
}

func drains(d Decision) string {
	var out []string
	if d.Status != nil {
		for _, dr := range d.Status.Draining {
			out = append(out, dr.Version+" until "+dr.Until.Format("15:04:05"))
		}
	}
	return strings.Join(out, ", ")
}

func applied(d Decision) string {
	if d.Apply == nil {
		return ""
	}
	return strings.Join(d.Apply.Versions, ",")
}

// TestMachine is every transition of a release, one row each: what was
// recorded and observed, and what the machine decides.
func TestMachine(t *testing.T) {
	waitingPR := with(at(3, "canary-20", record.PhaseWaiting), func(s *record.Status) {
		s.PullRequest = prRef
		s.Message = "wide-50 waits for approval: merge pull request #7 https://forge/pr/7"
	})
	blockedAt := with(at(2, "canary-10", record.PhaseBlocked), func(s *record.Status) {
		s.Message = "namespaces \"web\" not found"
		s.Resume = &record.Resume{Phase: record.PhaseProgressing, Since: t0.Add(-time.Minute)}
	})
	blockedSteady := &record.Status{Release: "web/shop", Phase: record.PhaseBlocked, Stable: "v1", Step: "stable", Since: t0, Message: "forbidden",
		Resume: &record.Resume{Phase: record.PhaseSteady, Since: t0.Add(-time.Hour)}}
	pausedAt := with(at(3, "canary-20", record.PhasePaused), func(s *record.Status) {
		s.Message = "paused"
		s.Resume = &record.Resume{Phase: record.PhaseProgressing, Since: t0.Add(-time.Minute)}
	})
	approveCanary := func(r *specs.Release) {
		r.Spec.Approvals = []specs.Approval{{Stage: "canary", Candidate: "v2"}}
	}
	tests := []struct {
		name    string
		spec    func(*specs.Release)
		invald  error
		status  *record.Status
		memo    *checked
		after   time.Duration // now = t0 + after
		forge   bool
		watched bool
		avail   *Availability
		gates   *GateCheck
		pr      *PullRequestState
		failure *Failure
		applied bool

		action  record.Action
		phase   record.Phase // of the new record, when action is set
		step    string       // of the new record, when action is set
		subject string       // a part of the subject, when action is set
		apply   string       // step applied ("" none)
		need    Need
		requeue time.Duration
		prOp    PullRequestOp
		sync    bool
		check   func(*testing.T, Decision)
	}{
		// Start, abandon, withdraw.
		{name: "start: a new candidate at its first step", after: time.Minute,
			action: record.ActionStart, phase: record.PhaseProgressing, step: "deploy", subject: "shop: start v1 -> v2 at deploy", apply: "deploy", need: NeedAvailability},
		{name: "start: after a steady record", status: &record.Status{Release: "web/shop", Phase: record.PhaseSteady, Stable: "v1", Step: "stable", Since: t0},
			action: record.ActionStart, phase: record.PhaseProgressing, step: "deploy", apply: "deploy", need: NeedAvailability},
		{name: "abandon: the candidate's revision changed mid-release", status: with(at(2, "canary-10", record.PhaseProgressing), func(s *record.Status) { s.Revision = "rev1" }),
			action: record.ActionAbandon, phase: record.PhaseProgressing, step: "deploy", subject: "shop: v2 (revision rev1, changed since) abandoned at canary-10; start v2 at deploy", apply: "deploy", need: NeedAvailability},
		{name: "abandon: a newer candidate while waiting on a pull request retires it", status: with(waitingPR, func(s *record.Status) { s.Candidate = "v3" }), forge: true,
			action: record.ActionAbandon, phase: record.PhaseProgressing, step: "deploy", subject: "shop: v3 abandoned at canary-20; start v2 at deploy", apply: "deploy", need: NeedAvailability, prOp: PullRequestRetire},
		{name: "withdrawn: no candidate any more, steady at stable", spec: func(r *specs.Release) { r.Spec.Candidate = "" }, status: at(2, "canary-10", record.PhaseProgressing),
			action: record.ActionSteady, phase: record.PhaseSteady, step: "stable", subject: "shop: candidate v2 withdrawn; steady at v1", apply: "stable", requeue: 30 * time.Second},
		{name: "withdrawn while waiting on a pull request retires it", spec: func(r *specs.Release) { r.Spec.Candidate = "" }, status: waitingPR, forge: true,
			action: record.ActionSteady, phase: record.PhaseSteady, step: "stable", apply: "stable", requeue: 30 * time.Second, prOp: PullRequestRetire},
		{name: "steady: recorded, held, re-applied", spec: func(r *specs.Release) { r.Spec.Candidate = "" }, status: &record.Status{Release: "web/shop", Phase: record.PhaseSteady, Stable: "v1", Step: "stable", Since: t0},
			apply: "stable", requeue: 5 * time.Minute},
		{name: "steady: a fresh release is recorded steady", spec: func(r *specs.Release) { r.Spec.Candidate = "" },
			action: record.ActionSteady, phase: record.PhaseSteady, step: "stable", subject: "shop: steady at v1", apply: "stable", requeue: 5 * time.Minute},

		// Apply and availability.
		{name: "apply: the recorded step is applied, then its availability observed", status: at(0, "deploy", record.PhaseProgressing),
			apply: "deploy", need: NeedAvailability},
		{name: "availability: not yet, within the progress deadline", status: at(0, "deploy", record.PhaseProgressing), after: 9 * time.Minute, avail: down,
			requeue: availabilityPoll},
		{name: "availability: past the progress deadline rolls back", status: at(1, "dark-launch", record.PhaseProgressing), after: 11 * time.Minute, avail: down,
			action: record.ActionRollback, phase: record.PhaseRolledBack, step: "rollback", subject: "shop: rolled back at dark-launch (shop-v2 not available after 10m0s: 0/1 replicas available)", apply: "rollback", requeue: 30 * time.Second},
		{name: "availability: a step entered by a merged pull request counts from when it was seen",
			status: with(at(4, "wide-50", record.PhaseProgressing), func(s *record.Status) { s.PullRequest = prRef }), memo: &checked{}, after: 11 * time.Minute, avail: down,
			requeue: availabilityPoll},
		{name: "availability: watched, looked at again only as a fallback", status: at(0, "deploy", record.PhaseProgressing), after: time.Minute, avail: down, watched: true,
			requeue: availabilityFallback},
		{name: "availability: looked at again when the progress deadline passes", status: at(0, "deploy", record.PhaseProgressing), after: 9*time.Minute + 50*time.Second, avail: down, watched: true,
			requeue: 11 * time.Second},
		{name: "available: the first check is one interval later", status: at(1, "dark-launch", record.PhaseProgressing), after: 5 * time.Second, avail: up,
			requeue: 30 * time.Second},
		{name: "available: a check not yet due waits for it", status: at(1, "dark-launch", record.PhaseProgressing), memo: &checked{last: 20 * time.Second}, after: 40 * time.Second, avail: up,
			requeue: 10 * time.Second},
		{name: "available: a due check asks for the gates", status: at(1, "dark-launch", record.PhaseProgressing), memo: &checked{}, after: 30 * time.Second, avail: up,
			need: NeedGates},

		// Gates.
		{name: "gates: a step without metrics advances when available", status: at(0, "deploy", record.PhaseProgressing), memo: &checked{}, after: 30 * time.Second, avail: up, gates: &GateCheck{Verdict: VerdictPass},
			action: record.ActionAdvance, phase: record.PhaseProgressing, step: "dark-launch", subject: "shop: deploy -> dark-launch (available)", apply: "dark-launch", need: NeedAvailability},
		{name: "gates: a failed check under the threshold is recorded", status: at(2, "canary-10", record.PhaseProgressing), memo: &checked{}, after: 30 * time.Second, avail: up, gates: failing,
			action: record.ActionCheck, phase: record.PhaseProgressing, step: "canary-10", subject: "shop: check failed at 10% (success-rate 90 < 99, 1/2 checks failed)", requeue: 30 * time.Second},
		{name: "gates: the threshold-th failed check rolls back", status: with(at(2, "canary-10", record.PhaseProgressing), func(s *record.Status) { s.FailedChecks = 1 }), memo: &checked{}, after: 30 * time.Second, avail: up, gates: failing,
			action: record.ActionRollback, phase: record.PhaseRolledBack, step: "rollback", subject: "shop: rolled back at 10% (success-rate 90 < 99, 2/2 checks failed)", apply: "rollback", requeue: 30 * time.Second},
		{name: "no data: the first check without data holds, recorded", status: at(2, "canary-10", record.PhaseProgressing), memo: &checked{}, after: 30 * time.Second, avail: up, gates: noData,
			action: record.ActionNoData, phase: record.PhaseProgressing, step: "canary-10", subject: "shop: no data at 10% (success-rate no data; held 1 of 2 checks since 10:00:30Z)", requeue: 30 * time.Second,
			check: func(t *testing.T, d Decision) {
				if nd := d.Status.NoData; nd == nil || nd.Checks != 1 || nd.Allowed != 2 || !nd.Since.Equal(t0.Add(30*time.Second)) {
					t.Errorf("no data record %+v", nd)
				}
			}},
		{name: "no data: the run goes on from the record (a restart forgets nothing)", status: with(at(2, "canary-10", record.PhaseProgressing), noDataRun(1)), memo: &checked{}, after: 30 * time.Second, avail: up, gates: noData,
			action: record.ActionNoData, phase: record.PhaseProgressing, step: "canary-10", subject: "held 2 of 2 checks since 10:00:00Z", requeue: 30 * time.Second},
		{name: "no data: past the allowed holds each check counts as failed", status: with(at(2, "canary-10", record.PhaseProgressing), noDataRun(2)), memo: &checked{}, after: 30 * time.Second, avail: up, gates: noData,
			action: record.ActionCheck, phase: record.PhaseProgressing, step: "canary-10", subject: "shop: check failed at 10% (success-rate no data, 1/2 checks failed)", requeue: 30 * time.Second,
			check: func(t *testing.T, d Decision) {
				// The run goes on: the next check without data counts too.
				if nd := d.Status.NoData; nd == nil || nd.Checks != 3 || !nd.Since.Equal(t0.Add(-30*time.Second)) {
					t.Errorf("a failed check without data ends the run: %+v", nd)
				}
			}},
		{name: "no data: a failed check with data ends the run", status: with(at(2, "canary-10", record.PhaseProgressing), noDataRun(2)), memo: &checked{}, after: 30 * time.Second, avail: up, gates: failing,
			action: record.ActionCheck, phase: record.PhaseProgressing, step: "canary-10", subject: "success-rate 90 < 99, 1/2 checks failed", requeue: 30 * time.Second,
			check: func(t *testing.T, d Decision) {
				if d.Status.NoData != nil {
					t.Errorf("a check with data still says no data: %+v", d.Status.NoData)
				}
			}},
		{name: "no data: bounded, a release with no traffic rolls back", status: with(at(2, "canary-10", record.PhaseProgressing), func(s *record.Status) { noDataRun(2)(s); s.FailedChecks = 1 }), memo: &checked{}, after: 30 * time.Second, avail: up, gates: noData,
			action: record.ActionRollback, phase: record.PhaseRolledBack, step: "rollback", subject: "shop: rolled back at 10% (success-rate no data, 2/2 checks failed)", apply: "rollback", requeue: 30 * time.Second},
		{name: "no data: a check with data in between starts a new run", status: with(at(2, "canary-10", record.PhaseProgressing), noDataRun(2)), memo: &checked{dataSeen: 10 * time.Second}, after: 30 * time.Second, avail: up, gates: noData,
			action: record.ActionNoData, phase: record.PhaseProgressing, step: "canary-10", subject: "held 1 of 2 checks", requeue: 30 * time.Second},
		{name: "no data: noData: fail counts at once", spec: func(r *specs.Release) { r.Spec.Analysis.NoData = specs.NoDataFail }, status: at(2, "canary-10", record.PhaseProgressing), memo: &checked{}, after: 30 * time.Second, avail: up, gates: noData,
			action: record.ActionCheck, phase: record.PhaseProgressing, step: "canary-10", subject: "shop: check failed at 10% (success-rate no data, 1/2 checks failed)", requeue: 30 * time.Second},
		{name: "gates: a Prometheus error holds and counts nothing", status: at(2, "canary-10", record.PhaseProgressing), memo: &checked{}, after: 30 * time.Second, avail: up, gates: promErr,
			requeue: 30 * time.Second},
		{name: "iterations: a pass short of the iterations holds", spec: func(r *specs.Release) { r.Spec.Analysis.Iterations = 2 }, status: at(1, "dark-launch", record.PhaseProgressing), memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing,
			requeue: 30 * time.Second},
		{name: "iterations: the last pass advances", spec: func(r *specs.Release) { r.Spec.Analysis.Iterations = 2; approveCanary(r) }, status: at(1, "dark-launch", record.PhaseProgressing), memo: &checked{passed: 1}, after: 30 * time.Second, avail: up, gates: passing,
			action: record.ActionAdvance, phase: record.PhaseProgressing, step: "canary-10", subject: "shop: dark-launch -> 10% (success-rate 99.9 >= 99)", apply: "canary-10", need: NeedAvailability},

		// Manual approval.
		{name: "manual approval: passed, waits for the approval", status: at(1, "dark-launch", record.PhaseProgressing), memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing,
			action: record.ActionWait, phase: record.PhaseWaiting, step: "dark-launch", subject: "shop: dark-launch passed; canary-10 waits for approval", requeue: waitPoll},
		{name: "manual approval: still waiting records nothing again",
			status: with(at(1, "dark-launch", record.PhaseWaiting), func(s *record.Status) {
				s.Message = "canary-10 waits for approval: add {stage: canary, candidate: v2} to spec.approvals in releases/shop.yaml"
			}), memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing,
			requeue: waitPoll},
		{name: "manual approval: approved, advances", spec: approveCanary, status: at(1, "dark-launch", record.PhaseWaiting), memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing,
			action: record.ActionAdvance, phase: record.PhaseProgressing, step: "canary-10", apply: "canary-10", need: NeedAvailability},
		{name: "manual approval: the stage's later steps need no second one", spec: approveCanary, status: at(2, "canary-10", record.PhaseProgressing), memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing,
			action: record.ActionAdvance, phase: record.PhaseProgressing, step: "canary-20", subject: "shop: 10% -> 20%", apply: "canary-20", need: NeedAvailability},

		// Pull-request approval.
		{name: "pull request: without a forge the release waits, saying so", status: at(3, "canary-20", record.PhaseProgressing), memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing,
			action: record.ActionWait, phase: record.PhaseWaiting, step: "canary-20", subject: "shop: 20% passed; wide-50 waits for approval", requeue: waitPoll},
		{name: "pull request: the branch is pushed and the pull request opened", status: at(3, "canary-20", record.PhaseProgressing), memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing, forge: true,
			need: NeedPullRequest, prOp: PullRequestEnsure},
		{name: "pull request: opened, the wait is recorded with it and the branch rebased on that record", status: at(3, "canary-20", record.PhaseProgressing), memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing, forge: true, pr: pr(forge.StateOpen),
			action: record.ActionWait, phase: record.PhaseWaiting, step: "canary-20", subject: "shop: 20% passed; wide-50 waits for approval in pull request #7", prOp: PullRequestRebase, requeue: 30 * time.Second},
		{name: "pull request: while it waits, each check reads it first", status: waitingPR, memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing, forge: true,
			need: NeedPullRequest, prOp: PullRequestRead},
		{name: "pull request: open, its body is refreshed and nothing recorded", status: waitingPR, memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing, forge: true, pr: pr(forge.StateOpen),
			prOp: PullRequestRefresh, requeue: 30 * time.Second},
		{name: "pull request: merged, Git brings the advance", status: waitingPR, memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing, forge: true, pr: pr(forge.StateMerged),
			sync: true, requeue: availabilityPoll},
		{name: "pull request: the advance already in Git, sync", status: at(3, "canary-20", record.PhaseProgressing), memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing, forge: true,
			pr:   &PullRequestState{Proposed: true, InGit: true},
			sync: true, requeue: availabilityPoll},
		{name: "pull request: closed unmerged rolls back", status: waitingPR, memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing, forge: true, pr: pr(forge.StateClosed),
			action: record.ActionRollback, phase: record.PhaseRolledBack, step: "rollback", subject: "shop: rolled back at 20% (pull request #7 closed by jane)", apply: "rollback", prOp: PullRequestRetire, requeue: 30 * time.Second},
		{name: "pull request: gates failing while it is open count", status: waitingPR, memo: &checked{}, after: 30 * time.Second, avail: up, gates: failing, forge: true, pr: pr(forge.StateOpen),
			action: record.ActionCheck, phase: record.PhaseWaiting, step: "canary-20", subject: "shop: check failed at 20%", prOp: PullRequestRefresh, requeue: 30 * time.Second},
		{name: "pull request: approved in spec.approvals instead, advances and retires it", spec: func(r *specs.Release) {
			r.Spec.Approvals = []specs.Approval{{Stage: "wide", Candidate: "v2"}}
		}, status: waitingPR, memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing, forge: true, pr: pr(forge.StateOpen),
			action: record.ActionAdvance, phase: record.PhaseProgressing, step: "wide-50", subject: "shop: 20% -> 50%", apply: "wide-50", prOp: PullRequestRetire, need: NeedAvailability},

		// Release window: 09:00-09:30 UTC every day; t0 is 10:00.
		{name: "window: closed, the next step waits until it opens", spec: func(r *specs.Release) {
			approveCanary(r)
			r.Spec.Window = &specs.Window{Schedule: "0 9 * * *", Duration: specs.Duration{Duration: 30 * time.Minute}}
		},
			status: at(1, "dark-launch", record.PhaseProgressing), memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing,
			action: record.ActionWait, phase: record.PhaseWaiting, step: "dark-launch", subject: "shop: dark-launch passed; canary-10 waits for the release window", requeue: waitPoll},
		{name: "window: closed, looked at again when it opens if sooner", spec: func(r *specs.Release) {
			approveCanary(r)
			r.Spec.Window = &specs.Window{Schedule: "1 10 * * *", Duration: specs.Duration{Duration: 30 * time.Minute}}
		},
			status: at(1, "dark-launch", record.PhaseProgressing), memo: &checked{}, after: 40 * time.Second, avail: up, gates: passing,
			action: record.ActionWait, phase: record.PhaseWaiting, step: "dark-launch", requeue: 20 * time.Second},
		{name: "window: reopened, the waiting release advances", spec: func(r *specs.Release) {
			approveCanary(r)
			r.Spec.Window = &specs.Window{Schedule: "0 10 * * *", Duration: specs.Duration{Duration: 30 * time.Minute}}
		},
			status: with(at(1, "dark-launch", record.PhaseWaiting), func(s *record.Status) { s.Message = "canary-10 waits for the release window" }), memo: &checked{}, after: 30 * time.Second, avail: up, gates: passing,
			action: record.ActionAdvance, phase: record.PhaseProgressing, step: "canary-10", apply: "canary-10", need: NeedAvailability},
		{name: "window: closed never holds a rollback", spec: func(r *specs.Release) {
			r.Spec.Window = &specs.Window{Schedule: "0 9 * * *", Duration: specs.Duration{Duration: 30 * time.Minute}}
		},
			status: with(at(2, "canary-10", record.PhaseProgressing), func(s *record.Status) { s.FailedChecks = 1 }), memo: &checked{}, after: 30 * time.Second, avail: up, gates: failing,
			action: record.ActionRollback, phase: record.PhaseRolledBack, step: "rollback", apply: "rollback", requeue: 30 * time.Second},

		// Rolled back, retry.
		{name: "rolled back: held, re-applied", status: with(at(2, "rollback", record.PhaseRolledBack), func(s *record.Status) { s.Weight = 0 }),
			apply: "rollback", requeue: 5 * time.Minute},
		{name: "retry: spec.retry changed starts the candidate again", spec: func(r *specs.Release) { r.Spec.Retry = "1" }, status: at(2, "rollback", record.PhaseRolledBack),
			action: record.ActionRetry, phase: record.PhaseProgressing, step: "deploy", subject: "shop: retry v2 at deploy", apply: "deploy", need: NeedAvailability},
		{name: "retry: the same spec.retry as at the rollback holds", spec: func(r *specs.Release) { r.Spec.Retry = "1" }, status: with(at(2, "rollback", record.PhaseRolledBack), func(s *record.Status) { s.Retry = "1" }),
			apply: "rollback", requeue: 5 * time.Minute},

		// Promotion.
		{name: "promote: the promote step available records the promotion and edits the spec", status: at(5, "promote", record.PhaseProgressing), memo: &checked{}, after: 5 * time.Second, avail: up,
			action: record.ActionPromote, requeue: 30 * time.Second, phase: record.PhasePromoted, step: "promote", subject: "shop: promoted v2 (v1 retired)"},
		{name: "promoted: a spec still naming the candidate is held at promote", status: with(at(5, "promote", record.PhasePromoted), func(s *record.Status) { s.Stable = "v2" }),
			apply: "promote", requeue: 5 * time.Minute},
		{name: "promoted: the promotion edit synced, steady records nothing", spec: func(r *specs.Release) { r.Spec.Stable, r.Spec.Candidate = "v2", "" },
			status: with(at(5, "promote", record.PhasePromoted), func(s *record.Status) { s.Stable = "v2" }),
			apply:  "stable", requeue: 5 * time.Minute},

		// Drain: a version that lost its traffic keeps running for the
		// drain delay (30s by default), then is retired with a record.
		{name: "drain: the promotion drains the old stable", status: at(5, "promote", record.PhaseProgressing), memo: &checked{}, after: 5 * time.Second, avail: up,
			action: record.ActionPromote, requeue: 30 * time.Second, phase: record.PhasePromoted, step: "promote",
			check: func(t *testing.T, d Decision) {
				if got := drains(d); got != "v1 until 10:00:35" {
					t.Errorf("draining %q", got)
				}
			}},
		{name: "drain: the rollback drains the candidate", status: with(at(2, "canary-10", record.PhaseProgressing), func(s *record.Status) { s.FailedChecks = 1 }), memo: &checked{}, after: 30 * time.Second, avail: up, gates: failing,
			action: record.ActionRollback, phase: record.PhaseRolledBack, step: "rollback", apply: "rollback", requeue: 30 * time.Second,
			check: func(t *testing.T, d Decision) {
				if got, ver := drains(d), applied(d); got != "v2 until 10:01:00" || ver != "v1,v2" {
					t.Errorf("draining %q, applied versions %s", got, ver)
				}
			}},
		{name: "drain: none with drain 0", spec: func(r *specs.Release) { r.Spec.Analysis.Drain = &specs.Duration{} }, status: with(at(2, "canary-10", record.PhaseProgressing), func(s *record.Status) { s.FailedChecks = 1 }), memo: &checked{}, after: 30 * time.Second, avail: up, gates: failing,
			action: record.ActionRollback, phase: record.PhaseRolledBack, step: "rollback", apply: "rollback", requeue: 5 * time.Minute,
			check: func(t *testing.T, d Decision) {
				if got, ver := drains(d), applied(d); got != "" || ver != "v1" {
					t.Errorf("draining %q, applied versions %s", got, ver)
				}
			}},
		{name: "drain: while it drains the steady state keeps the old version and looks again when it ends",
			spec: func(r *specs.Release) { r.Spec.Stable, r.Spec.Candidate = "v2", "" },
			status: with(at(5, "promote", record.PhasePromoted), func(s *record.Status) {
				s.Stable = "v2"
				s.Draining = []record.Drain{{Version: "v1", Until: t0.Add(30 * time.Second)}}
			}),
			after: 10 * time.Second, apply: "stable", requeue: 20 * time.Second,
			check: func(t *testing.T, d Decision) {
				if ver := applied(d); ver != "v2,v1" {
					t.Errorf("applied versions %s, want v2,v1", ver)
				}
			}},
		{name: "drain: over, the version is retired with a record, then applied without it",
			spec: func(r *specs.Release) { r.Spec.Stable, r.Spec.Candidate = "v2", "" },
			status: with(at(5, "promote", record.PhasePromoted), func(s *record.Status) {
				s.Stable = "v2"
				s.Draining = []record.Drain{{Version: "v1", Until: t0.Add(30 * time.Second)}}
			}),
			after: 30 * time.Second, action: record.ActionRetire, phase: record.PhasePromoted, step: "promote", subject: "shop: v1 retired after draining", need: NeedNext,
			check: func(t *testing.T, d Decision) {
				if len(d.Status.Draining) != 0 {
					t.Errorf("still draining %v", d.Status.Draining)
				}
			}},
		{name: "drain: a rolled-back candidate's retirement keeps the rollback's message",
			status: with(at(2, "rollback", record.PhaseRolledBack), func(s *record.Status) {
				s.Message = "rolled back at canary-10: success-rate 90 < 99"
				s.Draining = []record.Drain{{Version: "v2", Until: t0}}
			}),
			action: record.ActionRetire, phase: record.PhaseRolledBack, step: "rollback", subject: "shop: v2 retired after draining", need: NeedNext,
			check: func(t *testing.T, d Decision) {
				if d.Status.Message != "rolled back at canary-10: success-rate 90 < 99" {
					t.Errorf("message %q", d.Status.Message)
				}
			}},
		{name: "drain: a new candidate keeps a drain running; the old candidate drains too", spec: func(r *specs.Release) { r.Spec.Candidate = "v2" },
			status: with(at(2, "canary-10", record.PhaseProgressing), func(s *record.Status) {
				s.Candidate = "v3"
				s.Draining = []record.Drain{{Version: "v0", Until: t0.Add(time.Minute)}}
			}),
			after: 10 * time.Second, action: record.ActionAbandon, phase: record.PhaseProgressing, step: "deploy", apply: "deploy", need: NeedAvailability,
			check: func(t *testing.T, d Decision) {
				if got := drains(d); got != "v0 until 10:01:00, v3 until 10:00:40" {
					t.Errorf("draining %q", got)
				}
			}},
		{name: "drain: a new candidate that is the draining version ends its drain", spec: func(r *specs.Release) { r.Spec.Retry = "1" },
			status: with(at(2, "rollback", record.PhaseRolledBack), func(s *record.Status) { s.Draining = []record.Drain{{Version: "v2", Until: t0.Add(time.Minute)}} }),
			after:  10 * time.Second, action: record.ActionRetry, phase: record.PhaseProgressing, step: "deploy", apply: "deploy", need: NeedAvailability,
			check: func(t *testing.T, d Decision) {
				if got := drains(d); got != "" {
					t.Errorf("draining %q", got)
				}
			}},

		// Stages changed, invalid specs.
		{name: "stages changed under a running release: start again", status: at(3, "canary-30", record.PhaseProgressing),
			action: record.ActionStart, phase: record.PhaseProgressing, step: "deploy", subject: "shop: stages changed at canary-30; start v2 again at deploy", apply: "deploy", need: NeedAvailability},
		{name: "invalid: recorded once", invald: errors.New("releases/shop.yaml:12: spec.stable: version v9 is not in spec.versions"), status: at(2, "canary-10", record.PhaseProgressing),
			action: record.ActionInvalid, phase: record.PhaseInvalid, step: "canary-10", subject: "shop: invalid release spec, skipped"},
		{name: "invalid: the same error again records nothing", invald: errors.New("boom"), status: with(at(2, "canary-10", record.PhaseInvalid), func(s *record.Status) { s.Message = "boom" })},
		{name: "invalid: a new error is recorded", invald: errors.New("boom 2"), status: with(at(2, "canary-10", record.PhaseInvalid), func(s *record.Status) { s.Message = "boom" }),
			action: record.ActionInvalid, phase: record.PhaseInvalid, step: "canary-10"},
		{name: "fixed: resumes at the recorded step", status: with(at(2, "canary-10", record.PhaseInvalid), func(s *record.Status) { s.Message = "boom" }),
			action: record.ActionResume, phase: record.PhaseProgressing, step: "canary-10", subject: "shop: spec valid again; resume at 10%", apply: "canary-10", need: NeedAvailability},
		{name: "fixed: a rolled-back release resumes rolled back", status: with(at(2, "rollback", record.PhaseInvalid), func(s *record.Status) { s.Message = "boom" }),
			action: record.ActionResume, phase: record.PhaseRolledBack, step: "rollback", subject: "shop: spec valid again; RolledBack", apply: "rollback", requeue: 5 * time.Minute},

		// Blocked: the reconcile keeps failing for one reason.
		{name: "blocked: failing a while for one reason is recorded", status: at(2, "canary-10", record.PhaseProgressing), after: time.Minute,
			failure: &Failure{Reason: "apply web/shop step canary-10: namespaces \"web\" not found", Count: 3, Since: t0.Add(45 * time.Second)},
			action:  record.ActionBlock, phase: record.PhaseBlocked, step: "canary-10", subject: "shop: blocked at canary-10 (3 attempts since 10:00:45Z): apply web/shop", apply: "canary-10", need: NeedAvailability,
			check: func(t *testing.T, d Decision) {
				if r := d.Status.Resume; r == nil || r.Phase != record.PhaseProgressing || !r.Since.Equal(t0) {
					t.Errorf("resume %+v, want Progressing since t0", r)
				}
				if !strings.Contains(d.Status.Message, "not found") {
					t.Errorf("message %q", d.Status.Message)
				}
			}},
		{name: "blocked: a few quick failures are not", status: at(2, "canary-10", record.PhaseProgressing), after: time.Minute,
			failure: &Failure{Reason: "conflict", Count: 5, Since: t0.Add(55 * time.Second)},
			apply:   "canary-10", need: NeedAvailability},
		{name: "blocked: two failures over a long time are not", status: at(2, "canary-10", record.PhaseProgressing), after: time.Minute,
			failure: &Failure{Reason: "conflict", Count: 2, Since: t0},
			apply:   "canary-10", need: NeedAvailability},
		{name: "blocked: the same reason again records nothing and tries again", status: blockedAt, after: time.Hour,
			failure: &Failure{Reason: "namespaces \"web\" not found", Count: 40, Since: t0},
			apply:   "canary-10", need: NeedAvailability},
		{name: "blocked: a new reason is recorded, the resume point kept", status: blockedAt, after: time.Hour,
			failure: &Failure{Reason: "forbidden", Count: 3, Since: t0.Add(30 * time.Minute)},
			action:  record.ActionBlock, phase: record.PhaseBlocked, step: "canary-10", subject: "forbidden", apply: "canary-10", need: NeedAvailability,
			check: func(t *testing.T, d Decision) {
				if r := d.Status.Resume; r == nil || r.Phase != record.PhaseProgressing || !d.Status.Since.Equal(t0) {
					t.Errorf("resume %+v since %s, want Progressing, blocked since t0", r, d.Status.Since)
				}
			}},
		{name: "blocked: a restarted Sluice (no failure in memory) tries the step first", status: blockedAt, after: time.Hour,
			apply: "canary-10", need: NeedAvailability},
		{name: "blocked: the cause is gone: unblocked, the step's clock starts again", status: blockedAt, after: time.Hour, avail: up,
			action: record.ActionResume, phase: record.PhaseProgressing, step: "canary-10", subject: "shop: unblocked; Progressing at canary-10", need: NeedNext,
			check: func(t *testing.T, d Decision) {
				if d.Status.Resume != nil || d.Status.Message != "" || !d.Status.Since.Equal(t0.Add(time.Hour)) {
					t.Errorf("resumed %+v", d.Status)
				}
			}},
		{name: "blocked past the progress deadline: unblocked, not rolled back (the step never ran)", status: blockedAt, after: time.Hour, avail: down,
			action: record.ActionResume, phase: record.PhaseProgressing, step: "canary-10", subject: "shop: unblocked; Progressing at canary-10", need: NeedNext},
		{name: "blocked when steady: the apply is made before unblocking", spec: func(r *specs.Release) { r.Spec.Candidate = "" }, status: blockedSteady, after: time.Hour,
			apply: "stable", need: NeedApplied},
		{name: "blocked when steady: applied: unblocked, since as it was", spec: func(r *specs.Release) { r.Spec.Candidate = "" }, status: blockedSteady, after: time.Hour, applied: true,
			action: record.ActionResume, phase: record.PhaseSteady, step: "stable", subject: "shop: unblocked; Steady", apply: "stable", need: NeedNext,
			check: func(t *testing.T, d Decision) {
				if !d.Status.Since.Equal(t0.Add(-time.Hour)) {
					t.Errorf("since %s, want as before the block", d.Status.Since)
				}
			}},
		{name: "blocked: a transition leaves Blocked (abort)", spec: func(r *specs.Release) { r.Spec.Abort = "v2" }, status: blockedAt, after: time.Hour,
			failure: &Failure{Reason: "namespaces \"web\" not found", Count: 40, Since: t0},
			action:  record.ActionRollback, phase: record.PhaseRolledBack, step: "rollback", apply: "rollback", requeue: 30 * time.Second,
			check: func(t *testing.T, d Decision) {
				if d.Status.Resume != nil {
					t.Errorf("resume kept: %+v", d.Status.Resume)
				}
			}},
		{name: "blocked: an invalid spec is never blocked", invald: errors.New("boom"), status: with(at(2, "canary-10", record.PhaseInvalid), func(s *record.Status) { s.Message = "boom" }),
			failure: &Failure{Reason: "x", Count: 9, Since: t0.Add(-time.Hour)}},

		// A person's actions: abort, pause and resume, skip the analysis.
		{name: "abort: spec.abort names the candidate: rolled back now", spec: func(r *specs.Release) { r.Spec.Abort = "v2" }, status: at(3, "canary-20", record.PhaseProgressing), after: time.Second,
			action: record.ActionRollback, phase: record.PhaseRolledBack, step: "rollback", subject: "shop: rolled back at 20% (aborted: spec.abort names v2)", apply: "rollback", requeue: 30 * time.Second},
		{name: "abort: waiting on a pull request retires it", spec: func(r *specs.Release) { r.Spec.Abort = "v2" }, status: waitingPR, forge: true,
			action: record.ActionRollback, phase: record.PhaseRolledBack, step: "rollback", apply: "rollback", requeue: 30 * time.Second, prOp: PullRequestRetire},
		{name: "abort: naming another version does nothing", spec: func(r *specs.Release) { r.Spec.Abort = "v1" }, status: at(3, "canary-20", record.PhaseProgressing),
			apply: "canary-20", need: NeedAvailability},
		{name: "abort: a rolled-back release stays rolled back", spec: func(r *specs.Release) { r.Spec.Abort = "v2" }, status: at(3, "rollback", record.PhaseRolledBack),
			apply: "rollback", requeue: 5 * time.Minute},
		{name: "pause: recorded once, the step held", spec: func(r *specs.Release) { r.Spec.Paused = true }, status: at(3, "canary-20", record.PhaseProgressing), after: time.Minute,
			action: record.ActionPause, phase: record.PhasePaused, step: "canary-20", subject: "shop: paused at 20%", apply: "canary-20", requeue: 5 * time.Minute},
		{name: "pause: held, no gates, no deadline", spec: func(r *specs.Release) { r.Spec.Paused = true }, status: pausedAt, after: time.Hour,
			apply: "canary-20", requeue: 5 * time.Minute},
		{name: "pause: while waiting on a pull request it stays open", spec: func(r *specs.Release) { r.Spec.Paused = true }, status: waitingPR, forge: true,
			action: record.ActionPause, phase: record.PhasePaused, step: "canary-20", apply: "canary-20", requeue: 5 * time.Minute,
			check: func(t *testing.T, d Decision) {
				if d.Status.PullRequest == nil || d.Status.Resume == nil || d.Status.Resume.Phase != record.PhaseWaiting {
					t.Errorf("pull request %+v, resume %+v", d.Status.PullRequest, d.Status.Resume)
				}
			}},
		{name: "resume: unpaused, the step's checks start over", status: pausedAt, after: time.Hour,
			action: record.ActionResume, phase: record.PhaseProgressing, step: "canary-20", subject: "shop: resumed at 20%", apply: "canary-20", need: NeedAvailability,
			check: func(t *testing.T, d Decision) {
				if !d.Status.Since.Equal(t0.Add(time.Hour)) || d.Status.Message != "" || d.Status.Resume != nil {
					t.Errorf("resumed %+v", d.Status)
				}
			}},
		{name: "pause: an abort still rolls back", spec: func(r *specs.Release) { r.Spec.Paused, r.Spec.Abort = true, "v2" }, status: pausedAt,
			action: record.ActionRollback, phase: record.PhaseRolledBack, step: "rollback", apply: "rollback", requeue: 30 * time.Second},
		{name: "skip analysis: straight to the promote step", spec: func(r *specs.Release) { r.Spec.SkipAnalysis = "v2" }, status: at(2, "canary-10", record.PhaseProgressing),
			action: record.ActionAdvance, phase: record.PhaseProgressing, step: "promote", subject: "shop: 10% -> promote (analysis skipped: spec.skipAnalysis names v2)", apply: "promote", need: NeedAvailability},
		{name: "skip analysis: at the promote step, promoted when available", spec: func(r *specs.Release) { r.Spec.SkipAnalysis = "v2" }, status: at(5, "promote", record.PhaseProgressing), avail: up,
			action: record.ActionPromote, phase: record.PhasePromoted, step: "promote", requeue: 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rel := machineRelease(t, tc.spec)
			in := Input{
				Now: t0.Add(tc.after), Release: "web/shop", Namespace: "web", Name: "shop", File: "releases/shop.yaml",
				Spec: rel, Invalid: tc.invald, Status: tc.status, Head: "head", Forge: tc.forge, Watched: tc.watched,
				ProgressDeadline: 10 * time.Minute, ReapplyInterval: 5 * time.Minute,
				Available: tc.avail, Gates: tc.gates, PullRequest: tc.pr,
				Failure: tc.failure, Applied: tc.applied,
			}
			if tc.invald != nil {
				in.Spec = nil
			} else if rel.Spec.Candidate != "" {
				steps, err := specs.Plan(rel)
				if err != nil {
					t.Fatal(err)
				}
				in.Revision, in.Plan = "rev2", steps
			}
			if tc.memo != nil && tc.status != nil {
				in.Memo = Memo{Key: memoKey(tc.status), Passed: tc.memo.passed,
					LastCheck: t0.Add(tc.memo.last), StepSeen: t0.Add(tc.after)}
				if tc.memo.dataSeen != 0 {
					in.Memo.DataSeen = t0.Add(tc.memo.dataSeen)
				}
			}
			d := Decide(in)
			if d.Action != tc.action {
				t.Fatalf("action %q, want %q (subject %q, note %q)", d.Action, tc.action, d.Subject, d.Note)
			}
			if tc.action != "" {
				if d.Status == nil {
					t.Fatal("an action without a record")
				}
				if d.Status.Phase != tc.phase || d.Status.Step != tc.step {
					t.Errorf("record at %s %s, want %s %s", d.Status.Phase, d.Status.Step, tc.phase, tc.step)
				}
				if !strings.Contains(d.Subject, tc.subject) {
					t.Errorf("subject %q, want it to contain %q", d.Subject, tc.subject)
				}
				// A record of a new step or phase starts its clock; a wait, a
				// failed check or a resume keeps the step's (the counters in
				// memory belong to it).
				switch d.Action {
				case record.ActionWait, record.ActionCheck, record.ActionResume:
					if tc.status != nil && !d.Status.Since.Equal(tc.status.Since) && d.Status.Phase == tc.status.Phase {
						t.Errorf("%s moved since to %s", d.Action, d.Status.Since)
					}
				default:
					if !d.Status.Since.Equal(in.Now) && (tc.status == nil || d.Status.Phase != tc.status.Phase || d.Status.Step != tc.status.Step) {
						t.Errorf("a new phase or step since %s, want now", d.Status.Since)
					}
				}
			}
			apply := ""
			if d.Apply != nil {
				apply = d.Apply.Name
			}
			if apply != tc.apply {
				t.Errorf("applies %q, want %q", apply, tc.apply)
			}
			if d.Need != tc.need {
				t.Errorf("needs %v, want %v", d.Need, tc.need)
			}
			if d.Requeue != tc.requeue {
				t.Errorf("requeue %s, want %s", d.Requeue, tc.requeue)
			}
			if d.PullRequest.Op != tc.prOp {
				t.Errorf("pull request op %v, want %v", d.PullRequest.Op, tc.prOp)
			}
			if d.Sync != tc.sync {
				t.Errorf("sync %v, want %v", d.Sync, tc.sync)
			}
			if d.PromoteSpec != (tc.action == record.ActionPromote) {
				t.Errorf("promote spec edit %v with action %s", d.PromoteSpec, d.Action)
			}
			if tc.check != nil {
				tc.check(t, d)
			}
		})
	}
}

// TestMachineMemo checks what the machine remembers between reconciles.
func TestMachineMemo(t *testing.T) {
	rel, steps := machinePlan(t, nil)
	st := at(2, "canary-10", record.PhaseProgressing)
	base := Input{Now: t0.Add(30 * time.Second), Release: "web/shop", Namespace: "web", Name: "shop", File: "releases/shop.yaml",
		Spec: rel, Revision: "rev2", Plan: steps, Status: st, ProgressDeadline: 10 * time.Minute, ReapplyInterval: 5 * time.Minute,
		Memo: Memo{Key: memoKey(st), LastCheck: t0, Passed: 1}, Available: up}

	in := base
	in.Gates = passing
	if d := Decide(in); !d.Memo.DataSeen.Equal(in.Now) || !d.Memo.LastCheck.Equal(in.Now) {
		t.Errorf("data: memo %+v, want data seen and checked now", d.Memo)
	}
	in.Gates = noData
	if d := Decide(in); !d.Memo.DataSeen.IsZero() {
		t.Errorf("no data: memo %+v, want no data seen", d.Memo)
	}
	in.Gates = promErr
	if d := Decide(in); d.Memo.LastErr != promErr.Err.Error() || d.Action != "" {
		t.Errorf("Prometheus error: memo %+v action %q, want the error and nothing recorded", d.Memo, d.Action)
	}
	// A memo of another step is forgotten: the new step checks afresh.
	in = base
	in.Memo.Key = "rev2/canary-20/" + t0.Format(time.RFC3339)
	if d := Decide(in); !d.Memo.LastCheck.Equal(in.Now) || d.Memo.Passed != 0 || d.Requeue != 30*time.Second {
		t.Errorf("stale memo: %+v requeue %s, want a fresh one whose first check is an interval away", d.Memo, d.Requeue)
	}
	// Waiting keeps the passed checks, so the approval advances at once.
	in = base
	in.Status = at(1, "dark-launch", record.PhaseProgressing)
	in.Memo = Memo{Key: memoKey(in.Status), LastCheck: t0}
	in.Gates = passing
	d := Decide(in)
	if d.Action != record.ActionWait || d.Memo.Passed != 1 {
		t.Fatalf("wait: %s memo %+v", d.Action, d.Memo)
	}
	in.Status, in.Memo, in.Gates = d.Status, d.Memo, nil
	in.Spec = machineRelease(t, func(r *specs.Release) { r.Spec.Approvals = []specs.Approval{{Stage: "canary", Candidate: "v2"}} })
	in.Now = in.Now.Add(waitPoll)
	if d := Decide(in); d.Need != NeedGates {
		t.Fatalf("after the approval: need %v, want the gates checked", d.Need)
	}
}

// TestMachineWalk drives a whole release through the machine as the
// executor would, with every gate passing and every approval given: from
// the push to the promotion, one record per step, and the machine settles
// in a few rounds each time.
func TestMachineWalk(t *testing.T) {
	rel := machineRelease(t, func(r *specs.Release) {
		r.Spec.Approvals = []specs.Approval{{Stage: "canary", Candidate: "v2"}, {Stage: "wide", Candidate: "v2"}}
	})
	steps, err := specs.Plan(rel)
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Now: t0, Release: "web/shop", Namespace: "web", Name: "shop", File: "releases/shop.yaml",
		Spec: rel, Revision: "rev2", Plan: steps, ProgressDeadline: 10 * time.Minute, ReapplyInterval: 5 * time.Minute}
	var actions []string
	for reconcile := 0; reconcile < 100; reconcile++ {
		in.Available, in.Gates, in.PullRequest = nil, nil, nil
		var d Decision
		for round := 0; ; round++ {
			if round == maxRounds {
				t.Fatalf("reconcile %d did not settle", reconcile)
			}
			d = Decide(in)
			in.Memo = d.Memo
			if d.Action != "" {
				in.Status = d.Status
				actions = append(actions, string(d.Action)+" "+d.Status.Step)
			}
			if d.Need == NeedNothing {
				break
			}
			switch d.Need {
			case NeedAvailability:
				in.Available = up
			case NeedGates:
				in.Gates = passing
				if len(in.Plan[in.Status.StepIndex].Gates.Metrics) == 0 {
					in.Gates = &GateCheck{Verdict: VerdictPass}
				}
			}
		}
		if in.Status.Phase == record.PhasePromoted {
			break
		}
		if d.Requeue <= 0 {
			t.Fatalf("reconcile %d: the release stopped at %s %s", reconcile, in.Status.Phase, in.Status.Step)
		}
		in.Now = in.Now.Add(d.Requeue)
	}
	want := "start deploy, advance dark-launch, advance canary-10, advance canary-20, advance wide-50, advance promote, promote promote"
	if got := strings.Join(actions, ", "); got != want {
		t.Errorf("records:\n  %s\nwant:\n  %s", got, want)
	}
	// deploy: up at once, one interval; then five checked steps of one
	// interval each after a poll; the promote step is up at once.
	if took := in.Now.Sub(t0); took > 4*time.Minute {
		t.Errorf("the walk took %s of the release's time", took)
	}
}

// TestMachineSharedSpec: a spec shared by several clusters is promoted in
// Git by the last of them to promote the candidate; each records its own
// promotion, and none switches another to the candidate early.
func TestMachineSharedSpec(t *testing.T) {
	shared := func(r *specs.Release) { r.Spec.Clusters = []string{"staging", "prod", "edge"} }
	promoted := with(at(5, "promote", record.PhasePromoted), func(s *record.Status) { s.Stable = "v2" })
	steady := &record.Status{Release: "web/shop", Phase: record.PhaseSteady, Stable: "v1", Step: "stable"}
	otherRev := with(promoted, func(s *record.Status) { s.Revision = "rev1" })
	blockedPromoted := with(promoted, func(s *record.Status) {
		s.Phase, s.Resume = record.PhaseBlocked, &record.Resume{Phase: record.PhasePromoted, Since: t0}
	})
	tests := []struct {
		name    string
		cluster string
		spec    func(*specs.Release)
		status  *record.Status
		peers   map[string]*record.Status
		action  record.Action
		edit    bool
		subject string
		apply   []string // the versions applied; a promotion applies nothing (the promote step is)
	}{
		{name: "the first cluster to promote records its own promotion alone", cluster: "staging", spec: shared, status: at(5, "promote", record.PhaseProgressing),
			peers:  map[string]*record.Status{"prod": steady, "edge": at(3, "canary-20", record.PhaseProgressing)},
			action: record.ActionPromote, subject: "shop: promoted v2 on staging (v1 retired); edge, prod yet to promote"},
		{name: "a cluster's promotion of another revision does not count", cluster: "staging", spec: shared, status: at(5, "promote", record.PhaseProgressing),
			peers:  map[string]*record.Status{"prod": promoted, "edge": otherRev},
			action: record.ActionPromote, subject: "; edge yet to promote"},
		{name: "the last cluster to promote edits the spec", cluster: "staging", spec: shared, status: at(5, "promote", record.PhaseProgressing),
			peers:  map[string]*record.Status{"prod": promoted, "edge": blockedPromoted},
			action: record.ActionPromote, edit: true, subject: "shop: promoted v2 on staging (v1 retired); promoted on every cluster, the spec names it stable"},
		{name: "promoted here, others yet to: held on the candidate alone, nothing recorded", cluster: "staging", spec: shared, status: promoted,
			peers: map[string]*record.Status{"prod": promoted}, apply: []string{"v2"}},
		{name: "promoted everywhere but the spec not edited: edited now", cluster: "prod", spec: shared, status: promoted,
			peers:  map[string]*record.Status{"staging": promoted, "edge": promoted},
			action: record.ActionPromote, edit: true, subject: "shop: v2 promoted on every cluster (staging, prod, edge); the spec names it stable", apply: []string{"v2"}},
		{name: "a spec naming one cluster is promoted by it", cluster: "staging", spec: func(r *specs.Release) { r.Spec.Clusters = []string{"staging"} }, status: at(5, "promote", record.PhaseProgressing),
			action: record.ActionPromote, edit: true, subject: "shop: promoted v2 (v1 retired)"},
		{name: "a Sluice without a cluster promotes the spec", spec: shared, status: at(5, "promote", record.PhaseProgressing),
			action: record.ActionPromote, edit: true, subject: "shop: promoted v2 (v1 retired)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rel, steps := machinePlan(t, tc.spec)
			in := Input{Now: t0.Add(5 * time.Second), Release: "web/shop", Namespace: "web", Name: "shop", File: "releases/shop.yaml",
				Spec: rel, Revision: "rev2", Plan: steps, Status: tc.status, ProgressDeadline: 10 * time.Minute, ReapplyInterval: 5 * time.Minute,
				Memo: Memo{Key: memoKey(tc.status), LastCheck: t0, StepSeen: t0}, Available: up, Cluster: tc.cluster, Peers: tc.peers}
			d := Decide(in)
			if d.Action != tc.action {
				t.Fatalf("action %q, want %q (subject %q)", d.Action, tc.action, d.Subject)
			}
			if d.PromoteSpec != tc.edit {
				t.Errorf("spec edited: %v, want %v", d.PromoteSpec, tc.edit)
			}
			if !strings.Contains(d.Subject, tc.subject) {
				t.Errorf("subject %q, want it to contain %q", d.Subject, tc.subject)
			}
			if d.Action != "" && (d.Status.Phase != record.PhasePromoted || d.Status.Stable != "v2") {
				t.Errorf("record %s stable %s, want Promoted on v2", d.Status.Phase, d.Status.Stable)
			}
			var applied []string
			if d.Apply != nil {
				applied = d.Apply.Versions
			}
			if !slices.Equal(applied, tc.apply) {
				t.Errorf("applies %v, want %v", applied, tc.apply)
			}
		})
	}
}
