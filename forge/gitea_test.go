package forge_test

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"code.gitea.io/sdk/gitea"
	"k8s.io/apimachinery/pkg/util/wait"

	"sluice.dev/sluice/forge"
	"sluice.dev/sluice/internal/testenv"
)

// startGitea runs a real Gitea with one repository, sluice-admin/releases,
// whose main branch has one commit, and returns the server and a token file.
func startGitea(t *testing.T, ctx context.Context) (*testenv.Gitea, string) {
	t.Helper()
	testenv.SkipIfShort(t, "Gitea")
	g, err := testenv.StartGitea(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Stop() })
	t.Logf("gitea %s up in %s", g.URL, g.StartupDuration)
	if _, err := g.CreateRepo(ctx, "releases"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, ctx, g, "main", "", "README.md", "releases\n")
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(g.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return g, tokFile
}

// writeFile commits a file through Gitea's API, on branch (made from main
// when newBranch is set), and returns the commit's hash.
func writeFile(t *testing.T, ctx context.Context, g *testenv.Gitea, branch, newBranch, path, content string) string {
	t.Helper()
	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := c.CreateFile(testenv.GiteaAdmin, "releases", path, gitea.CreateFileOptions{
		FileOptions: gitea.FileOptions{Message: "add " + path, BranchName: branch, NewBranchName: newBranch},
		Content:     base64.StdEncoding.EncodeToString([]byte(content)),
	})
	if err != nil {
		t.Fatalf("create %s on %s: %v", path, branch+newBranch, err)
	}
	return res.Commit.SHA
}

func TestGiteaProvider(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	g, tokFile := startGitea(t, ctx)
	p, err := forge.New(forge.Config{Provider: forge.Gitea, URL: g.URL, Repo: testenv.GiteaAdmin + "/releases", TokenFile: tokFile})
	if err != nil {
		t.Fatal(err)
	}
	aliceTok, err := g.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.AddCollaborator(ctx, "releases", "alice"); err != nil {
		t.Fatal(err)
	}
	alice, err := g.ClientAs(ctx, aliceTok)
	if err != nil {
		t.Fatal(err)
	}

	branch := "sluice/shop/catalog/canary-10"
	writeFile(t, ctx, g, "main", branch, "status.yaml", "step: canary-10\n")

	// Opening twice finds the first: a restarted Sluice opens no duplicate.
	pr, created, err := p.EnsurePullRequest(ctx, forge.NewPullRequest{Head: branch, Base: "main", Title: "catalog: approve canary-10", Body: "first"})
	if err != nil || !created {
		t.Fatalf("EnsurePullRequest = %v, created %v, %v", pr, created, err)
	}
	again, created, err := p.EnsurePullRequest(ctx, forge.NewPullRequest{Head: branch, Base: "main", Title: "other", Body: "other"})
	if err != nil || created || again.Number != pr.Number {
		t.Fatalf("second EnsurePullRequest = #%d created %v (%v), want #%d found", again.Number, created, err, pr.Number)
	}
	if pr.State != forge.StateOpen || pr.Head != branch || pr.Base != "main" || !strings.HasPrefix(pr.URL, g.URL) {
		t.Errorf("pull request = %+v", pr)
	}

	if err := p.UpdatePullRequest(ctx, pr.Number, "catalog: approve canary-10 (v2)", "| gate | value |\n| --- | --- |\n"); err != nil {
		t.Fatal(err)
	}
	got, err := p.PullRequest(ctx, pr.Number)
	if err != nil {
		t.Fatal(err)
	}
	if got.Title != "catalog: approve canary-10 (v2)" || !strings.Contains(got.Body, "| gate | value |") || got.State != forge.StateOpen {
		t.Errorf("after update: %+v", got)
	}
	if err := p.Comment(ctx, pr.Number, "gates failed"); err != nil {
		t.Fatal(err)
	}
	comments, _, err := alice.ListIssueComments(testenv.GiteaAdmin, "releases", pr.Number, gitea.ListIssueCommentOptions{})
	if err != nil || len(comments) != 1 || comments[0].Body != "gates failed" {
		t.Errorf("comments = %v, %v", comments, err)
	}

	// Closed by Sluice: the forge names the closer.
	if err := p.ClosePullRequest(ctx, pr.Number); err != nil {
		t.Fatal(err)
	}
	got, err = p.PullRequest(ctx, pr.Number)
	if err != nil || got.State != forge.StateClosed || got.By != testenv.GiteaAdmin {
		t.Errorf("after close: %+v, %v", got, err)
	}

	// Closed by a person.
	branch2 := "sluice/shop/catalog/canary-20"
	writeFile(t, ctx, g, "main", branch2, "status2.yaml", "step: canary-20\n")
	pr2, _, err := p.EnsurePullRequest(ctx, forge.NewPullRequest{Head: branch2, Base: "main", Title: "t", Body: "b"})
	if err != nil {
		t.Fatal(err)
	}
	closed := gitea.StateClosed
	if _, _, err := alice.EditPullRequest(testenv.GiteaAdmin, "releases", pr2.Number, gitea.EditPullRequestOption{State: &closed}); err != nil {
		t.Fatal(err)
	}
	got, err = p.PullRequest(ctx, pr2.Number)
	if err != nil || got.State != forge.StateClosed || got.By != "alice" {
		t.Errorf("closed by alice: %+v, %v", got, err)
	}

	// Merged by a person. Gitea checks mergeability in the background, so
	// the merge is retried until that is done.
	branch3 := "sluice/shop/catalog/promote"
	writeFile(t, ctx, g, "main", branch3, "status3.yaml", "step: promote\n")
	pr3, _, err := p.EnsurePullRequest(ctx, forge.NewPullRequest{Head: branch3, Base: "main", Title: "t", Body: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		ok, _, err := alice.MergePullRequest(testenv.GiteaAdmin, "releases", pr3.Number, gitea.MergePullRequestOption{Style: gitea.MergeStyleMerge})
		return ok && err == nil, nil
	}); err != nil {
		t.Fatalf("merge #%d: %v", pr3.Number, err)
	}
	got, err = p.PullRequest(ctx, pr3.Number)
	if err != nil || got.State != forge.StateMerged || got.By != "alice" {
		t.Errorf("merged by alice: %+v, %v", got, err)
	}
}

func TestGiteaCommitStatus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	g, tokFile := startGitea(t, ctx)
	sha := writeFile(t, ctx, g, "main", "", "release.yaml", "candidate: v2\n")
	p, err := forge.New(forge.Config{Provider: forge.Gitea, URL: g.URL + "/", Repo: testenv.GiteaAdmin + "/releases", TokenFile: tokFile})
	if err != nil {
		t.Fatal(err)
	}
	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []forge.CommitStatus{
		{Context: "sluice/shop/catalog", State: forge.StatusPending, Description: "canary-10 (10%)"},
		{Context: "sluice/shop/catalog", State: forge.StatusSuccess, Description: "promoted v2", TargetURL: "http://example.com/s"},
		{Context: "sluice/shop/cart", State: forge.StatusFailure, Description: strings.Repeat("long ", 60)},
	} {
		if err := p.SetStatus(ctx, sha, st); err != nil {
			t.Fatal(err)
		}
	}
	combined, _, err := c.GetCombinedStatus(testenv.GiteaAdmin, "releases", sha)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]gitea.StatusState{}
	for _, s := range combined.Statuses {
		got[s.Context] = s.State
	}
	if got["sluice/shop/catalog"] != gitea.StatusSuccess || got["sluice/shop/cart"] != gitea.StatusFailure || len(got) != 2 {
		t.Errorf("statuses = %v, want catalog success (the latest) and cart failure", got)
	}
}

// The token is read at every call, so a rotated one works without a
// restart, and a refused one never shows in the error.
func TestGiteaTokenFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	g, tokFile := startGitea(t, ctx)
	sha := writeFile(t, ctx, g, "main", "", "x.yaml", "x\n")
	p, err := forge.New(forge.Config{Provider: forge.Gitea, URL: g.URL, Repo: testenv.GiteaAdmin + "/releases", TokenFile: tokFile})
	if err != nil {
		t.Fatal(err)
	}
	st := forge.CommitStatus{Context: "sluice/a/b", State: forge.StatusPending, Description: "deploy"}
	const wrong = "0123456789abcdef0123456789abcdef01234567"
	if err := os.WriteFile(tokFile, []byte(wrong), 0o600); err != nil {
		t.Fatal(err)
	}
	err = p.SetStatus(ctx, sha, st)
	if err == nil {
		t.Fatal("a wrong token was accepted")
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("error shows the token: %v", err)
	}
	if err := os.WriteFile(tokFile, []byte(g.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.SetStatus(ctx, sha, st); err != nil {
		t.Errorf("after rotating the token back: %v", err)
	}
}
