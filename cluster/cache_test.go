package cluster

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// TestWatchLive runs the apply path with live objects read from watches:
// the same outcomes as without them (creates, prunes, drift repair, other
// releases' objects refused), with no LIST or GET per apply and no request
// at all for an unchanged step.
func TestWatchLive(t *testing.T) {
	env := testEnv.Env(t)
	ns := newNamespace(t)
	a, counter := newApplier(t)
	ctx := testContext(t)
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())
	if err := a.WatchLive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.WatchLive(ctx); err == nil {
		t.Error("a second WatchLive succeeded, want an error")
	}
	reads := func() int { return counter.Count("GET") }

	canary := shopSet(t, ns, "shared.yaml", "deployment-v1.yaml", "deployment-v2.yaml", "destinationrule.yaml", "vs-canary.yaml")
	stable := shopSet(t, ns, "shared.yaml", "deployment-v1.yaml", "destinationrule.yaml", "vs-stable.yaml")

	steps := []struct {
		name                     string
		set                      Set
		created, updated, pruned []string
		writes                   int // dry runs included
	}{
		{name: "first", set: canary, writes: 12, created: []string{
			"ServiceAccount NS/shop", "Service NS/shop", "Deployment NS/shop-v1", "Deployment NS/shop-v2", "DestinationRule NS/shop", "VirtualService NS/shop-mesh"}},
		// Applied at once after the first: the cache has the writes'
		// responses even before the watch delivers them.
		{name: "unchanged", set: canary},
		{name: "drop v2", set: stable, writes: 4, updated: []string{"VirtualService NS/shop-mesh"}, pruned: []string{"Deployment NS/shop-v2"}},
		{name: "unchanged again", set: stable},
	}
	for _, st := range steps {
		counter.Reset()
		res, err := a.Apply(ctx, st.set, ApplyOptions{})
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		checkRefs(t, st.name+": created", res.Created, ns, st.created)
		checkRefs(t, st.name+": updated", res.Updated, ns, st.updated)
		checkRefs(t, st.name+": pruned", res.Pruned, ns, st.pruned)
		if r := reads(); r != 0 {
			t.Errorf("%s: %d reads (%v), want none", st.name, r, counter.Snapshot())
		}
		if w := counter.Writes(); w != st.writes {
			t.Errorf("%s: %d writes (%v), want %d", st.name, w, counter.Snapshot(), st.writes)
		}
	}
	if _, err := kube.AppsV1().Deployments(ns).Get(ctx, "shop-v2", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pruned Deployment shop-v2: err = %v, want NotFound", err)
	}

	// A hand edit reaches the cache through the watch; the next apply
	// repairs it.
	if _, err := kube.AppsV1().Deployments(ns).Patch(ctx, "shop-v1", types.MergePatchType,
		[]byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := a.Apply(ctx, stable, ApplyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Drift) > 0 {
			checkRefs(t, "drift: updated", res.Updated, ns, []string{"Deployment NS/shop-v1"})
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hand edit of Deployment shop-v1 never showed up as drift")
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	d, err := kube.AppsV1().Deployments(ns).Get(ctx, "shop-v1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r := *d.Spec.Replicas; r != 1 {
		t.Errorf("Deployment shop-v1 replicas = %d after the repair, want 1", r)
	}

	// Another release's object is found in the cache and refused.
	theft := shopSet(t, ns, "shared.yaml")
	theft.Owner = owner(ns, "thief")
	_, err = a.Apply(ctx, theft, ApplyOptions{})
	if want := "ServiceAccount " + ns + "/shop already belongs to release " + ns + "/shop"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want one containing %q", err, want)
	}

	// Available reads a rolled-out Deployment from the cache.
	deadline = time.Now().Add(time.Minute)
	for {
		ok, reason, err := a.Available(ctx, ns, "shop-v1")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shop-v1 never available: %s", reason)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	counter.Reset()
	if ok, _, err := a.Available(ctx, ns, "shop-v1"); err != nil || !ok {
		t.Fatalf("Available(shop-v1) = %v, %v", ok, err)
	}
	if n := counter.Total(); n != 0 {
		t.Errorf("Available of a rolled-out Deployment sent %d requests, want 0", n)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	return nil
}

// TestTrimmer checks what the watches keep of an object: no managed
// fields or kubectl copy, and a status only where a readiness check reads
// it.
func TestTrimmer(t *testing.T) {
	cases := []struct {
		gvk        schema.GroupVersionKind
		keepStatus bool
	}{
		{gvk: schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, keepStatus: true},
		{gvk: schema.GroupVersionKind{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "HTTPRoute"}, keepStatus: true},
		{gvk: schema.GroupVersionKind{Version: "v1", Kind: "Service"}},
		{gvk: schema.GroupVersionKind{Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscaler"}},
		{gvk: schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"}},
	}
	for _, tc := range cases {
		t.Run(tc.gvk.Kind, func(t *testing.T) {
			u := &unstructured.Unstructured{Object: map[string]any{
				"metadata": map[string]any{
					"name":          "x",
					"annotations":   map[string]any{lastApplied: "{}", AnnotationAppliedHash: "sha256:1"},
					"managedFields": []any{map[string]any{"manager": "sluice"}},
				},
				"spec":   map[string]any{"a": "b"},
				"status": map[string]any{"c": "d"},
			}}
			got, err := trimmer(tc.gvk)(u)
			if err != nil {
				t.Fatal(err)
			}
			u = got.(*unstructured.Unstructured)
			if u.GroupVersionKind() != tc.gvk {
				t.Errorf("kind = %v, want %v", u.GroupVersionKind(), tc.gvk)
			}
			if u.GetManagedFields() != nil {
				t.Error("managed fields kept")
			}
			if want := map[string]string{AnnotationAppliedHash: "sha256:1"}; !maps.Equal(u.GetAnnotations(), want) {
				t.Errorf("annotations = %v, want %v", u.GetAnnotations(), want)
			}
			if _, has := u.Object["spec"]; !has {
				t.Error("spec dropped")
			}
			if _, has := u.Object["status"]; has != tc.keepStatus {
				t.Errorf("status kept: %v, want %v", has, tc.keepStatus)
			}
		})
	}
}
