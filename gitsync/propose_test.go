package gitsync_test

import (
	"strings"
	"testing"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/internal/gitserver"
)

func TestPropose(t *testing.T) {
	ctx := testCtx(t)
	bare := newRemote(t)
	r, _ := openRepo(t, gitsync.Config{URL: fileURL(bare)})
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	const status = ".sluice/status/istioinaction/catalog.yaml"
	const branch = "sluice/istioinaction/catalog/canary-20"
	change := func(body string) gitsync.Change {
		return gitsync.Change{Message: "catalog: 10% -> 20%", Files: map[string][]byte{status: []byte(body)}}
	}
	mainBefore := gitserver.MustGit(t, bare, "rev-parse", "main")

	// First: the branch is made on main's head and main is untouched.
	res, err := r.Propose(ctx, branch, change("step: canary-20\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Pushed || res.Parent.String() != mainBefore {
		t.Fatalf("Propose = %+v, want a push on %s", res, mainBefore)
	}
	if got := gitserver.MustGit(t, bare, "rev-parse", branch+"^"); got != mainBefore {
		t.Errorf("branch sits on %s, want main %s", got, mainBefore)
	}
	if got := gitserver.MustGit(t, bare, "show", branch+":"+status); got != "step: canary-20" {
		t.Errorf("branch holds %q", got)
	}
	if got := gitserver.MustGit(t, bare, "rev-parse", "main"); got != mainBefore {
		t.Errorf("main moved to %s", got)
	}

	// The same proposal again: nothing pushed.
	again, err := r.Propose(ctx, branch, change("step: canary-20\n"))
	if err != nil || again.Pushed || again.Hash != res.Hash {
		t.Fatalf("repeat Propose = %+v, %v; want the same tip, no push", again, err)
	}

	// A person's push to another file leaves the branch alone: merely behind.
	human := gitserver.NewHuman(t, bare, "main")
	if _, err := human.Commit(ctx, map[string]string{"README.md": "edited\n"}, "readme"); err != nil {
		t.Fatal(err)
	}
	if _, err := human.Push(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	behind, err := r.Propose(ctx, branch, change("step: canary-20\n"))
	if err != nil || behind.Pushed {
		t.Fatalf("Propose on an unrelated change = %+v, %v; want no push", behind, err)
	}

	// A change to the status file on main makes it stale: rebuilt on top.
	if _, err := r.Commit(ctx, gitsync.Change{Message: "catalog: check failed", Files: map[string][]byte{status: []byte("failed: 1\n")}}); err != nil {
		t.Fatal(err)
	}
	head := gitserver.MustGit(t, bare, "rev-parse", "main")
	rebased, err := r.Propose(ctx, branch, change("step: canary-20\n"))
	if err != nil || !rebased.Pushed || rebased.Parent.String() != head {
		t.Fatalf("Propose on a stale branch = %+v, %v; want a push on %s", rebased, err, head)
	}
	if got := gitserver.MustGit(t, bare, "rev-parse", branch+"^"); got != head {
		t.Errorf("rebased branch sits on %s, want %s", got, head)
	}
	// So does a different proposal for the same branch.
	other, err := r.Propose(ctx, branch, change("step: canary-20\nfailedChecks: 1\n"))
	if err != nil || !other.Pushed {
		t.Fatalf("Propose of new content = %+v, %v", other, err)
	}

	// A branch merged into main: main holds the change, nothing to propose.
	gitserver.MustGit(t, bare, "update-ref", "refs/heads/main", other.Hash.String())
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	done, err := r.Propose(ctx, branch, change("step: canary-20\nfailedChecks: 1\n"))
	if err != nil || !done.NoChange {
		t.Fatalf("Propose of what main holds = %+v, %v; want NoChange", done, err)
	}

	if err := r.DeleteBranch(ctx, branch); err != nil {
		t.Fatal(err)
	}
	if out, err := gitserver.Git(ctx, bare, "rev-parse", "--verify", "refs/heads/"+branch); err == nil {
		t.Errorf("branch still there: %s", out)
	}
	if err := r.DeleteBranch(ctx, branch); err != nil {
		t.Errorf("deleting a deleted branch: %v", err)
	}
}

func TestProposeRefuses(t *testing.T) {
	ctx := testCtx(t)
	r, _ := openRepo(t, gitsync.Config{URL: fileURL(newRemote(t))})
	files := map[string][]byte{"a.yaml": []byte("a\n")}
	if _, err := r.Propose(ctx, "sluice/a", gitsync.Change{Message: "m", Files: files}); err == nil || !strings.Contains(err.Error(), "call Sync first") {
		t.Errorf("before Sync: %v", err)
	}
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		branch string
		c      gitsync.Change
		want   string
	}{
		{"main", gitsync.Change{Message: "m", Files: files}, "needs its own"},
		{"bad..name", gitsync.Change{Message: "m", Files: files}, "not a valid git branch name"},
		{"sluice/a", gitsync.Change{Message: "m", Edits: []gitsync.Edit{{Path: "a", Apply: func(b []byte) ([]byte, error) { return b, nil }}}}, "edits are not supported"},
	} {
		if _, err := r.Propose(ctx, tc.branch, tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Propose(%s) = %v, want %q", tc.branch, err, tc.want)
		}
	}
	if err := r.DeleteBranch(ctx, "main"); err == nil {
		t.Error("DeleteBranch(main) succeeded")
	}
}
