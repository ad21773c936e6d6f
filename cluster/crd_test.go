package cluster

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// TestCRDInSet applies a CRD and an object of its new kind in one set.
func TestCRDInSet(t *testing.T) {
	env := testEnv.Env(t)
	ns := newNamespace(t)
	a, counter := newApplier(t)
	ctx := testContext(t)
	group := fmt.Sprintf("t%08x.test.sluice.dev", rand.Uint32())
	data, err := os.ReadFile("testdata/crd/widgets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects(bytes.ReplaceAll(data, []byte("GROUP"), []byte(group)))
	if err != nil {
		t.Fatal(err)
	}
	objs[1].SetNamespace(ns)
	dyn := dynamic.NewForConfigOrDie(env.RESTConfig())
	t.Cleanup(func() {
		crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
		_ = dyn.Resource(crds).Delete(t.Context(), "widgets."+group, metav1.DeleteOptions{})
	})
	set := Set{Owner: owner(ns, "widgets"), Objects: objs}

	res, err := a.Apply(ctx, set, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkRefs(t, "created", res.Created, ns, []string{"CustomResourceDefinition widgets." + group, "Widget NS/gear"})

	counter.Reset()
	res, err = a.Apply(ctx, set, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkRefs(t, "unchanged", res.Unchanged, ns, []string{"CustomResourceDefinition widgets." + group, "Widget NS/gear"})
	if counter.Writes() != 0 {
		t.Errorf("unchanged apply sent %d writes: %v", counter.Writes(), counter.Snapshot())
	}

	// The new kind's schema is enforced, and named in the error.
	objs[1].Object["spec"] = map[string]any{"size": int64(0)}
	_, err = a.Apply(ctx, set, ApplyOptions{})
	if want := "validate Widget " + ns + "/gear: rejected by the API server (Invalid): field spec.size"; err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Errorf("error = %v, want one containing %q", err, want)
	}
}
