package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/internal/bench"
	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/leader"
	"sluice.dev/sluice/record"
)

const (
	testShardCount   = 6
	testShardedCount = 9
)

// shardedReleases are the test's releases: apps without metric gates,
// a deploy, one 50% step and a promotion each. In e2e-shards their IDs
// hash to every one of six shards (1 to 2 releases each), so every
// replica holding a shard holds releases.
func shardedReleases(ns string) []bench.Release {
	out := make([]bench.Release, testShardedCount)
	for i := range out {
		name := fmt.Sprintf("app-%d", i)
		out[i] = bench.Release{Namespace: ns, Name: name, File: "releases/" + name + ".yaml"}
	}
	return out
}

// waitShardShares waits until the replicas named hold every shard,
// each between lo and hi of them, and returns the holders.
func waitShardShares(t *testing.T, s *stack.Stack, lo, hi int, replicas ...string) []string {
	t.Helper()
	var last []string
	err := stack.WaitFor(t.Context(), 2*time.Minute, 100*time.Millisecond, fmt.Sprintf("%v to hold %d to %d shards each", replicas, lo, hi), func(ctx context.Context) (bool, error) {
		h, err := s.ShardHolders(ctx, testShardCount)
		if err != nil {
			return false, err
		}
		last = h
		counts := map[string]int{}
		for _, name := range h {
			if !slices.Contains(replicas, name) {
				return false, nil
			}
			counts[name]++
		}
		for _, name := range replicas {
			if counts[name] < lo || counts[name] > hi {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%v; holders %v", err, last)
	}
	return last
}

// waitReleases waits until cond holds for every release's status file.
func waitReleases(t *testing.T, s *stack.Stack, rels []bench.Release, what string, cond func(*record.Status) bool) {
	t.Helper()
	pending := map[string]string{}
	err := stack.WaitFor(t.Context(), releaseTimeout, 250*time.Millisecond, what, func(ctx context.Context) (bool, error) {
		clear(pending)
		for _, r := range rels {
			data, err := s.ReadRemote(ctx, record.StatusPath(record.DefaultStatusDir, r.Namespace, r.Name))
			if err != nil {
				pending[r.Name] = "no status file"
				continue
			}
			st, err := record.ParseStatus([]byte(data))
			if err != nil {
				return false, err
			}
			if !cond(st) {
				pending[r.Name] = fmt.Sprintf("%s %s stable %s candidate %s", st.Phase, st.Step, st.Stable, st.Candidate)
			}
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		t.Fatalf("%v; not yet: %v", err, pending)
	}
}

// releaseSubjects are the subjects Sluice recorded for each release, oldest
// first: a batched commit's Sluice-Subject trailers, else its subject.
func releaseSubjects(t *testing.T, s *stack.Stack) map[string][]string {
	t.Helper()
	out, err := s.GitRemote(t.Context(), "log", "--reverse", "--author=Sluice",
		"--format=%s%x1f%(trailers:key="+record.TrailerSubject+",valueonly,separator=%x1e)%x1d", "main")
	if err != nil {
		t.Fatal(err)
	}
	subjects := map[string][]string{}
	for c := range strings.SplitSeq(out, "\x1d") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		subject, trailers, _ := strings.Cut(c, "\x1f")
		list := []string{subject}
		if trailers = strings.TrimSpace(trailers); trailers != "" {
			list = strings.Split(trailers, "\x1e")
		}
		for _, l := range list {
			name, rest, ok := strings.Cut(strings.TrimSpace(l), ": ")
			if ok {
				subjects[name] = append(subjects[name], rest)
			}
		}
	}
	return subjects
}

// checkShardedHistory checks each release's recorded history: every
// transition once, in order, through the rounds given ("v1 -> v2" ...).
func checkShardedHistory(t *testing.T, s *stack.Stack, rels []bench.Release, rounds ...[2]string) {
	t.Helper()
	all := releaseSubjects(t, s)
	for _, r := range rels {
		var subjects []string
		for _, subj := range all[r.Name] {
			if strings.HasPrefix(subj, "steady at ") || strings.Contains(subj, " retired after draining") {
				continue
			}
			subjects = append(subjects, subj)
		}
		// Each round is a start, its steps, and a promotion; no step twice.
		var got [][2]string
		seen := map[string]bool{}
		for _, subj := range subjects {
			key, _, _ := strings.Cut(subj, " (")
			if seen[key] {
				t.Errorf("%s: %q recorded twice in one round:\n%s", r.Name, key, strings.Join(subjects, "\n"))
			}
			seen[key] = true
			var from, to string
			if _, err := fmt.Sscanf(subj, "start %s -> %s at", &from, &to); err == nil {
				got = append(got, [2]string{from, to})
			}
			if strings.HasPrefix(subj, "promoted ") {
				clear(seen)
			}
		}
		if !slices.Equal(got, rounds) {
			t.Errorf("%s: releases started %v, want %v:\n%s", r.Name, got, rounds, strings.Join(subjects, "\n"))
		}
		if n := len(subjects); n == 0 || !strings.HasPrefix(subjects[n-1], "promoted "+rounds[len(rounds)-1][1]) {
			t.Errorf("%s: history does not end with the promotion of %s:\n%s", r.Name, rounds[len(rounds)-1][1], strings.Join(subjects, "\n"))
		}
	}
}

// TestShards: three replicas with six shards hold two each and share
// nine releases, each reconciled by the holder of its shard; a sync
// requested of one replica reaches the others. A replica SIGKILLed in
// the middle of its releases loses its shards once their Leases expire,
// and the others finish those releases from Git's record. A replica
// started later takes a fair share, and the next releases go through it.
// Every release's history holds each transition once.
func TestShards(t *testing.T) {
	t.Parallel()
	le := testLeaderElection
	// Git is fetched only at a start, on request, and when a shard is
	// gained: the pushes reach the replicas through one's relay.
	s := startStack(t, stack.Options{Namespace: "e2e-shards", LeaderElection: &le,
		SluiceArgs: []string{"--shards", fmt.Sprint(testShardCount), "--interval", "1h"}})
	ctx := t.Context()
	for _, name := range []string{"a", "b", "c"} {
		if err := s.StartReplica(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	holders := waitShardShares(t, s, 2, 2, "a", "b", "c")
	t.Logf("shards of a, b, c: %v", holders)

	rels := shardedReleases(s.Namespace)
	if _, err := s.EditAndPush(ctx, "nine apps", func(func(string) string) map[string]string {
		files := map[string]string{}
		for _, r := range rels {
			for p, b := range bench.AppFiles(r, 1) {
				files[p] = string(b)
			}
			files[r.File] = bench.ReleaseSpec(r, "")
		}
		return files
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.TriggerSyncOn(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	waitReleases(t, s, rels, "every release steady at v1", func(st *record.Status) bool {
		return st.Phase == record.PhaseSteady && st.Stable == "v1"
	})
	// Each release was recorded by the holder of its shard.
	for _, r := range rels {
		holder := holders[leader.ShardOf(r.Namespace+"/"+r.Name, testShardCount)]
		want := r.Name + ": steady at v1"
		for _, name := range []string{"a", "b", "c"} {
			if has := strings.Contains(s.ReplicaLog(name), want); has != (name == holder) {
				t.Errorf("%s's log has %q: %v; its shard is %s's", name, want, has, holder)
			}
		}
	}

	// A candidate for every release, with one request to b.
	candidate := func(from, to string) {
		t.Helper()
		_, err := s.EditAndPush(ctx, "candidates "+to, func(read func(string) string) map[string]string {
			files := map[string]string{}
			for _, r := range rels {
				files[r.File] = strings.Replace(read(r.File), "  stable: "+from+"\n", "  stable: "+from+"\n  candidate: "+to+"\n", 1)
			}
			return files
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	candidate("v1", "v2")
	if err := s.TriggerSyncOn(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	// c dies in the middle of one of its releases.
	var ofC []bench.Release
	for _, r := range rels {
		if holders[leader.ShardOf(r.Namespace+"/"+r.Name, testShardCount)] == "c" {
			ofC = append(ofC, r)
		}
	}
	if len(ofC) == 0 {
		t.Fatalf("c holds no release (shards %v); the test's names must spread", holders)
	}
	waitReleases(t, s, ofC[:1], "a release of c's past its deploy", func(st *record.Status) bool {
		return st.Candidate == "v2" && st.StepIndex >= 1
	})
	if err := s.KillReplica("c"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	holders = waitShardShares(t, s, 3, 3, "a", "b")
	t.Logf("a and b took c's shards %s after it was killed: %v", time.Since(killed).Round(10*time.Millisecond), holders)
	waitReleases(t, s, rels, "every release promoted to v2", func(st *record.Status) bool {
		return st.Phase == record.PhasePromoted && st.Stable == "v2"
	})

	// d joins: a and b give it one shard each.
	if err := s.StartReplica(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	holders = waitShardShares(t, s, 2, 2, "a", "b", "d")
	t.Logf("shards of a, b, d: %v", holders)
	candidate("v2", "v1")
	if err := s.TriggerSyncOn(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	waitReleases(t, s, rels, "every release back to v1", func(st *record.Status) bool {
		return st.Phase == record.PhasePromoted && st.Stable == "v1"
	})
	for _, r := range rels {
		if holders[leader.ShardOf(r.Namespace+"/"+r.Name, testShardCount)] != "d" {
			continue
		}
		if want := r.Name + ": promoted v1"; !strings.Contains(s.ReplicaLog("d"), want) {
			t.Errorf("d's log lacks %q, of a release of its shards", want)
		}
	}
	checkShardedHistory(t, s, rels, [2]string{"v1", "v2"}, [2]string{"v2", "v1"})

	wants := []string{"sluice_shards_held 2", "sluice_git_push_retries_total"}
	err := stack.WaitFor(ctx, 30*time.Second, 100*time.Millisecond, "d's metrics", func(ctx context.Context) (bool, error) {
		_, m, err := get(ctx, s.AdminURL("d")+"/metrics")
		if err != nil {
			return false, err
		}
		for _, w := range wants {
			if !strings.Contains(m, w) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Error(err)
	}
}
