package reconciler

// The release state machine: every state a release can be in and every
// transition between them, decided by one pure function from what was
// observed. The executor (execute.go) gathers the observations Decide asks
// for, records each decision in Git and only then applies it.
//
//	             new candidate (or new revision)
//	  Steady ─────────────────────────────────────▶ Progressing(step 0)
//	    ▲  candidate withdrawn                        │   ▲ advance (gates passed
//	    └──────────────────────────────────────────── │   │  iterations times)
//	                                                  ▼   │
//	                               Waiting (approval, window, pull request)
//	                                                  │
//	  RolledBack ◀── threshold failed checks, progress deadline, closed PR
//	    │ spec.retry changed, new candidate: start again
//	  Promoted ◀── the promote step is available: the spec names the candidate stable
//	  Invalid  ◀── the spec cannot run; valid again: back where it was (resume)
//	  Paused   ◀── spec.paused while Progressing or Waiting; removed: back (resume)
//	  Blocked  ◀── the reconcile fails for one reason, again and again; it
//	               succeeds again: back where it was (resume)
//	  RolledBack ◀── spec.abort names the candidate (a person's abort)
//	  Progressing(promote) ◀── spec.skipAnalysis names the candidate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"sluice.dev/sluice/forge"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

// Times a release is looked at again while it waits on something that
// does not announce itself.
const (
	// availabilityPoll is how often availability is looked at when nothing
	// announces it; availabilityFallback when the cluster's watches do
	// (Input.Watched), in case an event is missed.
	availabilityPoll     = 2 * time.Second
	availabilityFallback = 30 * time.Second
	waitPoll             = 30 * time.Second
)

// Input is what was observed of one release at one moment: everything
// Decide needs, and nothing it must fetch itself.
type Input struct {
	Now time.Time
	// Release is namespace/name; File the spec file that defines it.
	Release, Namespace, Name, File string
	// Spec is the release; nil when Invalid says why it cannot run.
	Spec    *specs.Release
	Invalid error
	// Revision is the candidate's content revision and Plan its steps
	// (both unset without a candidate).
	Revision string
	Plan     []specs.Step
	// Status is the recorded status; nil when none is recorded.
	Status *record.Status
	// Head is the synced commit, recorded as the candidate's commit at its start.
	Head string
	// Memo is what this process remembers of the current step.
	Memo Memo
	// Forge is set when Sluice runs with a forge (approval pull requests).
	Forge bool
	// Watched is set when a change in the workloads' availability starts
	// a reconcile by itself (the cluster's watches).
	Watched bool
	// ProgressDeadline bounds how long a step may take to become
	// available; ReapplyInterval is how often a held step is re-applied.
	ProgressDeadline, ReapplyInterval time.Duration

	// Failure is the error the release's last reconciles failed with, if
	// they did: the same reason for long enough blocks the release.
	Failure *Failure

	// Observations Decide asked for with Need; nil until made.
	Available   *Availability
	Gates       *GateCheck
	PullRequest *PullRequestState
	Hooks       *HookCheck
	// Applied is set once Decision.Apply was applied in this reconcile
	// (NeedApplied).
	Applied bool

	// Cluster is this Sluice's cluster (sluice run --cluster), and Peers
	// the release's records on the other clusters its spec.clusters
	// names, from their status files (nil where none is recorded). They
	// matter only to a spec shared by several clusters (sharedSpec).
	Cluster string
	Peers   map[string]*record.Status
}

// Failure is a run of reconciles of one release that failed for the same
// reason (an apply the API server refuses, a missing namespace). Failures
// to record in Git are not counted: they are not the release's.
type Failure struct {
	Reason string
	// Count is how many reconciles in a row failed with Reason, from Since.
	Count int
	Since time.Time
}

// A release blocks after blockAttempts reconciles in a row over at least
// blockAfter fail for one reason: long enough that a conflict the next
// retry resolves is not recorded, short enough that a person sees it.
const (
	blockAttempts = 3
	blockAfter    = 10 * time.Second
)

func (f *Failure) persistent(now time.Time) bool {
	return f != nil && f.Count >= blockAttempts && now.Sub(f.Since) >= blockAfter
}

// Memo is what Sluice keeps of a step in memory only: counters a restart
// may safely forget (it re-waits and re-checks).
type Memo struct {
	// Key names the step the counters belong to (revision/step/since).
	Key string
	// Passed counts passing checks in a row.
	Passed int
	// DataSeen is when a check last had data: a run of checks without
	// data (recorded in the status) ends there.
	DataSeen time.Time
	// LastCheck is when the gates were last evaluated (or when the step's
	// workloads became available, before the first check).
	LastCheck time.Time
	// LastErr is the Prometheus error of the last check, if any.
	LastErr string
	// StepSeen is when this process first saw the current step.
	StepSeen time.Time
	// PreStep names the step whose pre-step webhooks passed, with their
	// values (hooks.go).
	PreStep       string
	PreStepValues []record.GateValue
}

// Availability is whether the step's workloads are up.
type Availability struct {
	OK bool
	// Workload and Reason say which one is not, and why.
	Workload, Reason string
}

// Verdict is the outcome of one check of a step's gates.
type Verdict int

// Verdicts of a check.
const (
	VerdictPass Verdict = iota
	VerdictFail
	// VerdictNoData: a metric has no data (and none failed). The step's
	// noData policy says whether it holds or counts as a failed check.
	VerdictNoData
)

// GateCheck is one evaluation of a step's gates.
type GateCheck struct {
	Values  []record.GateValue
	Verdict Verdict
	// Err is set when the gates could not be evaluated (Prometheus down,
	// or none configured): the check holds and counts nothing.
	Err error
}

// PullRequestState is the approval pull request as the forge shows it.
type PullRequestState struct {
	Number int64
	URL    string
	Branch string
	State  forge.State
	// By is who closed or merged it.
	By string
	// Proposed is set when the approval branch was pushed (kept fresh on
	// the watched branch) for this observation; InGit when the watched
	// branch already holds the advance it proposes (it was merged and Git
	// is ahead of the snapshot).
	Proposed, InGit bool
}

// Need is an observation Decide asks for before it can decide.
type Need int

// Observations Decide may ask for.
const (
	NeedNothing Need = iota
	// NeedAvailability: apply Decision.Apply, then see whether its workloads are up.
	NeedAvailability
	// NeedGates: evaluate the current step's gates.
	NeedGates
	// NeedPullRequest: read the pull request (Decision.PullRequest says
	// which, and whether to open it).
	NeedPullRequest
	// NeedNext: nothing to observe; decide again on the new record.
	NeedNext
	// NeedHooks: run Decision.PreStep's pre-step webhooks (hooks.go).
	NeedHooks
	// NeedApplied: apply Decision.Apply (to the cluster, not from memory),
	// then decide again with Input.Applied.
	NeedApplied
)

// PullRequestOp is what to do with an approval pull request.
type PullRequestOp int

// Pull request operations.
const (
	PullRequestNone PullRequestOp = iota
	// PullRequestEnsure: push the approval branch for Step and open its
	// pull request unless the recorded one exists; observe it.
	PullRequestEnsure
	// PullRequestRead: observe the recorded pull request.
	PullRequestRead
	// PullRequestRefresh: rewrite the open pull request's body with the
	// latest gate values.
	PullRequestRefresh
	// PullRequestRebase: push the approval branch again on the record
	// that names it, so it merges without conflict.
	PullRequestRebase
	// PullRequestRetire: the recorded pull request is moot: comment
	// Comment, close it and delete its branch.
	PullRequestRetire
)

// PullRequestAction is a pull request operation and its arguments.
type PullRequestAction struct {
	Op PullRequestOp
	// Step is the step the pull request approves (Ensure, Rebase).
	Step string
	// Index is the index of the step the release is at (Ensure, Rebase, Refresh).
	Index int
	// Ref is the pull request (Read, Refresh, Retire).
	Ref *record.PullRequestRef
	// Comment explains a retirement.
	Comment string
	// Subject is the approval branch's commit subject (Ensure, Rebase).
	Subject string
}

// Decision is what to do for a release now. The executor carries it out in
// this order: record (Action, Status, Subject, PromoteSpec) in Git; apply
// Apply; act on PullRequest; then observe Need and decide again, or look
// again after Requeue.
type Decision struct {
	// Action is the transition to record; empty when nothing is recorded.
	Action  record.Action
	Status  *record.Status
	Subject string
	// PromoteSpec edits the release spec with the promotion (the
	// candidate becomes stable) in the same commit.
	PromoteSpec bool

	// Apply is the step the cluster must hold; nil to leave it as it is.
	Apply *specs.Step
	// PullRequest is what to do with an approval pull request.
	PullRequest PullRequestAction
	// PreStep is the step whose pre-step webhooks NeedHooks runs.
	PreStep *specs.Step
	// Need is the observation to make before deciding again.
	Need Need
	// Memo is what to remember of the step after this decision.
	Memo Memo
	// Requeue is when to look again (Need unset); 0 waits for the next
	// change in Git.
	Requeue time.Duration
	// Sync asks for a Git sync at once (a merged pull request).
	Sync bool
	// Note says, for the log, why the release holds when nothing is recorded.
	Note string
}

// Decide is the release state machine: from what was observed, the next
// transition (if any), what the cluster must hold, and when to look again.
func Decide(in Input) Decision {
	if d, ok := retireDrained(in); ok {
		return d
	}
	return keepDraining(in, decideBlocked(in))
}

// decideBlocked lays the Blocked state over the machine. A Blocked release
// is decided as the phase it was blocked in; any transition from there
// leaves Blocked, and so does a reconcile in which everything the machine
// asked for (the apply first of all) succeeded. A release whose reconciles
// keep failing for one reason is recorded Blocked once per reason.
func decideBlocked(in Input) Decision {
	st := in.Status
	blocked := st != nil && st.Phase == record.PhaseBlocked
	view := in
	if blocked {
		view.Status = resumed(st)
		if p := view.Status.Phase; p == record.PhaseProgressing || p == record.PhaseWaiting {
			// Nothing of the step ran while it was blocked: its clock (the
			// progress deadline, the interval) starts when it is unblocked.
			view.Status.Since = in.Now
		}
	}
	d := decide(view)
	if d.Action != "" {
		return d
	}
	f := in.Failure
	if st == nil || st.Phase == record.PhaseInvalid || (blocked && (!f.persistent(in.Now) || oneLine(f.Reason) == st.Message)) {
		if !blocked {
			return d
		}
		if d.Need != NeedNothing {
			return d // an observation still to make; it fails if the cause is not gone
		}
		if d.Apply != nil && !in.Applied {
			d.Need, d.Requeue = NeedApplied, 0
			return d
		}
		s := resumed(st)
		if s.Phase == record.PhaseProgressing || s.Phase == record.PhaseWaiting {
			// The step's clock starts again: nothing of it ran while blocked.
			s.Since = in.Now
			d.Memo = freshMemo(s, in.Now)
		}
		d.Action, d.Status = record.ActionResume, s
		d.Subject = fmt.Sprintf("%s: unblocked; %s", in.Name, describePhase(s))
		d.Need, d.Requeue = NeedNext, 0
		return d
	}
	if !f.persistent(in.Now) {
		return d
	}
	s := next(in)
	s.Resume = st.Resume
	if !blocked {
		s.Resume = &record.Resume{Phase: st.Phase, Since: st.Since, Message: st.Message, Resume: st.Resume}
		s.Since = in.Now
	}
	s.Phase, s.Message = record.PhaseBlocked, oneLine(f.Reason)
	d.Action, d.Status = record.ActionBlock, s
	d.Subject = fmt.Sprintf("%s: blocked at %s (%d attempts since %s): %s", in.Name, st.Step, f.Count,
		f.Since.UTC().Format("15:04:05Z"), truncate(s.Message, 300))
	return d
}

// oneLine joins an error's lines: a status message and its one-line
// reason must carry the cause, which a wrapped error puts on its last
// lines.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// resumed is the status a Blocked or Paused release goes back to.
func resumed(st *record.Status) *record.Status {
	s := *st
	s.Resume = nil
	s.Phase, s.Message = record.PhaseProgressing, ""
	if r := st.Resume; r != nil {
		s.Phase, s.Since, s.Message, s.Resume = r.Phase, r.Since, r.Message, r.Resume
	}
	return &s
}

func describePhase(s *record.Status) string {
	switch s.Phase {
	case record.PhaseProgressing, record.PhaseWaiting, record.PhasePaused:
		return fmt.Sprintf("%s at %s", s.Phase, s.Step)
	}
	return string(s.Phase)
}

func decide(in Input) Decision {
	d := Decision{Memo: in.Memo}
	if in.Invalid != nil {
		return decideInvalid(in, d)
	}
	if in.Spec.Spec.Candidate == "" {
		return decideSteady(in, d)
	}
	st := in.Status
	switch {
	case st == nil || st.Candidate != in.Spec.Spec.Candidate || st.Revision != in.Revision:
		return decideStart(in, d)
	case st.Phase == record.PhaseRolledBack || (st.Phase == record.PhaseInvalid && st.Step == string(specs.KindRollback)):
		if r := in.Spec.Spec.Retry; r != "" && r != st.Retry {
			return decideStart(in, d)
		}
		return decideHold(in, d, specs.RollbackStep(in.Spec), record.PhaseRolledBack)
	case st.Phase == record.PhasePromoted:
		// The promotion commit names the candidate stable; a spec that
		// still names it candidate was edited back by a person, or is
		// shared by clusters that have not all promoted it yet.
		if sharedSpec(in) && len(yetToPromote(in)) == 0 {
			return promoteSharedSpec(in, d)
		}
		return decideHold(in, d, promotedStep(in), record.PhasePromoted)
	}
	if i := st.StepIndex; i < 0 || i >= len(in.Plan) || in.Plan[i].Name != st.Step {
		// The stages changed under a running release: start over rather
		// than guess which step the record means.
		return decideStart(in, d)
	}
	step := in.Plan[st.StepIndex]
	switch {
	case in.Spec.Aborted():
		return rollback(in, d, step, nil, fmt.Sprintf("aborted: spec.abort names %s", in.Spec.Spec.Candidate))
	case in.Spec.AnalysisSkipped() && step.Kind != specs.KindPromote:
		return skipAnalysis(in, d)
	case in.Spec.Spec.Paused:
		return decidePaused(in, d, step)
	case st.Phase == record.PhasePaused:
		s := resumed(st)
		s.Since = in.Now // the step's checks start over
		d.Action, d.Status = record.ActionResume, s
		d.Subject = fmt.Sprintf("%s: resumed at %s", in.Name, stepLabel(step))
		d.Memo = freshMemo(s, in.Now)
		d.Apply, d.Need = &step, NeedAvailability
		return d
	}
	return decideProgress(in, d)
}

// decidePaused holds the step, checks nothing and records the pause once.
func decidePaused(in Input, d Decision, step specs.Step) Decision {
	st := in.Status
	d.Apply, d.Requeue = &step, in.ReapplyInterval
	if st.Phase == record.PhasePaused {
		d.Note = "paused by spec.paused"
		return d
	}
	s := next(in)
	if st.Phase == record.PhaseProgressing || st.Phase == record.PhaseWaiting {
		s.Resume = &record.Resume{Phase: st.Phase, Since: st.Since, Message: st.Message}
	}
	s.Phase, s.Since = record.PhasePaused, in.Now
	s.Message = fmt.Sprintf("paused at %s by spec.paused; remove it (sluice resume %s) to go on", step.Name, in.Release)
	d.Action, d.Status = record.ActionPause, s
	d.Subject = fmt.Sprintf("%s: paused at %s", in.Name, stepLabel(step))
	return d
}

// skipAnalysis records the jump to the promote step that a person asked
// for, then applies it; the promotion follows once it is available.
func skipAnalysis(in Input, d Decision) Decision {
	st := in.Status
	cur, last := in.Plan[st.StepIndex], in.Plan[len(in.Plan)-1]
	s := next(in)
	s.Phase, s.Since = record.PhaseProgressing, in.Now
	s.Step, s.StepIndex, s.Weight = last.Name, last.Index, last.Weight
	s.PullRequest, s.Resume = nil, nil
	d.Action, d.Status = record.ActionAdvance, s
	d.Subject = fmt.Sprintf("%s: %s -> %s (analysis skipped: spec.skipAnalysis names %s)", in.Name, stepLabel(cur), stepLabel(last), in.Spec.Spec.Candidate)
	d.PullRequest = retire(st, fmt.Sprintf("spec.skipAnalysis sent %s straight to promotion; this approval is moot.", in.Spec.Spec.Candidate))
	d.Memo = freshMemo(s, in.Now)
	d.Apply, d.Need = &last, NeedAvailability
	return d
}

// next is a copy of the recorded status to build the new record on.
func next(in Input) *record.Status {
	if in.Status == nil {
		return &record.Status{Release: in.Release, SpecFile: in.File}
	}
	s := *in.Status
	s.SpecFile = in.File
	s.Message = ""
	s.NoData, s.Resume = nil, nil
	return &s
}

// retire is the pull request operation that closes the recorded one, when
// the transition from prev makes it moot.
func retire(prev *record.Status, comment string) PullRequestAction {
	if prev == nil || prev.Phase != record.PhaseWaiting || prev.PullRequest == nil {
		return PullRequestAction{}
	}
	return PullRequestAction{Op: PullRequestRetire, Ref: prev.PullRequest, Comment: comment}
}

func decideInvalid(in Input, d Decision) Decision {
	s := next(in)
	if s.Phase != record.PhaseInvalid {
		s.Since = in.Now
	}
	s.Phase = record.PhaseInvalid
	s.Message = in.Invalid.Error()
	if in.Status != nil && in.Status.Phase == record.PhaseInvalid && in.Status.Message == s.Message {
		d.Note = "release spec is invalid; skipping it"
		return d
	}
	d.Action, d.Status = record.ActionInvalid, s
	d.Subject = fmt.Sprintf("%s: invalid release spec, skipped", in.Name)
	return d
}

// decideSteady holds a release with no candidate: stable takes all traffic.
func decideSteady(in Input, d Decision) Decision {
	rel, st := in.Spec, in.Status
	step := specs.SteadyStep(rel)
	d.Apply, d.Requeue = &step, in.ReapplyInterval
	if st != nil && st.Stable == rel.Spec.Stable && (st.Phase == record.PhaseSteady || st.Phase == record.PhasePromoted) {
		return d
	}
	d.Action = record.ActionSteady
	d.Subject = fmt.Sprintf("%s: steady at %s", in.Name, rel.Spec.Stable)
	if st != nil && st.Candidate != "" && (st.Phase == record.PhaseProgressing || st.Phase == record.PhaseWaiting) {
		d.Subject = fmt.Sprintf("%s: candidate %s withdrawn; steady at %s", in.Name, st.Candidate, rel.Spec.Stable)
	}
	d.Status = &record.Status{Release: in.Release, SpecFile: in.File, Phase: record.PhaseSteady, Since: in.Now,
		Stable: rel.Spec.Stable, Step: string(specs.KindStable)}
	if st != nil {
		d.Status.Draining = carryDrains(st.Draining, rel.Spec.Stable, "")
		if st.Candidate != "" && (st.Phase == record.PhaseProgressing || st.Phase == record.PhaseWaiting) {
			d.Status.Draining = addDrain(in, d.Status.Draining, st.Candidate)
		}
	}
	d.PullRequest = retire(st, "The candidate was withdrawn from the release spec; this approval is moot.")
	return d
}

// decideStart records the candidate at its first step, then applies it.
func decideStart(in Input, d Decision) Decision {
	rel, st := in.Spec, in.Status
	first := in.Plan[0]
	d.Action = record.ActionStart
	d.Subject = fmt.Sprintf("%s: start %s -> %s at %s", in.Name, rel.Spec.Stable, rel.Spec.Candidate, stepLabel(first))
	switch {
	case st != nil && (st.Phase == record.PhaseProgressing || st.Phase == record.PhaseWaiting) && st.Candidate != "" &&
		(st.Candidate != rel.Spec.Candidate || st.Revision != in.Revision):
		d.Action = record.ActionAbandon
		d.Subject = fmt.Sprintf("%s: %s abandoned at %s; start %s at %s", in.Name,
			describeCandidate(st.Candidate, st.Revision, rel.Spec.Candidate, in.Revision), st.Step, rel.Spec.Candidate, stepLabel(first))
	case st != nil && st.Phase == record.PhaseRolledBack && st.Candidate == rel.Spec.Candidate && st.Revision == in.Revision:
		d.Action = record.ActionRetry
		d.Subject = fmt.Sprintf("%s: retry %s at %s", in.Name, rel.Spec.Candidate, stepLabel(first))
	case st != nil && (st.Phase == record.PhaseProgressing || st.Phase == record.PhaseWaiting):
		d.Subject = fmt.Sprintf("%s: stages changed at %s; start %s again at %s", in.Name, st.Step, rel.Spec.Candidate, stepLabel(first))
	}
	d.Status = &record.Status{
		Release: in.Release, SpecFile: in.File, Phase: record.PhaseProgressing, Since: in.Now,
		Stable: rel.Spec.Stable, Candidate: rel.Spec.Candidate, Revision: in.Revision,
		Step: first.Name, StepIndex: 0, Weight: first.Weight, Commit: in.Head,
	}
	if st != nil {
		// A version draining is kept to its time, unless it is the new
		// stable or candidate: then it is no longer leaving.
		d.Status.Draining = carryDrains(st.Draining, rel.Spec.Stable, rel.Spec.Candidate)
		if d.Action == record.ActionAbandon && st.Candidate != rel.Spec.Candidate && st.Candidate != rel.Spec.Stable {
			d.Status.Draining = addDrain(in, d.Status.Draining, st.Candidate)
		}
	}
	d.PullRequest = retire(st, fmt.Sprintf("Sluice started candidate %s again from its first step; this approval is moot.", rel.Spec.Candidate))
	d.Memo = freshMemo(d.Status, in.Now)
	d.Apply, d.Need = &first, NeedAvailability
	return d
}

func describeCandidate(old, oldRev, cur, rev string) string {
	if old == cur && oldRev != rev {
		return fmt.Sprintf("%s (revision %s, changed since)", old, shortRev(oldRev))
	}
	return old
}

func shortRev(r string) string {
	if len(r) > 8 {
		return r[:8]
	}
	return r
}

// decideHold keeps the cluster at a final step (rolled back, promoted),
// recording that the spec is valid again if it was not.
func decideHold(in Input, d Decision, step specs.Step, phase record.Phase) Decision {
	d.Apply, d.Requeue = &step, in.ReapplyInterval
	if in.Status.Phase == record.PhaseInvalid {
		s := next(in)
		s.Phase, s.Since = phase, in.Now
		d.Action, d.Status = record.ActionResume, s
		d.Subject = fmt.Sprintf("%s: spec valid again; %s", in.Name, phase)
	}
	return d
}

func memoKey(st *record.Status) string {
	return st.Revision + "/" + st.Step + "/" + st.Since.UTC().Format(time.RFC3339)
}

func freshMemo(st *record.Status, now time.Time) Memo {
	return Memo{Key: memoKey(st), StepSeen: now}
}

// stepStart is when the current step began, for the progress deadline. A
// step entered by merging an approval pull request began when this Sluice
// first saw the merge, not when the branch was made.
func stepStart(st *record.Status, m Memo) time.Time {
	if st.PullRequest != nil && st.Phase == record.PhaseProgressing && m.StepSeen.After(st.Since) {
		return m.StepSeen
	}
	return st.Since
}

// decideProgress holds the recorded step, waits for its workloads, checks
// its gates every interval and advances, waits or rolls back.
func decideProgress(in Input, d Decision) Decision {
	st := in.Status
	i := st.StepIndex
	step := in.Plan[i]
	if st.Phase == record.PhaseInvalid {
		// Record the resume, then go on from the resumed record.
		s := next(in)
		s.Phase = record.PhaseProgressing
		d.Action, d.Status = record.ActionResume, s
		d.Subject = fmt.Sprintf("%s: spec valid again; resume at %s", in.Name, stepLabel(step))
		d.Apply, d.Need = &step, NeedAvailability
		return d
	}
	if d.Memo.Key != memoKey(st) {
		d.Memo = freshMemo(st, in.Now)
	}
	if in.Available == nil {
		d.Apply, d.Need = &step, NeedAvailability
		return d
	}
	// The step's workloads must be up before its gates mean anything.
	if a := in.Available; !a.OK {
		if in.Now.Sub(stepStart(st, d.Memo)) > in.ProgressDeadline {
			return rollback(in, d, step, nil, fmt.Sprintf("%s not available after %s: %s", a.Workload, in.ProgressDeadline, a.Reason))
		}
		d.Requeue = availabilityPoll
		if in.Watched {
			d.Requeue = availabilityFallback
		}
		if left := stepStart(st, d.Memo).Add(in.ProgressDeadline).Sub(in.Now); left > 0 && left < d.Requeue {
			d.Requeue = left + time.Second
		}
		return d
	}
	if i == 0 {
		// The first step's pre-step webhooks run once its workloads are
		// up; every other step's before the release moves to it.
		if pd, _, held := preStepGate(in, d, step); held {
			return pd
		}
	}
	if step.Kind == specs.KindPromote {
		return promote(in, d)
	}
	if !step.Gates.HasChecks() {
		// Nothing to check: the step is done when its workloads are up.
		return advance(in, d, nil)
	}
	// Checks run every interval from the moment the step's workloads are up.
	if d.Memo.LastCheck.IsZero() {
		d.Memo.LastCheck = in.Now
		d.Requeue = step.Gates.Interval
		return d
	}
	if due := d.Memo.LastCheck.Add(step.Gates.Interval); in.Now.Before(due) {
		d.Requeue = due.Sub(in.Now)
		return d
	}
	if in.Gates == nil {
		d.Need = NeedGates
		return d
	}
	g := in.Gates
	d.Memo.LastCheck = in.Now
	if g.Err != nil {
		// Prometheus itself failed: hold, count nothing, say so.
		d.Memo.LastErr = g.Err.Error()
		d.Note = "gates not evaluated: Prometheus failed; holding the step"
		d.Requeue = step.Gates.Interval
		return d
	}
	d.Memo.LastErr = ""

	// While an approval pull request is open, each check also looks at it.
	if ref := st.PullRequest; in.Forge && st.Phase == record.PhaseWaiting && ref != nil {
		if in.PullRequest == nil {
			d.Need, d.PullRequest = NeedPullRequest, PullRequestAction{Op: PullRequestRead, Ref: ref}
			d.Memo = in.Memo // the check is made again with the pull request
			return d
		}
		switch a := pullRequestApproval(in.PullRequest); a.Outcome {
		case Refused:
			return rollback(in, d, step, nil, a.Reason)
		case Approved:
			// Merged: Git brings the advance with the next sync.
			d.Sync, d.Requeue = true, availabilityPoll
			return d
		}
		d.PullRequest = PullRequestAction{Op: PullRequestRefresh, Ref: ref, Index: i}
	}

	verdict := g.Verdict
	// run is the run of checks without data this check extends, if any.
	var run *record.NoDataHold
	if verdict != VerdictNoData {
		d.Memo.DataSeen = in.Now
	} else if step.Gates.NoData == specs.NoDataFail {
		verdict = VerdictFail
	} else {
		// Hold, visibly, for up to threshold checks in a row; then each
		// further check without data counts as a failed one.
		held := record.NoDataHold{Since: in.Now, Last: in.Now, Checks: 1, Allowed: step.Gates.Threshold}
		if nd := st.NoData; nd != nil && !d.Memo.DataSeen.After(nd.Last) {
			held.Since, held.Checks = nd.Since, nd.Checks+1
		}
		if held.Checks > held.Allowed {
			// Counted as failed; the run goes on in the record, so the
			// next check without data counts too.
			verdict, run = VerdictFail, &held
		} else {
			s := next(in)
			s.NoData = &held
			d.Action, d.Status = record.ActionNoData, s
			d.Subject = fmt.Sprintf("%s: no data at %s (%s; held %d of %d checks since %s)", in.Name, stepLabel(step),
				record.Summary(noDataValues(g.Values)), held.Checks, held.Allowed, held.Since.UTC().Format("15:04:05Z"))
			d.Requeue = step.Gates.Interval
			return d
		}
	}
	switch verdict {
	case VerdictFail:
		failed := st.FailedChecks + 1
		if failed >= step.Gates.Threshold {
			return rollback(in, d, step, g.Values, fmt.Sprintf("%d/%d checks failed", failed, step.Gates.Threshold))
		}
		s := next(in)
		s.FailedChecks, s.Gates, s.NoData = failed, g.Values, run
		d.Action, d.Status = record.ActionCheck, s
		d.Subject = fmt.Sprintf("%s: check failed at %s (%s, %d/%d checks failed)", in.Name, stepLabel(step),
			record.Summary(record.Failing(g.Values)), failed, step.Gates.Threshold)
		d.Requeue = step.Gates.Interval
		return d
	}
	d.Memo.Passed++
	if d.Memo.Passed < step.Gates.Iterations {
		d.Note = fmt.Sprintf("check passed (%d of %d)", d.Memo.Passed, step.Gates.Iterations)
		d.Requeue = step.Gates.Interval
		return d
	}
	return advance(in, d, g.Values)
}

// ApprovalOutcome is where an approval stands.
type ApprovalOutcome int

// Approval outcomes.
const (
	Approved ApprovalOutcome = iota
	// Waiting: asked for, not given yet; look again at RetryAfter.
	Waiting
	// Refused: the release rolls back, for Reason.
	Refused
)

// Approval is the outcome of what a step waits on before it starts: a
// person's approval or the release window.
type Approval struct {
	Outcome ApprovalOutcome
	// Reason says what it waits for, or why it was refused.
	Reason string
	// RetryAfter is when to look again while it waits.
	RetryAfter time.Duration
}

// pullRequestApproval is the outcome of an approval pull request.
func pullRequestApproval(pr *PullRequestState) Approval {
	switch pr.State {
	case forge.StateMerged:
		return Approval{Outcome: Approved}
	case forge.StateClosed:
		who := pr.By
		if who == "" {
			who = "someone"
		}
		return Approval{Outcome: Refused, Reason: fmt.Sprintf("pull request #%d closed by %s", pr.Number, who)}
	}
	return Approval{Outcome: Waiting, Reason: fmt.Sprintf("merge pull request #%d %s", pr.Number, pr.URL), RetryAfter: availabilityPoll}
}

// manualApproval is the outcome of approval: manual for next.
func manualApproval(in Input, next specs.Step) Approval {
	if next.Approval != specs.ApprovalManual || in.Spec.Approved(next.Stage) {
		return Approval{Outcome: Approved}
	}
	return Approval{Outcome: Waiting, RetryAfter: waitPoll,
		Reason: fmt.Sprintf("%s waits for approval: add {stage: %s, candidate: %s} to spec.approvals in %s", next.Name, next.Stage, in.Spec.Spec.Candidate, in.File)}
}

// windowApproval is the outcome of the release window for next.
func windowApproval(in Input, next specs.Step) (Approval, error) {
	w := in.Spec.Spec.Window
	if w == nil {
		return Approval{Outcome: Approved}, nil
	}
	open, opens, err := w.Open(in.Now)
	if err != nil {
		return Approval{}, err
	}
	if open {
		return Approval{Outcome: Approved}, nil
	}
	after := waitPoll
	if wait := opens.Sub(in.Now); wait > 0 && wait < after {
		after = wait
	}
	return Approval{Outcome: Waiting, RetryAfter: after,
		Reason: fmt.Sprintf("%s waits for the release window (%s for %s), next open at %s", next.Name, w.Schedule, w.Duration, opens.UTC().Format(time.RFC3339))}, nil
}

// advance records the next step, unless an approval or the release window
// holds it, then applies it.
func advance(in Input, d Decision, values []record.GateValue) Decision {
	i := in.Status.StepIndex
	cur, nxt := in.Plan[i], in.Plan[i+1]
	if a := manualApproval(in, nxt); a.Outcome == Waiting {
		return wait(in, d, values, a, fmt.Sprintf("%s: %s passed; %s waits for approval", in.Name, stepLabel(cur), nxt.Name))
	}
	a, err := windowApproval(in, nxt)
	if err != nil {
		return decideInvalid(Input{Now: in.Now, Release: in.Release, Name: in.Name, File: in.File, Status: in.Status, Invalid: err}, d)
	}
	if a.Outcome == Waiting {
		return wait(in, d, values, a, fmt.Sprintf("%s: %s passed; %s waits for the release window", in.Name, stepLabel(cur), nxt.Name))
	}
	pd, hooked, held := preStepGate(in, d, nxt)
	if held {
		return pd
	}
	d, values = pd, slices.Concat(values, hooked)
	// A pull request approves the whole stage: it is asked for once,
	// before the stage's first step.
	if nxt.Approval == specs.ApprovalPullRequest && nxt.Stage != cur.Stage && !in.Spec.Approved(nxt.Stage) {
		return awaitPullRequest(in, d, values)
	}
	s := next(in)
	s.Gates = values
	s.Phase, s.Since = record.PhaseProgressing, in.Now
	s.Step, s.StepIndex, s.Weight = nxt.Name, i+1, nxt.Weight
	s.PullRequest = nil
	d.Action, d.Status = record.ActionAdvance, s
	d.Subject = fmt.Sprintf("%s: %s -> %s (%s)", in.Name, stepLabel(cur), stepLabel(nxt), figures(values))
	d.PullRequest = retire(in.Status, fmt.Sprintf("%s was approved in spec.approvals; Sluice advanced without this pull request.", nxt.Stage))
	d.Memo = freshMemo(s, in.Now)
	// The next step's workloads are looked at at once: its interval starts
	// when they are up, which for a traffic shift is now.
	d.Apply, d.Need = &nxt, NeedAvailability
	return d
}

// wait records (once) that the release waits before its next step.
func wait(in Input, d Decision, values []record.GateValue, a Approval, subject string) Decision {
	// Passing checks are not lost while waiting: the step advances as soon
	// as the approval lands or the window opens.
	d.Memo.Passed = in.Plan[in.Status.StepIndex].Gates.Iterations
	d.Requeue = a.RetryAfter
	if in.Status.Phase == record.PhaseWaiting && in.Status.Message == a.Reason {
		d.Note = a.Reason
		return d
	}
	s := next(in)
	s.Gates, s.Phase, s.Message = values, record.PhaseWaiting, a.Reason
	d.Action, d.Status, d.Subject = record.ActionWait, s, subject
	return d
}

// awaitPullRequest holds the release before the next stage until a person
// merges its approval pull request, opened (once) by the executor.
func awaitPullRequest(in Input, d Decision, values []record.GateValue) Decision {
	i := in.Status.StepIndex
	cur, nxt := in.Plan[i], in.Plan[i+1]
	waitSubject := fmt.Sprintf("%s: %s passed; %s waits for approval", in.Name, stepLabel(cur), nxt.Name)
	if !in.Forge {
		return wait(in, d, values, Approval{Outcome: Waiting, RetryAfter: waitPoll,
			Reason: fmt.Sprintf("%s waits for approval by pull request, but Sluice runs without a forge (--forge)", nxt.Name)}, waitSubject)
	}
	subject := fmt.Sprintf("%s: %s -> %s (%s)", in.Name, stepLabel(cur), stepLabel(nxt), figures(values))
	var ref *record.PullRequestRef
	if st := in.Status; st.Phase == record.PhaseWaiting && st.PullRequest != nil && st.PullRequest.Step == nxt.Name {
		ref = st.PullRequest
	}
	pr := in.PullRequest
	if pr == nil || !pr.Proposed {
		d.Need = NeedPullRequest
		d.PullRequest = PullRequestAction{Op: PullRequestEnsure, Step: nxt.Name, Index: i, Ref: ref, Subject: subject}
		d.Memo = in.Memo // the check is made again with the pull request
		return d
	}
	d.Memo.Passed = cur.Gates.Iterations
	if pr.InGit {
		// Git already holds the advance: the pull request was merged and
		// this snapshot predates it.
		d.Sync, d.Requeue = true, availabilityPoll
		return d
	}
	if ref != nil && ref.Number == pr.Number {
		if pr.State != forge.StateOpen {
			// Merged or closed: the next check's look at it decides.
			d.Requeue = availabilityPoll
			return d
		}
		d.PullRequest = PullRequestAction{Op: PullRequestRefresh, Ref: ref, Index: i}
		d.Requeue = cur.Gates.Interval
		return d
	}
	s := next(in)
	s.Gates, s.Phase = values, record.PhaseWaiting
	s.PullRequest = &record.PullRequestRef{Number: pr.Number, URL: pr.URL, Branch: pr.Branch, Step: nxt.Name}
	s.Message = fmt.Sprintf("%s waits for approval: merge pull request #%d %s", nxt.Name, pr.Number, pr.URL)
	d.Action, d.Status = record.ActionWait, s
	d.Subject = fmt.Sprintf("%s: %s passed; %s waits for approval in pull request #%d", in.Name, stepLabel(cur), nxt.Name, pr.Number)
	// That record changed the status file on the watched branch, so the
	// branch is rebuilt on it: mergeable at once, without conflict.
	d.PullRequest = PullRequestAction{Op: PullRequestRebase, Step: nxt.Name, Index: i, Ref: s.PullRequest, Subject: subject}
	d.Requeue = cur.Gates.Interval
	return d
}

// rollback records the rollback, then sends all traffic back to stable.
func rollback(in Input, d Decision, at specs.Step, values []record.GateValue, why string) Decision {
	s := next(in)
	s.Phase, s.Since = record.PhaseRolledBack, in.Now
	s.Step, s.StepIndex, s.Weight = string(specs.KindRollback), at.Index, 0
	if values != nil {
		s.Gates = values
		s.FailedChecks++
	}
	s.Retry = in.Spec.Spec.Retry
	reason := why
	if f := record.Summary(record.Failing(values)); f != "" {
		reason = f + ", " + why
	}
	s.Message = fmt.Sprintf("rolled back at %s: %s", at.Name, reason)
	s.PullRequest = nil
	s.Draining = addDrain(in, carryDrains(s.Draining, in.Spec.Spec.Stable, ""), in.Spec.Spec.Candidate)
	d.Action, d.Status = record.ActionRollback, s
	d.Subject = fmt.Sprintf("%s: rolled back at %s (%s)", in.Name, stepLabel(at), reason)
	d.PullRequest = retire(in.Status, fmt.Sprintf("Sluice rolled the release back at %s: %s.", at.Name, reason))
	step := specs.RollbackStep(in.Spec)
	d.Memo = freshMemo(s, in.Now)
	d.Apply, d.Need, d.Requeue = &step, NeedNothing, in.ReapplyInterval
	return d
}

// promote records the candidate as stable, in the status and in the spec,
// once the promote step holds all traffic on it. A spec shared by several
// clusters is edited by the last of them to promote (sharedSpec).
func promote(in Input, d Decision) Decision {
	rel := in.Spec
	s := next(in)
	s.Phase, s.Since = record.PhasePromoted, in.Now
	s.Stable, s.Weight = rel.Spec.Candidate, 100
	s.PullRequest = nil
	s.Draining = addDrain(in, carryDrains(s.Draining, rel.Spec.Candidate, ""), rel.Spec.Stable)
	d.Action, d.Status, d.PromoteSpec = record.ActionPromote, s, true
	where := ""
	if sharedSpec(in) {
		where = " on " + in.Cluster
	}
	d.Subject = fmt.Sprintf("%s: promoted %s%s (%s retired)", in.Name, rel.Spec.Candidate, where, rel.Spec.Stable)
	if rel.AnalysisSkipped() {
		d.Subject = fmt.Sprintf("%s: promoted %s%s, analysis skipped by spec.skipAnalysis (%s retired)", in.Name, rel.Spec.Candidate, where, rel.Spec.Stable)
	}
	if sharedSpec(in) {
		if rest := yetToPromote(in); len(rest) > 0 {
			d.PromoteSpec = false
			d.Subject += fmt.Sprintf("; %s yet to promote", strings.Join(rest, ", "))
		} else {
			d.Subject += "; promoted on every cluster, the spec names it stable"
		}
	}
	d.Requeue = 0
	return d
}

// sharedSpec reports whether the release's spec is shared by several
// clusters (spec.clusters names more than one, and this Sluice runs one of
// them). Each cluster then walks the candidate on its own and records its
// promotion in its own status file; the spec is promoted (stable: the
// candidate) once every cluster it names has, by the last of them. Were it
// promoted by the first, the others would switch to the candidate at once,
// without their own analysis.
func sharedSpec(in Input) bool {
	return in.Cluster != "" && in.Spec != nil && len(in.Spec.Spec.Clusters) > 1
}

// yetToPromote are the clusters a shared spec names, this one aside, whose
// records do not say they promoted this candidate at this revision.
func yetToPromote(in Input) []string {
	var rest []string
	for _, c := range in.Spec.Spec.Clusters {
		if c == in.Cluster || promotedThere(in.Peers[c], in.Spec.Spec.Candidate, in.Revision) {
			continue
		}
		rest = append(rest, c)
	}
	slices.Sort(rest)
	return slices.Compact(rest)
}

func promotedThere(st *record.Status, candidate, revision string) bool {
	if st == nil || st.Candidate != candidate || st.Revision != revision {
		return false
	}
	phase := st.Phase
	if phase == record.PhaseBlocked && st.Resume != nil {
		phase = st.Resume.Phase
	}
	return phase == record.PhasePromoted
}

// promoteSharedSpec edits a shared spec once the last of its clusters has
// promoted the candidate: the clusters promoted at about the same time, so
// none saw the others' records when it recorded its own. The record stays
// as it is.
func promoteSharedSpec(in Input, d Decision) Decision {
	s := *in.Status
	s.SpecFile = in.File
	d.Action, d.Status, d.PromoteSpec = record.ActionPromote, &s, true
	d.Subject = fmt.Sprintf("%s: %s promoted on every cluster (%s); the spec names it stable",
		in.Name, in.Spec.Spec.Candidate, strings.Join(in.Spec.Spec.Clusters, ", "))
	step := promotedStep(in)
	d.Apply, d.Requeue = &step, in.ReapplyInterval
	return d
}

// promotedStep is what a release promoted here holds while its spec still
// names the candidate: the promote step without the old stable, which
// keepDraining adds back while it drains.
func promotedStep(in Input) specs.Step {
	step := in.Plan[len(in.Plan)-1]
	step.Versions = []string{in.Spec.Spec.Candidate}
	return step
}

// noDataValues are the values without data.
func noDataValues(vals []record.GateValue) []record.GateValue {
	var out []record.GateValue
	for _, g := range vals {
		if g.Value == nil {
			out = append(out, g)
		}
	}
	return out
}

// addDrain adds version to the versions draining, for the release's drain
// delay; with no delay it is retired with the transition that moved its
// traffic.
func addDrain(in Input, drains []record.Drain, version string) []record.Drain {
	delay := in.Spec.Spec.Analysis.DrainDelay()
	if delay <= 0 || version == "" {
		return drains
	}
	out := carryDrains(drains, version, "")
	return append(out, record.Drain{Version: version, Until: in.Now.Add(delay)})
}

// carryDrains keeps the drains of versions other than keep1 and keep2
// (versions that take traffic again, so do not leave).
func carryDrains(drains []record.Drain, keep1, keep2 string) []record.Drain {
	var out []record.Drain
	for _, dr := range drains {
		if dr.Version != keep1 && dr.Version != keep2 {
			out = append(out, dr)
		}
	}
	return out
}

// retireDrained records the retirement of versions whose drain is over;
// the next decision applies the release without them.
func retireDrained(in Input) (Decision, bool) {
	st := in.Status
	if in.Invalid != nil || st == nil || len(st.Draining) == 0 {
		return Decision{}, false
	}
	var keep []record.Drain
	var retired []string
	for _, dr := range st.Draining {
		if in.Now.Before(dr.Until) {
			keep = append(keep, dr)
		} else {
			retired = append(retired, dr.Version)
		}
	}
	if len(retired) == 0 {
		return Decision{}, false
	}
	// Only the drains change: the record keeps its phase, step and message.
	s := *st
	s.SpecFile = in.File
	s.Draining = keep
	return Decision{
		Action: record.ActionRetire, Status: &s, Memo: in.Memo, Need: NeedNext,
		Subject: fmt.Sprintf("%s: %s retired after draining", in.Name, strings.Join(retired, ", ")),
	}, true
}

// keepDraining adds the versions still draining to the step applied, and
// looks again when the first drain ends.
func keepDraining(in Input, d Decision) Decision {
	st := in.Status
	if d.Action != "" {
		st = d.Status
	}
	if st == nil || len(st.Draining) == 0 || in.Spec == nil {
		return d
	}
	var first time.Time
	for _, dr := range st.Draining {
		if first.IsZero() || dr.Until.Before(first) {
			first = dr.Until
		}
		if d.Apply == nil || slices.Contains(d.Apply.Versions, dr.Version) || in.Spec.Version(dr.Version) == nil {
			continue
		}
		step := *d.Apply
		step.Versions = append(slices.Clone(step.Versions), dr.Version)
		d.Apply = &step
	}
	if wait := first.Sub(in.Now); d.Need == NeedNothing && wait > 0 && (d.Requeue <= 0 || wait < d.Requeue) {
		d.Requeue = wait
	}
	return d
}

func stepLabel(s specs.Step) string {
	if s.Kind == specs.KindWeighted {
		return fmt.Sprintf("%d%%", s.Weight)
	}
	return s.Name
}

func figures(values []record.GateValue) string {
	if f := record.Summary(values); f != "" {
		return f
	}
	return "available"
}

// errNoPrometheus holds a step with metric gates when Sluice has no Prometheus.
var errNoPrometheus = errors.New("the step has metric gates but no Prometheus is configured (--prometheus-url)")
