package gitsync_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/internal/gitserver"
)

func TestSyncFile(t *testing.T) {
	tests := []struct {
		name        string
		inMemory    bool
		depth       int
		wantShallow bool
	}{
		{name: "disk shallow default", depth: 0, wantShallow: true},
		{name: "disk depth 3", depth: 3, wantShallow: true},
		{name: "disk full history", depth: gitsync.FullHistory},
		{name: "memory shallow", inMemory: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			bare := newRemote(t)
			human := gitserver.NewHuman(t, bare, "main")
			// Some history, so depth matters.
			for i := range 4 {
				if _, err := human.Commit(ctx, map[string]string{"notes.txt": fmt.Sprint(i)}, fmt.Sprint("note ", i)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := human.Push(ctx, 1); err != nil {
				t.Fatal(err)
			}
			cache := ""
			if !tc.inMemory {
				cache = filepath.Join(t.TempDir(), "cache")
			}
			r, _ := openRepo(t, gitsync.Config{URL: fileURL(bare), Dir: cache, Depth: tc.depth})

			res, err := r.Sync(ctx)
			if err != nil {
				t.Fatalf("first Sync: %v", err)
			}
			want := gitserver.MustGit(t, bare, "rev-parse", "main")
			if res.Head.String() != want || !res.Changed || !res.Previous.IsZero() {
				t.Fatalf("first Sync = %+v, want head %s, changed, no previous", res, want)
			}
			if !tc.inMemory {
				_, err := os.Stat(filepath.Join(cache, "shallow"))
				if got := err == nil; got != tc.wantShallow {
					t.Errorf("shallow file present = %v, want %v", got, tc.wantShallow)
				}
			}

			res, err = r.Sync(ctx)
			if err != nil {
				t.Fatalf("second Sync: %v", err)
			}
			if res.Changed || res.Head.String() != want {
				t.Fatalf("unchanged remote: Sync = %+v, want head %s unchanged", res, want)
			}

			next, err := human.Commit(ctx, map[string]string{"notes.txt": "new"}, "new note")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := human.Push(ctx, 1); err != nil {
				t.Fatal(err)
			}
			res, err = r.Sync(ctx)
			if err != nil {
				t.Fatalf("third Sync: %v", err)
			}
			if !res.Changed || res.Head.String() != next || res.Previous.String() != want {
				t.Fatalf("after a push: Sync = %+v, want head %s changed from %s", res, next, want)
			}
			tree, err := r.Tree(ctx, res.Head)
			if err != nil {
				t.Fatal(err)
			}
			if b, err := tree.ReadFile("notes.txt"); err != nil || string(b) != "new" {
				t.Fatalf("notes.txt at new head = %q, %v", b, err)
			}
		})
	}
}

func TestSyncMissingBranch(t *testing.T) {
	ctx := testCtx(t)
	r, _ := openRepo(t, gitsync.Config{URL: fileURL(newRemote(t)), Branch: "nope"})
	_, err := r.Sync(ctx)
	if err == nil || !strings.Contains(err.Error(), `branch "nope" does not exist`) {
		t.Fatalf("Sync of a missing branch: err = %v, want a clear error", err)
	}
}

func TestReopenCache(t *testing.T) {
	ctx := testCtx(t)
	bare := newRemote(t)
	cache := filepath.Join(t.TempDir(), "cache")
	r1, _ := openRepo(t, gitsync.Config{URL: fileURL(bare), Dir: cache})
	first, err := r1.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A restarted Sluice reopens the same cache: the first Sync reports a
	// change, because this Repo has reported nothing yet.
	r2, _ := openRepo(t, gitsync.Config{URL: fileURL(bare), Dir: cache})
	if h, ok, err := r2.Head(); err != nil || !ok || h != first.Head {
		t.Fatalf("Head from reopened cache = %s, %v, %v; want %s", h, ok, err, first.Head)
	}
	res, err := r2.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Head != first.Head {
		t.Fatalf("Sync after reopen = %+v, want changed, head %s", res, first.Head)
	}
	// The cache's git config never records the remote's URL.
	cfgFile, err := os.ReadFile(filepath.Join(cache, "config"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cfgFile), bare) {
		t.Errorf("cache config records the remote URL:\n%s", cfgFile)
	}
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}

	// Pointed at another remote, the cache starts afresh: the new remote's
	// head, fetched as a shallow clone.
	other := gitserver.NewBare(t, t.TempDir(), "other", "main", map[string]string{"x": "y"})
	r3, logs := openRepo(t, gitsync.Config{URL: fileURL(other), Dir: cache})
	if _, ok, _ := r3.Head(); ok {
		t.Error("refs of the previous remote survived")
	}
	res, err = r3.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := gitserver.MustGit(t, other, "rev-parse", "main"); res.Head.String() != want {
		t.Errorf("head %s, want the new remote's %s", res.Head, want)
	}
	if !strings.Contains(logs.String(), "belonged to another remote") {
		t.Error("the switch of remotes was not logged")
	}
}

// TestTreeFS reads a tree through io/fs, with the cache of decoded
// directories at its default size and too small to hold any directory
// (every look-up decodes), which must read the same.
func TestTreeFS(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cacheBytes int64
	}{
		{"default cache", 0},
		{"cache holds nothing", 1},
	} {
		t.Run(tc.name, func(t *testing.T) { testTreeFS(t, tc.cacheBytes) })
	}
}

func testTreeFS(t *testing.T, cacheBytes int64) {
	ctx := testCtx(t)
	bare := newRemote(t)
	r, _ := openRepo(t, gitsync.Config{URL: fileURL(bare), TreeCacheBytes: cacheBytes})
	res, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := r.Tree(ctx, res.Head)
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(tree, "README.md", "releases/catalog.yaml", "apps/catalog/kustomization.yaml",
		"apps/catalog/deployment.yaml", "apps/catalog/service.yaml"); err != nil {
		t.Fatal(err)
	}
	for name, want := range seedFiles {
		got, err := fs.ReadFile(tree, name)
		if err != nil || string(got) != want {
			t.Errorf("ReadFile(%s) = %q, %v; want %q", name, got, err, want)
		}
	}

	// Hash is git's own object id, for files, directories and the root.
	hashTests := []struct{ path, rev string }{
		{".", "main^{tree}"},
		{"releases/catalog.yaml", "main:releases/catalog.yaml"},
		{"apps/catalog", "main:apps/catalog"},
		{"apps", "main:apps"},
	}
	for _, ht := range hashTests {
		got, err := tree.Hash(ht.path)
		if err != nil {
			t.Fatalf("Hash(%s): %v", ht.path, err)
		}
		if want := gitserver.MustGit(t, bare, "rev-parse", ht.rev); got.String() != want {
			t.Errorf("Hash(%s) = %s, want %s (git rev-parse %s)", ht.path, got, want, ht.rev)
		}
	}

	errTests := []struct {
		path string
		want error
	}{
		{"missing.yaml", fs.ErrNotExist},
		{"apps/missing/x", fs.ErrNotExist},
		{"README.md/x", fs.ErrNotExist},
		{"apps/catalog/nope.yaml", fs.ErrNotExist},
		{"../etc/passwd", fs.ErrInvalid},
		{"/abs", fs.ErrInvalid},
	}
	for _, et := range errTests {
		if _, err := tree.Hash(et.path); !errors.Is(err, et.want) {
			t.Errorf("Hash(%q) err = %v, want %v", et.path, err, et.want)
		}
		if _, err := tree.ReadFile(et.path); !errors.Is(err, et.want) {
			t.Errorf("ReadFile(%q) err = %v, want %v", et.path, err, et.want)
		}
	}
	if _, err := tree.ReadFile("apps"); err == nil {
		t.Error("ReadFile of a directory succeeded")
	}
	if _, err := r.Tree(ctx, plumbing.NewHash("0123456789012345678901234567890123456789")); err == nil {
		t.Error("Tree of an unknown commit succeeded")
	}
}

// TestStatusCommitKeepsContentID is the feedback-loop guard: Sluice's own
// status commit moves the head but leaves the content identity of the spec
// and its sources unchanged; a person's edit to a source changes it.
func TestStatusCommitKeepsContentID(t *testing.T) {
	ctx := testCtx(t)
	bare := newRemote(t)
	r, _ := openRepo(t, gitsync.Config{URL: fileURL(bare)})
	before, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	contentID := func(head plumbing.Hash) string {
		t.Helper()
		tree, err := r.Tree(ctx, head)
		if err != nil {
			t.Fatal(err)
		}
		id, err := tree.ContentID("releases/catalog.yaml", "apps/catalog")
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	idBefore := contentID(before.Head)

	res, err := r.Commit(ctx, gitsync.Change{
		Message:  "sluice: advance istioinaction/catalog to canary-20",
		Trailers: []gitsync.Trailer{{Key: "Sluice-Release", Value: "istioinaction/catalog"}, {Key: "Sluice-Step", Value: "canary-20"}},
		Files:    map[string][]byte{".sluice/status/istioinaction/catalog.yaml": []byte("step: canary-20\nweight: 20\n")},
	})
	if err != nil || !res.Pushed {
		t.Fatalf("Commit = %+v, %v", res, err)
	}
	after, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Head != res.Hash {
		t.Fatalf("head after status commit = %s, want %s", after.Head, res.Hash)
	}
	if after.Changed {
		t.Errorf("Sync reported Sluice's own commit as a change")
	}
	if got := contentID(after.Head); got != idBefore {
		t.Errorf("content id changed by a status commit: %s -> %s", idBefore, got)
	}

	human := gitserver.NewHuman(t, bare, "main")
	if _, err := human.Commit(ctx, map[string]string{"apps/catalog/service.yaml": "kind: Service\nmetadata:\n  name: catalog\n  labels: {a: b}\n"}, "label service"); err != nil {
		t.Fatal(err)
	}
	if _, err := human.Push(ctx, 1); err != nil {
		t.Fatal(err)
	}
	edited, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !edited.Changed {
		t.Fatal("a person's commit was not reported as a change")
	}
	if got := contentID(edited.Head); got == idBefore {
		t.Errorf("content id unchanged after a source edit")
	}
	if _, err := func() (string, error) {
		tree, err := r.Tree(ctx, edited.Head)
		if err != nil {
			return "", err
		}
		return tree.ContentID("releases/catalog.yaml", "apps/nope")
	}(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ContentID with a missing path: err = %v, want fs.ErrNotExist", err)
	}
}

func TestLogDeepensShallowClone(t *testing.T) {
	ctx := testCtx(t)
	bare := gitserver.GenerateRepo(t, t.TempDir(), "releases", 300, 20)
	want := strings.Fields(gitserver.MustGit(t, bare, "rev-list", "main"))

	r, _ := openRepo(t, gitsync.Config{URL: fileURL(bare), Dir: filepath.Join(t.TempDir(), "c")})
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Stopping early needs no deeper history.
	var first []string
	err := r.Log(ctx, func(c *object.Commit) error {
		first = append(first, c.Hash.String())
		return gitsync.ErrStopLog
	})
	if err != nil || len(first) != 1 || first[0] != want[0] {
		t.Fatalf("Log stopped at first = %v, %v; want [%s]", first, err, want[0])
	}
	var got []string
	if err := r.Log(ctx, func(c *object.Commit) error {
		got = append(got, c.Hash.String())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("Log visited %d commits, want %d (git rev-list order)", len(got), len(want))
	}
	boom := errors.New("boom")
	if err := r.Log(ctx, func(*object.Commit) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Log callback error = %v, want boom", err)
	}
}

// TestCacheCompaction drives enough incremental fetches to trigger the
// cache's compaction and checks git still finds the cache consistent.
func TestCacheCompaction(t *testing.T) {
	if testing.Short() {
		t.Skip("sixty fetches to reach a compaction; skipped under -short")
	}
	ctx := testCtx(t)
	bare := gitserver.GenerateRepo(t, t.TempDir(), "releases", 20, 40)
	cache := filepath.Join(t.TempDir(), "cache")
	r, logs := openRepo(t, gitsync.Config{URL: fileURL(bare), Dir: cache})
	packs := func() int {
		m, err := filepath.Glob(filepath.Join(cache, "objects", "pack", "*.pack"))
		if err != nil {
			t.Fatal(err)
		}
		return len(m)
	}
	for i := range 60 {
		if err := gitserver.AddCommit(ctx, bare, i); err != nil {
			t.Fatal(err)
		}
		res, err := r.Sync(ctx)
		if err != nil {
			t.Fatalf("Sync %d: %v", i, err)
		}
		// Reading keeps the packs read open until the compaction.
		tree, err := r.Tree(ctx, res.Head)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fs.ReadFile(tree, gitserver.GeneratedPath(0)); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			// Sluice's own commits add loose objects, which are packed too.
			if _, err := r.Commit(ctx, gitsync.Change{Message: "status", Files: map[string][]byte{"s.yaml": []byte(fmt.Sprint(i))}}); err != nil {
				t.Fatalf("Commit %d: %v", i, err)
			}
		}
	}
	if !strings.Contains(logs.String(), "git cache compacted") {
		t.Fatal("no compaction happened")
	}
	if n := packs(); n >= 50 {
		t.Errorf("%d packs after compaction", n)
	}
	gitserver.MustGit(t, cache, "fsck", "--no-progress")
	// No descriptor keeps a pack the compaction deleted.
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil &&
			strings.HasPrefix(target, cache) && strings.HasSuffix(target, "(deleted)") {
			t.Errorf("descriptor %s still open on %s", fd.Name(), target)
		}
	}
	head, _, err := r.Head()
	if err != nil {
		t.Fatal(err)
	}
	tree, err := r.Tree(ctx, head)
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(tree, "s.yaml", gitserver.GeneratedPath(0)); err != nil {
		t.Fatal(err)
	}
	if want := gitserver.MustGit(t, bare, "rev-parse", "main"); head.String() != want {
		t.Errorf("head %s, want %s", head, want)
	}
}

// TestConcurrentUse shares one Repo between a syncing, a reading and a
// committing goroutine; run with -race to check the locking.
func TestConcurrentUse(t *testing.T) {
	ctx := testCtx(t)
	bare := newRemote(t)
	r, _ := openRepo(t, gitsync.Config{URL: fileURL(bare), Dir: filepath.Join(t.TempDir(), "c")})
	first, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := r.Tree(ctx, first.Head)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 3)
	go func() {
		for range 20 {
			if _, err := r.Sync(ctx); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	go func() {
		for range 20 {
			err := fs.WalkDir(tree, ".", func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				if _, err := d.Info(); err != nil {
					return err
				}
				_, err = tree.ReadFile(p)
				return err
			})
			if err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	go func() {
		for i := range 10 {
			if _, err := r.Commit(ctx, gitsync.Change{Message: "status", Files: map[string][]byte{"s.yaml": []byte(fmt.Sprint(i))}}); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := gitserver.MustGit(t, bare, "show", "main:s.yaml"); got != "9" {
		t.Errorf("s.yaml = %q, want the last commit's 9", got)
	}
}

// TestContentIDFormat pins how a content ID is made: sha256 over sorted,
// cleaned, deduplicated "<object hash> <path>\n" lines.
func TestContentIDFormat(t *testing.T) {
	ctx := testCtx(t)
	r, _ := openRepo(t, gitsync.Config{URL: fileURL(newRemote(t))})
	res, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := r.Tree(ctx, res.Head)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		paths []string
		lines []string // cleaned and sorted
	}{
		{"one file", []string{"README.md"}, []string{"README.md"}},
		{"unsorted, unclean, repeated", []string{"releases/catalog.yaml", "apps/./catalog", "README.md", "apps/catalog/"},
			[]string{"README.md", "apps/catalog", "releases/catalog.yaml"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := sha256.New()
			for _, p := range tc.lines {
				oh, err := tree.Hash(p)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(h, "%s %s\n", oh, p)
			}
			want := "sha256:" + hex.EncodeToString(h.Sum(nil))
			got, err := tree.ContentID(tc.paths...)
			if err != nil || got != want {
				t.Errorf("ContentID(%q) = %s, %v; want %s", tc.paths, got, err, want)
			}
		})
	}
}
