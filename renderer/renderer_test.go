package renderer

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"sluice.dev/sluice/specs"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const exampleRepo = "../examples/catalog"

func loadCatalog(t testing.TB) (*specs.Release, *os.Root) {
	t.Helper()
	return loadRelease(t, exampleRepo, "releases/catalog.yaml")
}

const autoscaledRepo = "testdata/autoscaled/repo"

const gatewayAPIRepo = "../examples/catalog-gateway-api"

func loadRelease(t testing.TB, repo, file string) (*specs.Release, *os.Root) {
	t.Helper()
	rels, err := specs.LoadFile(filepath.Join(repo, file))
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(repo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return rels[0], root
}

// testRelease is a release the renderer's tests render: its name, its
// repository and its spec file there.
type testRelease struct{ name, repo, file string }

// testReleases are examples/catalog, its Gateway API variant, and a source
// with a HorizontalPodAutoscaler and generated ConfigMaps and Secrets.
func testReleases() []testRelease {
	return []testRelease{
		{"catalog", exampleRepo, "releases/catalog.yaml"},
		{"catalog-gateway-api", gatewayAPIRepo, "releases/catalog.yaml"},
		{"autoscaled", autoscaledRepo, "releases/shop.yaml"},
	}
}

// TestGolden renders every step of each test release and compares it with
// testdata/<release>/<step>.yaml (go test ./renderer -update rewrites
// them): examples/catalog, its Gateway API variant, and a source with a HorizontalPodAutoscaler and
// generated ConfigMaps and Secrets.
func TestGolden(t *testing.T) {
	for _, tc := range testReleases() {
		t.Run(tc.name, func(t *testing.T) {
			rel, root := loadRelease(t, tc.repo, tc.file)
			steps, err := specs.Plan(rel)
			if err != nil {
				t.Fatal(err)
			}
			steps = append(steps, specs.SteadyStep(rel), specs.RollbackStep(rel))
			for _, step := range steps {
				t.Run(step.Name, func(t *testing.T) {
					checkGolden(t, root, rel, step, filepath.Join("testdata", tc.name, step.Name+".yaml"))
				})
			}
		})
	}
}

func checkGolden(t *testing.T, root *os.Root, rel *specs.Release, step specs.Step, golden string) {
	t.Helper()
	out, err := Render(context.Background(), root.FS(), rel, step)
	if err != nil {
		t.Fatal(err)
	}
	got, err := out.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./renderer -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s", golden, got)
	}
	// The same commit and step always give byte-identical YAML.
	again, err := Render(context.Background(), root.FS(), rel, step)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := again.YAML(); !bytes.Equal(b, got) {
		t.Error("a second render differs")
	}
}

// TestAutoscaledVersions: each version's HorizontalPodAutoscaler and
// generated ConfigMap and Secret are renamed with the version (references
// follow), and a Deployment an autoscaler scales has no replicas, so
// applying it never takes the count back from the autoscaler.
func TestAutoscaledVersions(t *testing.T) {
	rel, root := loadRelease(t, autoscaledRepo, "releases/shop.yaml")
	cases := []struct {
		step string
		want []string // kind/name of the per-version objects
	}{
		{"deploy", []string{
			"ConfigMap/shop-config-v1-", "ConfigMap/shop-config-v2-", "Deployment/shop-v1", "Deployment/shop-v2",
			"HorizontalPodAutoscaler/shop-v1", "HorizontalPodAutoscaler/shop-v2", "Secret/shop-credentials-v1-", "Secret/shop-credentials-v2-",
		}},
		// The old version drains after the promotion is recorded; the
		// steady state after it retires v1's objects.
		{"promote", []string{
			"ConfigMap/shop-config-v1-", "ConfigMap/shop-config-v2-", "Deployment/shop-v1", "Deployment/shop-v2",
			"HorizontalPodAutoscaler/shop-v1", "HorizontalPodAutoscaler/shop-v2", "Secret/shop-credentials-v1-", "Secret/shop-credentials-v2-",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.step, func(t *testing.T) {
			out, err := Render(context.Background(), root.FS(), rel, mustStep(t, rel, tc.step))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			names := map[string]string{} // kind/version -> name
			for _, o := range out.Objects {
				switch o.GetKind() {
				case "ConfigMap", "Secret":
					// The generator's hash suffix follows the version suffix.
					i := strings.LastIndex(o.GetName(), "-")
					got = append(got, o.GetKind()+"/"+o.GetName()[:i+1])
					names[o.GetKind()+"/"+o.GetName()[i-2:i]] = o.GetName()
				case "Deployment", "HorizontalPodAutoscaler":
					got = append(got, o.GetKind()+"/"+o.GetName())
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("per-version objects %v, want %v", got, tc.want)
			}
			for _, o := range out.Objects {
				v := o.GetName()[len(o.GetName())-2:]
				switch o.GetKind() {
				case "Deployment":
					if r, found, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "replicas"); found {
						t.Errorf("Deployment %s has replicas %v; its autoscaler owns them", o.GetName(), r)
					}
					c := containersOf(o.Object)[0].(map[string]any)
					envFrom, _, _ := unstructured.NestedSlice(c, "envFrom")
					cm, _, _ := unstructured.NestedString(envFrom[0].(map[string]any), "configMapRef", "name")
					env, _, _ := unstructured.NestedSlice(c, "env")
					secret, _, _ := unstructured.NestedString(env[0].(map[string]any), "valueFrom", "secretKeyRef", "name")
					if cm != names["ConfigMap/"+v] || secret != names["Secret/"+v] {
						t.Errorf("Deployment %s refers to ConfigMap %q and Secret %q, want %q and %q", o.GetName(), cm, secret, names["ConfigMap/"+v], names["Secret/"+v])
					}
				case "HorizontalPodAutoscaler":
					target, _, _ := unstructured.NestedString(o.Object, "spec", "scaleTargetRef", "name")
					if target != "shop-"+v {
						t.Errorf("HorizontalPodAutoscaler %s scales %q, want shop-%s", o.GetName(), target, v)
					}
				}
			}
		})
	}
}

// TestReplicasBesideAutoscaler: a version cannot set replicas when its
// source's autoscaler owns them; the render says why.
func TestReplicasBesideAutoscaler(t *testing.T) {
	rel, root := loadRelease(t, autoscaledRepo, "releases/shop.yaml")
	three := int32(3)
	rel.Spec.Versions[1].Replicas = &three
	want := "render shop/shop version v2: replicas is set, but the source's HorizontalPodAutoscaler shop scales Deployment shop; remove one of them"
	for name, render := range map[string]func(context.Context, fs.FS, *specs.Release, specs.Step) (*Output, error){
		"Render": New().Render, "Fingerprint": New().Fingerprint,
	} {
		if _, err := render(context.Background(), root.FS(), rel, mustStep(t, rel, "deploy")); err == nil || err.Error() != want {
			t.Errorf("%s: err = %v, want %s", name, err, want)
		}
	}
}

func TestCatalogObjects(t *testing.T) {
	rel, root := loadCatalog(t)
	step, err := specs.FindStep(rel, "promote")
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(context.Background(), root.FS(), rel, step)
	if err != nil {
		t.Fatal(err)
	}
	var deployments []string
	for _, o := range out.Objects {
		for k, v := range out.Owner {
			if o.GetLabels()[k] != v {
				t.Errorf("%s %s lacks owner label %s=%s", o.GetKind(), o.GetName(), k, v)
			}
		}
		if o.GetNamespace() != "istioinaction" {
			t.Errorf("%s %s is in namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
		}
		if o.GetKind() == "Deployment" {
			deployments = append(deployments, o.GetName())
		}
	}
	// The old version drains after the promotion is recorded; the steady
	// state that follows retires it (issue 12).
	if strings.Join(deployments, ",") != "catalog-v1,catalog-v2" {
		t.Errorf("promote renders Deployments %v, want catalog-v1 (draining) and catalog-v2", deployments)
	}
	if out.Workloads["v2"] != "catalog-v2" {
		t.Errorf("Workloads = %v", out.Workloads)
	}
}

// TestRevision: the candidate's revision changes with its sources and its
// definition, and not with anything else in the repository.
func TestRevision(t *testing.T) {
	rel, root := loadCatalog(t)
	ctx := context.Background()
	base, err := Revision(ctx, root.FS(), rel, "v2")
	if err != nil {
		t.Fatal(err)
	}
	repo := fstest.MapFS{}
	if err := copyInto(repo, root); err != nil {
		t.Fatal(err)
	}
	same, err := Revision(ctx, repo, rel, "v2")
	if err != nil || same != base {
		t.Fatalf("copy of the repo: revision %s (%v), want %s", same, err, base)
	}
	repo["status/istioinaction/catalog.yaml"] = &fstest.MapFile{Data: []byte("phase: Progressing\n")}
	repo["releases/catalog.yaml"] = &fstest.MapFile{Data: []byte("# edited\n")}
	if got, _ := Revision(ctx, repo, rel, "v2"); got != base {
		t.Errorf("unrelated files changed the revision: %s != %s", got, base)
	}
	repo["apps/catalog/base/service.yaml"] = &fstest.MapFile{Data: append(repo["apps/catalog/base/service.yaml"].Data, []byte("# a comment\n")...)}
	if got, _ := Revision(ctx, repo, rel, "v2"); got == base {
		t.Error("a change to the base did not change the revision")
	}
}

func copyInto(dst fstest.MapFS, root *os.Root) error {
	return fsWalk(root, ".", func(p string, data []byte) { dst[p] = &fstest.MapFile{Data: data} })
}

func fsWalk(root *os.Root, dir string, fn func(string, []byte)) error {
	f, err := root.Open(dir)
	if err != nil {
		return err
	}
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.ToSlash(filepath.Join(dir, e.Name()))
		if e.IsDir() {
			if err := fsWalk(root, p, fn); err != nil {
				return err
			}
			continue
		}
		data, err := root.ReadFile(p)
		if err != nil {
			return err
		}
		fn(p, data)
	}
	return nil
}

func TestSourcesRefused(t *testing.T) {
	cases := []struct {
		name, kustomization, want string
	}{
		{"remote base", "resources:\n- github.com/example/app//deploy?ref=v1\n",
			`app/kustomization.yaml: resource "github.com/example/app//deploy?ref=v1" is a remote base; Sluice renders only from the repository`},
		{"https resource", "resources:\n- https://example.com/app.yaml\n",
			`app/kustomization.yaml: resource "https://example.com/app.yaml" is a remote base; Sluice renders only from the repository`},
		{"escape", "resources:\n- ../../outside\n",
			`app/kustomization.yaml: resource "../../outside" leaves the repository`},
		{"absolute", "resources:\n- /etc/app\n",
			`app/kustomization.yaml: resource "/etc/app" is absolute; give a path relative to the repository root`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := fstest.MapFS{"app/kustomization.yaml": &fstest.MapFile{Data: []byte(tc.kustomization)}}
			err := CheckSources(repo, "app")
			if err == nil || err.Error() != tc.want {
				t.Errorf("CheckSources = %v, want %s", err, tc.want)
			}
		})
	}
}

func BenchmarkRender(b *testing.B) {
	rel, root := loadCatalog(b)
	step, err := specs.FindStep(rel, "canary-20")
	if err != nil {
		b.Fatal(err)
	}
	rd := New()
	b.Run("catalog", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rd.Render(context.Background(), root.FS(), rel, step); err != nil {
				b.Fatal(err)
			}
		}
	})
	wide := *rel
	wide.Spec.Routes = nil
	for i := range 10 {
		wide.Spec.Routes = append(wide.Spec.Routes, specs.Route{Name: fmt.Sprintf("r%d", i), Gateways: []string{fmt.Sprintf("gw-%d", i)}, Hosts: []string{fmt.Sprintf("catalog-%d.example.com", i)}})
	}
	b.Run("10-routes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rd.Render(context.Background(), root.FS(), &wide, step); err != nil {
				b.Fatal(err)
			}
		}
	})
}
