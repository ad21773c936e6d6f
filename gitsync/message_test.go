package gitsync_test

import (
	"reflect"
	"strings"
	"testing"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/internal/gitserver"
)

func TestParseTrailersAgreesWithGit(t *testing.T) {
	gitserver.RequireGit(t)
	tests := []struct {
		name string
		msg  string
		want []gitsync.Trailer
	}{
		{"sluice commit", "sluice: advance\n\nbody\n\nSluice-Release: istioinaction/catalog\nSluice-Step: canary-20\n",
			[]gitsync.Trailer{{Key: "Sluice-Release", Value: "istioinaction/catalog"}, {Key: "Sluice-Step", Value: "canary-20"}}},
		{"no body", "subject\n\nSluice-Step: canary-5\n", []gitsync.Trailer{{Key: "Sluice-Step", Value: "canary-5"}}},
		{"subject only", "Sluice-Step: not-a-trailer\n", nil},
		{"prose last paragraph", "subject\n\nThis is prose.\nSluice-Step: x\n", nil},
		{"continuation", "subject\n\nSluice-Note: first\n  second\n", []gitsync.Trailer{{Key: "Sluice-Note", Value: "first second"}}},
		{"trailing blank lines", "subject\n\nA-B: c\n\n\n", []gitsync.Trailer{{Key: "A-B", Value: "c"}}},
		{"space before colon", "subject\n\nKey : value\n", []gitsync.Trailer{{Key: "Key", Value: "value"}}},
		{"empty", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := gitsync.ParseTrailers(tc.msg)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseTrailers = %#v, want %#v", got, tc.want)
			}
			var lines []string
			for _, tr := range got {
				lines = append(lines, tr.Key+": "+tr.Value)
			}
			if gitOut := gitInterpretTrailers(t, tc.msg); gitOut != strings.Join(lines, "\n") {
				t.Errorf("git interpret-trailers --parse = %q, ParseTrailers = %q", gitOut, strings.Join(lines, "\n"))
			}
		})
	}
}

func TestFormatMessage(t *testing.T) {
	got, err := gitsync.FormatMessage("subject\n\nbody  \n\n", []gitsync.Trailer{{Key: "Sluice-Step", Value: " canary-1 "}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "subject\n\nbody\n\nSluice-Step: canary-1\n"; got != want {
		t.Errorf("FormatMessage = %q, want %q", got, want)
	}
	if _, err := gitsync.FormatMessage("s", []gitsync.Trailer{{Key: "K", Value: " "}}); err == nil {
		t.Error("empty trailer value accepted")
	}
}

func TestTrailerGroups(t *testing.T) {
	tr := []gitsync.Trailer{
		{Key: "Signed-off-by", Value: "someone"},
		{Key: gitsync.TrailerRelease, Value: "ns/a"}, {Key: gitsync.TrailerAction, Value: "steady"},
		{Key: "sluice-release", Value: "ns/b"}, {Key: gitsync.TrailerAction, Value: "start"}, {Key: gitsync.TrailerStep, Value: "deploy"},
	}
	tests := []struct {
		name string
		in   []gitsync.Trailer
		want [][2]string // release, action of each group
	}{
		{name: "none", in: nil, want: nil},
		{name: "no key", in: tr[:1], want: nil},
		{name: "one", in: tr[:3], want: [][2]string{{"ns/a", "steady"}}},
		{name: "two", in: tr, want: [][2]string{{"ns/a", "steady"}, {"ns/b", "start"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			groups := gitsync.TrailerGroups(tt.in, gitsync.TrailerRelease)
			if len(groups) != len(tt.want) {
				t.Fatalf("%d groups, want %d: %v", len(groups), len(tt.want), groups)
			}
			for i, g := range groups {
				got := [2]string{gitsync.TrailerValue(g, gitsync.TrailerRelease), gitsync.TrailerValue(g, gitsync.TrailerAction)}
				if got != tt.want[i] {
					t.Errorf("group %d = %v, want %v", i, got, tt.want[i])
				}
			}
		})
	}
}
