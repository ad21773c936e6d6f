package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"sluice.dev/sluice/internal/gitserver"
	"sluice.dev/sluice/record"
)

// actRepo is a bare remote holding the catalog example, its release
// recorded at step, and a person's clone of it.
func actRepo(t *testing.T, st *record.Status) (bare, clone string) {
	t.Helper()
	gitserver.RequireGit(t)
	spec, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"releases/catalog.yaml": string(spec)}
	if st != nil {
		data, err := st.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		files[record.StatusPath(record.DefaultStatusDir, "istioinaction", "catalog")] = string(data)
	}
	root := t.TempDir()
	bare = gitserver.NewBare(t, root, "releases.git", "main", files)
	clone = filepath.Join(root, "clone")
	gitserver.MustGit(t, root, "clone", "-q", bare, clone)
	return bare, clone
}

func recorded(phase record.Phase, step string, i int) *record.Status {
	return &record.Status{Release: "istioinaction/catalog", SpecFile: "releases/catalog.yaml", Phase: phase,
		Stable: "v1", Candidate: "v2", Step: step, StepIndex: i}
}

// TestActions: each action is one commit by the person, on the remote,
// with the subject and the spec edit it promises; one that makes no sense
// now says why and commits nothing.
func TestActions(t *testing.T) {
	tests := []struct {
		name    string
		status  *record.Status
		args    []string
		subject string
		diff    string // a line the spec gains (+) or loses (-)
		err     string
	}{
		{name: "pause", status: recorded(record.PhaseProgressing, "canary-10", 2), args: []string{"pause", "catalog"},
			subject: "catalog: pause at canary-10 (by Jane Doe)", diff: "+  paused: true"},
		{name: "abort", status: recorded(record.PhaseProgressing, "canary-10", 2), args: []string{"abort", "istioinaction/catalog"},
			subject: "catalog: abort v2 at canary-10 (by Jane Doe)", diff: "+  abort: v2"},
		{name: "promote --skip-analysis", status: recorded(record.PhaseProgressing, "canary-10", 2), args: []string{"promote", "catalog", "--skip-analysis"},
			subject: "catalog: promote v2 now, skipping analysis at canary-10 (by Jane Doe)", diff: "+  skipAnalysis: v2"},
		{name: "retry after a rollback", status: recorded(record.PhaseRolledBack, "rollback", 2), args: []string{"retry", "catalog"},
			subject: "catalog: retry v2 (by Jane Doe)", diff: "+  retry: \""},
		{name: "approve a stage ahead", status: recorded(record.PhaseProgressing, "deploy", 0), args: []string{"approve", "catalog", "--step", "canary-10"},
			err: "step canary-10 needs no approval"},
		{name: "retry what was not rolled back", status: recorded(record.PhaseProgressing, "canary-10", 2), args: []string{"retry", "catalog"},
			err: "only a rolled-back candidate is retried; v2 is Progressing"},
		{name: "abort a promoted release", status: recorded(record.PhasePromoted, "promote", 8), args: []string{"abort", "catalog"},
			err: "v2 is not in progress (Promoted)"},
		{name: "resume what is not paused", status: recorded(record.PhaseProgressing, "canary-10", 2), args: []string{"resume", "catalog"},
			err: "not paused"},
		{name: "promote without --skip-analysis", status: recorded(record.PhaseProgressing, "canary-10", 2), args: []string{"promote", "catalog"},
			err: "promote needs --skip-analysis"},
		{name: "an unknown release", args: []string{"pause", "nope"}, err: "no release nope in the repository"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bare, clone := actRepo(t, tc.status)
			before := gitserver.MustGit(t, bare, "rev-parse", "main")
			args := append(tc.args, "--repo", clone, "--author", "Jane Doe <jane@example.com>")
			out, _, err := sluice(t.Context(), args...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if after := gitserver.MustGit(t, bare, "rev-parse", "main"); after != before {
					t.Error("a refused action committed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "Pushed ") || !strings.Contains(out, "git pull") {
				t.Errorf("output %q", out)
			}
			log := gitserver.MustGit(t, bare, "log", "-1", "--format=%an <%ae>|%cn|%s|%(trailers:key=Sluice-Request,valueonly)")
			want := "Jane Doe <jane@example.com>|Jane Doe|" + tc.subject + "|" + tc.args[0]
			if strings.TrimSpace(log) != want {
				t.Errorf("commit %q, want %q", strings.TrimSpace(log), want)
			}
			diff := gitserver.MustGit(t, bare, "show", "--format=", "main")
			if !strings.Contains(diff, "\n"+tc.diff) || strings.Count(diff, "\n+ ")+strings.Count(diff, "\n- ") > 1 {
				t.Errorf("diff:\n%s\nwant the one line %q", diff, tc.diff)
			}
		})
	}
}

// TestActionDryRun prints the commit and pushes nothing.
func TestActionDryRun(t *testing.T) {
	bare, clone := actRepo(t, recorded(record.PhaseProgressing, "canary-10", 2))
	before := gitserver.MustGit(t, bare, "rev-parse", "main")
	out, _, err := sluice(t.Context(), "abort", "catalog", "--repo", clone, "--author", "Jane Doe <jane@example.com>", "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Would commit to file://", "(main) as Jane Doe <jane@example.com>", "catalog: abort v2 at canary-10 (by Jane Doe)", "+++ b/releases/catalog.yaml", "+  abort: v2"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if after := gitserver.MustGit(t, bare, "rev-parse", "main"); after != before {
		t.Error("a dry run pushed")
	}
}

// TestActionRacesAStatusCommit: Sluice records a transition between the
// person's read of the repository and their push. The push loses, the edit
// is made again on the new head, and both commits stay, the person's on
// top; nothing is forced.
func TestActionRacesAStatusCommit(t *testing.T) {
	bare, clone := actRepo(t, recorded(record.PhaseProgressing, "canary-10", 2))
	sluiceClone := filepath.Join(t.TempDir(), "sluice")
	gitserver.MustGit(t, filepath.Dir(sluiceClone), "clone", "-q", bare, sluiceClone)
	raced := false
	racing := func(tg *target, who string) (*request, error) {
		if !raced {
			raced = true
			// Sluice's record of the next step lands first.
			st := recorded(record.PhaseProgressing, "canary-20", 3)
			data, err := st.Marshal()
			if err != nil {
				return nil, err
			}
			gitserver.WriteFiles(t, sluiceClone, map[string]string{record.StatusPath(record.DefaultStatusDir, "istioinaction", "catalog"): string(data)})
			gitserver.MustGit(t, sluiceClone, "commit", "-qam", "catalog: 10% -> 20% (success-rate 100 >= 99)")
			gitserver.MustGit(t, sluiceClone, "push", "-q", "origin", "main")
		}
		return pauseRequest(tg, who)
	}
	var af actFlags
	cmd := &cobra.Command{Use: "pause RELEASE"}
	af.register(cmd)
	if err := cmd.ParseFlags([]string{"--repo", clone, "--author", "Jane Doe <jane@example.com>"}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetContext(context.Background())
	if err := runAction(cmd, &af, "catalog", racing); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "rebased on 1 newer commit(s)") {
		t.Errorf("output %q", out.String())
	}
	log := gitserver.MustGit(t, bare, "log", "--format=%s", "main")
	want := "catalog: pause at canary-10 (by Jane Doe)\ncatalog: 10% -> 20% (success-rate 100 >= 99)\nseed releases.git"
	if strings.TrimSpace(log) != want {
		t.Fatalf("log:\n%s\nwant\n%s", log, want)
	}
	spec := gitserver.MustGit(t, bare, "show", "main:releases/catalog.yaml")
	if !strings.Contains(spec, "\n  paused: true\n") {
		t.Errorf("spec lacks the pause:\n%s", spec)
	}
}
