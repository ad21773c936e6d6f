package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
)

// batchRepo is a bare remote with one commit and a synced Repo on it.
func batchRepo(t *testing.T) (*gitsync.Repo, string) {
	t.Helper()
	dir := t.TempDir()
	bare := filepath.Join(dir, "remote.git")
	work := filepath.Join(dir, "work")
	run := func(d string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = d
		cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=p", "GIT_AUTHOR_EMAIL=p@x", "GIT_COMMITTER_NAME=p", "GIT_COMMITTER_EMAIL=p@x")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	run(dir, "init", "-q", "--bare", "--initial-branch=main", bare)
	run(work, "init", "-q", "--initial-branch=main")
	if err := os.WriteFile(filepath.Join(work, "README"), []byte("releases\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(work, "add", "-A")
	run(work, "commit", "-q", "-m", "start")
	run(work, "push", "-q", bare, "main")
	repo, err := gitsync.Open(t.Context(), gitsync.Config{URL: "file://" + bare, Author: gitsync.Signature{Name: "Sluice", Email: "sluice@x"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	return repo, bare
}

func remoteLog(t *testing.T, bare string) []string {
	t.Helper()
	out, err := exec.Command("git", "-C", bare, "log", "--format=%s", "main").CombinedOutput()
	if err != nil {
		t.Fatalf("git log: %v\n%s", err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func statusReq(id, action, subject string) *commitReq {
	ns, name, _ := strings.Cut(id, "/")
	return &commitReq{release: id, action: record.Action(action), subject: subject, change: gitsync.Change{
		Message:  subject,
		Trailers: []gitsync.Trailer{{Key: gitsync.TrailerRelease, Value: id}, {Key: gitsync.TrailerAction, Value: action}},
		Files:    map[string][]byte{record.StatusPath(record.DefaultStatusDir, ns, name): []byte("release: " + id + "\n")},
	}}
}

// TestBatcher: records that arrive together make one commit, listing each
// release with its own trailers; a lone record keeps its own subject; a
// batch that cannot be committed whole is committed record by record.
func TestBatcher(t *testing.T) {
	bad := statusReq("ns/bad", "promote", "bad: promoted v2")
	bad.change.Edits = []gitsync.Edit{{Path: "releases/bad.yaml", Apply: func([]byte) ([]byte, error) {
		return nil, errors.New("the spec no longer names the candidate")
	}}}
	tests := []struct {
		name    string
		reqs    []*commitReq
		wantLog []string // new commits' subjects, newest first
		wantErr map[string]string
	}{
		{
			name:    "one",
			reqs:    []*commitReq{statusReq("ns/a", "steady", "a: steady at v1")},
			wantLog: []string{"a: steady at v1"},
		},
		{
			name: "three at once",
			reqs: []*commitReq{
				statusReq("ns/a", "steady", "a: steady at v1"),
				statusReq("ns/b", "steady", "b: steady at v1"),
				statusReq("ns/c", "start", "c: start v1 -> v2 at deploy"),
			},
			wantLog: []string{"sluice: 3 releases (1 start, 2 steady)"},
		},
		{
			name: "one bad record",
			reqs: []*commitReq{
				statusReq("ns/a", "steady", "a: steady at v1"),
				bad,
			},
			wantLog: []string{"a: steady at v1"},
			wantErr: map[string]string{"ns/bad": "the spec no longer names the candidate"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, bare := batchRepo(t)
			before := len(remoteLog(t, bare))
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			// A long linger: the batch closes because every "worker" waits.
			b := newBatcher(repo, slog.New(slog.DiscardHandler), time.Minute, len(tt.reqs))
			go b.run(ctx)
			var wg sync.WaitGroup
			errs := make([]error, len(tt.reqs))
			hashes := make([]string, len(tt.reqs))
			for i, req := range tt.reqs {
				wg.Go(func() {
					res, err := b.commit(ctx, req)
					errs[i], hashes[i] = err, res.Hash.String()
				})
			}
			wg.Wait()
			for i, req := range tt.reqs {
				want := tt.wantErr[req.release]
				switch {
				case want == "" && errs[i] != nil:
					t.Errorf("%s: %v", req.release, errs[i])
				case want != "" && (errs[i] == nil || !strings.Contains(errs[i].Error(), want)):
					t.Errorf("%s: error %v, want one containing %q", req.release, errs[i], want)
				}
			}
			log := remoteLog(t, bare)
			if got := log[:len(log)-before]; strings.Join(got, "\n") != strings.Join(tt.wantLog, "\n") {
				t.Errorf("new commits %q, want %q", got, tt.wantLog)
			}
			if len(tt.reqs) > 1 && tt.wantErr == nil {
				for i := range hashes {
					if hashes[i] != hashes[0] {
						t.Errorf("records pushed in different commits: %v", hashes)
					}
				}
			}
		})
	}
}

func TestMergeChanges(t *testing.T) {
	a := statusReq("ns/a", "rollback", "a: rolled back at 20% (success-rate 90 < 99)")
	a.body = "rolled back at canary-20: success-rate 90 < 99, 1/1 checks failed"
	b := statusReq("other/b", "steady", "b: steady at v3")
	c := mergeChanges([]*commitReq{a, b})
	msg, err := gitsync.FormatMessage(c.Message, c.Trailers)
	if err != nil {
		t.Fatal(err)
	}
	want := `sluice: 2 releases (1 rollback, 1 steady)

- a: rolled back at 20% (success-rate 90 < 99)
  rolled back at canary-20: success-rate 90 < 99, 1/1 checks failed
- b: steady at v3

Sluice-Release: ns/a
Sluice-Action: rollback
Sluice-Subject: a: rolled back at 20% (success-rate 90 < 99)
Sluice-Release: other/b
Sluice-Action: steady
Sluice-Subject: b: steady at v3
`
	if msg != want {
		t.Errorf("message:\n%s\nwant:\n%s", msg, want)
	}
	groups := gitsync.TrailerGroups(gitsync.ParseTrailers(msg), gitsync.TrailerRelease)
	var got []string
	for _, g := range groups {
		got = append(got, fmt.Sprintf("%s %s", gitsync.TrailerValue(g, gitsync.TrailerRelease), gitsync.TrailerValue(g, gitsync.TrailerAction)))
	}
	if strings.Join(got, ",") != "ns/a rollback,other/b steady" {
		t.Errorf("trailer groups %v", got)
	}
	if len(c.Files) != 2 {
		t.Errorf("%d files, want both status files", len(c.Files))
	}
}

// TestBatcherShardLostDuringPush: a record whose context ends while its
// batch is being pushed (its shard lost) is not pushed; the batch's other
// records are, without it; and the lost record's commit returns only once
// the batch's push has ended, so that its Lease is freed after it.
func TestBatcherShardLostDuringPush(t *testing.T) {
	repo, bare := batchRepo(t)
	before := len(remoteLog(t, bare))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	lostCtx, lose := context.WithCancel(ctx)
	defer lose()
	lost := statusReq("ns/lost", "advance", "lost: 10% -> 20%")
	lost.change.Edits = []gitsync.Edit{{Path: "releases/lost.yaml", Apply: func([]byte) ([]byte, error) {
		// Building the batch's commit: the shard is lost now.
		lose()
		return []byte("edited\n"), nil
	}}}
	kept := statusReq("ns/kept", "steady", "kept: steady at v1")
	b := newBatcher(repo, slog.New(slog.DiscardHandler), time.Minute, 2)
	go b.run(ctx)
	var wg sync.WaitGroup
	var lostErr, keptErr error
	wg.Go(func() { _, lostErr = b.commit(lostCtx, lost) })
	wg.Go(func() { _, keptErr = b.commit(ctx, kept) })
	wg.Wait()
	if !errors.Is(lostErr, context.Canceled) {
		t.Errorf("lost record: error %v, want context.Canceled", lostErr)
	}
	if keptErr != nil {
		t.Errorf("kept record: %v", keptErr)
	}
	log := remoteLog(t, bare)
	if got := log[:len(log)-before]; strings.Join(got, "\n") != "kept: steady at v1" {
		t.Errorf("new commits %q, want the kept record's alone", got)
	}
	out, err := exec.Command("git", "-C", bare, "log", "--format=%H", "main", "--", "releases/lost.yaml").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("the lost record's edit reached the remote: %s %v", out, err)
	}
}
