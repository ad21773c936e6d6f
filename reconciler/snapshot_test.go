package reconciler

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

func releaseDoc(namespace, name string) string {
	return fmt.Sprintf(`apiVersion: sluice.dev/v1alpha1
kind: Release
metadata:
  name: %s
  namespace: %s
spec:
  service: {port: 80}
  source: apps/x
  versions: [{name: v1}]
  stable: v1
  routes: [{name: mesh, gateways: [mesh], hosts: [x]}]
  stages: [{name: promote, promote: {}}]
`, name, namespace)
}

// syncBuffer is a log destination safe for the workers' concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSnapshotDuplicatesAndLimits: a release defined again in another file
// never takes over or invalidates the one Sluice follows (its status
// file's spec file, else the previous snapshot's, else the first file in
// lexical order), a misspelt kind is reported on the release it names, and
// a file over the size limit is not read and holds only its own releases.
func TestSnapshotDuplicatesAndLimits(t *testing.T) {
	repo, _ := batchRepo(t)
	ctx := t.Context()
	var logs syncBuffer
	newR := func() *Reconciler {
		r, err := New(Config{Repo: repo, Cluster: nopCluster{}, Log: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	commit := func(files map[string][]byte) {
		t.Helper()
		if _, err := repo.Commit(ctx, gitsync.Change{Message: "test", Files: files}); err != nil {
			t.Fatal(err)
		}
	}
	type want struct{ file, err string }
	check := func(r *Reconciler, step string, wants map[string]want) {
		t.Helper()
		snap, err := r.refresh(ctx)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if len(snap.releases) != len(wants) {
			t.Errorf("%s: %d releases, want %d", step, len(snap.releases), len(wants))
		}
		for id, w := range wants {
			e, ok := snap.releases[id]
			switch {
			case !ok:
				t.Errorf("%s: release %s missing", step, id)
			case e.file != w.file:
				t.Errorf("%s: release %s from %s, want %s", step, id, e.file, w.file)
			case w.err == "" && e.err != nil:
				t.Errorf("%s: release %s invalid: %v", step, id, e.err)
			case w.err != "" && (e.err == nil || !strings.Contains(e.err.Error(), w.err)):
				t.Errorf("%s: release %s: error %v, want %q", step, id, e.err, w.err)
			}
		}
	}

	r := newR()
	commit(map[string][]byte{
		"releases/m.yaml": []byte(releaseDoc("shop", "web")),
		"releases/z.yaml": []byte(releaseDoc("shop", "big")),
	})
	check(r, "first", map[string]want{"shop/web": {file: "releases/m.yaml"}, "shop/big": {file: "releases/z.yaml"}})

	huge := []byte(releaseDoc("shop", "big") + "# " + strings.Repeat("x", int(specs.DefaultMaxSpecSize)) + "\n")
	commit(map[string][]byte{
		// Lexically first, but the release is running from m.yaml.
		"releases/a.yaml": []byte(releaseDoc("shop", "web")),
		// Twice in one file: the first document counts.
		"releases/n.yaml": []byte(releaseDoc("shop", "cart") + "---\n" + strings.Replace(releaseDoc("shop", "cart"), "port: 80", "port: 81", 1)),
		"releases/k.yaml": []byte(strings.Replace(releaseDoc("shop", "typo"), "kind: Release", "kind: Relase", 1)),
		"releases/z.yaml": huge,
	})
	check(r, "duplicates", map[string]want{
		"shop/web":  {file: "releases/m.yaml"},
		"shop/cart": {file: "releases/n.yaml"},
		"shop/typo": {file: "releases/k.yaml", err: `kind: must be Release, got "Relase" (did you mean "Release"?)`},
		"shop/big":  {file: "releases/z.yaml", err: "releases/z.yaml: file is 1 MiB, over the 1 MiB limit"},
	})
	if snap, _ := r.refresh(ctx); snap.releases["shop/cart"].rel.Spec.Service.Port != 80 {
		t.Errorf("the second document of n.yaml took over shop/cart")
	}
	for _, want := range []string{
		`msg="release is defined twice; ignoring this definition, the first one stays in charge" release=shop/web file=releases/a.yaml in_charge=releases/m.yaml`,
		`release=shop/cart file=releases/n.yaml in_charge=releases/n.yaml`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}

	// A restart has no previous snapshot: the status file decides, and
	// without one the first file in lexical order.
	st := &record.Status{Release: "shop/web", SpecFile: "releases/m.yaml", Phase: record.PhaseSteady}
	data, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	commit(map[string][]byte{record.StatusPath(record.DefaultStatusDir, "shop", "web"): data})
	check(newR(), "restart", map[string]want{
		"shop/web":  {file: "releases/m.yaml"},
		"shop/cart": {file: "releases/n.yaml"},
		"shop/typo": {file: "releases/k.yaml", err: "did you mean"},
	})
	commit(map[string][]byte{record.StatusPath(record.DefaultStatusDir, "shop", "web"): nil})
	check(newR(), "restart without a status", map[string]want{
		"shop/web":  {file: "releases/a.yaml"},
		"shop/cart": {file: "releases/n.yaml"},
		"shop/typo": {file: "releases/k.yaml", err: "did you mean"},
	})
	if !strings.Contains(logs.String(), `msg="YAML file is over the size limit of a release spec; skipping it unread" file=releases/z.yaml`) {
		t.Errorf("log lacks the skipped huge file:\n%s", logs.String())
	}
}
