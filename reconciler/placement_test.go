package reconciler

import (
	"log/slog"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
)

// placedDoc is a release spec with labels and clusters.
func placedDoc(namespace, name, labels, clusters string) string {
	doc := releaseDoc(namespace, name)
	if labels != "" {
		doc = strings.Replace(doc, "  namespace: "+namespace+"\n", "  namespace: "+namespace+"\n  labels: {"+labels+"}\n", 1)
	}
	if clusters != "" {
		doc += "  clusters: [" + clusters + "]\n"
	}
	return doc
}

// statusDoc is a status file as Sluice writes it, with the labels given.
func statusDoc(t *testing.T, id, file string, labels map[string]string) []byte {
	t.Helper()
	st := &record.Status{Release: id, SpecFile: file, Phase: record.PhaseSteady, Stable: "v1", Labels: labels}
	b, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPlacement: a Sluice with a release selector or a cluster name
// reconciles only its own releases; a release that is another's, because
// its labels or clusters say so or because they changed, is never gone for
// it, whatever status files there are; a release whose spec is deleted is
// gone only for the Sluice it belonged to, known from the previous
// snapshot or from the labels its status file recorded.
func TestPlacement(t *testing.T) {
	repo, _ := batchRepo(t)
	ctx := t.Context()
	commit := func(files map[string][]byte) {
		t.Helper()
		if _, err := repo.Commit(ctx, gitsync.Change{Message: "test", Files: files}); err != nil {
			t.Fatal(err)
		}
	}
	newR := func(selector, cluster, statusDir string) *Reconciler {
		t.Helper()
		cfg := Config{Repo: repo, Cluster: nopCluster{}, ClusterName: cluster, StatusDir: statusDir, Log: slog.New(slog.DiscardHandler)}
		if selector != "" {
			sel, err := labels.Parse(selector)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Selector = sel
		}
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	type want struct{ assigned, gone []string }
	check := func(r *Reconciler, step string, w want) {
		t.Helper()
		snap, err := r.refresh(ctx)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		gone := slices.Sorted(slices.Values(snap.gone))
		if got := r.assigned(snap); !slices.Equal(got, w.assigned) {
			t.Errorf("%s: assigned %v, want %v", step, got, w.assigned)
		}
		if !slices.Equal(gone, w.gone) {
			t.Errorf("%s: gone %v, want %v", step, gone, w.gone)
		}
		// Reconciling a release that is not assigned does nothing: no
		// commit, no error (nopCluster can neither apply nor delete).
		head, _, _ := repo.Head()
		for id := range snap.releases {
			if slices.Contains(w.assigned, id) {
				continue
			}
			if _, err := r.reconcile(ctx, id); err != nil {
				t.Errorf("%s: reconcile %s, not this Sluice's: %v", step, id, err)
			}
		}
		if now, _, _ := repo.Head(); now != head {
			t.Errorf("%s: reconciling releases that are another's committed", step)
		}
	}

	commit(map[string][]byte{
		"releases/a.yaml": []byte(placedDoc("shop", "a", "team: x", "")),
		"releases/b.yaml": []byte(placedDoc("shop", "b", "team: y", "")),
		"releases/c.yaml": []byte(placedDoc("shop", "c", "", "staging")),
		// Invalid, but its labels still place it.
		"releases/d.yaml": []byte(strings.Replace(placedDoc("shop", "d", "team: x", "prod"), "stable: v1", "stable: v9", 1)),
		// Status files of a, b and d on cluster prod, and of every one in
		// the repository's own (no cluster) status directory.
		".sluice/status/prod/shop/a.yaml": statusDoc(t, "shop/a", "releases/a.yaml", map[string]string{"team": "x"}),
		".sluice/status/prod/shop/b.yaml": statusDoc(t, "shop/b", "releases/b.yaml", map[string]string{"team": "y"}),
		".sluice/status/prod/shop/c.yaml": statusDoc(t, "shop/c", "releases/c.yaml", nil),
		".sluice/status/shop/a.yaml":      statusDoc(t, "shop/a", "releases/a.yaml", map[string]string{"team": "x"}),
		".sluice/status/shop/b.yaml":      statusDoc(t, "shop/b", "releases/b.yaml", map[string]string{"team": "y"}),
	})
	all := newR("", "", "")
	x := newR("team=x", "", "")
	y := newR("team=y", "", "")
	prodX := newR("team=x", "prod", ".sluice/status/prod")
	prodAny := newR("", "prod", ".sluice/status/prod")
	staging := newR("", "staging", ".sluice/status/staging")
	check(all, "all", want{assigned: []string{"shop/a", "shop/b"}})
	check(x, "x", want{assigned: []string{"shop/a"}})
	check(y, "y", want{assigned: []string{"shop/b"}})
	check(prodX, "prod x", want{assigned: []string{"shop/a", "shop/d"}})
	// c targets staging only; its status file on prod does not make it gone.
	check(prodAny, "prod", want{assigned: []string{"shop/a", "shop/b", "shop/d"}})
	check(staging, "staging", want{assigned: []string{"shop/a", "shop/b", "shop/c"}})

	// a's labels move it to team y: x no longer reconciles it and must
	// not delete it; y takes it over.
	commit(map[string][]byte{"releases/a.yaml": []byte(placedDoc("shop", "a", "team: y", ""))})
	check(x, "a relabelled, x", want{})
	check(y, "a relabelled, y", want{assigned: []string{"shop/a", "shop/b"}})
	check(prodX, "a relabelled, prod x", want{assigned: []string{"shop/d"}})
	// c no longer targets staging or prod: another cluster's, not gone.
	commit(map[string][]byte{"releases/c.yaml": []byte(placedDoc("shop", "c", "", "qa"))})
	check(staging, "c moved to qa, staging", want{assigned: []string{"shop/a", "shop/b"}})
	check(prodAny, "c moved to qa, prod", want{assigned: []string{"shop/a", "shop/b", "shop/d"}})

	// b's spec is deleted: gone for y (it saw b as its own) and for a
	// Sluice without a selector; not for x. A restarted Sluice knows from
	// b's status file, which recorded team y.
	commit(map[string][]byte{"releases/b.yaml": nil})
	check(x, "b deleted, x", want{})
	check(y, "b deleted, y", want{assigned: []string{"shop/a", "shop/b"}, gone: []string{"shop/b"}})
	check(all, "b deleted, all", want{assigned: []string{"shop/a", "shop/b"}, gone: []string{"shop/b"}})
	check(prodX, "b deleted, prod x", want{assigned: []string{"shop/d"}})
	check(newR("team=x", "", ""), "b deleted, x restarted", want{})
	check(newR("team=y", "", ""), "b deleted, y restarted", want{assigned: []string{"shop/a", "shop/b"}, gone: []string{"shop/b"}})

	// a, now team y, is deleted; its status files still record team x
	// (nothing was recorded since the relabelling). y, which saw it as
	// its own, deletes it; x, which saw it as another's, does not, and
	// neither would a restarted y (a status file's labels are as of its
	// last record: the one they name deletes).
	commit(map[string][]byte{"releases/a.yaml": nil})
	check(y, "a deleted, y", want{assigned: []string{"shop/a", "shop/b"}, gone: []string{"shop/a", "shop/b"}})
	check(x, "a deleted, x", want{})
	check(prodX, "a deleted, prod x", want{assigned: []string{"shop/d"}})
	check(newR("team=x", "prod", ".sluice/status/prod"), "a deleted, prod x restarted", want{assigned: []string{"shop/a", "shop/d"}, gone: []string{"shop/a"}})
	check(newR("team=y", "prod", ".sluice/status/prod"), "a deleted, prod y restarted", want{assigned: []string{"shop/b"}, gone: []string{"shop/b"}})
}

// TestPlacementPerClusterFiles: a release defined once per cluster (the
// same namespace/name in two files naming different clusters) is no
// duplicate: each cluster's Sluice follows its own file.
func TestPlacementPerClusterFiles(t *testing.T) {
	repo, _ := batchRepo(t)
	ctx := t.Context()
	if _, err := repo.Commit(ctx, gitsync.Change{Message: "test", Files: map[string][]byte{
		"prod/a.yaml":    []byte(placedDoc("shop", "a", "", "prod")),
		"staging/a.yaml": []byte(placedDoc("shop", "a", "", "staging")),
	}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ cluster, file string }{
		{"prod", "prod/a.yaml"},
		{"staging", "staging/a.yaml"},
		{"qa", "prod/a.yaml"}, // neither is qa's: the first file, as before, not qa's either
	} {
		r, err := New(Config{Repo: repo, Cluster: nopCluster{}, ClusterName: c.cluster, StatusDir: ".sluice/status/" + c.cluster, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		snap, err := r.refresh(ctx)
		if err != nil {
			t.Fatal(err)
		}
		e := snap.releases["shop/a"]
		if e == nil || e.file != c.file {
			t.Errorf("%s follows %+v, want %s", c.cluster, e, c.file)
		}
		if want := c.cluster != "qa"; r.mine(e) != want {
			t.Errorf("%s: mine = %v, want %v", c.cluster, r.mine(e), want)
		}
	}
}
