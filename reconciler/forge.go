package reconciler

import (
	"context"
	"fmt"
	"time"

	"sluice.dev/sluice/forge"
	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/specs"
)

// PullRequestRef is the approval pull request a release waits on (phase
// Waiting), or, once merged, the one that approved the current step.
type PullRequestRef struct {
	Number int64  `yaml:"number" json:"number"`
	URL    string `yaml:"url,omitempty" json:"url,omitempty"`
	Branch string `yaml:"branch" json:"branch"`
	// Step is the step merging it approves.
	Step string `yaml:"step" json:"step"`
}

// StatusContext is the commit status context of a release on the forge.
func StatusContext(releaseID string) string { return "sluice/" + releaseID }

// ApprovalBranch is the branch of a step's approval pull request.
func ApprovalBranch(namespace, name, step string) string {
	return "sluice/" + namespace + "/" + name + "/" + step
}

// reportStatus marks the commit that introduced the candidate with where
// the release stands: pending while it progresses or waits, success when
// promoted, failure when rolled back. The forge being down never holds a
// release: the status is tried again at the next reconcile.
func (rc *run) reportStatus(ctx context.Context) {
	f, st := rc.r.cfg.Forge, rc.st
	if f == nil || st == nil || st.Commit == "" {
		return
	}
	cs := forge.CommitStatus{Context: StatusContext(st.Release)}
	switch st.Phase {
	case PhaseProgressing:
		cs.State, cs.Description = forge.StatusPending, fmt.Sprintf("%s: %s (%d%%)", st.Candidate, st.Step, st.Weight)
	case PhaseWaiting:
		cs.State, cs.Description = forge.StatusPending, fmt.Sprintf("%s: %s passed; waiting", st.Candidate, st.Step)
		if st.PullRequest != nil {
			cs.Description = fmt.Sprintf("%s: %s waits for approval in #%d", st.Candidate, st.PullRequest.Step, st.PullRequest.Number)
			cs.TargetURL = st.PullRequest.URL
		}
	case PhasePromoted:
		cs.State, cs.Description = forge.StatusSuccess, fmt.Sprintf("%s promoted", st.Stable)
	case PhaseRolledBack:
		cs.State, cs.Description = forge.StatusFailure, st.Message
	default:
		return
	}
	key := st.Commit + "\x00" + string(cs.State) + "\x00" + cs.Description
	if rc.memo.forgeStatus == key {
		return
	}
	if err := f.SetStatus(ctx, st.Commit, cs); err != nil {
		rc.r.log.Warn("forge: commit status not set; trying again at the next reconcile", "release", rc.e.id, "commit", st.Commit, "err", err)
		return
	}
	rc.memo.forgeStatus = key
}

// awaitPullRequest holds the release before next until a person merges
// the approval pull request: it keeps the proposal branch (whose commit
// records the advance) fresh, opens the pull request once, records it, and
// keeps its body up to date.
func (rc *run) awaitPullRequest(ctx context.Context, steps []specs.Step, i int, values []GateValue) (time.Duration, error) {
	rel, r := rc.e.rel, rc.r
	cur, next := steps[i], steps[i+1]
	if r.cfg.Forge == nil {
		s := rc.next()
		s.Gates, s.Phase = values, PhaseWaiting
		s.Message = fmt.Sprintf("%s waits for approval by pull request, but Sluice runs without a forge (--forge)", next.Name)
		return rc.wait(ctx, s, fmt.Sprintf("%s: %s passed; %s waits for approval", rel.Metadata.Name, stepLabel(cur), next.Name))
	}
	branch := ApprovalBranch(rel.Metadata.Namespace, rel.Metadata.Name, next.Name)
	var ref *PullRequestRef
	if st := rc.st; st.Phase == PhaseWaiting && st.PullRequest != nil && st.PullRequest.Step == next.Name {
		ref = st.PullRequest
	}
	subject := fmt.Sprintf("%s: %s -> %s (%s)", rel.Metadata.Name, stepLabel(cur), stepLabel(next), figuresOf(values))
	prop, err := rc.propose(ctx, branch, steps, i, ref, subject)
	if err != nil {
		return 0, err
	}
	if prop.NoChange {
		// Git already holds the advance: the pull request was merged and
		// this snapshot predates it.
		r.Trigger()
		return availabilityPoll, nil
	}
	title := fmt.Sprintf("%s: approve %s (%s -> %s)", rel.ID(), next.Name, rel.Spec.Stable, rel.Spec.Candidate)
	body := forge.PullRequestBody(rc.summary(steps, i, next.Name, values))
	var pr *forge.PullRequest
	if ref != nil {
		// The recorded one, whatever its state: a closed one is never
		// replaced by a new one (watchPullRequest rolls back).
		if pr, err = r.cfg.Forge.PullRequest(ctx, ref.Number); err != nil {
			return 0, err
		}
		if pr.State != forge.StateOpen {
			return availabilityPoll, nil
		}
	} else {
		created := false
		pr, created, err = r.cfg.Forge.EnsurePullRequest(ctx, forge.NewPullRequest{Head: branch, Base: r.cfg.Repo.Branch(), Title: title, Body: body})
		if err != nil {
			return 0, err
		}
		if created {
			r.log.Info("approval pull request opened", "release", rc.e.id, "step", next.Name, "number", pr.Number, "url", pr.URL)
		}
	}
	if ref == nil || ref.Number != pr.Number {
		s := rc.next()
		s.Gates, s.Phase = values, PhaseWaiting
		s.PullRequest = &PullRequestRef{Number: pr.Number, URL: pr.URL, Branch: branch, Step: next.Name}
		s.Message = fmt.Sprintf("%s waits for approval: merge pull request #%d %s", next.Name, pr.Number, pr.URL)
		if err := r.commit(ctx, rc.e, s, fmt.Sprintf("%s: %s passed; %s waits for approval in pull request #%d", rel.Metadata.Name, stepLabel(cur), next.Name, pr.Number), "wait", nil); err != nil {
			return 0, err
		}
		rc.st = s
		rc.memo.passed = rel.Spec.Analysis.Iterations
		// That record changed the status file on the watched branch, so
		// the branch is rebuilt on it: mergeable at once, without conflict.
		if _, err := rc.propose(ctx, branch, steps, i, s.PullRequest, subject); err != nil {
			return 0, err
		}
	} else if pr.Body != body || pr.Title != title {
		if err := r.cfg.Forge.UpdatePullRequest(ctx, pr.Number, title, body); err != nil {
			return 0, err
		}
	}
	return cur.Gates.Interval, nil
}

// propose pushes the approval branch: the record of the advance to step
// i+1, as advance would commit it, on top of the watched branch.
func (rc *run) propose(ctx context.Context, branch string, steps []specs.Step, i int, ref *PullRequestRef, subject string) (gitsync.ProposeResult, error) {
	next := steps[i+1]
	s := rc.next()
	s.Phase = PhaseProgressing
	// The branch's content must not change from one reconcile to the next,
	// or it would be pushed again at every check: no clock and no fresh
	// gate values in it, only what the recorded status already says.
	s.Step, s.StepIndex, s.Weight = next.Name, i+1, next.Weight
	s.Message = ""
	s.PullRequest = ref
	if ref != nil {
		s.Message = fmt.Sprintf("approved by merging pull request #%d", ref.Number)
	}
	change, err := rc.r.change(rc.e, s, subject, "advance", nil)
	if err != nil {
		return gitsync.ProposeResult{}, err
	}
	res, err := rc.r.cfg.Repo.Propose(ctx, branch, change)
	if err != nil {
		return res, fmt.Errorf("approval branch of %s: %w", rc.e.id, err)
	}
	return res, nil
}

// watchPullRequest looks at the approval pull request after each check
// while the release waits on it: closed unmerged, it rolls the release
// back; merged, it holds until Git brings the merge; open, it refreshes
// the body. done is true when the caller must return d, err.
func (rc *run) watchPullRequest(ctx context.Context, steps []specs.Step, i int, values []GateValue) (done bool, d time.Duration, err error) {
	ref := rc.st.PullRequest
	if rc.r.cfg.Forge == nil || rc.st.Phase != PhaseWaiting || ref == nil {
		return false, 0, nil
	}
	pr, err := rc.r.cfg.Forge.PullRequest(ctx, ref.Number)
	if err != nil {
		rc.r.log.Warn("forge: cannot read the approval pull request", "release", rc.e.id, "number", ref.Number, "err", err)
		return false, 0, nil
	}
	switch pr.State {
	case forge.StateMerged:
		rc.r.Trigger()
		return true, availabilityPoll, nil
	case forge.StateClosed:
		who := pr.By
		if who == "" {
			who = "someone"
		}
		why := fmt.Sprintf("pull request #%d closed by %s", ref.Number, who)
		return true, 0, rc.rollback(ctx, steps[i], nil, why)
	}
	body := forge.PullRequestBody(rc.summary(steps, i, ref.Step, values))
	if pr.Body != body {
		if err := rc.r.cfg.Forge.UpdatePullRequest(ctx, pr.Number, pr.Title, body); err != nil {
			rc.r.log.Warn("forge: cannot refresh the approval pull request", "release", rc.e.id, "number", ref.Number, "err", err)
		}
	}
	return false, 0, nil
}

// retirePullRequest closes the approval pull request the recorded status
// waits on, with a comment saying why, and deletes its branch. prev is the
// record before the transition that made it moot.
func (rc *run) retirePullRequest(ctx context.Context, prev *Status, comment string) {
	if rc.r.cfg.Forge == nil || prev == nil || prev.Phase != PhaseWaiting || prev.PullRequest == nil {
		return
	}
	ref, f := prev.PullRequest, rc.r.cfg.Forge
	if comment != "" {
		if err := f.Comment(ctx, ref.Number, comment); err != nil {
			rc.r.log.Warn("forge: cannot comment on the approval pull request", "release", rc.e.id, "number", ref.Number, "err", err)
		}
	}
	if err := f.ClosePullRequest(ctx, ref.Number); err != nil {
		rc.r.log.Warn("forge: cannot close the approval pull request", "release", rc.e.id, "number", ref.Number, "err", err)
	}
	if err := rc.r.cfg.Repo.DeleteBranch(ctx, ref.Branch); err != nil {
		rc.r.log.Warn("cannot delete the approval branch", "release", rc.e.id, "branch", ref.Branch, "err", err)
	}
}

// summary is where the release stands, for the pull request's body.
func (rc *run) summary(steps []specs.Step, i int, approve string, values []GateValue) forge.Summary {
	rel := rc.e.rel
	s := forge.Summary{
		Release: rel.ID(), Stable: rel.Spec.Stable, Candidate: rel.Spec.Candidate, Step: approve,
		CheckedAt: rc.now, FailedChecks: rc.st.FailedChecks, Threshold: steps[i].Gates.Threshold,
	}
	for j, st := range steps {
		s.Steps = append(s.Steps, forge.StepLine{Name: st.Name, Weight: st.Weight, Done: j < i, Current: j == i})
	}
	for _, g := range values {
		s.Gates = append(s.Gates, forge.GateLine{Metric: g.Metric, Value: g.Value, Min: g.Min, Max: g.Max, Passed: g.Passed})
	}
	return s
}

func figuresOf(values []GateValue) string {
	if f := gateSummary(values); f != "" {
		return f
	}
	return "available"
}

// stepStart is when the current step began, for the progress deadline. A
// step entered by merging an approval pull request began when this Sluice
// first saw the merge, not when the branch was made.
func (rc *run) stepStart() time.Time {
	st := rc.st
	if st.PullRequest != nil && st.Phase == PhaseProgressing && rc.memo.stepSeen.After(st.Since) {
		return rc.memo.stepSeen
	}
	return st.Since
}
