package reconciler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/gates"
	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/renderer"
	"sluice.dev/sluice/specs"
)

// run is one reconcile of one release.
type run struct {
	r    *Reconciler
	snap *snapshot
	e    *entry
	st   *Status // as recorded in Git; nil when never recorded
	now  time.Time
	memo *releaseMemo
}

// Times a release is looked at again while it waits on something that
// does not announce itself.
const (
	availabilityPoll = 2 * time.Second
	waitPoll         = 30 * time.Second
)

func (rc *run) step(ctx context.Context) (time.Duration, error) {
	e, r := rc.e, rc.r
	if e.err == nil && !r.allowed(e.namespace) {
		e = &entry{id: e.id, namespace: e.namespace, name: e.name, file: e.file,
			err: fmt.Errorf("%s: metadata.namespace: %q is not in Sluice's allowed namespaces %v", e.file, e.namespace, r.cfg.AllowedNamespaces)}
		rc.e = e
	}
	if e.err != nil {
		return 0, rc.invalid(ctx, e.err)
	}
	rel := e.rel
	if rel.Spec.Candidate == "" {
		return rc.steady(ctx)
	}
	rev, err := r.renderer.Revision(ctx, rc.snap.tree, rel, rel.Spec.Candidate)
	if err != nil {
		return 0, rc.invalid(ctx, err)
	}
	steps, err := specs.Plan(rel)
	if err != nil {
		return 0, rc.invalid(ctx, err)
	}
	st := rc.st
	switch {
	case st == nil || st.Candidate != rel.Spec.Candidate || st.Revision != rev:
		return rc.start(ctx, steps, rev)
	case st.Phase == PhaseRolledBack || (st.Phase == PhaseInvalid && st.Step == string(specs.KindRollback)):
		if rel.Spec.Retry != "" && rel.Spec.Retry != st.Retry {
			return rc.start(ctx, steps, rev)
		}
		return rc.hold(ctx, specs.RollbackStep(rel), PhaseRolledBack)
	case st.Phase == PhasePromoted:
		// The promotion commit names the candidate stable; a spec that
		// still names it candidate was edited back by a person.
		return rc.hold(ctx, steps[len(steps)-1], PhasePromoted)
	}
	i := st.StepIndex
	if i < 0 || i >= len(steps) || steps[i].Name != st.Step {
		// The stages changed under a running release: start over rather
		// than guess which step the record means.
		return rc.start(ctx, steps, rev)
	}
	return rc.progress(ctx, steps, i)
}

// next returns a copy of the recorded status to build the new record on.
func (rc *run) next() *Status {
	if rc.st == nil {
		return &Status{Release: rc.e.id, SpecFile: rc.e.file}
	}
	s := *rc.st
	s.SpecFile = rc.e.file
	s.Message = ""
	return &s
}

func (rc *run) invalid(ctx context.Context, err error) error {
	rc.r.log.Error("release spec is invalid; skipping it", "release", rc.e.id, "file", rc.e.file, "err", err)
	s := rc.next()
	if s.Phase != PhaseInvalid {
		s.Since = rc.now
	}
	s.Phase = PhaseInvalid
	s.Message = err.Error()
	if rc.st != nil && rc.st.Phase == PhaseInvalid && rc.st.Message == s.Message {
		return nil
	}
	if err := rc.r.commit(ctx, rc.e, s, fmt.Sprintf("%s: invalid release spec, skipped", rc.e.name), "invalid", nil); err != nil {
		return err
	}
	rc.st = s
	return nil
}

// steady holds a release with no candidate: the stable version takes all traffic.
func (rc *run) steady(ctx context.Context) (time.Duration, error) {
	rel := rc.e.rel
	st := rc.st
	if st == nil || st.Stable != rel.Spec.Stable || (st.Phase != PhaseSteady && st.Phase != PhasePromoted) {
		s := rc.next()
		subject := fmt.Sprintf("%s: steady at %s", rel.Metadata.Name, rel.Spec.Stable)
		if st != nil && st.Candidate != "" && (st.Phase == PhaseProgressing || st.Phase == PhaseWaiting) {
			subject = fmt.Sprintf("%s: candidate %s withdrawn; steady at %s", rel.Metadata.Name, st.Candidate, rel.Spec.Stable)
		}
		*s = Status{Release: rc.e.id, SpecFile: rc.e.file, Phase: PhaseSteady, Since: rc.now, Stable: rel.Spec.Stable, Step: string(specs.KindStable), Weight: 0}
		if err := rc.r.commit(ctx, rc.e, s, subject, "steady", nil); err != nil {
			return 0, err
		}
		rc.retirePullRequest(ctx, st, "The candidate was withdrawn from the release spec; this approval is moot.")
		rc.st = s
	}
	if _, err := rc.apply(ctx, specs.SteadyStep(rel), "stable"); err != nil {
		return 0, err
	}
	return rc.r.cfg.ReapplyInterval, nil
}

// start records a new candidate at the first step, then applies it.
func (rc *run) start(ctx context.Context, steps []specs.Step, rev string) (time.Duration, error) {
	rel := rc.e.rel
	first := steps[0]
	subject := fmt.Sprintf("%s: start %s -> %s at %s", rel.Metadata.Name, rel.Spec.Stable, rel.Spec.Candidate, stepLabel(first))
	action := "start"
	switch st := rc.st; {
	case st != nil && (st.Phase == PhaseProgressing || st.Phase == PhaseWaiting) && st.Candidate != "" &&
		(st.Candidate != rel.Spec.Candidate || st.Revision != rev):
		subject = fmt.Sprintf("%s: %s abandoned at %s; start %s at %s", rel.Metadata.Name, describeCandidate(st.Candidate, st.Revision, rel.Spec.Candidate, rev), st.Step, rel.Spec.Candidate, stepLabel(first))
		action = "abandon"
	case st != nil && st.Phase == PhaseRolledBack && st.Candidate == rel.Spec.Candidate && st.Revision == rev:
		subject = fmt.Sprintf("%s: retry %s at %s", rel.Metadata.Name, rel.Spec.Candidate, stepLabel(first))
		action = "retry"
	}
	s := &Status{
		Release: rc.e.id, SpecFile: rc.e.file, Phase: PhaseProgressing, Since: rc.now,
		Stable: rel.Spec.Stable, Candidate: rel.Spec.Candidate, Revision: rev,
		Step: first.Name, StepIndex: 0, Weight: first.Weight,
		Commit: rc.snap.head.String(),
	}
	if err := rc.r.commit(ctx, rc.e, s, subject, action, nil); err != nil {
		return 0, err
	}
	rc.retirePullRequest(ctx, rc.st, fmt.Sprintf("Sluice started candidate %s again from its first step; this approval is moot.", rel.Spec.Candidate))
	rc.st = s
	rc.resetMemo(s)
	if _, err := rc.apply(ctx, first, s.Revision); err != nil {
		return 0, err
	}
	return availabilityPoll, nil
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

// hold keeps the cluster at a final step (rolled back, promoted).
func (rc *run) hold(ctx context.Context, step specs.Step, phase Phase) (time.Duration, error) {
	if _, err := rc.apply(ctx, step, rc.st.Revision); err != nil {
		return 0, err
	}
	if rc.st.Phase == PhaseInvalid {
		s := rc.next()
		s.Phase, s.Since = phase, rc.now
		if err := rc.r.commit(ctx, rc.e, s, fmt.Sprintf("%s: spec valid again; %s", rc.e.name, phase), "resume", nil); err != nil {
			return 0, err
		}
		rc.st = s
	}
	return rc.r.cfg.ReapplyInterval, nil
}

// progress applies the recorded step, waits for it, checks its gates and
// advances, waits or rolls back.
func (rc *run) progress(ctx context.Context, steps []specs.Step, i int) (time.Duration, error) {
	rel, st, memo := rc.e.rel, rc.st, rc.memo
	step := steps[i]
	if st.Phase == PhaseInvalid {
		s := rc.next()
		s.Phase = PhaseProgressing
		if err := rc.r.commit(ctx, rc.e, s, fmt.Sprintf("%s: spec valid again; resume at %s", rel.Metadata.Name, stepLabel(step)), "resume", nil); err != nil {
			return 0, err
		}
		rc.st = s
		st = s
	}
	rc.ensureMemo(st)
	out, err := rc.apply(ctx, step, st.Revision)
	if err != nil {
		return 0, err
	}

	// The step's workloads must be up before its gates mean anything.
	for _, v := range step.Versions {
		ok, reason, err := rc.r.cfg.Cluster.Available(ctx, rel.Metadata.Namespace, out.Workloads[v])
		if err != nil {
			return 0, err
		}
		if ok {
			continue
		}
		if rc.now.Sub(rc.stepStart()) > rc.r.cfg.ProgressDeadline {
			return 0, rc.rollback(ctx, step, nil, fmt.Sprintf("%s not available after %s: %s", out.Workloads[v], rc.r.cfg.ProgressDeadline, reason))
		}
		return availabilityPoll, nil
	}

	if step.Kind == specs.KindPromote {
		return 0, rc.promote(ctx, step)
	}

	// Checks run every interval from the moment the step's workloads are up.
	if memo.lastCheck.IsZero() {
		memo.lastCheck = rc.now
		return step.Gates.Interval, nil
	}
	if due := memo.lastCheck.Add(step.Gates.Interval); rc.now.Before(due) {
		return due.Sub(rc.now), nil
	}
	values, verdict, err := rc.check(ctx, step, out)
	if err != nil {
		// Prometheus itself failed: hold, count nothing, say so.
		var pe *gates.PrometheusError
		if errors.As(err, &pe) || errors.Is(err, errNoPrometheus) {
			memo.lastErr = err.Error()
			rc.r.log.Warn("gates not evaluated: Prometheus failed; holding the step", "release", rc.e.id, "step", step.Name, "err", err)
			memo.lastCheck = rc.now
			return step.Gates.Interval, nil
		}
		return 0, err
	}
	memo.lastCheck = rc.now
	memo.lastErr = ""
	if done, d, err := rc.watchPullRequest(ctx, steps, i, values); done {
		return d, err
	}
	if verdict == verdictNoData {
		memo.noData++
		if memo.noData <= step.Gates.Threshold {
			verdict = verdictHold
		} else {
			verdict = verdictFail
		}
	} else {
		memo.noData = 0
	}
	switch verdict {
	case verdictHold:
		rc.r.log.Info("gates have no data; holding the step", "release", rc.e.id, "step", step.Name, "gates", gateSummary(values))
		return step.Gates.Interval, nil
	case verdictFail:
		failed := st.FailedChecks + 1
		if failed >= step.Gates.Threshold {
			return 0, rc.rollback(ctx, step, values, fmt.Sprintf("%d/%d checks failed", failed, step.Gates.Threshold))
		}
		s := rc.next()
		s.FailedChecks, s.Gates = failed, values
		subject := fmt.Sprintf("%s: check failed at %s (%s, %d/%d checks failed)", rel.Metadata.Name, stepLabel(step), gateSummary(failing(values)), failed, step.Gates.Threshold)
		if err := rc.r.commit(ctx, rc.e, s, subject, "check", nil); err != nil {
			return 0, err
		}
		rc.st = s
		return step.Gates.Interval, nil
	}
	memo.passed++
	if memo.passed < step.Gates.Iterations {
		rc.r.log.Info("check passed", "release", rc.e.id, "step", step.Name, "passed", memo.passed, "of", step.Gates.Iterations, "gates", gateSummary(values))
		return step.Gates.Interval, nil
	}
	return rc.advance(ctx, steps, i, values)
}

// errNoPrometheus holds a step with metric gates when Sluice has no Prometheus.
var errNoPrometheus = errors.New("the step has metric gates but no Prometheus is configured (--prometheus-url)")

type verdict int

const (
	verdictPass verdict = iota
	verdictFail
	// verdictHold: a metric has no data and the release says to hold.
	verdictHold
	// verdictNoData: a metric has no data, which counts as a failed check
	// once threshold checks in a row had none. A new candidate's series
	// take a scrape or two to appear, so the first ones only hold.
	verdictNoData
)

// check evaluates the step's gates against the candidate.
func (rc *run) check(ctx context.Context, step specs.Step, out *renderer.Output) ([]GateValue, verdict, error) {
	if len(step.Gates.Metrics) == 0 {
		return nil, verdictPass, nil
	}
	if rc.r.cfg.Gates == nil {
		return nil, verdictHold, errNoPrometheus
	}
	rel := rc.e.rel
	results, err := rc.r.cfg.Gates.Evaluate(ctx, gates.Target{
		Namespace: rel.Metadata.Namespace,
		Service:   rel.ServiceName(),
		Workload:  out.Workloads[rel.Spec.Candidate],
		Version:   rel.Spec.Candidate,
	}, step.Gates.Metrics)
	if err != nil {
		return nil, verdictHold, err
	}
	values := make([]GateValue, len(results))
	v := verdictPass
	for i, res := range results {
		g := GateValue{Metric: res.Metric, Min: res.Min, Max: res.Max, Passed: res.Passed}
		if !res.NoData {
			val := res.Value
			g.Value = &val
		}
		values[i] = g
		switch {
		case res.NoData && step.Gates.NoData == specs.NoDataHold:
			if v == verdictPass {
				v = verdictHold
			}
		case res.NoData:
			if v != verdictFail {
				v = verdictNoData
			}
		case !res.Passed:
			v = verdictFail
		}
	}
	rc.r.cfg.Observer.GatesEvaluated(rc.e.id, values)
	return values, v, nil
}

func failing(vals []GateValue) []GateValue {
	var out []GateValue
	for _, g := range vals {
		if !g.Passed {
			out = append(out, g)
		}
	}
	return out
}

// advance records the next step, unless an approval or the release window
// holds it, then applies it.
func (rc *run) advance(ctx context.Context, steps []specs.Step, i int, values []GateValue) (time.Duration, error) {
	rel := rc.e.rel
	cur, next := steps[i], steps[i+1]
	s := rc.next()
	s.Gates = values
	if next.Approval == specs.ApprovalManual && !rel.Approved(next.Stage) {
		s.Phase = PhaseWaiting
		s.Message = fmt.Sprintf("%s waits for approval: add {stage: %s, candidate: %s} to spec.approvals in %s", next.Name, next.Stage, rel.Spec.Candidate, rc.e.file)
		return rc.wait(ctx, s, fmt.Sprintf("%s: %s passed; %s waits for approval", rel.Metadata.Name, stepLabel(cur), next.Name))
	}
	if w := rel.Spec.Window; w != nil {
		open, opens, err := w.Open(rc.now)
		if err != nil {
			return 0, rc.invalid(ctx, err)
		}
		if !open {
			s.Phase = PhaseWaiting
			s.Message = fmt.Sprintf("%s waits for the release window (%s for %s), next open at %s", next.Name, w.Schedule, w.Duration, opens.UTC().Format(time.RFC3339))
			d, err := rc.wait(ctx, s, fmt.Sprintf("%s: %s passed; %s waits for the release window", rel.Metadata.Name, stepLabel(cur), next.Name))
			if wait := opens.Sub(rc.now); err == nil && wait > 0 && wait < d {
				d = wait
			}
			return d, err
		}
	}
	// A pull request approves the whole stage: it is asked for once,
	// before the stage's first step.
	if next.Approval == specs.ApprovalPullRequest && next.Stage != cur.Stage && !rel.Approved(next.Stage) {
		return rc.awaitPullRequest(ctx, steps, i, values)
	}
	s.Phase, s.Since = PhaseProgressing, rc.now
	s.Step, s.StepIndex, s.Weight = next.Name, i+1, next.Weight
	s.PullRequest = nil
	figures := gateSummary(values)
	if figures == "" {
		figures = "available"
	}
	subject := fmt.Sprintf("%s: %s -> %s (%s)", rel.Metadata.Name, stepLabel(cur), stepLabel(next), figures)
	if err := rc.r.commit(ctx, rc.e, s, subject, "advance", nil); err != nil {
		return 0, err
	}
	rc.retirePullRequest(ctx, rc.st, fmt.Sprintf("%s was approved in spec.approvals; Sluice advanced without this pull request.", next.Stage))
	rc.st = s
	rc.resetMemo(s)
	if _, err := rc.apply(ctx, next, s.Revision); err != nil {
		return 0, err
	}
	return availabilityPoll, nil
}

// wait records (once) that the release waits before its next step.
func (rc *run) wait(ctx context.Context, s *Status, subject string) (time.Duration, error) {
	if rc.st.Phase != PhaseWaiting || rc.st.Message != s.Message {
		if err := rc.r.commit(ctx, rc.e, s, subject, "wait", nil); err != nil {
			return 0, err
		}
		rc.st = s
	}
	// Passing checks are not lost while waiting: the step advances as soon
	// as the approval lands or the window opens.
	rc.memo.passed = rc.e.rel.Spec.Analysis.Iterations
	return waitPoll, nil
}

// rollback records the rollback, then sends all traffic back to stable.
func (rc *run) rollback(ctx context.Context, at specs.Step, values []GateValue, why string) error {
	rel := rc.e.rel
	s := rc.next()
	s.Phase, s.Since = PhaseRolledBack, rc.now
	s.Step, s.StepIndex, s.Weight = string(specs.KindRollback), at.Index, 0
	if values != nil {
		s.Gates = values
		s.FailedChecks++
	}
	s.Retry = rel.Spec.Retry
	reason := why
	if f := gateSummary(failing(values)); f != "" {
		reason = f + ", " + why
	}
	s.Message = fmt.Sprintf("rolled back at %s: %s", at.Name, reason)
	s.PullRequest = nil
	subject := fmt.Sprintf("%s: rolled back at %s (%s)", rel.Metadata.Name, stepLabel(at), reason)
	if err := rc.r.commit(ctx, rc.e, s, subject, "rollback", nil); err != nil {
		return err
	}
	rc.retirePullRequest(ctx, rc.st, fmt.Sprintf("Sluice rolled the release back at %s: %s.", at.Name, reason))
	rc.st = s
	rc.resetMemo(s)
	_, err := rc.apply(ctx, specs.RollbackStep(rel), s.Revision)
	return err
}

// promote records the candidate as stable, in the status and in the spec,
// once the promote step holds all traffic on it.
func (rc *run) promote(ctx context.Context, step specs.Step) error {
	rel := rc.e.rel
	s := rc.next()
	s.Phase, s.Since = PhasePromoted, rc.now
	s.Stable, s.Weight = rel.Spec.Candidate, 100
	s.PullRequest = nil
	subject := fmt.Sprintf("%s: promoted %s (%s retired)", rel.Metadata.Name, rel.Spec.Candidate, rel.Spec.Stable)
	edit := gitsync.Edit{Path: rc.e.file, Apply: promoteEdit(rel.Metadata.Namespace, rel.Metadata.Name, rel.Spec.Candidate)}
	if err := rc.r.commit(ctx, rc.e, s, subject, "promote", []gitsync.Edit{edit}); err != nil {
		return err
	}
	rc.st = s
	return nil
}

// apply renders a step and applies it, unless the same render was applied
// recently (a periodic re-apply corrects drift).
func (rc *run) apply(ctx context.Context, step specs.Step, revision string) (*renderer.Output, error) {
	rel := rc.e.rel
	memo := rc.memo
	recent := rc.now.Sub(memo.appliedAt) < rc.r.cfg.ReapplyInterval
	// Most reconciles find the step as it was applied: the fingerprint
	// tells so without a kustomize build, and no rendered objects are
	// kept in memory between reconciles.
	fp, err := rc.r.renderer.Fingerprint(ctx, rc.snap.tree, rel, step)
	if err != nil {
		return nil, err
	}
	if recent && memo.applied != "" && memo.renderKey == fp.Key {
		return fp, nil
	}
	out, err := rc.r.renderer.Render(ctx, rc.snap.tree, rel, step)
	if err != nil {
		return nil, err
	}
	hash, err := out.Digest()
	if err != nil {
		return nil, err
	}
	if memo.applied == hash && recent {
		memo.renderKey = out.Key
		return out, nil
	}
	res, err := rc.r.cfg.Cluster.Apply(ctx, cluster.Set{Owner: out.Owner, Objects: out.Objects}, cluster.ApplyOptions{})
	if err != nil {
		return nil, fmt.Errorf("apply %s step %s: %w", rel.ID(), step.Name, err)
	}
	if res.Changed() {
		rc.r.log.Info("applied", "release", rel.ID(), "step", step.Name, "revision", shortRev(revision),
			"created", len(res.Created), "updated", len(res.Updated), "pruned", len(res.Pruned), "drift", len(res.Drift))
	}
	memo.applied, memo.appliedAt, memo.renderKey = hash, rc.now, out.Key
	return out, nil
}

func memoKey(st *Status) string {
	return st.Revision + "/" + st.Step + "/" + st.Since.UTC().Format(time.RFC3339)
}

func (rc *run) ensureMemo(st *Status) {
	key := memoKey(st)
	if rc.memo.stepKey != key {
		rc.resetMemo(st)
	}
}

func (rc *run) resetMemo(st *Status) {
	m := rc.memo
	m.stepKey = memoKey(st)
	m.passed, m.noData, m.lastCheck, m.lastErr = 0, 0, time.Time{}, ""
	m.stepSeen = rc.now
}
