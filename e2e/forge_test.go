package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"code.gitea.io/sdk/gitea"

	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/internal/testenv"
	"sluice.dev/sluice/record"
)

// forgeStack runs the catalog release with a real Gitea as the Git remote
// and the forge, its push webhook pointed at sluice, and the canary stage
// approved by pull request. alice is a person with write access.
type forgeStack struct {
	*stack.Stack
	g     *testenv.Gitea
	alice *gitea.Client
	admin *gitea.Client
}

func startForgeStack(t *testing.T, namespace string, threshold int) *forgeStack {
	t.Helper()
	testenv.SkipIfShort(t, "Gitea and the local test cluster")
	ctx := t.Context()
	g, err := testenv.StartGitea(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gitea log: %s", g.Dir()+"/gitea.log")
		}
		_ = g.Stop()
	})
	t.Logf("gitea up in %s", g.StartupDuration)
	s := startStack(t, stack.Options{
		Namespace: namespace, Threshold: threshold, Gitea: g,
		Approvals:     map[string]string{"canary": "pullRequest"},
		WebhookSecret: "forge-webhook-secret",
	})
	aliceTok, err := g.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.AddCollaborator(ctx, s.GiteaRepo, "alice"); err != nil {
		t.Fatal(err)
	}
	fs := &forgeStack{Stack: s, g: g}
	if fs.alice, err = g.ClientAs(context.Background(), aliceTok); err != nil {
		t.Fatal(err)
	}
	if fs.admin, err = g.Client(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.StartSluice(ctx); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhaseSteady, time.Minute)
	return fs
}

// pulls lists the repository's pull requests in state.
func (fs *forgeStack) pulls(t *testing.T, state gitea.StateType) []*gitea.PullRequest {
	t.Helper()
	prs, _, err := fs.admin.ListRepoPullRequests(testenv.GiteaAdmin, fs.GiteaRepo, gitea.ListPullRequestsOptions{State: state, ListOptions: gitea.ListOptions{PageSize: 50}})
	if err != nil {
		t.Fatal(err)
	}
	return prs
}

// commitStatus is the state of the release's status on sha.
func (fs *forgeStack) commitStatus(ctx context.Context, sha string) (gitea.StatusState, string, error) {
	st, _, err := fs.admin.GetCombinedStatus(testenv.GiteaAdmin, fs.GiteaRepo, sha)
	if err != nil {
		return "", "", err
	}
	for _, s := range st.Statuses {
		if s.Context == record.StatusContext(fs.Namespace+"/catalog") {
			return s.State, s.Description, nil
		}
	}
	return "", "", nil
}

func (fs *forgeStack) waitCommitStatus(t *testing.T, sha string, want gitea.StatusState) string {
	t.Helper()
	var desc string
	err := stack.WaitFor(t.Context(), releaseTimeout, 250*time.Millisecond, fmt.Sprintf("commit status %s on %s", want, sha), func(ctx context.Context) (bool, error) {
		st, d, err := fs.commitStatus(ctx, sha)
		desc = d
		return st == want, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return desc
}

// waitPullRequest waits for the release to wait on an approval pull
// request, and returns its record.
func (fs *forgeStack) waitPullRequest(t *testing.T) *record.Status {
	t.Helper()
	return waitStatus(t, fs.Stack, releaseTimeout, "an approval pull request", func(st *record.Status) bool {
		return st.Phase == record.PhaseWaiting && st.PullRequest != nil
	})
}

// pushAndWaitPullRequest has the person push candidate v2 and waits for
// the approval pull request; it returns the person's commit and the status.
func (fs *forgeStack) pushAndWaitPullRequest(t *testing.T) (string, *record.Status) {
	t.Helper()
	sha, err := fs.PushCandidate(t.Context(), "v2")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(sha), fs.waitPullRequest(t)
}

func TestForgeApprovalMerged(t *testing.T) {
	t.Parallel()
	fs := startForgeStack(t, "forge-merge", 0)
	ctx := t.Context()
	sha, st := fs.pushAndWaitPullRequest(t)
	if st.Commit != sha {
		t.Errorf("status records commit %q, want the person's %s", st.Commit, sha)
	}
	if st.Step != "dark-launch" || st.PullRequest.Step != "canary-10" || st.PullRequest.Branch != "sluice/forge-merge/catalog/canary-10" {
		t.Errorf("waiting record = %+v (pull request %+v)", st, st.PullRequest)
	}
	if desc := fs.waitCommitStatus(t, sha, gitea.StatusPending); !strings.Contains(desc, "canary-10") && !strings.Contains(desc, "dark-launch") {
		t.Errorf("pending status says %q", desc)
	}
	open := fs.pulls(t, gitea.StateOpen)
	if len(open) != 1 {
		t.Fatalf("%d open pull requests, want 1", len(open))
	}
	pr := open[0]
	if pr.Index != st.PullRequest.Number || pr.Head.Ref != st.PullRequest.Branch || pr.Base.Ref != "main" {
		t.Errorf("pull request #%d %s -> %s, status records %+v", pr.Index, pr.Head.Ref, pr.Base.Ref, st.PullRequest)
	}
	for _, want := range []string{"| metric | value | threshold | result |", "| request-success-rate |", "| request-duration |", "canary-10", "10%", "**now** | dark-launch"} {
		if !strings.Contains(pr.Body, want) {
			t.Errorf("pull request body lacks %q:\n%s", want, pr.Body)
		}
	}

	// alice merges it: the approval. Gitea checks mergeability in the
	// background, so the merge is retried until it is accepted.
	merged := false
	if err := stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "merge", func(context.Context) (bool, error) {
		ok, _, err := fs.alice.MergePullRequest(testenv.GiteaAdmin, fs.GiteaRepo, pr.Index, gitea.MergePullRequestOption{Style: gitea.MergeStyleMerge})
		merged = ok
		return ok, err
	}); err != nil || !merged {
		t.Fatalf("merge #%d: %v", pr.Index, err)
	}
	waitPhase(t, fs.Stack, record.PhasePromoted, releaseTimeout)
	fs.waitCommitStatus(t, sha, gitea.StatusSuccess)

	log, err := fs.Log(ctx)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(log, "\n")
	for _, want := range []string{"waits for approval in pull request #", "Merge pull request", "10% -> 20%", "promoted v2"} {
		if !strings.Contains(joined, want) {
			t.Errorf("git log lacks %q:\n%s", want, joined)
		}
	}
	if n := len(fs.pulls(t, gitea.StateAll)); n != 1 {
		t.Errorf("%d pull requests in all, want 1", n)
	}
	// The forge token (also the Git password here) stays out of the logs.
	if strings.Contains(fs.Logs(), fs.g.Token) {
		t.Error("sluice logged the forge token")
	}
}

func TestForgeApprovalClosed(t *testing.T) {
	t.Parallel()
	fs := startForgeStack(t, "forge-close", 0)
	ctx := t.Context()
	sha, st := fs.pushAndWaitPullRequest(t)
	fs.waitCommitStatus(t, sha, gitea.StatusPending)

	closed := gitea.StateClosed
	if _, _, err := fs.alice.EditPullRequest(testenv.GiteaAdmin, fs.GiteaRepo, st.PullRequest.Number, gitea.EditPullRequestOption{State: &closed}); err != nil {
		t.Fatal(err)
	}
	rb := waitPhase(t, fs.Stack, record.PhaseRolledBack, releaseTimeout)
	if !strings.Contains(rb.Message, fmt.Sprintf("pull request #%d closed by alice", st.PullRequest.Number)) {
		t.Errorf("rollback message = %q, want who closed it", rb.Message)
	}
	if desc := fs.waitCommitStatus(t, sha, gitea.StatusFailure); !strings.Contains(desc, "closed by alice") {
		t.Errorf("failure status says %q", desc)
	}
	log, err := fs.Log(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last := log[len(log)-1]; !strings.Contains(last, "rolled back at dark-launch") || !strings.Contains(last, "closed by alice") {
		t.Errorf("last commit = %q, want the rollback naming who closed the pull request", last)
	}
	mustRouteStable(t, fs.Namespace)
	if n := len(fs.pulls(t, gitea.StateOpen)); n != 0 {
		t.Errorf("%d pull requests still open", n)
	}
}

func mustRouteStable(t *testing.T, ns string) {
	t.Helper()
	err := stack.WaitFor(t.Context(), time.Minute, 250*time.Millisecond, "mesh route all on v1", func(context.Context) (bool, error) {
		return slices.Equal(routes(t, ns, "catalog-mesh"), []string{"v1=100"}), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Gates failing while the pull request is open: Sluice rolls back,
// comments on the pull request and closes it.
func TestForgeGatesFailWhilePullRequestOpen(t *testing.T) {
	t.Parallel()
	fs := startForgeStack(t, "forge-gates", 2)
	sha, st := fs.pushAndWaitPullRequest(t)
	if err := fs.Mesh.SetVersion("v2", 0.5, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	rb := waitPhase(t, fs.Stack, record.PhaseRolledBack, releaseTimeout)
	if !strings.Contains(rb.Message, "success-rate") {
		t.Errorf("rollback message = %q, want the failing gate", rb.Message)
	}
	fs.waitCommitStatus(t, sha, gitea.StatusFailure)
	pr, _, err := fs.admin.GetPullRequest(testenv.GiteaAdmin, fs.GiteaRepo, st.PullRequest.Number)
	if err != nil {
		t.Fatal(err)
	}
	if pr.State != gitea.StateClosed || pr.HasMerged {
		t.Errorf("pull request #%d is %s (merged %v), want closed", pr.Index, pr.State, pr.HasMerged)
	}
	comments, _, err := fs.admin.ListIssueComments(testenv.GiteaAdmin, fs.GiteaRepo, pr.Index, gitea.ListIssueCommentOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(comments) == 0 || !strings.Contains(comments[len(comments)-1].Body, "rolled the release back") {
		t.Errorf("comments = %v, want Sluice's note of the rollback", comments)
	}
	mustRouteStable(t, fs.Namespace)
}

func TestForgeRestartOpensNoDuplicate(t *testing.T) {
	t.Parallel()
	fs := startForgeStack(t, "forge-restart", 0)
	ctx := t.Context()
	_, st := fs.pushAndWaitPullRequest(t)
	body := fs.pulls(t, gitea.StateOpen)[0].Body

	if err := fs.KillSluice(); err != nil {
		t.Fatal(err)
	}
	if err := fs.StartSluice(ctx); err != nil {
		t.Fatal(err)
	}
	// The restarted Sluice has looked at the pull request once it has
	// refreshed the body with a later check.
	if err := stack.WaitFor(ctx, releaseTimeout, 250*time.Millisecond, "the restarted sluice to refresh the pull request", func(context.Context) (bool, error) {
		open := fs.pulls(t, gitea.StateOpen)
		return len(open) == 1 && open[0].Body != body, nil
	}); err != nil {
		t.Fatal(err)
	}
	// Later checks refresh the body but leave the branch alone: its
	// record does not change while nothing on the watched branch does.
	tip := func() string {
		b, _, err := fs.admin.GetRepoBranch(testenv.GiteaAdmin, fs.GiteaRepo, st.PullRequest.Branch)
		if err != nil {
			t.Fatal(err)
		}
		return b.Commit.ID
	}
	refreshed := func() {
		t.Helper()
		body := fs.pulls(t, gitea.StateOpen)[0].Body
		if err := stack.WaitFor(ctx, releaseTimeout, 250*time.Millisecond, "another refresh of the pull request", func(context.Context) (bool, error) {
			return fs.pulls(t, gitea.StateOpen)[0].Body != body, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The first check after the restart may still rebuild the branch on
	// the record the killed Sluice made last.
	refreshed()
	before := tip()
	refreshed()
	if after := tip(); after != before {
		t.Errorf("branch %s moved from %s to %s between two checks", st.PullRequest.Branch, before, after)
	}
	all := fs.pulls(t, gitea.StateAll)
	if len(all) != 1 || all[0].Index != st.PullRequest.Number {
		t.Fatalf("after a restart: %d pull requests, want only #%d", len(all), st.PullRequest.Number)
	}
	now, err := status(ctx, fs.Stack)
	if err != nil {
		t.Fatal(err)
	}
	if now.PullRequest == nil || now.PullRequest.Number != st.PullRequest.Number || now.Phase != record.PhaseWaiting {
		t.Errorf("after a restart the record is %+v", now)
	}
}
