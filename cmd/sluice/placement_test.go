package main

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
)

func TestClusterStatusDir(t *testing.T) {
	cases := []struct {
		dir, cluster, want, err string
	}{
		{".sluice/status", "", ".sluice/status", ""},
		{".sluice/status", "prod", ".sluice/status/prod", ""},
		{"status/", "staging", "status/staging", ""},
		{".sluice/status", "Prod_1", "", `--cluster "Prod_1"`},
		{".sluice/status", "../x", "", `--cluster "../x"`},
	}
	for _, c := range cases {
		got, err := clusterStatusDir(c.dir, c.cluster)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("clusterStatusDir(%q, %q): err %v, want %q", c.dir, c.cluster, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("clusterStatusDir(%q, %q) = %q, %v; want %q", c.dir, c.cluster, got, err, c.want)
		}
	}
}

func TestReleaseSelector(t *testing.T) {
	cases := []struct {
		sel    string
		labels map[string]string
		want   bool
		err    bool
	}{
		{"", map[string]string{"team": "x"}, true, false},
		{"team=x", map[string]string{"team": "x"}, true, false},
		{"team=x", nil, false, false},
		{"team in (x,y),!canary", map[string]string{"team": "y"}, true, false},
		{"team in (x", nil, false, true},
	}
	for _, c := range cases {
		sel, err := releaseSelector(c.sel)
		if c.err {
			if err == nil {
				t.Errorf("releaseSelector(%q): no error", c.sel)
			}
			continue
		}
		if err != nil {
			t.Fatalf("releaseSelector(%q): %v", c.sel, err)
		}
		got := sel == nil || sel.Matches(labels.Set(c.labels))
		if got != c.want {
			t.Errorf("releaseSelector(%q) matches %v = %v, want %v", c.sel, c.labels, got, c.want)
		}
	}
}

// TestStatusCluster: `sluice status --cluster NAME` reads that cluster's
// status files, which a Sluice run with --cluster NAME writes.
func TestStatusCluster(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	bare := filepath.Join(dir, "releases.git")
	work := filepath.Join(dir, "work")
	for _, args := range [][]string{
		{"init", "-q", "--bare", "--initial-branch=main", bare},
		{"init", "-q", "--initial-branch=main", work},
		{"-C", work, "commit", "-q", "--allow-empty", "-m", "start"},
		{"-C", work, "push", "-q", bare, "main"},
	} {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_AUTHOR_NAME=p", "GIT_AUTHOR_EMAIL=p@x", "GIT_COMMITTER_NAME=p", "GIT_COMMITTER_EMAIL=p@x")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	repo, err := gitsync.Open(ctx, gitsync.Config{URL: "file://" + bare, Author: gitsync.Signature{Name: "Sluice", Email: "sluice@x"}}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for cluster, phase := range map[string]record.Phase{"staging": record.PhasePromoted, "prod": record.PhaseSteady} {
		st := &record.Status{Release: "shop/web", SpecFile: "releases/web.yaml", Phase: phase, Stable: "v1"}
		data, err := st.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		files[record.StatusPath(path.Join(record.DefaultStatusDir, cluster), "shop", "web")] = data
	}
	if _, err := repo.Commit(ctx, gitsync.Change{Message: "records", Files: files}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args          []string
		want, notWant string
		err           string
	}{
		{args: []string{"--cluster", "prod"}, want: "Steady", notWant: "Promoted"},
		{args: []string{"--cluster", "staging"}, want: "Promoted", notWant: "Steady"},
		{args: []string{"--cluster", "qa"}, want: "No releases recorded yet."},
		{args: []string{"--cluster", "Prod"}, err: `--cluster "Prod"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, _, err := sluice(ctx, append([]string{"status", bare}, tt.args...)...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, tt.want) || (tt.notWant != "" && strings.Contains(out, tt.notWant)) {
				t.Errorf("status %v:\n%s", tt.args, out)
			}
		})
	}
}
