package cluster

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

var (
	vsResource = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	drResource = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}
)

func refStrings(refs []ObjectRef) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.String()
	}
	return out
}

// expand replaces NS in each want with the namespace.
func expand(ns string, want []string) []string {
	out := make([]string, len(want))
	for i, w := range want {
		out[i] = strings.ReplaceAll(w, "NS", ns)
	}
	return out
}

func checkRefs(t *testing.T, what string, got []ObjectRef, ns string, want []string) {
	t.Helper()
	if g, w := refStrings(got), expand(ns, want); !slices.Equal(g, w) {
		t.Errorf("%s = %q, want %q", what, g, w)
	}
}

// routeWeights reads the destinations and weights of a VirtualService's
// first HTTP route, as "subset=weight".
func routeWeights(t *testing.T, dyn dynamic.Interface, ns, name string) []string {
	t.Helper()
	vs, err := dyn.Resource(vsResource).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get VirtualService %s/%s: %v", ns, name, err)
	}
	http, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	if len(http) == 0 {
		t.Fatalf("VirtualService %s/%s has no http routes", ns, name)
	}
	route, _, _ := unstructured.NestedSlice(http[0].(map[string]any), "route")
	var out []string
	for _, r := range route {
		subset, _, _ := unstructured.NestedString(r.(map[string]any), "destination", "subset")
		weight, _, _ := unstructured.NestedInt64(r.(map[string]any), "weight")
		out = append(out, subset+"="+strconv.FormatInt(weight, 10))
	}
	return out
}

// TestApplySteps walks a release through its steps and checks what each
// apply creates, updates, leaves alone and prunes, and that an unchanged
// step writes nothing.
func TestApplySteps(t *testing.T) {
	env := testEnv.Env(t)
	ns := newNamespace(t)
	a, counter := newApplier(t)
	ctx := testContext(t)
	dyn := dynamic.NewForConfigOrDie(env.RESTConfig())
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())

	stable := []string{"shared.yaml", "deployment-v1.yaml", "destinationrule.yaml", "vs-stable.yaml"}
	canary := []string{"shared.yaml", "deployment-v1.yaml", "deployment-v2.yaml", "destinationrule.yaml", "vs-canary.yaml"}
	promoted := []string{"shared.yaml", "deployment-v2.yaml", "destinationrule.yaml", "vs-promoted.yaml"}
	steps := []struct {
		name                                string
		files                               []string
		created, updated, unchanged, pruned []string
		weights                             []string
		deployments                         []string
	}{
		{
			name:        "deploy",
			files:       stable,
			created:     []string{"ServiceAccount NS/shop", "Service NS/shop", "Deployment NS/shop-v1", "DestinationRule NS/shop", "VirtualService NS/shop-mesh"},
			weights:     []string{"v1=100"},
			deployments: []string{"shop-v1"},
		},
		{
			name:        "deploy again",
			files:       stable,
			unchanged:   []string{"ServiceAccount NS/shop", "Service NS/shop", "Deployment NS/shop-v1", "DestinationRule NS/shop", "VirtualService NS/shop-mesh"},
			weights:     []string{"v1=100"},
			deployments: []string{"shop-v1"},
		},
		{
			name:        "canary",
			files:       canary,
			created:     []string{"Deployment NS/shop-v2"},
			updated:     []string{"VirtualService NS/shop-mesh"},
			unchanged:   []string{"ServiceAccount NS/shop", "Service NS/shop", "Deployment NS/shop-v1", "DestinationRule NS/shop"},
			weights:     []string{"v1=90", "v2=10"},
			deployments: []string{"shop-v1", "shop-v2"},
		},
		{
			name:        "canary again",
			files:       canary,
			unchanged:   []string{"ServiceAccount NS/shop", "Service NS/shop", "Deployment NS/shop-v1", "Deployment NS/shop-v2", "DestinationRule NS/shop", "VirtualService NS/shop-mesh"},
			weights:     []string{"v1=90", "v2=10"},
			deployments: []string{"shop-v1", "shop-v2"},
		},
		{
			name:        "promote",
			files:       promoted,
			updated:     []string{"VirtualService NS/shop-mesh"},
			unchanged:   []string{"ServiceAccount NS/shop", "Service NS/shop", "Deployment NS/shop-v2", "DestinationRule NS/shop"},
			pruned:      []string{"Deployment NS/shop-v1"},
			weights:     []string{"v2=100"},
			deployments: []string{"shop-v2"},
		},
		{
			name:        "promote again",
			files:       promoted,
			unchanged:   []string{"ServiceAccount NS/shop", "Service NS/shop", "Deployment NS/shop-v2", "DestinationRule NS/shop", "VirtualService NS/shop-mesh"},
			weights:     []string{"v2=100"},
			deployments: []string{"shop-v2"},
		},
	}
	for _, step := range steps {
		set := shopSet(t, ns, step.files...)
		counter.Reset()
		res, err := a.Apply(ctx, set, ApplyOptions{})
		if err != nil {
			t.Fatalf("%s: apply: %v", step.name, err)
		}
		t.Logf("%s: requests %v", step.name, counter.Snapshot())
		checkRefs(t, step.name+": created", res.Created, ns, step.created)
		checkRefs(t, step.name+": updated", res.Updated, ns, step.updated)
		checkRefs(t, step.name+": unchanged", res.Unchanged, ns, step.unchanged)
		checkRefs(t, step.name+": pruned", res.Pruned, ns, step.pruned)
		if len(res.Drift) > 0 {
			t.Errorf("%s: unexpected drift %v", step.name, res.Drift)
		}
		if !res.Changed() && counter.Writes() != 0 {
			t.Errorf("%s: unchanged apply sent %d write requests: %v", step.name, counter.Writes(), counter.Snapshot())
		}
		if got := routeWeights(t, dyn, ns, "shop-mesh"); !slices.Equal(got, step.weights) {
			t.Errorf("%s: VirtualService routes = %q, want %q", step.name, got, step.weights)
		}
		deps, err := kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, d := range deps.Items {
			if d.DeletionTimestamp == nil {
				names = append(names, d.Name)
			}
		}
		if !slices.Equal(names, step.deployments) {
			t.Errorf("%s: deployments = %q, want %q", step.name, names, step.deployments)
		}
		// The caller's objects are not modified.
		for _, o := range set.Objects {
			if _, ok := o.GetAnnotations()[AnnotationAppliedHash]; ok {
				t.Errorf("%s: Apply stamped the caller's %s", step.name, refOf(o))
			}
		}
	}
}

// TestPrune checks that pruning removes exactly the release's objects that
// are no longer rendered, in reverse dependency order, and leaves alone
// look-alikes without the full set of owner labels and other releases.
func TestPrune(t *testing.T) {
	env := testEnv.Env(t)
	ns := newNamespace(t)
	a, _ := newApplier(t)
	ctx := testContext(t)
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())

	full := shopSet(t, ns, "shared.yaml", "deployment-v1.yaml", "deployment-v2.yaml", "destinationrule.yaml", "vs-canary.yaml")
	if _, err := a.Apply(ctx, full, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	// Look-alikes: same app, no owner labels; owner labels of another
	// release namespace; and another release in the same namespace.
	lookAlike := func(name string, lbls map[string]string) {
		t.Helper()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbls}}
		if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	lookAlike("shop-unlabelled", map[string]string{"app": "shop", "version": "v2"})
	lookAlike("shop-partial", map[string]string{LabelManagedBy: "sluice", LabelRelease: "shop", LabelReleaseNamespace: "elsewhere"})
	unlabelledDeploy := readObjects(t, "shop/deployment-v2.yaml")[0]
	unlabelledDeploy.SetName("shop-v3")
	unlabelledDeploy.SetNamespace(ns)
	if _, err := dynamic.NewForConfigOrDie(env.RESTConfig()).Resource(appsv1.SchemeGroupVersion.WithResource("deployments")).Namespace(ns).
		Create(ctx, unlabelledDeploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	other := shopSet(t, ns, "shared.yaml")
	other.Owner = owner(ns, "other")
	for _, o := range other.Objects {
		o.SetName("other")
	}
	if _, err := a.Apply(ctx, other, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}

	// Drop v2.
	res, err := a.Apply(ctx, shopSet(t, ns, "shared.yaml", "deployment-v1.yaml", "destinationrule.yaml", "vs-stable.yaml"), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkRefs(t, "pruned", res.Pruned, ns, []string{"Deployment NS/shop-v2"})
	if _, err := kube.AppsV1().Deployments(ns).Get(ctx, "shop-v2", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get pruned Deployment shop-v2: err = %v, want NotFound", err)
	}

	// An empty set retires the release: everything goes, routes first.
	res, err = a.Apply(ctx, Set{Owner: owner(ns, "shop")}, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkRefs(t, "pruned on retire", res.Pruned, ns, []string{
		"VirtualService NS/shop-mesh", "DestinationRule NS/shop", "Deployment NS/shop-v1", "Service NS/shop", "ServiceAccount NS/shop",
	})

	for _, name := range []string{"shop-unlabelled", "shop-partial"} {
		if _, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("look-alike ConfigMap %s: %v", name, err)
		}
	}
	if _, err := kube.AppsV1().Deployments(ns).Get(ctx, "shop-v3", metav1.GetOptions{}); err != nil {
		t.Errorf("unlabelled Deployment shop-v3: %v", err)
	}
	for _, get := range []func() error{
		func() error { _, err := kube.CoreV1().Services(ns).Get(ctx, "other", metav1.GetOptions{}); return err },
		func() error {
			_, err := kube.CoreV1().ServiceAccounts(ns).Get(ctx, "other", metav1.GetOptions{})
			return err
		},
	} {
		if err := get(); err != nil {
			t.Errorf("other release's object: %v", err)
		}
	}
}

// TestDrift edits applied objects by hand and checks that the next apply
// of the same set reports each edit as drift and reverts it.
func TestDrift(t *testing.T) {
	env := testEnv.Env(t)
	ns := newNamespace(t)
	a, counter := newApplier(t)
	ctx := testContext(t)
	dyn := dynamic.NewForConfigOrDie(env.RESTConfig())
	set := shopSet(t, ns, "shared.yaml", "deployment-v1.yaml", "deployment-v2.yaml", "destinationrule.yaml", "vs-canary.yaml")
	if _, err := a.Apply(ctx, set, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		resource schema.GroupVersionResource
		object   string
		edit     func(u *unstructured.Unstructured)
		want     []Drift // Object filled in from ref
		ref      string
	}{
		{
			name:     "virtualservice weight",
			resource: vsResource,
			object:   "shop-mesh",
			ref:      "VirtualService NS/shop-mesh",
			edit: func(u *unstructured.Unstructured) {
				http, _, _ := unstructured.NestedSlice(u.Object, "spec", "http")
				route := http[0].(map[string]any)["route"].([]any)
				route[0].(map[string]any)["weight"] = int64(50)
				route[1].(map[string]any)["weight"] = int64(50)
				_ = unstructured.SetNestedSlice(u.Object, http, "spec", "http")
			},
			want: []Drift{
				{Field: "spec.http[0].route[0].weight", Live: "50", Desired: "90"},
				{Field: "spec.http[0].route[1].weight", Live: "50", Desired: "10"},
			},
		},
		{
			name:     "deployment scaled",
			resource: appsv1.SchemeGroupVersion.WithResource("deployments"),
			object:   "shop-v2",
			ref:      "Deployment NS/shop-v2",
			edit: func(u *unstructured.Unstructured) {
				_ = unstructured.SetNestedField(u.Object, int64(3), "spec", "replicas")
			},
			want: []Drift{{Field: "spec.replicas", Live: "3", Desired: "1"}},
		},
		{
			name:     "destinationrule subset removed",
			resource: drResource,
			object:   "shop",
			ref:      "DestinationRule NS/shop",
			edit: func(u *unstructured.Unstructured) {
				subsets, _, _ := unstructured.NestedSlice(u.Object, "spec", "subsets")
				_ = unstructured.SetNestedSlice(u.Object, subsets[:1], "spec", "subsets")
			},
			want: []Drift{{
				Field:   "spec.subsets",
				Live:    `[{"labels":{"version":"v1"},"name":"v1"}]`,
				Desired: `[{"labels":{"version":"v1"},"name":"v1"},{"labels":{"version":"v2"},"name":"v2"}]`,
			}},
		},
		{
			name:     "label removed",
			resource: schema.GroupVersionResource{Version: "v1", Resource: "services"},
			object:   "shop",
			ref:      "Service NS/shop",
			edit: func(u *unstructured.Unstructured) {
				lbls := u.GetLabels()
				delete(lbls, "app")
				u.SetLabels(lbls)
			},
			want: []Drift{{Field: "metadata.labels.app", Live: absent, Desired: `"shop"`}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := dyn.Resource(tc.resource).Namespace(ns)
			// As kubectl edit would: an update by another field manager,
			// retried when a controller changed the object meanwhile.
			if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				u, err := res.Get(ctx, tc.object, metav1.GetOptions{})
				if err != nil {
					return err
				}
				tc.edit(u)
				_, err = res.Update(ctx, u, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
				return err
			}); err != nil {
				t.Fatal(err)
			}

			result, err := a.Apply(ctx, set, ApplyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkRefs(t, "updated", result.Updated, ns, []string{tc.ref})
			var got []Drift
			for _, d := range result.Drift {
				if d.Object.String() != expand(ns, []string{tc.ref})[0] {
					t.Errorf("drift on an object not edited: %v", d)
					continue
				}
				d.Object = ObjectRef{}
				got = append(got, d)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("drift = %+v, want %+v", got, tc.want)
			}

			// Reverted: the next apply finds nothing to do.
			counter.Reset()
			result, err = a.Apply(ctx, set, ApplyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if result.Changed() || len(result.Drift) > 0 || counter.Writes() > 0 {
				t.Errorf("apply after revert: created %v updated %v drift %v, %d writes", result.Created, result.Updated, result.Drift, counter.Writes())
			}
		})
	}
	if got := routeWeights(t, dyn, ns, "shop-mesh"); !slices.Equal(got, []string{"v1=90", "v2=10"}) {
		t.Errorf("VirtualService routes after revert = %q", got)
	}
}

// TestDryRun validates and reports without changing the cluster.
func TestDryRun(t *testing.T) {
	env := testEnv.Env(t)
	ns := newNamespace(t)
	a, counter := newApplier(t)
	ctx := testContext(t)
	dyn := dynamic.NewForConfigOrDie(env.RESTConfig())

	set := shopSet(t, ns, "shared.yaml", "deployment-v1.yaml", "destinationrule.yaml", "vs-stable.yaml")
	res, err := a.Apply(ctx, set, ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.DryRun {
		t.Error("Result.DryRun is false")
	}
	checkRefs(t, "created", res.Created, ns, []string{"ServiceAccount NS/shop", "Service NS/shop", "Deployment NS/shop-v1", "DestinationRule NS/shop", "VirtualService NS/shop-mesh"})
	if counter.Writes() != counter.DryRuns() {
		t.Errorf("dry run sent %d writes, only %d of them dry runs: %v", counter.Writes(), counter.DryRuns(), counter.Snapshot())
	}
	if _, err := dyn.Resource(vsResource).Namespace(ns).Get(ctx, "shop-mesh", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("VirtualService after dry run: err = %v, want NotFound", err)
	}

	if _, err := a.Apply(ctx, set, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = a.Apply(ctx, shopSet(t, ns, "shared.yaml", "deployment-v2.yaml", "destinationrule.yaml", "vs-promoted.yaml"), ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	checkRefs(t, "created", res.Created, ns, []string{"Deployment NS/shop-v2"})
	checkRefs(t, "updated", res.Updated, ns, []string{"VirtualService NS/shop-mesh"})
	checkRefs(t, "pruned", res.Pruned, ns, []string{"Deployment NS/shop-v1"})
	if got := routeWeights(t, dyn, ns, "shop-mesh"); !slices.Equal(got, []string{"v1=100"}) {
		t.Errorf("VirtualService routes after dry run = %q, want unchanged", got)
	}
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())
	if _, err := kube.AppsV1().Deployments(ns).Get(ctx, "shop-v1", metav1.GetOptions{}); err != nil {
		t.Errorf("Deployment shop-v1 after dry-run prune: %v", err)
	}
}

// TestRejected checks that a set the API server rejects names the object
// and field and leaves nothing of the set behind.
func TestRejected(t *testing.T) {
	env := testEnv.Env(t)
	ns := newNamespace(t)
	a, _ := newApplier(t)
	ctx := testContext(t)
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())

	set := shopSet(t, ns, "shared.yaml", "deployment-v1.yaml", "destinationrule.yaml", "vs-missing-host.yaml")
	res, err := a.Apply(ctx, set, ApplyOptions{})
	if err == nil {
		t.Fatal("apply of a VirtualService without a destination host succeeded")
	}
	t.Logf("error: %v", err)
	var oe *ObjectError
	if !errors.As(err, &oe) {
		t.Fatalf("error %v is not an *ObjectError", err)
	}
	if want := "VirtualService " + ns + "/shop-mesh"; oe.Object.String() != want {
		t.Errorf("rejected object = %s, want %s", oe.Object, want)
	}
	if !slices.ContainsFunc(oe.Fields(), func(f string) bool { return strings.Contains(f, "destination.host") }) {
		t.Errorf("rejected fields = %q, want one naming destination.host", oe.Fields())
	}
	for _, want := range []string{"VirtualService " + ns + "/shop-mesh", "destination.host", "Required value"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if res.Changed() {
		t.Errorf("rejected apply reports changes: %+v", res)
	}
	if _, err := kube.CoreV1().Services(ns).Get(ctx, "shop", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Service of the rejected set: err = %v, want NotFound", err)
	}
	if _, err := kube.AppsV1().Deployments(ns).Get(ctx, "shop-v1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment of the rejected set: err = %v, want NotFound", err)
	}
}

// TestBadInput checks that malformed sets get a clear error before any
// request is made.
func TestBadInput(t *testing.T) {
	a, counter := newApplier(t)
	obj := func(mutate func(u *unstructured.Unstructured)) *unstructured.Unstructured {
		u := readObjects(t, "shop/shared.yaml")[1].DeepCopy() // the Service
		u.SetNamespace("default")
		mutate(u)
		return u
	}
	tests := []struct {
		name string
		set  Set
		want string
	}{
		{"no owner", Set{Objects: []*unstructured.Unstructured{obj(func(*unstructured.Unstructured) {})}}, "lacks label app.kubernetes.io/managed-by"},
		{"no release label", Set{Owner: map[string]string{LabelManagedBy: "sluice"}}, "lacks label sluice.dev/release"},
		{"bad owner value", Set{Owner: map[string]string{LabelManagedBy: "sluice", LabelRelease: "a b"}}, `sluice.dev/release="a b" is invalid`},
		{"nil object", Set{Owner: owner("default", "x"), Objects: []*unstructured.Unstructured{nil}}, "object 0: nil object"},
		{"no name", Set{Owner: owner("default", "x"), Objects: []*unstructured.Unstructured{obj(func(u *unstructured.Unstructured) { u.SetName("") })}}, "metadata.name is required"},
		{"no kind", Set{Owner: owner("default", "x"), Objects: []*unstructured.Unstructured{obj(func(u *unstructured.Unstructured) { u.SetKind("") })}}, "apiVersion and kind are required"},
		{"conflicting owner label", Set{Owner: owner("default", "x"), Objects: []*unstructured.Unstructured{obj(func(u *unstructured.Unstructured) {
			u.SetLabels(map[string]string{LabelRelease: "y"})
		})}}, `label sluice.dev/release="y" conflicts with the release's owner label sluice.dev/release="x"`},
		{"duplicate", Set{Owner: owner("default", "x"), Objects: []*unstructured.Unstructured{
			obj(func(*unstructured.Unstructured) {}), obj(func(*unstructured.Unstructured) {}),
		}}, "object 1: Service default/shop is also object 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			counter.Reset()
			_, err := a.Apply(t.Context(), tc.set, ApplyOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
			if n := counter.Total(); n != 0 {
				t.Errorf("bad input sent %d requests", n)
			}
		})
	}
}

// TestBadKindAndScope checks errors only the API server's discovery can
// tell: an unknown kind, a namespace missing or misplaced.
func TestBadKindAndScope(t *testing.T) {
	a, counter := newApplier(t)
	base := func(apiVersion, kind, ns string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(apiVersion)
		u.SetKind(kind)
		u.SetName("x")
		u.SetNamespace(ns)
		return u
	}
	tests := []struct {
		name string
		obj  *unstructured.Unstructured
		want string
	}{
		{"unknown kind", base("example.com/v1", "Widget", "default"), "Widget default/x: the API server does not serve example.com/v1, Kind=Widget (is its CRD installed?)"},
		{"namespaced without namespace", base("v1", "ConfigMap", ""), "ConfigMap x: ConfigMap is namespaced but metadata.namespace is empty"},
		{"cluster-scoped with namespace", base("rbac.authorization.k8s.io/v1", "ClusterRole", "default"), `ClusterRole default/x: ClusterRole is cluster-scoped but metadata.namespace is "default"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			counter.Reset()
			_, err := a.Apply(t.Context(), Set{Owner: owner("default", "bad"), Objects: []*unstructured.Unstructured{tc.obj}}, ApplyOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
			if n := counter.Writes(); n != 0 {
				t.Errorf("bad kind sent %d writes", n)
			}
		})
	}
}

// TestOtherReleasesObject refuses to take over an object another release
// owns, and adopts one nobody owns.
func TestOtherReleasesObject(t *testing.T) {
	env := testEnv.Env(t)
	ns := newNamespace(t)
	a, _ := newApplier(t)
	ctx := testContext(t)
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())

	if _, err := a.Apply(ctx, shopSet(t, ns, "shared.yaml"), ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	theft := shopSet(t, ns, "shared.yaml")
	theft.Owner = owner(ns, "thief")
	_, err := a.Apply(ctx, theft, ApplyOptions{})
	if want := "ServiceAccount " + ns + "/shop already belongs to release " + ns + "/shop"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want one containing %q", err, want)
	}

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: ns}, Data: map[string]string{"a": "1", "keep": "yes"}}
	if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	desired := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "settings", "namespace": ns},
		"data":     map[string]any{"a": "2"},
	}}
	res, err := a.Apply(ctx, Set{Owner: owner(ns, "shop"), Objects: append(shopSet(t, ns, "shared.yaml").Objects, desired)}, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkRefs(t, "updated", res.Updated, ns, []string{"ConfigMap NS/settings"})
	got, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["a"] != "2" || got.Labels[LabelRelease] != "shop" {
		t.Errorf("adopted ConfigMap = data %v labels %v, want a=2 and the owner labels", got.Data, got.Labels)
	}
}
