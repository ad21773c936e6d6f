package renderer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/internal/gwroute"
	"sluice.dev/sluice/specs"
)

// TestGatewayAPIExampleIsTheIstioOne: examples/catalog-gateway-api's
// release is examples/catalog's but for spec.routing, so a release moves
// from Istio to Gateway API by changing only that choice.
func TestGatewayAPIExampleIsTheIstioOne(t *testing.T) {
	istio, _ := loadCatalog(t)
	gw, _ := loadRelease(t, gatewayAPIRepo, "releases/catalog.yaml")
	if gw.Spec.Routing != specs.RoutingGatewayAPI {
		t.Fatalf("spec.routing = %q", gw.Spec.Routing)
	}
	gw.Spec.Routing = ""
	if !reflect.DeepEqual(gw.Spec, istio.Spec) || !reflect.DeepEqual(gw.Metadata, istio.Metadata) {
		t.Error("the Gateway API example's release differs from the Istio one beyond spec.routing")
	}
}

// TestMixedRouting: a release whose mesh route uses Istio and whose
// ingress route uses the Gateway API renders a DestinationRule and a
// VirtualService for the first, per-version Services and an HTTPRoute
// for the second, and the step's Routes name only the HTTPRoute.
func TestMixedRouting(t *testing.T) {
	rel, root := loadCatalog(t)
	rel.Spec.Routes[1].Routing = specs.RoutingGatewayAPI
	out, err := Render(context.Background(), root.FS(), rel, mustStep(t, rel, "canary-20"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range out.Objects {
		if o.GetKind() != "Deployment" && o.GetKind() != "ServiceAccount" {
			got = append(got, o.GetKind()+" "+o.GetName())
		}
	}
	slices.Sort(got)
	want := []string{"DestinationRule catalog", "HTTPRoute catalog-ingress", "Service catalog", "Service catalog-v1", "Service catalog-v2", "VirtualService catalog-mesh"}
	if !slices.Equal(got, want) {
		t.Errorf("objects %v, want %v", got, want)
	}
	if !slices.Equal(out.Routes, []string{"catalog-ingress"}) {
		t.Errorf("Routes = %v", out.Routes)
	}
}

// TestGatewayAPIObjectsFitTheAPI: for every step of random releases,
// each rendered HTTPRoute reads strictly into the Gateway API's Go types
// and keeps within the CRD's limits: at most 16 rules and 64 matches per
// rule, 16 headers per match, valid rule and backend names, and backend
// weights that add up to 100, Istio's convention.
func TestGatewayAPIObjectsFitTheAPI(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 100 {
		rel := randomRelease(r)
		rel.Spec.Routing = specs.RoutingGatewayAPI
		for j := range rel.Spec.Routes {
			rel.Spec.Routes[j].Hosts = []string{"app"}
		}
		steps, err := specs.Plan(rel)
		if err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
		steps = append(steps, specs.SteadyStep(rel), specs.RollbackStep(rel))
		for _, step := range steps {
			for _, rt := range rel.Spec.Routes {
				u, err := httpRouteObject(rel, step, rt, Owner(rel))
				if err != nil {
					t.Fatal(err)
				}
				if err := fitsAPI(u); err != nil {
					b, _ := yaml.Marshal(u.Object)
					t.Fatalf("release %d step %s route %s: %v\n%s", i, step.Name, rt.Name, err, b)
				}
			}
		}
	}
}

func fitsAPI(u *unstructured.Unstructured) error {
	b, err := yaml.Marshal(u.Object)
	if err != nil {
		return err
	}
	var hr gwapiv1.HTTPRoute
	if err := yaml.UnmarshalStrict(b, &hr); err != nil {
		return fmt.Errorf("the Gateway API types refuse it: %w", err)
	}
	if len(hr.Spec.Rules) > 16 || len(hr.Spec.ParentRefs) == 0 {
		return fmt.Errorf("%d rules, %d parents", len(hr.Spec.Rules), len(hr.Spec.ParentRefs))
	}
	for _, rule := range hr.Spec.Rules {
		if rule.Name == nil || !gwroute.IsSluiceRule(string(*rule.Name)) || len(validation.IsDNS1123Subdomain(string(*rule.Name))) > 0 {
			return fmt.Errorf("rule name %v", rule.Name)
		}
		if len(rule.Matches) == 0 || len(rule.Matches) > 64 {
			return fmt.Errorf("rule %s: %d matches", *rule.Name, len(rule.Matches))
		}
		for _, m := range rule.Matches {
			if len(m.Headers) > 16 || m.Path == nil {
				return fmt.Errorf("rule %s: a match with %d headers, path %v", *rule.Name, len(m.Headers), m.Path)
			}
			for _, h := range m.Headers {
				if *h.Type == gwapiv1.HeaderMatchRegularExpression && (!strings.HasPrefix(h.Value, "^") || !strings.HasSuffix(h.Value, "$")) {
					return fmt.Errorf("rule %s: regular expression %q is not anchored", *rule.Name, h.Value)
				}
			}
		}
		sum := int32(0)
		for _, be := range rule.BackendRefs {
			if len(validation.IsDNS1035Label(string(be.Name))) > 0 {
				return fmt.Errorf("backend %q", be.Name)
			}
			sum += *be.Weight
		}
		if sum != 100 {
			return fmt.Errorf("rule %s: weights add up to %d", *rule.Name, sum)
		}
	}
	return nil
}

// BenchmarkRenderGatewayAPI renders one step of the catalog release with
// Istio and with Gateway API routing (a warm Renderer: one kustomize
// build), and the routing objects alone.
func BenchmarkRenderGatewayAPI(b *testing.B) {
	istio, root := loadCatalog(b)
	gw := *istio
	gw.Spec.Routing = specs.RoutingGatewayAPI
	step := mustStep(b, istio, "dark-launch")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		rel  *specs.Release
	}{{"istio", istio}, {"gatewayAPI", &gw}} {
		rd := New()
		b.Run("step/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rd.Render(ctx, root.FS(), tc.rel, step); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("routes/istio", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := istioObjects(istio, step, step.Versions); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("routes/gatewayAPI", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, rt := range gw.Spec.Routes {
				if _, err := httpRouteObject(&gw, step, rt, Owner(&gw)); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
