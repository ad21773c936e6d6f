package gitsync_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/internal/gitserver"
)

// TestRaceWithPersonPushing has a person (the git CLI) push commits to the
// watched branch as fast as it can while Sluice pushes 50 status commits
// to the same branch. Afterwards every commit of both writers is in the
// history, in the order each writer pushed them, with its SHA unchanged:
// nothing was lost, rewritten or force-pushed.
// The clone is in memory, or on disk (whose references are also kept in
// memory: the file must say what Sluice read).
func TestRaceWithPersonPushing(t *testing.T) {
	if testing.Short() {
		t.Skip("race against a person pushing: skipped in -short mode")
	}
	t.Run("in memory", func(t *testing.T) { raceWithPersonPushing(t, "") })
	t.Run("on disk", func(t *testing.T) { raceWithPersonPushing(t, filepath.Join(t.TempDir(), "cache")) })
}

func raceWithPersonPushing(t *testing.T, dir string) {
	const sluiceCommits = 50
	ctx := testCtx(t)
	bare := newRemote(t)
	r, logs := openRepo(t, gitsync.Config{URL: fileURL(bare), MaxPushRetries: 100, Dir: dir})
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	human := gitserver.NewHuman(t, bare, "main")

	humanCtx, stopHuman := context.WithCancel(ctx)
	var (
		wg        sync.WaitGroup
		humanSHAs []string
		humanErr  error
		// progress gets a token after each of the person's pushes, so
		// Sluice (which is much faster than the git CLI) commits between
		// them instead of starving the person; both still race on every
		// push.
		progress  = make(chan struct{}, 1)
		humanDone = make(chan struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(humanDone)
		for i := 0; i < 1000 && humanCtx.Err() == nil; i++ {
			log, err := human.ReadFile("human/log.txt")
			if err != nil && i > 0 {
				humanErr = err
				return
			}
			edit := map[string]string{"human/log.txt": log + fmt.Sprintf("line %d\n", i)}
			if i%5 == 0 {
				// Edit the spec too, away from the field Sluice edits.
				spec, err := human.ReadFile("releases/catalog.yaml")
				if err != nil {
					humanErr = err
					return
				}
				lines := strings.Split(spec, "\n")
				for j, l := range lines {
					if strings.HasPrefix(l, "  owner:") {
						lines[j] = fmt.Sprintf("  owner: team-%d", i)
					}
				}
				edit["releases/catalog.yaml"] = strings.Join(lines, "\n")
			}
			if _, err := human.Commit(humanCtx, edit, fmt.Sprint("person's commit ", i)); err != nil {
				if humanCtx.Err() == nil {
					humanErr = err
				}
				return
			}
			sha, err := human.Push(humanCtx, 200)
			if err != nil {
				if humanCtx.Err() == nil {
					humanErr = err
				}
				return
			}
			humanSHAs = append(humanSHAs, sha)
			select {
			case progress <- struct{}{}:
			default:
			}
		}
	}()

	var sluiceSHAs []string
	retries := 0
	for i := range sluiceCommits {
		select {
		case <-progress:
		case <-humanDone:
		}
		res, err := r.Commit(ctx, gitsync.Change{
			Message:  fmt.Sprintf("sluice: status %d", i),
			Trailers: []gitsync.Trailer{{Key: "Sluice-Release", Value: "istioinaction/catalog"}, {Key: "Sluice-Step", Value: fmt.Sprint("canary-", i)}},
			Files:    map[string][]byte{".sluice/status/istioinaction/catalog.yaml": []byte(fmt.Sprintf("step: canary-%d\n", i))},
			Edits:    []gitsync.Edit{{Path: "releases/catalog.yaml", Apply: setVersion(fmt.Sprint("v", i))}},
		})
		if err != nil {
			stopHuman()
			wg.Wait()
			t.Fatalf("Sluice commit %d: %v", i, err)
		}
		if !res.Pushed {
			t.Fatalf("Sluice commit %d not pushed: %+v", i, res)
		}
		retries += res.Retries
		sluiceSHAs = append(sluiceSHAs, res.Hash.String())
	}
	stopHuman()
	wg.Wait()
	if humanErr != nil {
		t.Fatalf("person's loop: %v", humanErr)
	}
	t.Logf("Sluice pushed %d commits with %d retries while the person pushed %d", len(sluiceSHAs), retries, len(humanSHAs))
	if len(humanSHAs) < 5 {
		t.Fatalf("the person pushed only %d commits: no race happened", len(humanSHAs))
	}
	if retries == 0 {
		t.Logf("note: no push was lost in this run")
	}

	history := strings.Fields(gitserver.MustGit(t, bare, "rev-list", "--reverse", "main"))
	pos := make(map[string]int, len(history))
	for i, h := range history {
		pos[h] = i
	}
	checkOrder := func(who string, shas []string) {
		t.Helper()
		last := -1
		for i, s := range shas {
			p, ok := pos[s]
			if !ok {
				t.Fatalf("%s's commit %d (%s) is missing from the history", who, i, s)
			}
			if p <= last {
				t.Fatalf("%s's commit %d (%s) is out of order", who, i, s)
			}
			last = p
		}
	}
	checkOrder("Sluice", sluiceSHAs)
	checkOrder("the person", humanSHAs)
	if got, want := len(history), 1+len(sluiceSHAs)+len(humanSHAs); got != want {
		t.Errorf("history has %d commits, want seed + %d + %d = %d", got, len(sluiceSHAs), len(humanSHAs), want)
	}

	// Each Sluice commit holds what Sluice wrote, on top of the person's
	// latest work.
	for i, s := range sluiceSHAs {
		if got := gitserver.MustGit(t, bare, "show", s+":.sluice/status/istioinaction/catalog.yaml"); got != fmt.Sprintf("step: canary-%d", i) {
			t.Errorf("status at Sluice commit %d = %q", i, got)
		}
	}
	final := gitserver.MustGit(t, bare, "show", "main:human/log.txt")
	if n := strings.Count(final, "\n") + 1; n != len(humanSHAs) {
		t.Errorf("person's log has %d lines, want %d", n, len(humanSHAs))
	}
	spec := gitserver.MustGit(t, bare, "show", "main:releases/catalog.yaml")
	if !strings.Contains(spec, fmt.Sprintf("version: v%d", sluiceCommits-1)) {
		t.Errorf("Sluice's last version edit is lost:\n%s", spec)
	}
	lastOwner := ""
	for i := range len(humanSHAs) {
		if i%5 == 0 {
			lastOwner = fmt.Sprintf("owner: team-%d", i)
		}
	}
	if !strings.Contains(spec, lastOwner) {
		t.Errorf("the person's last owner edit (%s) is lost:\n%s", lastOwner, spec)
	}
	gitserver.MustGit(t, bare, "fsck", "--strict", "--no-progress")
	if dir != "" {
		// The references kept in memory are those on disk.
		head, _, err := r.Head()
		if err != nil {
			t.Fatal(err)
		}
		if onDisk := gitserver.MustGit(t, dir, "rev-parse", "refs/remotes/origin/main"); head.String() != onDisk {
			t.Errorf("head %s in memory, %s on disk", head, onDisk)
		}
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", logs.String())
	}
}
