package gitsync_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/internal/gitserver"
)

// setVersion is the Edit Sluice makes at promotion: it rewrites only the
// version line of a release spec, leaving the rest as people left it.
func setVersion(v string) func([]byte) ([]byte, error) {
	re := regexp.MustCompile(`(?m)^(\s*version:).*$`)
	return func(old []byte) ([]byte, error) {
		if !re.Match(old) {
			return nil, errors.New("spec has no version field")
		}
		return re.ReplaceAll(old, []byte("${1} "+v)), nil
	}
}

func TestCommitWritesOneCommit(t *testing.T) {
	ctx := testCtx(t)
	bare := newRemote(t)
	fixed := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	r, _ := openRepo(t, gitsync.Config{
		URL:       fileURL(bare),
		Author:    gitsync.Signature{Name: "Sluice", Email: "sluice@sluice.dev"},
		Committer: gitsync.Signature{Name: "Sluice Bot", Email: "bot@sluice.dev"},
		Now:       func() time.Time { return fixed },
	})
	base, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg := "catalog: 10% -> 20% (error-rate 0.002 <= 0.01)\n"
	trailers := []gitsync.Trailer{
		{Key: gitsync.TrailerRelease, Value: "istioinaction/catalog"},
		{Key: gitsync.TrailerStep, Value: "canary-20"},
		{Key: gitsync.TrailerAction, Value: "advance"},
	}
	res, err := r.Commit(ctx, gitsync.Change{
		Message:  msg,
		Trailers: trailers,
		Files: map[string][]byte{
			".sluice/status/istioinaction/catalog.yaml": []byte("step: canary-20\n"),
			"README.md": nil, // delete
		},
		Edits: []gitsync.Edit{{Path: "releases/catalog.yaml", Apply: setVersion("v2")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Pushed || res.NoChange || res.Retries != 0 || res.Parent != base.Head || res.Branch != "main" {
		t.Fatalf("Commit = %+v", res)
	}
	if got := gitserver.MustGit(t, bare, "rev-parse", "main"); got != res.Hash.String() {
		t.Fatalf("remote main = %s, want pushed %s", got, res.Hash)
	}
	if got := gitserver.MustGit(t, bare, "rev-parse", "main^"); got != base.Head.String() {
		t.Errorf("parent = %s, want %s", got, base.Head)
	}
	if got := gitserver.MustGit(t, bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%aI"); got != "Sluice <sluice@sluice.dev>|Sluice Bot <bot@sluice.dev>|2026-03-04T05:06:07+00:00" {
		t.Errorf("author|committer|date = %q", got)
	}
	if got := gitserver.MustGit(t, bare, "show", "main:.sluice/status/istioinaction/catalog.yaml"); got != "step: canary-20" {
		t.Errorf("status file = %q", got)
	}
	spec := gitserver.MustGit(t, bare, "show", "main:releases/catalog.yaml")
	if !strings.Contains(spec, "  version: v2") || !strings.Contains(spec, "owner: team-a") {
		t.Errorf("spec after edit:\n%s", spec)
	}
	if _, err := gitserver.Git(ctx, bare, "cat-file", "-e", "main:README.md"); err == nil {
		t.Error("README.md was not deleted")
	}
	// Git itself parses the trailers Sluice wrote.
	body := gitserver.MustGit(t, bare, "log", "-1", "--format=%B")
	parsed := gitInterpretTrailers(t, body)
	if parsed != "Sluice-Release: istioinaction/catalog\nSluice-Step: canary-20\nSluice-Action: advance" {
		t.Errorf("git interpret-trailers --parse =\n%s", parsed)
	}
	if got := gitsync.TrailerValue(gitsync.ParseTrailers(body), "sluice-step"); got != "canary-20" {
		t.Errorf("ParseTrailers step = %q", got)
	}
	// git fsck proves the trees and commit Sluice built are well-formed.
	gitserver.MustGit(t, bare, "fsck", "--strict", "--no-progress")

	// The same change again alters nothing: no commit.
	again, err := r.Commit(ctx, gitsync.Change{
		Message: msg, Trailers: trailers,
		Files: map[string][]byte{".sluice/status/istioinaction/catalog.yaml": []byte("step: canary-20\n"), "README.md": nil},
		Edits: []gitsync.Edit{{Path: "releases/catalog.yaml", Apply: setVersion("v2")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !again.NoChange || again.Pushed || !again.Hash.IsZero() {
		t.Fatalf("repeated Commit = %+v, want NoChange", again)
	}
	if got := gitserver.MustGit(t, bare, "rev-parse", "main"); got != res.Hash.String() {
		t.Errorf("a no-op Commit moved main to %s", got)
	}
}

func gitInterpretTrailers(t *testing.T, msg string) string {
	t.Helper()
	dir := t.TempDir()
	p := writeFile(t, dir, "msg", msg)
	return gitserver.MustGit(t, dir, "interpret-trailers", "--parse", p)
}

// TestCommitAfterSomeoneElsePushed covers a lost race: a person pushes a
// spec edit after Sluice synced. Sluice's push is rejected, it rebuilds on
// the person's commit and re-applies its Edit, so both edits land.
func TestCommitAfterSomeoneElsePushed(t *testing.T) {
	ctx := testCtx(t)
	bare := newRemote(t)
	r, _ := openRepo(t, gitsync.Config{URL: fileURL(bare)})
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	human := gitserver.NewHuman(t, bare, "main")
	spec := human.Read(t, "releases/catalog.yaml")
	humanSHA, err := human.Commit(ctx, map[string]string{
		"releases/catalog.yaml":                     strings.Replace(spec, "owner: team-a", "owner: team-b", 1),
		".sluice/status/istioinaction/catalog.yaml": "edited by hand\n",
	}, "hand over to team-b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := human.Push(ctx, 1); err != nil {
		t.Fatal(err)
	}

	res, err := r.Commit(ctx, gitsync.Change{
		Message: "sluice: promote istioinaction/catalog",
		Files:   map[string][]byte{".sluice/status/istioinaction/catalog.yaml": []byte("step: promoted\n")},
		Edits:   []gitsync.Edit{{Path: "releases/catalog.yaml", Apply: setVersion("v2")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Retries != 1 || res.Parent.String() != humanSHA {
		t.Fatalf("Commit = %+v, want 1 retry on top of %s", res, humanSHA)
	}
	if got := gitserver.MustGit(t, bare, "rev-parse", "main^"); got != humanSHA {
		t.Fatalf("Sluice's commit sits on %s, want the person's %s", got, humanSHA)
	}
	finalSpec := gitserver.MustGit(t, bare, "show", "main:releases/catalog.yaml")
	if !strings.Contains(finalSpec, "owner: team-b") || !strings.Contains(finalSpec, "version: v2") {
		t.Errorf("both edits should survive, spec is:\n%s", finalSpec)
	}
	if got := gitserver.MustGit(t, bare, "show", "main:.sluice/status/istioinaction/catalog.yaml"); got != "step: promoted" {
		t.Errorf("Sluice's status file should win, got %q", got)
	}
	// Sluice rebuilt on a head the caller never saw, so the next Sync
	// reports a change (the person's commit is news).
	s, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Changed || s.Head != res.Hash {
		t.Errorf("Sync after a rebuilt commit = %+v, want changed to %s", s, res.Hash)
	}
}

func TestCommitRefusedByServerIsNotRetried(t *testing.T) {
	tests := []struct{ name, pushBranch string }{
		{"watched branch", ""},
		{"new push branch", "sluice/status"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			bare := newRemote(t)
			hook := filepath.Join(bare, "hooks", "pre-receive")
			if err := os.WriteFile(hook, []byte("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			r, _ := openRepo(t, gitsync.Config{URL: fileURL(bare), PushBranch: tc.pushBranch, MaxPushRetries: 3})
			if _, err := r.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			before := gitserver.MustGit(t, bare, "for-each-ref")
			res, err := r.Commit(ctx, gitsync.Change{Message: "status", Files: map[string][]byte{"s.yaml": []byte("x")}})
			if err == nil {
				t.Fatal("Commit succeeded against a refusing hook")
			}
			t.Logf("error: %v", err)
			if res.Retries != 0 || res.Pushed {
				t.Errorf("a refusal is not a race: result %+v", res)
			}
			if errors.Is(err, gitsync.ErrPushConflict) || !strings.Contains(err.Error(), "pre-receive hook declined") || !strings.Contains(err.Error(), "protected branch") {
				t.Errorf("err = %v, want the server's refusal", err)
			}
			if got := gitserver.MustGit(t, bare, "for-each-ref"); got != before {
				t.Errorf("refs changed:\n%s", got)
			}
		})
	}
}

func TestCommitToSeparatePushBranch(t *testing.T) {
	ctx := testCtx(t)
	bare := newRemote(t)
	r, _ := openRepo(t, gitsync.Config{URL: fileURL(bare), PushBranch: "sluice/status"})
	base, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var last string
	for i := range 3 {
		res, err := r.Commit(ctx, gitsync.Change{
			Message: fmt.Sprint("status ", i),
			Files:   map[string][]byte{"status.yaml": []byte(fmt.Sprint("n: ", i, "\n"))},
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Branch != "sluice/status" || !res.Pushed {
			t.Fatalf("Commit %d = %+v", i, res)
		}
		if i == 0 && res.Parent != base.Head {
			t.Errorf("a new push branch starts from the watched head %s, got %s", base.Head, res.Parent)
		}
		if i > 0 && res.Parent.String() != last {
			t.Errorf("commit %d built on %s, want previous status commit %s", i, res.Parent, last)
		}
		last = res.Hash.String()
	}
	if got := gitserver.MustGit(t, bare, "rev-parse", "sluice/status"); got != last {
		t.Errorf("sluice/status = %s, want %s", got, last)
	}
	if got := gitserver.MustGit(t, bare, "rev-parse", "main"); got != base.Head.String() {
		t.Errorf("the watched branch moved to %s", got)
	}
	// A fresh Repo (restart) finds the existing push branch and continues it.
	r2, _ := openRepo(t, gitsync.Config{URL: fileURL(bare), PushBranch: "sluice/status"})
	if _, err := r2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := r2.Commit(ctx, gitsync.Change{Message: "status 3", Files: map[string][]byte{"status.yaml": []byte("n: 3\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Parent.String() != last || res.Retries != 0 {
		t.Errorf("after restart: %+v, want parent %s without retries", res, last)
	}
}

func TestCommitNeedsSync(t *testing.T) {
	r, _ := openRepo(t, gitsync.Config{URL: fileURL(newRemote(t))})
	_, err := r.Commit(testCtx(t), gitsync.Change{Message: "m", Files: map[string][]byte{"a": []byte("b")}})
	if err == nil || !strings.Contains(err.Error(), "call Sync first") {
		t.Fatalf("Commit before Sync: %v", err)
	}
}

func TestCommitRejectsBadChange(t *testing.T) {
	ctx := testCtx(t)
	r, _ := openRepo(t, gitsync.Config{URL: fileURL(newRemote(t))})
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	ok := func([]byte) ([]byte, error) { return []byte("x"), nil }
	tests := []struct {
		name   string
		change gitsync.Change
		want   string
	}{
		{"empty message", gitsync.Change{Files: map[string][]byte{"a": nil}}, "message is empty"},
		{"nothing to write", gitsync.Change{Message: "m"}, "no files and no edits"},
		{"parent escape", gitsync.Change{Message: "m", Files: map[string][]byte{"../x": nil}}, `path "../x"`},
		{"absolute", gitsync.Change{Message: "m", Files: map[string][]byte{"/etc/x": nil}}, `path "/etc/x"`},
		{"dot git", gitsync.Change{Message: "m", Files: map[string][]byte{"a/.git/config": []byte("x")}}, "inside .git"},
		{"nil apply", gitsync.Change{Message: "m", Edits: []gitsync.Edit{{Path: "a"}}}, "Apply is nil"},
		{"both", gitsync.Change{Message: "m", Files: map[string][]byte{"a": nil}, Edits: []gitsync.Edit{{Path: "a", Apply: ok}}}, "both in Files and in Edits"},
		{"bad trailer", gitsync.Change{Message: "m", Files: map[string][]byte{"a": nil}, Trailers: []gitsync.Trailer{{Key: "Bad Key", Value: "v"}}}, `trailer key "Bad Key"`},
		{"multiline trailer", gitsync.Change{Message: "m", Files: map[string][]byte{"a": nil}, Trailers: []gitsync.Trailer{{Key: "K", Value: "a\nb"}}}, "one line"},
		{"file over dir", gitsync.Change{Message: "m", Files: map[string][]byte{"apps": []byte("x")}}, "write apps: it is a directory"},
		{"dir under file", gitsync.Change{Message: "m", Files: map[string][]byte{"README.md/x": []byte("x")}}, "write under README.md: it is a file"},
		{"edit fails", gitsync.Change{Message: "m", Edits: []gitsync.Edit{{Path: "README.md", Apply: setVersion("v9")}}}, "edit README.md: spec has no version field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Commit(ctx, tc.change)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestCommitHonoursContext(t *testing.T) {
	bare := newRemote(t)
	r, _ := openRepo(t, gitsync.Config{URL: fileURL(bare)})
	if _, err := r.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := r.Commit(ctx, gitsync.Change{Message: "m", Files: map[string][]byte{"a": []byte("b")}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit with a cancelled context: %v", err)
	}
}
