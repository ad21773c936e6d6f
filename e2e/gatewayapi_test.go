package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/record"
)

var httpRouteGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}

// newGatewayAPIStack starts a stack on examples/catalog-gateway-api: the
// mesh simulator routes by its HTTPRoutes and reports their status as
// Istio's controllers would.
func newGatewayAPIStack(t *testing.T, namespace string) *stack.Stack {
	t.Helper()
	s := startStack(t, stack.Options{Namespace: namespace, Example: "../examples/catalog-gateway-api"})
	if err := s.StartSluice(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhaseSteady, time.Minute)
	return s
}

// httpRouteRules reads an HTTPRoute's rules as "name: backend=weight ...
// +FilterType", and whether every parent accepted it.
func httpRouteRules(t testing.TB, ns, name string) []string {
	t.Helper()
	dyn := dynamic.NewForConfigOrDie(testEnv.Env(t).RESTConfig())
	hr, err := dyn.Resource(httpRouteGVR).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	rules, _, _ := unstructured.NestedSlice(hr.Object, "spec", "rules")
	for _, r := range rules {
		rm := r.(map[string]any)
		n, _, _ := unstructured.NestedString(rm, "name")
		s := n + ":"
		backends, _, _ := unstructured.NestedSlice(rm, "backendRefs")
		for _, b := range backends {
			bn, _, _ := unstructured.NestedString(b.(map[string]any), "name")
			w, _, _ := unstructured.NestedInt64(b.(map[string]any), "weight")
			s += fmt.Sprintf(" %s=%d", bn, w)
		}
		filters, _, _ := unstructured.NestedSlice(rm, "filters")
		for _, f := range filters {
			typ, _, _ := unstructured.NestedString(f.(map[string]any), "type")
			s += " +" + typ
		}
		out = append(out, s)
	}
	return out
}

// addPersonsRule edits the live mesh HTTPRoute as a person with kubectl
// edit would (an update by another field manager): a request header on
// Sluice's main rule and a rule of their own for /admin.
func addPersonsRule(t *testing.T, ns string) {
	t.Helper()
	dyn := dynamic.NewForConfigOrDie(testEnv.Env(t).RESTConfig())
	err := stack.WaitFor(t.Context(), time.Minute, 250*time.Millisecond, "the person's edit of catalog-mesh", func(ctx context.Context) (bool, error) {
		hr, err := dyn.Resource(httpRouteGVR).Namespace(ns).Get(ctx, "catalog-mesh", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		rules, _, _ := unstructured.NestedSlice(hr.Object, "spec", "rules")
		for _, r := range rules {
			rm := r.(map[string]any)
			if rm["name"] == "sluice" {
				rm["filters"] = []any{map[string]any{"type": "RequestHeaderModifier", "requestHeaderModifier": map[string]any{"set": []any{map[string]any{"name": "x-team", "value": "catalog"}}}}}
			}
		}
		rules = append(rules, map[string]any{
			"name":        "admin",
			"matches":     []any{map[string]any{"path": map[string]any{"type": "PathPrefix", "value": "/admin"}}},
			"backendRefs": []any{map[string]any{"name": "catalog", "port": int64(80)}},
		})
		if err := unstructured.SetNestedSlice(hr.Object, rules, "spec", "rules"); err != nil {
			return false, err
		}
		_, err = dyn.Resource(httpRouteGVR).Namespace(ns).Update(ctx, hr, metav1.UpdateOptions{FieldManager: "kubectl-edit"})
		return err == nil, nil // a conflict with Sluice's or the controller's write: read again
	})
	if err != nil {
		t.Fatal(err)
	}
}

// hasPersonsEdit reports whether the mesh route still holds the person's
// filter on Sluice's main rule and their own rule.
func hasPersonsEdit(rules []string) bool {
	main := slices.IndexFunc(rules, func(r string) bool { return strings.HasPrefix(r, "sluice:") })
	return main >= 0 && strings.Contains(rules[main], "+RequestHeaderModifier") && slices.Contains(rules, "admin: catalog=1") // the API server defaults the weight to 1
}

// TestGatewayAPIGoodRelease: examples/catalog-gateway-api promotes a good
// v2 through every step on HTTPRoutes, the builtin gates reading the
// Istio metrics of per-version Service backends, one commit per
// transition; the filter and the rule a person added to the mesh route
// before the release survive every step, and so do the settings the
// source's HTTPRoute gives the ingress route.
func TestGatewayAPIGoodRelease(t *testing.T) {
	t.Parallel()
	s := newGatewayAPIStack(t, "e2e-gwapi-good")
	ns := s.Namespace
	addPersonsRule(t, ns)
	pushCandidate(t, s, "v2")

	// Sample the route at every step Sluice records until the promotion.
	seen := map[string]bool{}
	var lost []string
	waitStatus(t, s, releaseTimeout, "promotion", func(st *record.Status) bool {
		if !seen[st.Step] {
			seen[st.Step] = true
			if rules := httpRouteRules(t, ns, "catalog-mesh"); !hasPersonsEdit(rules) {
				lost = append(lost, fmt.Sprintf("%s: %q", st.Step, rules))
			}
		}
		return st.Phase == record.PhasePromoted
	})
	if len(lost) > 0 {
		t.Errorf("the person's edit was lost at:\n%s", strings.Join(lost, "\n"))
	}
	checkGoodRelease(t, transitions(sluiceSubjects(t, s)), "v1", "v2")
	waitDeployments(t, ns, "catalog-v2")
	err := stack.WaitFor(t.Context(), time.Minute, 250*time.Millisecond, "routes all on catalog-v2", func(context.Context) (bool, error) {
		mesh := httpRouteRules(t, ns, "catalog-mesh")
		ing := httpRouteRules(t, ns, "catalog-ingress")
		return slices.Contains(mesh, "sluice: catalog-v2=100 +RequestHeaderModifier") && hasPersonsEdit(mesh) &&
			slices.Equal(ing, []string{"sluice: catalog-v2=100 +ResponseHeaderModifier", "legacy-items: +RequestRedirect"}), nil
	})
	if err != nil {
		t.Fatalf("%v: mesh %q, ingress %q", err, httpRouteRules(t, ns, "catalog-mesh"), httpRouteRules(t, ns, "catalog-ingress"))
	}
	if routing := s.Mesh.Routing(); !strings.HasPrefix(routing, "HTTPRoute ") || !strings.Contains(routing, "catalog-v2") {
		t.Errorf("the simulator does not route by the HTTPRoute: %s", routing)
	}
}

// TestGatewayAPIBadReleaseRolledBack: a v2 failing 10% of requests is
// rolled back on HTTPRoutes after threshold failed checks, and every
// route goes back to catalog-v1 alone.
func TestGatewayAPIBadReleaseRolledBack(t *testing.T) {
	t.Parallel()
	s := newGatewayAPIStack(t, "e2e-gwapi-bad")
	if err := s.Mesh.SetVersion("v2", 0.10, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	pushCandidate(t, s, "v2")
	final := waitPhase(t, s, record.PhaseRolledBack, releaseTimeout)
	if final.FailedChecks != 5 {
		t.Errorf("rolled back after %d failed checks, want 5", final.FailedChecks)
	}
	subjects := transitions(sluiceSubjects(t, s))
	if last := subjects[len(subjects)-1]; !strings.HasPrefix(last, "catalog: rolled back at ") || !strings.Contains(last, "success-rate ") {
		t.Errorf("rollback commit %q does not name the gate", last)
	}
	waitDeployments(t, s.Namespace, "catalog-v1")
	err := stack.WaitFor(t.Context(), time.Minute, 250*time.Millisecond, "routes all on catalog-v1", func(context.Context) (bool, error) {
		return slices.Equal(httpRouteRules(t, s.Namespace, "catalog-mesh"), []string{"sluice: catalog-v1=100"}) &&
			slices.Equal(httpRouteRules(t, s.Namespace, "catalog-ingress"), []string{"sluice: catalog-v1=100 +ResponseHeaderModifier", "legacy-items: +RequestRedirect"}), nil
	})
	if err != nil {
		t.Fatalf("%v: mesh %q", err, httpRouteRules(t, s.Namespace, "catalog-mesh"))
	}
}
