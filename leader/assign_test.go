package leader

import (
	"fmt"
	"slices"
	"testing"
)

func TestShardOf(t *testing.T) {
	tests := []struct {
		id     string
		shards int
		want   int
	}{
		// FNV-1a 32 of the ID: a person can compute it too.
		{"shop/catalog", 1, 0},
		{"shop/catalog", 0, 0},
		{"istioinaction/catalog", 6, int(fnv1a("istioinaction/catalog") % 6)},
		{"a/b", 7, int(fnv1a("a/b") % 7)},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.id, tc.shards), func(t *testing.T) {
			if got := ShardOf(tc.id, tc.shards); got != tc.want {
				t.Errorf("ShardOf(%q, %d) = %d, want %d", tc.id, tc.shards, got, tc.want)
			}
		})
	}
	// Spread: 600 releases over 6 shards, none empty or crowded.
	counts := make([]int, 6)
	for i := range 600 {
		counts[ShardOf(fmt.Sprintf("ns-%d/app-%d", i%7, i), 6)]++
	}
	for i, n := range counts {
		if n < 60 || n > 140 {
			t.Errorf("shard %d has %d of 600 releases, want about 100: %v", i, n, counts)
		}
	}
}

// fnv1a is FNV-1a 32 written out, to pin ShardOf to the documented hash.
func fnv1a(s string) uint32 {
	h := uint32(2166136261)
	for i := range len(s) {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func TestTarget(t *testing.T) {
	tests := []struct {
		name    string
		holders []string
		waiting []string
		want    map[string]int // each member's target
	}{
		{"alone takes all", []string{"", "", "", ""}, nil, map[string]int{"a": 4}},
		{"one shard, one replica", []string{""}, nil, map[string]int{"a": 1}},
		{"two share four", []string{"a", "a", "b", "b"}, nil, map[string]int{"a": 2, "b": 2}},
		{"three share six", []string{"a", "a", "b", "b", "c", "c"}, nil, map[string]int{"a": 2, "b": 2, "c": 2}},
		// A fourth, waiting: two keep two, one gives one up.
		{"a fourth joins six", []string{"a", "a", "b", "b", "c", "c"}, []string{"d"}, map[string]int{"a": 2, "b": 2, "c": 1, "d": 1}},
		// The extra shards stay with those holding them: c, not a, keeps 2.
		{"extra stays put", []string{"a", "c", "c", "b", "b", ""}, []string{"d"}, map[string]int{"a": 1, "b": 2, "c": 2, "d": 1}},
		{"seven over three", []string{"a", "a", "a", "b", "b", "c", "c"}, nil, map[string]int{"a": 3, "b": 2, "c": 2}},
		{"more replicas than shards", []string{"a", "b"}, []string{"c"}, map[string]int{"a": 1, "b": 1, "c": 0}},
		{"unreadable Lease counts for no one", []string{"a", unknownHolder, "", ""}, nil, map[string]int{"a": 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := view{holders: tc.holders, waiting: tc.waiting}
			total := 0
			for who, want := range tc.want {
				got := v.target(who)
				total += got
				if got != want {
					t.Errorf("target(%s) = %d, want %d", who, got, want)
				}
				if c := (len(tc.holders) + len(v.members(who)) - 1) / len(v.members(who)); got > c {
					t.Errorf("target(%s) = %d, above ceil(shards/replicas) = %d", who, got, c)
				}
			}
			if len(tc.want) == len(v.members("a")) && total != len(tc.holders) {
				t.Errorf("targets add up to %d, want %d shards", total, len(tc.holders))
			}
		})
	}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name        string
		holders     []string
		waiting     []string
		releasing   []int
		start       int
		release     []int
		acquire     []int
		wantWaiting bool
	}{
		{name: "alone takes every free shard", holders: []string{"", "", "", ""}, acquire: []int{0, 1, 2, 3}},
		{name: "starts where it starts", holders: []string{"", "", "", ""}, start: 2, acquire: []int{2, 3, 0, 1}},
		{name: "holds its share", holders: []string{"a", "a", "b", "b"}},
		// b died: its shards expired; a takes them all.
		{name: "takes over the expired", holders: []string{"a", "a", "", ""}, acquire: []int{2, 3}},
		// Three share six; a holds three (c just joined, b's one shard is free).
		{name: "never above its share", holders: []string{"a", "a", "", "b", "c", "c"}, acquire: nil},
		{name: "gives up its surplus", holders: []string{"a", "a", "a", "b", "c", "c"}, release: []int{2}},
		{name: "surplus for a waiting replica", holders: []string{"a", "a", "b", "b", "c", "a"}, waiting: []string{"d"}, release: []int{5}},
		{name: "what it gives up is not surplus twice", holders: []string{"a", "a", "a", "b", "c", "c"}, releasing: []int{2}},
		{name: "waits when nothing is free", holders: []string{"b", "b", "c", "c", "e", "e"}, wantWaiting: true},
		{name: "takes what is free, waits for the rest", holders: []string{"", "b", "b", "b", "c", "c"}, acquire: []int{0}, wantWaiting: true},
		{name: "more replicas than shards: none for a", holders: []string{"b", "c"}, wantWaiting: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := view{holders: tc.holders, waiting: tc.waiting}
			releasing := map[int]bool{}
			for _, i := range tc.releasing {
				releasing[i] = true
			}
			release, acquire, waiting := v.plan("a", releasing, tc.start)
			if !slices.Equal(release, tc.release) || !slices.Equal(acquire, tc.acquire) || waiting != tc.wantWaiting {
				t.Errorf("plan = release %v, acquire %v, waiting %v; want %v, %v, %v", release, acquire, waiting, tc.release, tc.acquire, tc.wantWaiting)
			}
		})
	}
}

// TestConverge plays replicas joining and leaving on one view, each
// acting on it in turn, and checks that they end at their fair shares
// having moved as few shards as they could.
func TestConverge(t *testing.T) {
	tests := []struct {
		name      string
		shards    int
		before    []string // holders
		members   []string // live replicas after the change
		wantMoved int
	}{
		{"first replica", 6, []string{"", "", "", "", "", ""}, []string{"a"}, 6},
		{"second joins", 6, []string{"a", "a", "a", "a", "a", "a"}, []string{"a", "b"}, 3},
		{"third joins", 6, []string{"a", "a", "a", "b", "b", "b"}, []string{"a", "b", "c"}, 2},
		{"fourth joins", 6, []string{"a", "a", "b", "b", "c", "c"}, []string{"a", "b", "c", "d"}, 1},
		{"one of three leaves", 6, []string{"a", "a", "b", "b", "c", "c"}, []string{"a", "b"}, 2},
		{"one of four leaves", 6, []string{"a", "a", "b", "b", "c", "d"}, []string{"a", "b", "c"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			holders := slices.Clone(tc.before)
			for i, h := range holders {
				if !slices.Contains(tc.members, h) {
					holders[i] = "" // expired
				}
			}
			moved := 0
			for round := 0; round < 20; round++ {
				changed := false
				for _, m := range tc.members {
					v := view{holders: holders}
					for _, w := range tc.members {
						if w != m && !slices.Contains(holders, w) {
							v.waiting = append(v.waiting, w)
						}
					}
					release, acquire, _ := v.plan(m, nil, 0)
					for _, i := range release {
						holders[i] = ""
						changed = true
					}
					for _, i := range acquire {
						holders[i] = m
						moved++
						changed = true
					}
				}
				if !changed {
					break
				}
			}
			counts := map[string]int{}
			for _, h := range holders {
				if h == "" {
					t.Fatalf("shards left free: %v", holders)
				}
				counts[h]++
			}
			lo, hi := tc.shards/len(tc.members), (tc.shards+len(tc.members)-1)/len(tc.members)
			for _, m := range tc.members {
				if counts[m] < lo || counts[m] > hi {
					t.Errorf("%s holds %d shards, want %d to %d: %v", m, counts[m], lo, hi, holders)
				}
			}
			if moved != tc.wantMoved {
				t.Errorf("%d shards moved, want %d: %v", moved, tc.wantMoved, holders)
			}
		})
	}
}
