package reconciler

import (
	"slices"
	"testing"

	"sluice.dev/sluice/specs"
)

// TestCandidatesFirst: releases naming a candidate are queued before those
// at rest, each group in the order given; an invalid or unknown release
// counts as at rest.
func TestCandidatesFirst(t *testing.T) {
	rel := func(candidate string) *entry {
		return &entry{rel: &specs.Release{Spec: specs.ReleaseSpec{Stable: "v1", Candidate: candidate}}}
	}
	snap := &snapshot{releases: map[string]*entry{
		"a/steady":   rel(""),
		"a/canary":   rel("v2"),
		"b/invalid":  {},
		"b/canary":   rel("v3"),
		"c/steady-2": rel(""),
	}}
	tests := []struct {
		ids, want []string
	}{
		{ids: nil, want: []string{}},
		{ids: []string{"a/steady", "a/canary", "b/invalid", "b/canary", "c/steady-2", "d/unknown"},
			want: []string{"a/canary", "b/canary", "a/steady", "b/invalid", "c/steady-2", "d/unknown"}},
		{ids: []string{"b/canary", "a/canary"}, want: []string{"b/canary", "a/canary"}},
	}
	for _, tc := range tests {
		if got := candidatesFirst(snap, tc.ids); !slices.Equal(got, tc.want) {
			t.Errorf("candidatesFirst(%v) = %v, want %v", tc.ids, got, tc.want)
		}
	}
}
