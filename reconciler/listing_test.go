package reconciler

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
)

// TestSpecFilesListing: the listing of spec files follows the repository
// commit by commit, and says "unchanged" for a commit that touches only
// Sluice's status files (which is what lets a snapshot reuse its releases).
func TestSpecFilesListing(t *testing.T) {
	repo, _ := batchRepo(t)
	ctx := t.Context()
	r, err := New(Config{Repo: repo, Cluster: nopCluster{}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		files   map[string][]byte // nil content deletes
		changed bool
		want    string // listed files, comma-separated
	}{
		{name: "first", files: map[string][]byte{"releases/a/x.yaml": []byte("a"), "apps/x/base/kustomization.yaml": []byte("k"), "apps/x/README": []byte("r")},
			changed: true, want: "apps/x/base/kustomization.yaml,releases/a/x.yaml"},
		{name: "status only", files: map[string][]byte{record.StatusPath(record.DefaultStatusDir, "a", "x"): []byte("phase: Steady\n")}, changed: false},
		{name: "not yaml", files: map[string][]byte{"apps/x/README": []byte("r2")}, changed: false},
		{name: "new release", files: map[string][]byte{"releases/b/y.yml": []byte("b")}, changed: true,
			want: "apps/x/base/kustomization.yaml,releases/a/x.yaml,releases/b/y.yml"},
		{name: "edited", files: map[string][]byte{"releases/a/x.yaml": []byte("a2")}, changed: true,
			want: "apps/x/base/kustomization.yaml,releases/a/x.yaml,releases/b/y.yml"},
		{name: "directory gone", files: map[string][]byte{"apps/x/base/kustomization.yaml": nil, "apps/x/README": nil}, changed: true,
			want: "releases/a/x.yaml,releases/b/y.yml"},
	}
	var lastBlob string
	for _, st := range steps {
		res, err := repo.Commit(ctx, gitsync.Change{Message: st.name, Files: st.files})
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		tree, err := repo.Tree(ctx, res.Hash)
		if err != nil {
			t.Fatal(err)
		}
		files, changed, err := r.specFiles(tree)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if changed != st.changed {
			t.Errorf("%s: changed = %v, want %v", st.name, changed, st.changed)
		}
		if !changed {
			continue
		}
		var got []string
		for _, f := range files {
			got = append(got, f.path)
			if f.path == "releases/a/x.yaml" {
				if st.name == "edited" && f.blob.String() == lastBlob {
					t.Errorf("%s: blob of releases/a/x.yaml unchanged", st.name)
				}
				lastBlob = f.blob.String()
			}
		}
		if strings.Join(got, ",") != st.want {
			t.Errorf("%s: files %v, want %s", st.name, got, st.want)
		}
	}
}

// nopCluster is a Cluster for tests that never reach the cluster.
type nopCluster struct{}

func (nopCluster) Apply(context.Context, cluster.Set, cluster.ApplyOptions) (*cluster.Result, error) {
	return nil, errors.New("nopCluster: no cluster in this test")
}

func (nopCluster) Available(context.Context, string, string) (bool, string, error) {
	return false, "", errors.New("nopCluster: no cluster in this test")
}
