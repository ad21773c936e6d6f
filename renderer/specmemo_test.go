package renderer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"sluice.dev/sluice/specs"
)

// TestRenderKeyUnchanged: the memoized definition gives the key the
// renderer computed before it was memoized (keys of applied renders are
// remembered, so they must not move), for every step of every test
// release, with the same Renderer asked twice.
func TestRenderKeyUnchanged(t *testing.T) {
	ctx := context.Background()
	rd := New()
	for _, tr := range testReleases() {
		rel, root := loadRelease(t, tr.repo, tr.file)
		plan, err := specs.Plan(rel)
		if err != nil {
			t.Fatalf("%s: %v", tr.name, err)
		}
		for _, step := range plan {
			name := step.Name
			for round := range 2 {
				out, err := rd.Fingerprint(ctx, root.FS(), rel, step)
				if err != nil {
					t.Fatalf("%s step %s: %v", tr.name, name, err)
				}
				if want := oldRenderKey(t, rel, step, out); out.Key != want {
					t.Errorf("%s step %s round %d: key %s, want %s", tr.name, name, round, out.Key, want)
				}
			}
		}
	}
}

// oldRenderKey is renderKey as it was before the memo.
func oldRenderKey(t *testing.T, rel *specs.Release, step specs.Step, out *Output) string {
	t.Helper()
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, v := range []any{rel.Metadata, rel.Spec, step} {
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range step.Versions {
		fmt.Fprintf(h, "%s\x00", out.Revisions[v])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestSpecMemoDropped: the memo of a release goes once the release is
// garbage, so the Renderer keeps none for specs replaced or deleted.
func TestSpecMemoDropped(t *testing.T) {
	rel, root := loadCatalog(t)
	rd := New()
	step := mustStep(t, rel, "canary-20")
	for range 3 {
		c := *rel // a new parse of the same spec
		if _, err := rd.Fingerprint(context.Background(), root.FS(), &c, step); err != nil {
			t.Fatal(err)
		}
	}
	memos := func() int {
		rd.mu.Lock()
		defer rd.mu.Unlock()
		return len(rd.specs)
	}
	if n := memos(); n != 3 {
		t.Fatalf("%d memos after three releases, want 3", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for memos() > 0 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if n := memos(); n != 0 {
		t.Errorf("%d memos left after the releases were collected", n)
	}
}

// TestSpecMemoConcurrent fingerprints the same releases from several
// goroutines at once (run with -race): the keys agree.
func TestSpecMemoConcurrent(t *testing.T) {
	rel, root := loadCatalog(t)
	rd := New()
	step := mustStep(t, rel, "canary-20")
	want, err := New().Fingerprint(context.Background(), root.FS(), rel, step)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				out, err := rd.Fingerprint(context.Background(), root.FS(), rel, step)
				if err != nil {
					t.Error(err)
					return
				}
				if out.Key != want.Key {
					t.Errorf("key %s, want %s", out.Key, want.Key)
					return
				}
			}
		}()
	}
	wg.Wait()
}
