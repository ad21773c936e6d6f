package reconciler

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/forge"
	"sluice.dev/sluice/gates"
	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/renderer"
	"sluice.dev/sluice/specs"
)

// run is one reconcile of one release: it observes, asks the machine
// (Decide) what to do, and carries the decision out. It is the only place
// that records a transition, and it records before it applies.
type run struct {
	r    *Reconciler
	snap *snapshot
	e    *entry
	st   *record.Status // as recorded in Git; nil when never recorded
	now  time.Time
	memo *releaseMemo
	// out is the render of the step applied in this reconcile.
	out *renderer.Output
	// step is the step applied in this reconcile.
	step *specs.Step
	// bg is what work left running after the reconcile (load webhooks)
	// is bound to.
	bg background
}

// background is the context of work a reconcile leaves running: the
// worker's (work), ended also when the release's shard (shard, nil
// without shards) is lost; never the reconcile's own context, which ends
// as soon as the reconcile returns.
type background struct {
	work, shard context.Context
}

// context returns a context for one piece of background work, and a
// func to call once it is done; ctx is used when no worker's context
// was given.
func (b background) context(ctx context.Context) (context.Context, func()) {
	if b.work != nil {
		ctx = b.work
	}
	if b.shard == nil {
		return ctx, func() {}
	}
	bctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.shard, cancel)
	return bctx, func() {
		stop()
		cancel()
	}
}

// recordError is a failure to record a transition in Git: it is Git's, not
// the release's, so it never blocks the release.
type recordError struct{ err error }

func (e *recordError) Error() string { return e.err.Error() }
func (e *recordError) Unwrap() error { return e.err }

// maxRounds bounds the observe-and-decide rounds of one reconcile; the
// machine asks for at most availability, gates and a pull request, once
// each, plus a resume.
const maxRounds = 8

func (rc *run) reconcile(ctx context.Context) (time.Duration, error) {
	in := rc.input(ctx)
	for range maxRounds {
		d := Decide(in)
		if err := rc.execute(ctx, in, d); err != nil {
			return 0, err
		}
		// What failed before worked this time: the failures are history.
		in.Failure = nil
		rc.memo.counters, in.Memo = d.Memo, d.Memo
		if d.Action != "" {
			// What was observed belongs to the step before the record.
			in.Status = d.Status
			in.Available, in.Gates, in.PullRequest, in.Hooks = nil, nil, nil, nil
		}
		if d.Note != "" {
			rc.r.log.Info(d.Note, "release", rc.e.id, "step", stepOf(in.Status), "gates", gatesOf(in.Gates))
		}
		if d.Sync {
			rc.r.Trigger()
		}
		switch d.Need {
		case NeedNothing:
			rc.startLoad(ctx, in, d)
			return d.Requeue, nil
		case NeedHooks:
			in.Hooks = rc.preStep(ctx, in, *d.PreStep)
		case NeedAvailability:
			a, err := rc.available(ctx)
			if err != nil {
				return 0, err
			}
			in.Available = a
		case NeedGates:
			g, err := rc.check(ctx, in)
			if err != nil {
				return 0, err
			}
			in.Gates = g
		case NeedPullRequest:
			pr, err := rc.pullRequest(ctx, in, d.PullRequest)
			if err != nil {
				return 0, err
			}
			in.PullRequest = pr
		case NeedApplied:
			in.Applied = true
		case NeedNext:
		}
	}
	return 0, fmt.Errorf("release %s: the state machine did not settle in %d rounds", rc.e.id, maxRounds)
}

// input is what Decide needs to start with: the spec, its revision and
// plan, and the record.
func (rc *run) input(ctx context.Context) Input {
	e, r := rc.e, rc.r
	in := Input{
		Now: rc.now, Release: e.id, Namespace: e.namespace, Name: e.name, File: e.file,
		Status: rc.st, Head: rc.snap.head.String(), Memo: rc.memo.counters, Forge: r.cfg.Forge != nil, Watched: r.watched,
		ProgressDeadline: r.cfg.ProgressDeadline, ReapplyInterval: r.cfg.ReapplyInterval,
		Failure: rc.memo.failure,
	}
	switch {
	case e.err != nil:
		in.Invalid = e.err
		return in
	case !r.allowed(e.namespace):
		in.Invalid = fmt.Errorf("%s: metadata.namespace: %q is not in Sluice's allowed namespaces %v", e.file, e.namespace, r.cfg.AllowedNamespaces)
		return in
	}
	in.Spec = e.rel
	if e.rel.Spec.Candidate == "" {
		return in
	}
	rev, err := r.renderer.Revision(ctx, rc.snap.tree, e.rel, e.rel.Spec.Candidate)
	if err != nil {
		in.Invalid = err
		return in
	}
	steps, err := specs.Plan(e.rel)
	if err != nil {
		in.Invalid = err
		return in
	}
	in.Revision, in.Plan = rev, steps
	if in.Cluster = r.cfg.ClusterName; sharedSpec(in) {
		in.Peers = rc.peers(e.rel.Spec.Clusters)
	}
	return in
}

// peers reads the release's records on the other clusters a shared spec
// names. An unreadable one counts as none: the spec then waits for that
// cluster, which is the safe side.
func (rc *run) peers(clusters []string) map[string]*record.Status {
	r, e := rc.r, rc.e
	if path.Base(r.cfg.StatusDir) != r.cfg.ClusterName {
		return nil
	}
	root := path.Dir(r.cfg.StatusDir)
	out := map[string]*record.Status{}
	for _, c := range clusters {
		if c == r.cfg.ClusterName {
			continue
		}
		st, err := r.statuses.Read(rc.snap.tree, path.Join(root, c), e.namespace, e.name)
		if err != nil {
			r.log.Warn("status file of another cluster unreadable", "release", e.id, "cluster", c, "err", err)
		}
		out[c] = st
	}
	return out
}

// execute carries a decision out: the record first, then the cluster and
// the forge.
func (rc *run) execute(ctx context.Context, in Input, d Decision) error {
	if d.Action != "" {
		var edits []gitsync.Edit
		if d.PromoteSpec {
			edits = []gitsync.Edit{{Path: rc.e.file, Apply: specs.PromoteEdit(in.Namespace, in.Name, in.Spec.Spec.Candidate)}}
		}
		if err := rc.r.commit(ctx, rc.e, record.Entry{
			Release: rc.e.id, Namespace: rc.e.namespace, Name: rc.e.name,
			Status: d.Status, Action: d.Action, Subject: d.Subject, Edits: edits,
		}); err != nil {
			return &recordError{err}
		}
		rc.st = d.Status
	}
	if d.PullRequest.Op == PullRequestRetire {
		rc.retirePullRequest(ctx, d.PullRequest)
	}
	if d.Apply != nil {
		revision := ""
		if st := rc.st; st != nil {
			revision = st.Revision
		}
		out, err := rc.apply(ctx, *d.Apply, revision, d.Need == NeedApplied)
		if err != nil {
			return err
		}
		rc.out, rc.step = out, d.Apply
	}
	switch d.PullRequest.Op {
	case PullRequestRefresh:
		rc.refreshPullRequest(ctx, in, d.PullRequest)
	case PullRequestRebase:
		if _, err := rc.propose(ctx, in, d.PullRequest); err != nil {
			return err
		}
	}
	return nil
}

// available reports whether the applied step's workloads are up.
func (rc *run) available(ctx context.Context) (*Availability, error) {
	if rc.step == nil || rc.out == nil {
		return nil, errors.New("availability asked for before a step was applied")
	}
	for _, v := range rc.step.Versions {
		w := rc.out.Workloads[v]
		ok, reason, err := rc.r.cfg.Cluster.Available(ctx, rc.e.namespace, w)
		if err != nil {
			return nil, err
		}
		if !ok {
			return &Availability{Workload: w, Reason: reason}, nil
		}
	}
	// Gateway API routes count as applied once their controllers accept them.
	if rt, ok := rc.r.cfg.Cluster.(RouteChecker); ok && len(rc.out.Routes) > 0 {
		ok, reason, err := rt.RoutesReady(ctx, rc.e.namespace, rc.out.Routes)
		if err != nil {
			return nil, err
		}
		if !ok {
			return &Availability{Workload: "routes", Reason: reason}, nil
		}
	}
	return &Availability{OK: true}, nil
}

// check evaluates the current step's gates against the candidate. A
// Prometheus that fails (or is missing) is an observation, not an error.
func (rc *run) check(ctx context.Context, in Input) (*GateCheck, error) {
	step := in.Plan[in.Status.StepIndex]
	var results []gates.Result
	if len(step.Gates.Metrics) > 0 {
		if rc.r.cfg.Gates == nil {
			return &GateCheck{Err: errNoPrometheus}, nil
		}
		rel := in.Spec
		var err error
		results, err = rc.r.cfg.Gates.Evaluate(ctx, gates.Target{
			Namespace: rel.Metadata.Namespace,
			Service:   rel.ServiceName(),
			Workload:  rc.out.Workloads[rel.Spec.Candidate],
			Version:   rel.Spec.Candidate,
		}, step.Gates.Metrics)
		if err != nil {
			var pe *gates.PrometheusError
			if errors.As(err, &pe) {
				rc.r.log.Warn("gates not evaluated: Prometheus failed", "release", rc.e.id, "step", step.Name, "err", err)
				return &GateCheck{Err: err}, nil
			}
			return nil, err
		}
	}
	g := &GateCheck{Values: make([]record.GateValue, len(results)), Verdict: VerdictPass}
	for i, res := range results {
		v := record.GateValue{Metric: res.Metric, Min: res.Min, Max: res.Max, Passed: res.Passed}
		if !res.NoData {
			val := res.Value
			v.Value = &val
		}
		g.Values[i] = v
		switch {
		case res.NoData:
			if g.Verdict != VerdictFail {
				g.Verdict = VerdictNoData
			}
		case !res.Passed:
			g.Verdict = VerdictFail
		}
	}
	// Check webhooks run beside the metrics: one that fails fails the check.
	for _, v := range rc.checkHooks(ctx, in, step) {
		g.Values = append(g.Values, v)
		if !v.Passed {
			g.Verdict = VerdictFail
		}
	}
	rc.r.cfg.Observer.GatesEvaluated(rc.e.id, g.Values)
	return g, nil
}

// apply renders a step and applies it, unless the same render was applied
// recently and none of its objects changed since (the cluster's watches
// say so; a periodic re-apply corrects drift they missed). force applies
// in any case.
func (rc *run) apply(ctx context.Context, step specs.Step, revision string, force bool) (*renderer.Output, error) {
	rel := rc.e.rel
	memo := rc.memo
	recent := rc.now.Sub(memo.appliedAt) < rc.r.cfg.ReapplyInterval && !force
	if memo.changed.Swap(false) {
		recent = false // an object changed: compare it with what Sluice applied
	}
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
	// A release in progress does not wait for the watches of a shard just
	// gained to sync: a takeover moves it on first.
	res, err := rc.r.cfg.Cluster.Apply(ctx, cluster.Set{Owner: out.Owner, Objects: out.Objects}, cluster.ApplyOptions{Urgent: rel.Spec.Candidate != ""})
	if err != nil {
		return nil, fmt.Errorf("apply %s step %s: %w", rel.ID(), step.Name, err)
	}
	if res.Changed() {
		rc.r.log.Info("applied", "release", rel.ID(), "step", step.Name, "revision", shortRev(revision),
			"created", len(res.Created), "updated", len(res.Updated), "pruned", len(res.Pruned), "drift", len(res.Drift))
	}
	if len(res.Drift) > 0 {
		rc.r.cfg.Observer.Drifted(ctx, Drift{Release: rel.ID(), Namespace: rc.e.namespace, Name: rc.e.name,
			Step: step.Name, Fields: res.Drift, VirtualService: rc.r.eventTarget(rc.e), RouteKind: rc.r.eventTargetKind(rc.e)})
	}
	memo.applied, memo.appliedAt, memo.renderKey = hash, rc.now, out.Key
	return out, nil
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
	cs := forge.CommitStatus{Context: record.StatusContext(st.Release)}
	switch st.Phase {
	case record.PhaseProgressing:
		cs.State, cs.Description = forge.StatusPending, fmt.Sprintf("%s: %s (%d%%)", st.Candidate, st.Step, st.Weight)
	case record.PhaseWaiting:
		cs.State, cs.Description = forge.StatusPending, fmt.Sprintf("%s: %s passed; waiting", st.Candidate, st.Step)
		if st.PullRequest != nil {
			cs.Description = fmt.Sprintf("%s: %s waits for approval in #%d", st.Candidate, st.PullRequest.Step, st.PullRequest.Number)
			cs.TargetURL = st.PullRequest.URL
		}
	case record.PhasePromoted:
		cs.State, cs.Description = forge.StatusSuccess, fmt.Sprintf("%s promoted", st.Stable)
	case record.PhaseRolledBack:
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

// pullRequest observes an approval pull request. Ensure first pushes the
// approval branch (the record of the advance, as advance would commit it,
// on top of the watched branch) and opens the pull request unless one is
// recorded.
func (rc *run) pullRequest(ctx context.Context, in Input, a PullRequestAction) (*PullRequestState, error) {
	f := rc.r.cfg.Forge
	if a.Op == PullRequestRead {
		pr, err := f.PullRequest(ctx, a.Ref.Number)
		if err != nil {
			// Unknown is treated as still open: the next check looks again.
			rc.r.log.Warn("forge: cannot read the approval pull request", "release", rc.e.id, "number", a.Ref.Number, "err", err)
			return &PullRequestState{Number: a.Ref.Number, URL: a.Ref.URL, Branch: a.Ref.Branch, State: forge.StateOpen}, nil
		}
		return prState(pr, a.Ref.Branch), nil
	}
	prop, err := rc.propose(ctx, in, a)
	if err != nil {
		return nil, err
	}
	branch := record.ApprovalBranch(in.Namespace, in.Name, a.Step)
	if prop.NoChange {
		return &PullRequestState{Branch: branch, Proposed: true, InGit: true}, nil
	}
	var pr *forge.PullRequest
	if a.Ref != nil {
		// The recorded one, whatever its state: a closed one is never
		// replaced by a new one (the next check rolls back).
		if pr, err = f.PullRequest(ctx, a.Ref.Number); err != nil {
			return nil, err
		}
	} else {
		title, body := rc.pullRequestText(in, a.Index, a.Step)
		created := false
		pr, created, err = f.EnsurePullRequest(ctx, forge.NewPullRequest{Head: branch, Base: rc.r.cfg.Repo.Branch(), Title: title, Body: body})
		if err != nil {
			return nil, err
		}
		if created {
			rc.r.log.Info("approval pull request opened", "release", rc.e.id, "step", a.Step, "number", pr.Number, "url", pr.URL)
		}
	}
	s := prState(pr, branch)
	s.Proposed = true
	return s, nil
}

func prState(pr *forge.PullRequest, branch string) *PullRequestState {
	return &PullRequestState{Number: pr.Number, URL: pr.URL, Branch: branch, State: pr.State, By: pr.By}
}

// pullRequestText is the title and body of the pull request that approves
// step, with the latest gate values.
func (rc *run) pullRequestText(in Input, i int, step string) (title, body string) {
	rel := in.Spec
	title = fmt.Sprintf("%s: approve %s (%s -> %s)", rel.ID(), step, rel.Spec.Stable, rel.Spec.Candidate)
	var values []record.GateValue
	if in.Gates != nil {
		values = in.Gates.Values
	}
	s := forge.Summary{
		Release: rel.ID(), Stable: rel.Spec.Stable, Candidate: rel.Spec.Candidate, Step: step,
		CheckedAt: in.Now, FailedChecks: in.Status.FailedChecks, Threshold: in.Plan[i].Gates.Threshold,
	}
	for j, st := range in.Plan {
		s.Steps = append(s.Steps, forge.StepLine{Name: st.Name, Weight: st.Weight, Done: j < i, Current: j == i})
	}
	for _, g := range values {
		s.Gates = append(s.Gates, forge.GateLine{Metric: g.Metric, Value: g.Value, Min: g.Min, Max: g.Max, Passed: g.Passed})
	}
	return title, forge.PullRequestBody(s)
}

// refreshPullRequest keeps the open pull request's body up to date with
// the latest check. The forge being down only delays it.
func (rc *run) refreshPullRequest(ctx context.Context, in Input, a PullRequestAction) {
	f := rc.r.cfg.Forge
	pr, err := f.PullRequest(ctx, a.Ref.Number)
	if err != nil || pr.State != forge.StateOpen {
		return
	}
	title, body := rc.pullRequestText(in, a.Index, a.Ref.Step)
	if pr.Body == body && pr.Title == title {
		return
	}
	if err := f.UpdatePullRequest(ctx, pr.Number, title, body); err != nil {
		rc.r.log.Warn("forge: cannot refresh the approval pull request", "release", rc.e.id, "number", pr.Number, "err", err)
	}
}

// propose pushes the approval branch: the record of the advance to the
// step after the current one, as advance would commit it, on top of the
// watched branch.
func (rc *run) propose(ctx context.Context, in Input, a PullRequestAction) (gitsync.ProposeResult, error) {
	i := a.Index
	nxt := in.Plan[i+1]
	// On the record as it now stands: the one that names this pull
	// request, once made.
	s := *rc.st
	s.SpecFile = in.File
	s.Phase = record.PhaseProgressing
	// The branch's content must not change from one reconcile to the next,
	// or it would be pushed again at every check: no clock and no fresh
	// gate values in it, only what the recorded status already says.
	s.Step, s.StepIndex, s.Weight = nxt.Name, i+1, nxt.Weight
	s.Message = ""
	s.PullRequest = a.Ref
	if a.Ref != nil {
		s.Message = fmt.Sprintf("approved by merging pull request #%d", a.Ref.Number)
	}
	change, err := record.Change(rc.r.cfg.StatusDir, record.Entry{
		Release: rc.e.id, Namespace: rc.e.namespace, Name: rc.e.name,
		Status: &s, Action: record.ActionAdvance, Subject: a.Subject,
	})
	if err != nil {
		return gitsync.ProposeResult{}, err
	}
	branch := record.ApprovalBranch(in.Namespace, in.Name, nxt.Name)
	res, err := rc.r.cfg.Repo.Propose(ctx, branch, change)
	if err != nil {
		return res, fmt.Errorf("approval branch of %s: %w", rc.e.id, err)
	}
	return res, nil
}

// retirePullRequest closes a moot approval pull request, with a comment
// saying why, and deletes its branch. Failures are logged: a forge that is
// down never holds a release.
func (rc *run) retirePullRequest(ctx context.Context, a PullRequestAction) {
	f := rc.r.cfg.Forge
	if f == nil || a.Ref == nil {
		return
	}
	ref := a.Ref
	if a.Comment != "" {
		if err := f.Comment(ctx, ref.Number, a.Comment); err != nil {
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

func gatesOf(g *GateCheck) string {
	if g == nil {
		return ""
	}
	return record.Summary(g.Values)
}
