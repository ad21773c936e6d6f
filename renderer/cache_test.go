package renderer

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"sluice.dev/sluice/specs"
)

// idFS identifies content as a Git tree does, here by the files' names
// and sizes: enough for benchmarks that change nothing.
type idFS struct{ fstest.MapFS }

func (f idFS) ContentID(paths ...string) (string, error) {
	var b strings.Builder
	for _, p := range slices.Sorted(slices.Values(paths)) {
		fmt.Fprintf(&b, "%s %d\n", p, len(f.MapFS[p].Data))
	}
	return b.String(), nil
}

// copyRepo reads the example repository into a MapFS a test may change.
func copyRepo(t testing.TB) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := filepath.WalkDir(exampleRepo, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(exampleRepo, p)
		if err != nil {
			return err
		}
		m[filepath.ToSlash(rel)] = &fstest.MapFile{Data: data}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestFingerprint: a step's fingerprint has the key of its render, and
// the key changes exactly when the render does: a change to a source file,
// to the release or to the step changes both.
func TestFingerprint(t *testing.T) {
	rel, _ := loadCatalog(t)
	ctx := context.Background()
	repo := copyRepo(t)
	step, err := specs.FindStep(rel, "canary-20")
	if err != nil {
		t.Fatal(err)
	}
	rd := New()
	first, err := rd.Render(ctx, repo, rel, step)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := rd.Fingerprint(ctx, repo, rel, step)
	if err != nil {
		t.Fatal(err)
	}
	if fp.Key == "" || fp.Key != first.Key || fp.Objects != nil || fp.Workloads["v2"] != first.Workloads["v2"] {
		t.Errorf("fingerprint key %q, %d objects, workloads %v; want the render's key %q, no objects and %v",
			fp.Key, len(fp.Objects), fp.Workloads, first.Key, first.Workloads)
	}
	d1, err := first.Digest()
	if err != nil {
		t.Fatal(err)
	}

	changedSource := maps.Clone(repo)
	dep := "apps/catalog/base/deployment.yaml"
	changedSource[dep] = &fstest.MapFile{Data: []byte(strings.Replace(string(repo[dep].Data), "catalog:latest", "catalog:2.0", 1))}
	other, err := New().Render(ctx, repo, rel, mustStep(t, rel, "canary-30"))
	if err != nil {
		t.Fatal(err)
	}
	otherDigest, err := other.Digest()
	if err != nil {
		t.Fatal(err)
	}
	moreRoutes := *rel
	moreRoutes.Spec.Routes = append(append([]specs.Route(nil), rel.Spec.Routes...), specs.Route{Name: "extra", Gateways: []string{"gw-extra"}, Hosts: []string{"extra.example.com"}})

	tests := []struct {
		name string
		repo fs.FS
		rel  *specs.Release
		step specs.Step
		want string // "" means a digest different from the first render's
	}{
		{name: "source file changed", repo: changedSource, rel: rel, step: step},
		{name: "release changed", repo: repo, rel: &moreRoutes, step: step},
		{name: "other step", repo: repo, rel: rel, step: mustStep(t, rel, "canary-30"), want: otherDigest},
		{name: "back to the first", repo: repo, rel: rel, step: step, want: d1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := rd.Render(ctx, tt.repo, tt.rel, tt.step)
			if err != nil {
				t.Fatal(err)
			}
			d, err := out.Digest()
			if err != nil {
				t.Fatal(err)
			}
			fresh, err := New().Render(ctx, tt.repo, tt.rel, tt.step)
			if err != nil {
				t.Fatal(err)
			}
			if fd, _ := fresh.Digest(); fd != d || fresh.Key != out.Key {
				t.Errorf("render with a warm renderer differs from a fresh one: %s vs %s", d, fd)
			}
			fp, err := rd.Fingerprint(ctx, tt.repo, tt.rel, tt.step)
			if err != nil {
				t.Fatal(err)
			}
			if fp.Key != out.Key {
				t.Errorf("fingerprint key %s, render key %s", fp.Key, out.Key)
			}
			switch {
			case tt.want == "" && (d == d1 || out.Key == first.Key):
				t.Errorf("digest %s and key %s unchanged, want a new render", d, out.Key)
			case tt.want != "" && d != tt.want:
				t.Errorf("digest = %s, want %s", d, tt.want)
			case tt.want == d1 && out.Key != first.Key:
				t.Errorf("key %s, want the first render's %s", out.Key, first.Key)
			}
		})
	}
}

func mustStep(t testing.TB, rel *specs.Release, name string) specs.Step {
	t.Helper()
	s, err := specs.FindStep(rel, name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// BenchmarkRenderStep renders one step with a fresh Renderer (cold: two
// kustomize builds for the inventories and one for the step), and takes
// its fingerprint with a warm one (nothing changed: no build).
func BenchmarkRenderStep(b *testing.B) {
	rel, root := loadCatalog(b)
	step := mustStep(b, rel, "canary-20")
	ctx := context.Background()
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := New().Render(ctx, root.FS(), rel, step); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fingerprint", func(b *testing.B) {
		rd := New()
		if _, err := rd.Render(ctx, root.FS(), rel, step); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rd.Fingerprint(ctx, root.FS(), rel, step); err != nil {
				b.Fatal(err)
			}
		}
	})
	// As over a Git tree: files are checked by content ID, unread.
	b.Run("fingerprint-content-id", func(b *testing.B) {
		rd, repo := New(), idFS{copyRepo(b)}
		if _, err := rd.Render(ctx, repo, rel, step); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rd.Fingerprint(ctx, repo, rel, step); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("digest", func(b *testing.B) {
		out, err := New().Render(ctx, root.FS(), rel, step)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			// A new Output each time: Digest is memoized per Output.
			o := &Output{Objects: out.Objects, digest: &digestMemo{}}
			if _, err := o.Digest(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
