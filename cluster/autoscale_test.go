package cluster

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"sluice.dev/sluice/renderer"
	"sluice.dev/sluice/specs"
)

// TestAutoscaledRelease walks the renderer's autoscaled test release (a
// HorizontalPodAutoscaler and generated ConfigMaps and Secrets per
// version) through its steps, with live objects read from watches as
// `sluice run` does.
func TestAutoscaledRelease(t *testing.T) {
	ctx := testContext(t)
	a, counter := newApplier(t)
	if err := a.WatchLive(ctx); err != nil {
		t.Fatal(err)
	}
	applyAutoscaledRelease(ctx, t, a, counter, kubernetes.NewForConfigOrDie(testEnv.Env(t).RESTConfig()), newNamespace(t))
}

// hpaManager is the field manager of the simulated autoscaler's writes.
// The test cluster's controller manager runs the HPA controller, but
// without a metrics API it only holds the count within min and max; a
// write of the scale subresource by another manager is what it does when
// it scales on metrics.
const hpaManager = "horizontal-pod-autoscaler"

// applyAutoscaledRelease applies the steps of the autoscaled release in
// namespace ns with a, checking that each version's autoscaler, ConfigMap
// and Secret come and go with it and that a scale by the autoscaler is
// never reverted. kube reads and scales as an administrator would.
func applyAutoscaledRelease(ctx context.Context, t *testing.T, a *Applier, counter *RequestCounter, kube kubernetes.Interface, ns string) {
	t.Helper()
	rels, err := specs.LoadFile("../renderer/testdata/autoscaled/repo/releases/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rel := rels[0]
	rel.Metadata.Namespace = ns
	root, err := os.OpenRoot("../renderer/testdata/autoscaled/repo")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	render := func(name string) Set {
		t.Helper()
		step, err := specs.FindStep(rel, name)
		if err != nil {
			t.Fatal(err)
		}
		out, err := renderer.Render(ctx, root.FS(), rel, step)
		if err != nil {
			t.Fatalf("%s: render: %v", name, err)
		}
		return Set{Owner: out.Owner, Objects: out.Objects}
	}
	apply := func(name string, set Set) *Result {
		t.Helper()
		res, err := a.Apply(ctx, set, ApplyOptions{})
		if err != nil {
			t.Fatalf("%s: apply: %v", name, err)
		}
		t.Logf("%s: created %v updated %v pruned %v", name, res.Created, res.Updated, res.Pruned)
		return res
	}
	replicas := func(name string) int32 {
		t.Helper()
		d, err := kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *d.Spec.Replicas
	}

	deploy := render("deploy")
	apply("deploy", deploy)
	checkVersionObjects(ctx, t, kube, ns, "deploy", []string{"v1", "v2"})
	// The API server defaults the count to 1 (the test cluster runs no
	// autoscaler controller: the test writes the scale as one would).
	if r := replicas("shop-v2"); r != 1 {
		t.Errorf("a new autoscaled Deployment has %d replicas, want 1 (the default)", r)
	}

	// The autoscaler scales the candidate up.
	// The controllers are writing the new Deployment too: retry on conflict.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		scale, err := kube.AppsV1().Deployments(ns).GetScale(ctx, "shop-v2", metav1.GetOptions{})
		if err != nil {
			return err
		}
		scale.Spec.Replicas = 4
		_, err = kube.AppsV1().Deployments(ns).UpdateScale(ctx, "shop-v2", scale, metav1.UpdateOptions{FieldManager: hpaManager})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// The watch must see the scale before the next apply reads its cache,
	// or this would pass without testing the drift comparison.
	waitCached(ctx, t, a, ns, "shop-v2", func(u map[string]any) bool {
		spec, _ := u["spec"].(map[string]any)
		r, _ := number(spec["replicas"])
		return r == 4
	})

	// The same step again: nothing to write, no drift, the scale stays.
	counter.Reset()
	res := apply("deploy again", deploy)
	if res.Changed() || len(res.Drift) > 0 || counter.Writes() != 0 {
		t.Errorf("deploy again: created %v updated %v pruned %v drift %v, %d writes", res.Created, res.Updated, res.Pruned, res.Drift, counter.Writes())
	}
	if r := replicas("shop-v2"); r != 4 {
		t.Errorf("after the same step again shop-v2 has %d replicas, want the autoscaler's 4", r)
	}

	// A write of the Deployment itself (a changed pod template) keeps the
	// autoscaler's count too: Sluice does not own spec.replicas.
	changed := render("deploy")
	for _, o := range changed.Objects {
		if o.GetKind() == "Deployment" && o.GetName() == "shop-v2" {
			if err := unstructured.SetNestedField(o.Object, "2026-01-01T00:00:00Z", "spec", "template", "metadata", "annotations", "example.com/restartedAt"); err != nil {
				t.Fatal(err)
			}
		}
	}
	res = apply("deploy with a changed pod template", changed)
	if !slices.ContainsFunc(res.Updated, func(r ObjectRef) bool { return r.Name == "shop-v2" }) {
		t.Errorf("the changed Deployment was not written: updated %v", res.Updated)
	}
	if r := replicas("shop-v2"); r != 4 {
		t.Errorf("after a write of the Deployment shop-v2 has %d replicas, want the autoscaler's 4", r)
	}
	d, err := kube.AppsV1().Deployments(ns).Get(ctx, "shop-v2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range d.ManagedFields {
		if mf.Manager == DefaultFieldManager && mf.FieldsV1 != nil && strings.Contains(mf.FieldsV1.GetRawString(), `"f:replicas"`) {
			t.Errorf("Sluice's managed fields hold spec.replicas: %s", mf.FieldsV1.GetRawString())
		}
	}

	apply("canary-50", render("canary-50"))
	// Promote moves all traffic to v2 and keeps v1 to drain; v2 keeps its
	// scale.
	res = apply("promote", render("promote"))
	if len(res.Pruned) != 0 {
		t.Errorf("promote pruned %v while v1 drains", res.Pruned)
	}
	checkVersionObjects(ctx, t, kube, ns, "promote", []string{"v1", "v2"})
	// The promoted release's steady state retires v1: its Deployment,
	// autoscaler, ConfigMap and Secret are pruned.
	promoted := *rel
	promoted.Spec.Stable, promoted.Spec.Candidate = "v2", ""
	out, err := renderer.Render(ctx, root.FS(), &promoted, specs.SteadyStep(&promoted))
	if err != nil {
		t.Fatalf("stable: render: %v", err)
	}
	res = apply("stable", Set{Owner: out.Owner, Objects: out.Objects})
	var pruned []string
	for _, r := range res.Pruned {
		pruned = append(pruned, r.Kind+"/"+r.Name[:min(len(r.Name), strings.Index(r.Name, "-v1")+3)])
	}
	slices.Sort(pruned)
	if want := []string{"ConfigMap/shop-config-v1", "Deployment/shop-v1", "HorizontalPodAutoscaler/shop-v1", "Secret/shop-credentials-v1"}; !slices.Equal(pruned, want) {
		t.Errorf("stable after the promotion pruned %v, want %v", pruned, want)
	}
	checkVersionObjects(ctx, t, kube, ns, "stable", []string{"v2"})
	if r := replicas("shop-v2"); r != 4 {
		t.Errorf("after the promotion shop-v2 has %d replicas, want the autoscaler's 4", r)
	}
}

// checkVersionObjects checks that the autoscalers, generated ConfigMaps
// and Secrets in ns are exactly those of versions, each scaling or named
// after its own version.
func checkVersionObjects(ctx context.Context, t *testing.T, kube kubernetes.Interface, ns, step string, versions []string) {
	t.Helper()
	hpas, err := kube.AutoscalingV1().HorizontalPodAutoscalers(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, h := range live(hpas.Items, func(h autoscalingv1.HorizontalPodAutoscaler) *metav1.ObjectMeta { return &h.ObjectMeta }) {
		got = append(got, "hpa "+h.Name+" scales "+h.Spec.ScaleTargetRef.Name)
	}
	cms, err := kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelRelease + "=shop"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cms.Items {
		if c.DeletionTimestamp == nil {
			got = append(got, "configmap "+c.Name[:strings.LastIndex(c.Name, "-")])
		}
	}
	secrets, err := kube.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelRelease + "=shop"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if s.DeletionTimestamp == nil {
			got = append(got, "secret "+s.Name[:strings.LastIndex(s.Name, "-")])
		}
	}
	for _, v := range versions {
		want = append(want, "hpa shop-"+v+" scales shop-"+v, "configmap shop-config-"+v, "secret shop-credentials-"+v)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: %q, want %q", step, got, want)
	}
}

func live[T any](items []T, meta func(T) *metav1.ObjectMeta) []T {
	return slices.DeleteFunc(slices.Clone(items), func(x T) bool { return meta(x).DeletionTimestamp != nil })
}

// waitCached waits until the Applier's watch cache holds Deployment
// ns/name in a state ok accepts.
func waitCached(ctx context.Context, t *testing.T, a *Applier, ns, name string, ok func(map[string]any) bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		u, _ := a.cache.get(schema.GroupKind{Group: "apps", Kind: "Deployment"}, ns, name)
		return u != nil && ok(u.Object), nil
	})
	if err != nil {
		t.Fatalf("the watch cache never saw the change to Deployment %s/%s: %v", ns, name, err)
	}
}
