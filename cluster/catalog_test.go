package cluster

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/renderer"
	"sluice.dev/sluice/specs"
)

// describeRoutes summarises a VirtualService's HTTP routes, one string per
// route: "name[header=value]: subset=weight ...".
func describeRoutes(vs *unstructured.Unstructured) []string {
	http, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	var out []string
	for _, r := range http {
		route := r.(map[string]any)
		name, _, _ := unstructured.NestedString(route, "name")
		var matches []string
		ms, _, _ := unstructured.NestedSlice(route, "match")
		for _, m := range ms {
			headers, _, _ := unstructured.NestedMap(m.(map[string]any), "headers")
			for _, h := range slices.Sorted(maps.Keys(headers)) {
				exact, _, _ := unstructured.NestedString(headers, h, "exact")
				matches = append(matches, h+"="+exact)
			}
		}
		var dests []string
		ds, _, _ := unstructured.NestedSlice(route, "route")
		for _, d := range ds {
			subset, _, _ := unstructured.NestedString(d.(map[string]any), "destination", "subset")
			weight, _, _ := unstructured.NestedInt64(d.(map[string]any), "weight")
			dests = append(dests, fmt.Sprintf("%s=%d", subset, weight))
		}
		s := name
		if len(matches) > 0 {
			s += "[" + strings.Join(matches, ",") + "]"
		}
		out = append(out, s+": "+strings.Join(dests, " "))
	}
	return out
}

// TestCatalogSteps applies every step of examples/catalog in order, as
// the renderer produces them, and reads back what the mesh would route.
func TestCatalogSteps(t *testing.T) {
	env := testEnv.Env(t)
	// A namespace of its own keeps the test independent of others.
	ns := newNamespace(t)
	rel, root := exampleRelease(t, "catalog", ns)
	steps, err := specs.Plan(rel)
	if err != nil {
		t.Fatal(err)
	}

	a, counter := newApplier(t)
	ctx := testContext(t)
	dyn := dynamic.NewForConfigOrDie(env.RESTConfig())
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())

	stable := []string{"stable: v1=100"}
	want := map[string]struct {
		routes      []string // the same in the mesh and at the ingress gateway
		deployments []string
	}{
		"deploy":      {stable, []string{"catalog-v1", "catalog-v2"}},
		"dark-launch": {[]string{"dark-launch[x-istio-cohort=internal]: v2=100", "stable: v1=100"}, []string{"catalog-v1", "catalog-v2"}},
		"canary-10":   {[]string{"canary: v1=90 v2=10"}, []string{"catalog-v1", "catalog-v2"}},
		"canary-20":   {[]string{"canary: v1=80 v2=20"}, []string{"catalog-v1", "catalog-v2"}},
		"canary-30":   {[]string{"canary: v1=70 v2=30"}, []string{"catalog-v1", "catalog-v2"}},
		"canary-40":   {[]string{"canary: v1=60 v2=40"}, []string{"catalog-v1", "catalog-v2"}},
		"canary-50":   {[]string{"canary: v1=50 v2=50"}, []string{"catalog-v1", "catalog-v2"}},
		// v1 drains after the promotion; the steady state after it retires it.
		"promote": {[]string{"candidate: v2=100"}, []string{"catalog-v1", "catalog-v2"}},
	}
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
	}
	if len(names) != len(want) {
		t.Fatalf("plan has steps %q; this test knows %d", names, len(want))
	}

	for _, step := range steps {
		w, ok := want[step.Name]
		if !ok {
			t.Fatalf("unexpected step %q", step.Name)
		}
		out, err := renderer.Render(ctx, root.FS(), rel, step)
		if err != nil {
			t.Fatalf("%s: render: %v", step.Name, err)
		}
		set := Set{Owner: out.Owner, Objects: out.Objects}
		res, err := a.Apply(ctx, set, ApplyOptions{})
		if err != nil {
			t.Fatalf("%s: apply: %v", step.Name, err)
		}
		t.Logf("%s: created %v updated %v pruned %v", step.Name, res.Created, res.Updated, res.Pruned)
		for _, v := range step.Versions {
			if err := a.WaitAvailable(ctx, ns, out.Workloads[v], 2*time.Minute); err != nil {
				t.Errorf("%s: %v", step.Name, err)
			}
		}

		// Applying the step again writes nothing.
		counter.Reset()
		res, err = a.Apply(ctx, set, ApplyOptions{})
		if err != nil {
			t.Fatalf("%s: apply again: %v", step.Name, err)
		}
		if res.Changed() || len(res.Drift) > 0 || counter.Writes() != 0 {
			t.Errorf("%s: second apply: created %v updated %v pruned %v drift %v, %d writes",
				step.Name, res.Created, res.Updated, res.Pruned, res.Drift, counter.Writes())
		}

		for route, gateway := range map[string]string{"catalog-mesh": "mesh", "catalog-ingress": "catalog-gateway"} {
			vs, err := dyn.Resource(vsResource).Namespace(ns).Get(ctx, route, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("%s: %v", step.Name, err)
			}
			if got := describeRoutes(vs); !slices.Equal(got, w.routes) {
				t.Errorf("%s: VirtualService %s routes %q, want %q", step.Name, route, got, w.routes)
			}
			if g, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "gateways"); !slices.Equal(g, []string{gateway}) {
				t.Errorf("%s: VirtualService %s gateways %q, want [%s]", step.Name, route, g, gateway)
			}
			checkOwner(t, step.Name, vs, out.Owner)
		}

		dr, err := dyn.Resource(drResource).Namespace(ns).Get(ctx, "catalog", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: %v", step.Name, err)
		}
		subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
		var gotSubsets []string
		for _, s := range subsets {
			name, _, _ := unstructured.NestedString(s.(map[string]any), "name")
			version, _, _ := unstructured.NestedString(s.(map[string]any), "labels", "version")
			gotSubsets = append(gotSubsets, name+":"+version)
		}
		if !slices.Equal(gotSubsets, []string{"v1:v1", "v2:v2"}) {
			t.Errorf("%s: DestinationRule subsets %q", step.Name, gotSubsets)
		}

		deps, err := kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var gotDeps []string
		for _, d := range deps.Items {
			if d.DeletionTimestamp != nil {
				continue
			}
			gotDeps = append(gotDeps, d.Name)
			version := strings.TrimPrefix(d.Name, "catalog-")
			for k, v := range out.Owner {
				if d.Labels[k] != v {
					t.Errorf("%s: Deployment %s label %s = %q, want %q", step.Name, d.Name, k, d.Labels[k], v)
				}
			}
			for what, lbls := range map[string]map[string]string{"labels": d.Labels, "pod labels": d.Spec.Template.Labels, "selector": d.Spec.Selector.MatchLabels} {
				if lbls["app"] != "catalog" || lbls["version"] != version {
					t.Errorf("%s: Deployment %s %s %v, want app=catalog version=%s", step.Name, d.Name, what, lbls, version)
				}
			}
		}
		slices.Sort(gotDeps)
		if !slices.Equal(gotDeps, w.deployments) {
			t.Errorf("%s: Deployments %q, want %q", step.Name, gotDeps, w.deployments)
		}
	}

	// The promoted release's steady state retires v1.
	promoted := *rel
	promoted.Spec.Stable, promoted.Spec.Candidate = "v2", ""
	out, err := renderer.Render(ctx, root.FS(), &promoted, specs.SteadyStep(&promoted))
	if err != nil {
		t.Fatalf("stable: render: %v", err)
	}
	res, err := a.Apply(ctx, Set{Owner: out.Owner, Objects: out.Objects}, ApplyOptions{})
	if err != nil {
		t.Fatalf("stable: apply: %v", err)
	}
	var pruned []string
	for _, r := range res.Pruned {
		pruned = append(pruned, r.Kind+"/"+r.Name)
	}
	if !slices.Contains(pruned, "Deployment/catalog-v1") {
		t.Errorf("stable after the promotion pruned %v, want Deployment/catalog-v1 among them", pruned)
	}
}

func checkOwner(t *testing.T, step string, u *unstructured.Unstructured, owner map[string]string) {
	t.Helper()
	for k, v := range owner {
		if got := u.GetLabels()[k]; got != v {
			t.Errorf("%s: %s label %s = %q, want %q", step, refOf(u), k, got, v)
		}
	}
}
