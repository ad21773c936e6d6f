package renderer

import (
	"bytes"
	"context"
	"io/fs"
	"maps"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"sluice.dev/sluice/specs"
)

// renderYAML renders a step and returns its YAML.
func renderYAML(t testing.TB, rd *Renderer, repo fs.FS, rel *specs.Release, step specs.Step) []byte {
	t.Helper()
	out, err := rd.Render(context.Background(), repo, rel, step)
	if err != nil {
		t.Fatalf("render %s: %v", step.Name, err)
	}
	y, err := out.YAML()
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// releaseSteps are a release's steps as it progresses and then as it is
// rolled back from its first weighted step.
func releaseSteps(t testing.TB, rel *specs.Release) []specs.Step {
	t.Helper()
	plan, err := specs.Plan(rel)
	if err != nil {
		t.Fatal(err)
	}
	steps := append(append([]specs.Step(nil), plan...), specs.SteadyStep(rel))
	for _, s := range plan {
		steps = append(steps, s)
		if s.Kind == specs.KindWeighted {
			break
		}
	}
	return append(steps, specs.RollbackStep(rel), specs.SteadyStep(rel))
}

// TestComposedStepsAreFullBuilds renders every step of each test release
// in sequence, each twice (a re-apply), with one Renderer, which composes
// the steps after the first of each composition from the versions' parts,
// and compares every render with a fresh Renderer's (a full build).
func TestComposedStepsAreFullBuilds(t *testing.T) {
	for _, tc := range testReleases() {
		t.Run(tc.name, func(t *testing.T) {
			rel, root := loadRelease(t, tc.repo, tc.file)
			rd := New()
			for _, step := range releaseSteps(t, rel) {
				want := renderYAML(t, New(), root.FS(), rel, step)
				for i := range 2 {
					if got := renderYAML(t, rd, root.FS(), rel, step); !bytes.Equal(got, want) {
						t.Errorf("step %s, render %d: differs from a fresh render; got:\n%s\nwant:\n%s", step.Name, i+1, got, want)
					}
				}
			}
			if rd.counts.composed.Load() == 0 {
				t.Error("no step was composed from parts")
			}
			if n := rd.parts.size(); n != 0 {
				t.Errorf("%d releases keep parts after the steady step, want 0", n)
			}
		})
	}
}

// TestPartsFollowSourceChanges: a change to a file a version's source
// reads, between two steps, renders the next step as a fresh Renderer
// does, with the change.
func TestPartsFollowSourceChanges(t *testing.T) {
	rel, _ := loadCatalog(t)
	for _, tc := range []struct{ name, file, old, new string }{
		{"base", "apps/catalog/base/deployment.yaml", "containerPort: 3000", "containerPort: 9090"},
		{"candidate overlay", "apps/catalog/overlays/v2/kustomization.yaml", `value: "true"`, `value: "false"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := copyRepo(t)
			rd := New()
			for _, s := range []string{"canary-10", "canary-20"} {
				renderYAML(t, rd, repo, rel, mustStep(t, rel, s))
			}
			if rd.counts.composed.Load() == 0 {
				t.Fatal("canary-20 was not composed from parts")
			}
			changed := maps.Clone(repo)
			data := string(repo[tc.file].Data)
			if !strings.Contains(data, tc.old) {
				t.Fatalf("%s has no %q", tc.file, tc.old)
			}
			changed[tc.file] = &fstest.MapFile{Data: []byte(strings.Replace(data, tc.old, tc.new, 1))}
			step := mustStep(t, rel, "canary-30")
			got := renderYAML(t, rd, changed, rel, step)
			want := renderYAML(t, New(), changed, rel, step)
			if !bytes.Equal(got, want) {
				t.Errorf("after the change: differs from a fresh render; got:\n%s\nwant:\n%s", got, want)
			}
			if !bytes.Contains(got, []byte(tc.new)) {
				t.Errorf("the render does not have the change %q:\n%s", tc.new, got)
			}
		})
	}
}

// TestPartsThatDoNotCompose: kustomize resolves name references across
// the whole step, so v1's Deployment, naming a ConfigMap only v2's source
// has, refers to v2's in a full build; built apart, it would not. Such a
// release's steps with both versions are built whole every time.
func TestPartsThatDoNotCompose(t *testing.T) {
	kust := func(extra string) string {
		return "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deployment.yaml\n  - service.yaml\n" + extra
	}
	deployment := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: example.com/web:1
          envFrom:
            - configMapRef: {name: extra}
`
	service := "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n"
	release := `apiVersion: sluice.dev/v1alpha1
kind: Release
metadata:
  name: web
  namespace: web
spec:
  service: {name: web, port: 80}
  versions:
    - {name: v1, source: v1}
    - {name: v2, source: v2}
  stable: v1
  candidate: v2
  routes:
    - {name: mesh, gateways: [mesh], hosts: [web]}
  stages:
    - {name: deploy, deploy: {}}
    - name: canary
      weighted: {weights: [10, 50]}
    - {name: promote, promote: {}}
`
	repo := fstest.MapFS{
		"v1/kustomization.yaml": {Data: []byte(kust(""))},
		"v1/deployment.yaml":    {Data: []byte(deployment)},
		"v1/service.yaml":       {Data: []byte(service)},
		"v2/kustomization.yaml": {Data: []byte(kust("configMapGenerator:\n  - name: extra\n    options: {disableNameSuffixHash: true}\n    literals: [A=b]\n"))},
		"v2/deployment.yaml":    {Data: []byte(deployment)},
		"v2/service.yaml":       {Data: []byte(service)},
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/web.yaml", []byte(release), 0o644); err != nil {
		t.Fatal(err)
	}
	rels, err := specs.LoadFile(dir + "/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rel := rels[0]
	rd := New()
	for _, step := range releaseSteps(t, rel) {
		want := renderYAML(t, New(), repo, rel, step)
		before := rd.counts.composed.Load()
		for i := range 2 {
			if got := renderYAML(t, rd, repo, rel, step); !bytes.Equal(got, want) {
				t.Errorf("step %s, render %d: differs from a fresh render; got:\n%s\nwant:\n%s", step.Name, i+1, got, want)
			}
		}
		// v1 alone (the rollback) refers to no other version.
		if n := rd.counts.composed.Load() - before; n != 0 && len(step.Versions) > 1 {
			t.Errorf("step %s (versions %v): composed from parts %d times, want never", step.Name, step.Versions, n)
		}
	}
	if y := renderYAML(t, New(), repo, rel, mustStep(t, rel, "canary-10")); !bytes.Contains(y, []byte("name: extra-v2")) {
		t.Errorf("v1's Deployment does not refer to v2's ConfigMap in a full build, so the test shows nothing:\n%s", y)
	}
}

// BenchmarkRenderRelease renders every step of the catalog release in
// sequence, and then its steady state, with one Renderer per release (as
// the reconciler does: each step once, cold at the first).
func BenchmarkRenderRelease(b *testing.B) {
	rel, root := loadCatalog(b)
	plan, err := specs.Plan(rel)
	if err != nil {
		b.Fatal(err)
	}
	steps := append(append([]specs.Step(nil), plan...), specs.SteadyStep(rel))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		rd := New()
		for _, step := range steps {
			if _, err := rd.Render(ctx, root.FS(), rel, step); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestPartsAreCopied: changing a rendered step's objects (as the routers
// and the caller may) changes no later render.
func TestPartsAreCopied(t *testing.T) {
	rel, root := loadCatalog(t)
	rd := New()
	ctx := context.Background()
	for _, s := range []string{"canary-10", "canary-20"} {
		out, err := rd.Render(ctx, root.FS(), rel, mustStep(t, rel, s))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out.Objects {
			o.SetLabels(map[string]string{"changed": "by-the-caller"})
			delete(o.Object, "spec")
		}
	}
	step := mustStep(t, rel, "canary-30")
	if got, want := renderYAML(t, rd, root.FS(), rel, step), renderYAML(t, New(), root.FS(), rel, step); !bytes.Equal(got, want) {
		t.Errorf("differs from a fresh render; got:\n%s\nwant:\n%s", got, want)
	}
}

// TestPartCacheBounds: a release keeps the parts of its current
// composition only, and the releases used least recently lose theirs
// beyond the bound.
func TestPartCacheBounds(t *testing.T) {
	part := [][]*unstructured.Unstructured{{{Object: map[string]any{"kind": "ConfigMap"}}}, {{Object: map[string]any{"kind": "Secret"}}}}
	tests := []struct {
		name  string
		do    func(c *partCache)
		want  map[string]int // release -> parts kept
		state compState      // of release a's composition a1,a2
	}{
		{"kept", func(c *partCache) { c.store("a", "a1,a2", compEqual, []string{"a1", "a2"}, part, nil) }, map[string]int{"a": 2}, compEqual},
		{"versions change", func(c *partCache) {
			c.store("a", "a1,a2", compEqual, []string{"a1", "a2"}, part, nil)
			c.store("a", "a2,a3", compUnknown, []string{"a2", "a3"}, [][]*unstructured.Unstructured{part[1], nil}, nil)
		}, map[string]int{"a": 1}, compUnknown},
		{"least recently used goes", func(c *partCache) {
			c.store("a", "a1,a2", compEqual, []string{"a1", "a2"}, part, nil)
			c.store("b", "b1", compEqual, []string{"b1"}, part[:1], nil)
			c.lookup("a", "a1,a2", []string{"a1", "a2"})
			c.store("c", "c1", compEqual, []string{"c1"}, part[:1], nil)
		}, map[string]int{"a": 2, "c": 1}, compEqual},
		{"forgotten", func(c *partCache) {
			c.store("a", "a1,a2", compEqual, []string{"a1", "a2"}, part, nil)
			c.forget("a")
		}, map[string]int{}, compUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newPartCache(2)
			tt.do(c)
			got := map[string]int{}
			for id, rp := range c.rels {
				got[id] = len(rp.parts)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("parts kept %v, want %v", got, tt.want)
			}
			if state, _, _ := c.lookup("a", "a1,a2", []string{"a1", "a2"}); state != tt.state {
				t.Errorf("state %d, want %d", state, tt.state)
			}
		})
	}
}
