package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"sluice.dev/sluice/renderer"
	"sluice.dev/sluice/specs"
)

// describeHTTPRoute summarises an HTTPRoute's rules, one string per rule:
// "name[header]: backend=weight ... +filter ... timeout", and its parents.
func describeHTTPRoute(t *testing.T, u *unstructured.Unstructured) (rules []string, parents []string) {
	t.Helper()
	var r gwapiv1.HTTPRoute
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Spec.ParentRefs {
		parents = append(parents, string(*p.Kind)+"/"+string(p.Name))
	}
	for _, rule := range r.Spec.Rules {
		s := ""
		if rule.Name != nil {
			s = string(*rule.Name)
		}
		var hs []string
		for _, m := range rule.Matches {
			for _, h := range m.Headers {
				hs = append(hs, string(h.Name)+"="+h.Value)
			}
		}
		if len(hs) > 0 {
			s += "[" + strings.Join(hs, ",") + "]"
		}
		s += ":"
		for _, b := range rule.BackendRefs {
			s += fmt.Sprintf(" %s=%d", b.Name, *b.Weight)
		}
		for _, f := range rule.Filters {
			s += " +" + string(f.Type)
			if f.RequestMirror != nil {
				s += "(" + string(f.RequestMirror.BackendRef.Name) + ")"
			}
		}
		if rule.Timeouts != nil && rule.Timeouts.Request != nil {
			s += " timeout=" + string(*rule.Timeouts.Request)
		}
		rules = append(rules, s)
	}
	return rules, parents
}

var httpRoutes = httpRouteResource

// TestGatewayAPISteps applies every step of examples/catalog-gateway-api
// to the real API server (with the Gateway API's standard CRDs), after a
// person added a filter and a timeout to Sluice's main rule, a rule of
// their own and a second parent to the mesh route: all of it survives
// every step, while Sluice's backends, matches and mirror follow the
// plan. The ingress route also keeps what the source's HTTPRoute sets.
func TestGatewayAPISteps(t *testing.T) {
	env := testEnv.Env(t)
	ns := newNamespace(t)
	rel, root := exampleRelease(t, "catalog-gateway-api", ns)
	// A mirror stage too, so the mirror filter is exercised with a person's.
	rel.Spec.Stages = slices.Insert(rel.Spec.Stages, 2, specs.Stage{Name: "shadow", Mirror: &specs.MirrorStage{Percent: 12.5}})
	steps, err := specs.Plan(rel)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := newApplier(t)
	ctx := testContext(t)
	dyn := dynamic.NewForConfigOrDie(env.RESTConfig())

	apply := func(step specs.Step) *renderer.Output {
		t.Helper()
		out, err := renderer.Render(ctx, root.FS(), rel, step)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Apply(ctx, Set{Owner: out.Owner, Objects: out.Objects}, ApplyOptions{}); err != nil {
			t.Fatalf("step %s: %v", step.Name, err)
		}
		return out
	}
	get := func(name string) *unstructured.Unstructured {
		t.Helper()
		u, err := dyn.Resource(httpRoutes).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	out := apply(steps[0]) // deploy
	if !slices.Equal(out.Routes, []string{"catalog-mesh", "catalog-ingress"}) {
		t.Fatalf("routes = %v", out.Routes)
	}
	// A person edits the mesh route as kubectl edit would (an update, by
	// another field manager): a header on Sluice's main rule, a timeout,
	// a rule of their own, a second parent.
	mesh := get("catalog-mesh")
	rules, _, _ := unstructured.NestedSlice(mesh.Object, "spec", "rules")
	main := rules[len(rules)-1].(map[string]any)
	main["filters"] = []any{map[string]any{"type": "RequestHeaderModifier", "requestHeaderModifier": map[string]any{"add": []any{map[string]any{"name": "x-team", "value": "catalog"}}}}}
	main["timeouts"] = map[string]any{"request": "5s"}
	rules = append(rules, map[string]any{
		"name":        "admin",
		"matches":     []any{map[string]any{"path": map[string]any{"type": "PathPrefix", "value": "/admin"}}},
		"backendRefs": []any{map[string]any{"name": "catalog", "port": int64(80)}},
	})
	_ = unstructured.SetNestedSlice(mesh.Object, rules, "spec", "rules")
	parents, _, _ := unstructured.NestedSlice(mesh.Object, "spec", "parentRefs")
	parents = append(parents, map[string]any{"group": "", "kind": "Service", "name": "catalog-admin"})
	_ = unstructured.SetNestedSlice(mesh.Object, parents, "spec", "parentRefs")
	if _, err := dyn.Resource(httpRoutes).Namespace(ns).Update(ctx, mesh, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}

	want := map[string][]string{
		"deploy":      {"sluice: catalog-v1=100 +RequestHeaderModifier timeout=5s", "admin: catalog=1"},
		"dark-launch": {"sluice-match[x-istio-cohort=internal]: catalog-v2=100 +RequestHeaderModifier timeout=5s", "sluice: catalog-v1=100 +RequestHeaderModifier timeout=5s", "admin: catalog=1"},
		"shadow":      {"sluice: catalog-v1=100 +RequestHeaderModifier +RequestMirror(catalog-v2) timeout=5s", "admin: catalog=1"},
		"canary-10":   {"sluice: catalog-v1=90 catalog-v2=10 +RequestHeaderModifier timeout=5s", "admin: catalog=1"},
		"canary-50":   {"sluice: catalog-v1=50 catalog-v2=50 +RequestHeaderModifier timeout=5s", "admin: catalog=1"},
		"promote":     {"sluice: catalog-v2=100 +RequestHeaderModifier timeout=5s", "admin: catalog=1"},
	}
	for _, step := range append(steps, specs.RollbackStep(rel)) {
		apply(step)
		got, parents := describeHTTPRoute(t, get("catalog-mesh"))
		if w, ok := want[step.Name]; ok && !slices.Equal(got, w) {
			t.Errorf("step %s: mesh route rules\n got %q\nwant %q", step.Name, got, w)
		}
		if !slices.Equal(parents, []string{"Service/catalog", "Service/catalog-admin"}) {
			t.Errorf("step %s: mesh route parents %v, want Sluice's and the person's", step.Name, parents)
		}
		ing, ingParents := describeHTTPRoute(t, get("catalog-ingress"))
		if len(ing) < 2 || !strings.Contains(ing[len(ing)-2], "+ResponseHeaderModifier") || !strings.HasSuffix(ing[len(ing)-2], "timeout=10s") || !strings.HasPrefix(ing[len(ing)-1], "legacy-items:") {
			t.Errorf("step %s: ingress route lost the source's settings: %q", step.Name, ing)
		}
		if !slices.Equal(ingParents, []string{"Gateway/catalog-gateway"}) {
			t.Errorf("step %s: ingress parents %v", step.Name, ingParents)
		}
	}
	// Re-applying an unchanged step finds nothing to write and reports
	// no drift: the person's additions are not drift.
	res, err := a.Apply(ctx, func() Set {
		out, err := renderer.Render(ctx, root.FS(), rel, specs.RollbackStep(rel))
		if err != nil {
			t.Fatal(err)
		}
		return Set{Owner: out.Owner, Objects: out.Objects}
	}(), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed() || len(res.Drift) > 0 {
		t.Errorf("re-apply: created %v updated %v drift %v, want nothing", res.Created, res.Updated, res.Drift)
	}
}

// TestRoutesReady: a step's routes count as applied only once their
// controller reports Accepted and ResolvedRefs True for the route's
// generation on every parent Sluice attached; a False condition's message
// is the reason. The status is written as a controller would, through the
// status subresource of the real API server.
func TestRoutesReady(t *testing.T) {
	env := testEnv.Env(t)
	ns := newNamespace(t)
	rel, root := exampleRelease(t, "catalog-gateway-api", ns)
	a, _ := newApplier(t)
	ctx := testContext(t)
	dyn := dynamic.NewForConfigOrDie(env.RESTConfig())
	out, err := renderer.Render(ctx, root.FS(), rel, specs.SteadyStep(rel))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, Set{Owner: out.Owner, Objects: out.Objects}, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	setStatus := func(name string, parent map[string]any, accepted, resolved metav1.ConditionStatus, msg string) {
		t.Helper()
		u, err := dyn.Resource(httpRoutes).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cond := func(typ string, s metav1.ConditionStatus, reason string) map[string]any {
			return map[string]any{"type": typ, "status": string(s), "reason": reason, "message": msg,
				"observedGeneration": u.GetGeneration(), "lastTransitionTime": "2026-01-01T00:00:00Z"}
		}
		reason := "NotAllowedByListeners"
		if accepted == metav1.ConditionTrue {
			reason = "Accepted"
		}
		u.Object["status"] = map[string]any{"parents": []any{map[string]any{
			"parentRef":      parent,
			"controllerName": "istio.io/gateway-controller",
			"conditions":     []any{cond("Accepted", accepted, reason), cond("ResolvedRefs", resolved, "ResolvedRefs")},
		}}}
		if _, err := dyn.Resource(httpRoutes).Namespace(ns).UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(wantOK bool, wantReason string) {
		t.Helper()
		ok, reason, err := a.RoutesReady(ctx, ns, out.Routes)
		if err != nil {
			t.Fatal(err)
		}
		if ok != wantOK || !strings.Contains(reason, wantReason) {
			t.Errorf("RoutesReady = %v, %q; want %v, %q", ok, reason, wantOK, wantReason)
		}
	}
	check(false, "HTTPRoute catalog-mesh: no controller has reported on parent Service "+ns+"/catalog yet")
	meshParent := map[string]any{"group": "", "kind": "Service", "name": "catalog"}
	gwParent := map[string]any{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "catalog-gateway"}
	setStatus("catalog-mesh", meshParent, metav1.ConditionTrue, metav1.ConditionTrue, "")
	check(false, "catalog-ingress: no controller has reported")
	setStatus("catalog-ingress", gwParent, metav1.ConditionFalse, metav1.ConditionTrue, "no listener allows hostname catalog.istioinaction.io")
	check(false, "HTTPRoute catalog-ingress: parent Gateway "+ns+"/catalog-gateway: Accepted=False (NotAllowedByListeners: no listener allows hostname catalog.istioinaction.io)")
	setStatus("catalog-ingress", gwParent, metav1.ConditionTrue, metav1.ConditionTrue, "")
	check(true, "")

	// A new step bumps the generation: the old status no longer counts.
	steps, _ := specs.Plan(rel)
	out2, err := renderer.Render(ctx, root.FS(), rel, steps[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, Set{Owner: out2.Owner, Objects: out2.Objects}, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	check(false, "has not observed generation 2 yet")
	// sluice apply --wait waits the same way, and says why it gave up.
	if err := a.WaitRoutes(ctx, ns, out2.Routes, 2*time.Second); err == nil || !strings.Contains(err.Error(), "not accepted within 2s: HTTPRoute catalog-mesh: parent Service "+ns+"/catalog has not observed generation 2 yet") {
		t.Errorf("WaitRoutes = %v", err)
	}
	setStatus("catalog-mesh", meshParent, metav1.ConditionTrue, metav1.ConditionTrue, "")
	setStatus("catalog-ingress", gwParent, metav1.ConditionTrue, metav1.ConditionTrue, "")
	if err := a.WaitRoutes(ctx, ns, out2.Routes, 10*time.Second); err != nil {
		t.Errorf("WaitRoutes once accepted: %v", err)
	}
}

// applyGatewayAPIRelease applies the first steps of
// examples/catalog-gateway-api in ns with a and reads the routes' status.
func applyGatewayAPIRelease(ctx context.Context, t *testing.T, a *Applier, ns string) {
	t.Helper()
	rel, root := exampleRelease(t, "catalog-gateway-api", ns)
	steps, err := specs.Plan(rel)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range append([]specs.Step{specs.SteadyStep(rel)}, steps[:3]...) {
		out, err := renderer.Render(ctx, root.FS(), rel, step)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Apply(ctx, Set{Owner: out.Owner, Objects: out.Objects}, ApplyOptions{}); err != nil {
			t.Fatalf("step %s: %v", step.Name, err)
		}
		if ok, reason, err := a.RoutesReady(ctx, ns, out.Routes); err != nil || ok {
			t.Fatalf("step %s: RoutesReady = %v, %q, %v; want not ready (no controller runs) and no error", step.Name, ok, reason, err)
		}
	}
}

// TestSwitchToGatewayAPI: a steady release whose spec moves from Istio to
// Gateway API routing gets its HTTPRoutes and version Services, and its
// VirtualServices and DestinationRule are pruned; and back again.
func TestSwitchToGatewayAPI(t *testing.T) {
	env := testEnv.Env(t)
	ns := newNamespace(t)
	rel, root := exampleRelease(t, "catalog", ns)
	a, _ := newApplier(t)
	ctx := testContext(t)
	dyn := dynamic.NewForConfigOrDie(env.RESTConfig())
	kinds := func() []string {
		t.Helper()
		var out []string
		for _, r := range []struct {
			kind string
			gvr  schema.GroupVersionResource
		}{
			{"Service", schema.GroupVersionResource{Version: "v1", Resource: "services"}},
			{"DestinationRule", schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}},
			{"VirtualService", schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}},
			{"HTTPRoute", httpRoutes},
		} {
			list, err := dyn.Resource(r.gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range list.Items {
				out = append(out, r.kind+" "+u.GetName())
			}
		}
		return out
	}
	for _, tc := range []struct {
		routing string
		want    []string
	}{
		{specs.RoutingIstio, []string{"Service catalog", "DestinationRule catalog", "VirtualService catalog-ingress", "VirtualService catalog-mesh"}},
		{specs.RoutingGatewayAPI, []string{"Service catalog", "Service catalog-v1", "HTTPRoute catalog-ingress", "HTTPRoute catalog-mesh"}},
		{specs.RoutingIstio, []string{"Service catalog", "DestinationRule catalog", "VirtualService catalog-ingress", "VirtualService catalog-mesh"}},
	} {
		rel.Spec.Routing = tc.routing
		out, err := renderer.Render(ctx, root.FS(), rel, specs.SteadyStep(rel))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Apply(ctx, Set{Owner: out.Owner, Objects: out.Objects}, ApplyOptions{}); err != nil {
			t.Fatalf("%s: %v", tc.routing, err)
		}
		if got := kinds(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: objects %v, want %v", tc.routing, got, tc.want)
		}
	}
}
