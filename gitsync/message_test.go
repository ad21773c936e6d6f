package gitsync_test

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/internal/gitserver"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s mismatch (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

func TestRenderMessageGolden(t *testing.T) {
	tests := []struct {
		name string
		tmpl string
		data gitsync.MessageData
	}{
		{"advance", "", gitsync.MessageData{
			Release: "istioinaction/catalog", Step: "canary-20", Action: "advance", Weight: 20,
			Gates: []gitsync.GateFigure{
				{Name: "error-rate", Value: 0.002, Threshold: 0.01, Op: "<=", Passed: true},
				{Name: "p99-latency-ms", Value: 180, Threshold: 250, Op: "<=", Passed: true},
			},
		}},
		{"rollback", "", gitsync.MessageData{
			Release: "istioinaction/catalog", Step: "canary-50", Action: "rollback", Weight: 50,
			Note:  "error rate above threshold for 3 checks",
			Gates: []gitsync.GateFigure{{Name: "error-rate", Value: 0.31, Threshold: 0.01, Op: "<=", Passed: false}},
		}},
		{"promote-no-gates", "", gitsync.MessageData{Release: "istioinaction/catalog", Step: "stable", Action: "promote"}},
		{"custom-template", "release {{.Release}} at {{.Step}}\n\nweight={{.Weight}}\n", gitsync.MessageData{Release: "ns/app", Step: "canary-10", Weight: 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg, trailers, err := gitsync.RenderMessage(tc.tmpl, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			full, err := gitsync.FormatMessage(msg, trailers)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "message-"+tc.name, full)
			if got := gitsync.ParseTrailers(full); !reflect.DeepEqual(got, trailers) {
				t.Errorf("ParseTrailers(rendered) = %v, want %v", got, trailers)
			}
		})
	}
}

func TestRenderMessageErrors(t *testing.T) {
	tests := []struct {
		name string
		tmpl string
		data gitsync.MessageData
		want string
	}{
		{"no release", "", gitsync.MessageData{Step: "s"}, "release and step are required"},
		{"bad template", "{{.Release", gitsync.MessageData{Release: "r", Step: "s"}, "parse commit message template"},
		{"unknown field", "{{.Nope}}", gitsync.MessageData{Release: "r", Step: "s"}, "render commit message template"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := gitsync.RenderMessage(tc.tmpl, tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestParseTrailersAgreesWithGit checks ParseTrailers against git's own
// parser on the messages Sluice cares about.
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
