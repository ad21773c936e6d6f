package gitsync

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestNewObjects: a push sends the commit and only the trees and blobs on
// the paths it changed, however big the rest of the tree is.
func TestNewObjects(t *testing.T) {
	dir := t.TempDir()
	bare := filepath.Join(dir, "remote.git")
	work := filepath.Join(dir, "work")
	run := func(d string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = d
		cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=p", "GIT_AUTHOR_EMAIL=p@x", "GIT_COMMITTER_NAME=p", "GIT_COMMITTER_EMAIL=p@x")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	for _, f := range []string{"apps/a/x.yaml", "apps/b/y.yaml", "releases/r.yaml", "README"} {
		p := filepath.Join(work, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(dir, "init", "-q", "--bare", "--initial-branch=main", bare)
	run(work, "init", "-q", "--initial-branch=main")
	run(work, "add", "-A")
	run(work, "commit", "-q", "-m", "start")
	run(work, "push", "-q", bare, "main")

	ctx := t.Context()
	r, err := Open(ctx, Config{URL: "file://" + bare, Author: Signature{Name: "Sluice", Email: "sluice@x"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := r.Commit(ctx, Change{Message: "status", Files: map[string][]byte{".sluice/status/ns/r.yaml": []byte("phase: Steady\n")}})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := r.newObjects(res.Hash, res.Parent)
	if err != nil {
		t.Fatal(err)
	}
	// The commit, the root tree, .sluice, .sluice/status, .sluice/status/ns
	// and the status blob; nothing under apps/ or releases/.
	if len(objs) != 6 || objs[0] != res.Hash {
		t.Errorf("new objects %v, want the commit and 5 trees and blobs", objs)
	}
	seen := map[plumbing.Hash]bool{}
	for _, h := range objs {
		if seen[h] {
			t.Errorf("object %s listed twice", h)
		}
		seen[h] = true
	}
	out, err := exec.Command("git", "-C", bare, "fsck", "--connectivity-only").CombinedOutput()
	if err != nil {
		t.Errorf("remote after the push: git fsck: %v\n%s", err, out)
	}
	out, err = exec.Command("git", "-C", bare, "show", "main:.sluice/status/ns/r.yaml").CombinedOutput()
	if err != nil || string(out) != "phase: Steady\n" {
		t.Errorf("remote status file: %q, %v", out, err)
	}
}

func TestRefLocked(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("command error on refs/heads/main: cannot lock ref 'refs/heads/main': is at 1234 but expected 5678"), true},
		{errors.New("command error on refs/heads/main: failed to lock"), true},
		{errors.New("remote: fatal: Unable to lock refs/heads/main"), true},
		{errors.New("command error on refs/heads/main: non-fast-forward"), false},
		{errors.New("authentication required"), false},
	}
	for _, tc := range tests {
		if got := refLocked(tc.err); got != tc.want {
			t.Errorf("refLocked(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
