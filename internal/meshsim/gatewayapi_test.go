package meshsim

import (
	"context"
	"maps"
	"os"
	"testing"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"sluice.dev/sluice/renderer"
	"sluice.dev/sluice/specs"
)

// renderedObjects renders one step of a release and reads it as the
// simulator would from the API server, every Deployment available.
func renderedObjects(t *testing.T, repo string, rel *specs.Release, step specs.Step) objects {
	t.Helper()
	root, err := os.OpenRoot(repo)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	out, err := renderer.Render(context.Background(), root.FS(), rel, step)
	if err != nil {
		t.Fatal(err)
	}
	objs := objects{services: map[string]*corev1.Service{}, gateways: map[string]*gwapiv1.Gateway{}}
	conv := func(u *unstructured.Unstructured, into any) {
		t.Helper()
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
			t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	for _, u := range out.Objects {
		switch u.GetKind() {
		case "Service":
			var svc corev1.Service
			conv(u, &svc)
			objs.services[svc.Name] = &svc
			if svc.Name == rel.ServiceName() {
				objs.service = &svc
			}
		case "Deployment":
			var d appsv1.Deployment
			conv(u, &d)
			d.Status.AvailableReplicas = 1
			objs.deployments = append(objs.deployments, &d)
		case "HTTPRoute":
			var hr gwapiv1.HTTPRoute
			conv(u, &hr)
			objs.httpRoutes = append(objs.httpRoutes, &hr)
		case "VirtualService":
			var vs istionet.VirtualService
			conv(u, &vs)
			if vs.Name == rel.Metadata.Name+"-mesh" {
				objs.virtualService = &vs
			}
		case "DestinationRule":
			var dr istionet.DestinationRule
			conv(u, &dr)
			objs.destinationRules = append(objs.destinationRules, &dr)
		}
	}
	return objs
}

func loadExample(t *testing.T, repo string) *specs.Release {
	t.Helper()
	rels, err := specs.LoadFile(repo + "/releases/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rel := rels[0]
	// A mirror stage and a regex match too, so every kind of step is compared.
	rel.Spec.Stages = append(rel.Spec.Stages[:2:2], append([]specs.Stage{
		{Name: "shadow", Mirror: &specs.MirrorStage{Percent: 25}},
		{Name: "regex", DarkLaunch: &specs.DarkLaunchStage{Match: []specs.Match{{Headers: map[string]specs.StringMatch{"x-istio-cohort": {Regex: "intern(al)?"}}}}}},
		{Name: "prefix", DarkLaunch: &specs.DarkLaunchStage{Match: []specs.Match{{Headers: map[string]specs.StringMatch{"x-istio-cohort": {Prefix: "inter"}}}}}},
	}, rel.Spec.Stages[2:]...)...)
	return rel
}

// TestGatewayAPIRoutesAsIstio: for every step of the catalog release,
// the HTTPRoutes and per-version Services Gateway API routing renders
// send the simulated requests (every 4th from the dark-launch cohort)
// exactly where the VirtualService and DestinationRule of Istio routing
// do, and mirror the same share.
func TestGatewayAPIRoutesAsIstio(t *testing.T) {
	istio := loadExample(t, "../../examples/catalog")
	gw := loadExample(t, "../../examples/catalog-gateway-api")
	steps, err := specs.Plan(istio)
	if err != nil {
		t.Fatal(err)
	}
	gwSteps, err := specs.Plan(gw)
	if err != nil {
		t.Fatal(err)
	}
	steps = append(steps, specs.SteadyStep(istio), specs.RollbackStep(istio))
	gwSteps = append(gwSteps, specs.SteadyStep(gw), specs.RollbackStep(gw))
	for i, step := range steps {
		t.Run(step.Name, func(t *testing.T) {
			io := renderedObjects(t, "../../examples/catalog", istio, step)
			gwo := renderedObjects(t, "../../examples/catalog-gateway-api", gw, gwSteps[i])
			if len(gwo.httpRoutes) == 0 || gwo.virtualService != nil || io.virtualService == nil {
				t.Fatalf("render: %d HTTPRoutes, VirtualService %v; want routes of one kind each", len(gwo.httpRoutes), gwo.virtualService != nil)
			}
			want, _, wantOut := simulate(t, io, nil, 400, 4)
			got, _, gotOut := simulate(t, gwo, nil, 400, 4)
			if !maps.Equal(got, want) || !maps.Equal(gotOut, wantOut) {
				t.Errorf("Gateway API: %v %v; Istio: %v %v\nrouting: %s", got, gotOut, want, wantOut, compile(testNS, "catalog", testSource, gwo).summary())
			}
		})
	}
}

func httpRoute(name string, parent string, rules ...gwapiv1.HTTPRouteRule) *gwapiv1.HTTPRoute {
	hr := &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, ResourceVersion: "1", Generation: 1}}
	g, k := gwapiv1.Group(""), gwapiv1.Kind("Service")
	hr.Spec.ParentRefs = []gwapiv1.ParentReference{{Group: &g, Kind: &k, Name: gwapiv1.ObjectName(parent)}}
	hr.Spec.Rules = rules
	return hr
}

func backend(name string, weight int32) gwapiv1.HTTPBackendRef {
	port := int32(80)
	return gwapiv1.HTTPBackendRef{BackendRef: gwapiv1.BackendRef{BackendObjectReference: gwapiv1.BackendObjectReference{Name: gwapiv1.ObjectName(name), Port: &port}, Weight: &weight}}
}

func headerMatch(typ gwapiv1.HeaderMatchType, value string) []gwapiv1.HTTPRouteMatch {
	return []gwapiv1.HTTPRouteMatch{{Headers: []gwapiv1.HTTPHeaderMatch{{Type: &typ, Name: "X-Istio-Cohort", Value: value}}}}
}

func pathPrefix(p string) []gwapiv1.HTTPRouteMatch {
	typ := gwapiv1.PathMatchPathPrefix
	return []gwapiv1.HTTPRouteMatch{{Path: &gwapiv1.HTTPPathMatch{Type: &typ, Value: &p}}}
}

func versionService(version string) *corev1.Service {
	svc := service()
	svc.Name = "catalog-" + version
	svc.Spec.Selector = map[string]string{"app": "catalog", "version": version}
	return svc
}

// TestGatewayAPIRouting: HTTPRoute semantics that differ from a
// VirtualService's and that implementations get wrong.
func TestGatewayAPIRouting(t *testing.T) {
	objs := func(routes ...*gwapiv1.HTTPRoute) objects {
		o := objects{service: service(), deployments: []*appsv1.Deployment{deployment("v1", 1), deployment("v2", 1)}, httpRoutes: routes,
			services: map[string]*corev1.Service{"catalog": service(), "catalog-v1": versionService("v1"), "catalog-v2": versionService("v2")}}
		return o
	}
	stable := gwapiv1.HTTPRouteRule{BackendRefs: []gwapiv1.HTTPBackendRef{backend("catalog-v1", 1)}}
	tests := []struct {
		name        string
		objs        objects
		want        map[string]float64
		wantOutcome map[string]int
	}{
		{
			name: "weights split across per-version Services",
			objs: objs(httpRoute("r", "catalog", gwapiv1.HTTPRouteRule{BackendRefs: []gwapiv1.HTTPBackendRef{backend("catalog-v1", 3), backend("catalog-v2", 1)}})),
			want: map[string]float64{"catalog-v1": 75, "catalog-v2": 25},
		},
		{
			name: "a header match wins over the catch-all rule listed before it (rules order by specificity)",
			objs: objs(httpRoute("r", "catalog", stable, gwapiv1.HTTPRouteRule{Matches: headerMatch(gwapiv1.HeaderMatchExact, "internal"), BackendRefs: []gwapiv1.HTTPBackendRef{backend("catalog-v2", 1)}})),
			want: map[string]float64{"catalog-v1": 75, "catalog-v2": 25},
		},
		{
			name: "a regular expression matches the whole value",
			objs: objs(httpRoute("r", "catalog", stable, gwapiv1.HTTPRouteRule{Matches: headerMatch(gwapiv1.HeaderMatchRegularExpression, "intern"), BackendRefs: []gwapiv1.HTTPBackendRef{backend("catalog-v2", 1)}})),
			want: map[string]float64{"catalog-v1": 100},
		},
		{
			name: "a longer path prefix of another route wins; prefixes match whole segments",
			objs: objs(
				httpRoute("a", "catalog", stable),
				httpRoute("b", "catalog", gwapiv1.HTTPRouteRule{Matches: pathPrefix("/items/"), BackendRefs: []gwapiv1.HTTPBackendRef{backend("catalog-v2", 1)}}),
				httpRoute("c", "catalog", gwapiv1.HTTPRouteRule{Matches: pathPrefix("/item"), BackendRefs: []gwapiv1.HTTPBackendRef{backend("catalog-v2", 1)}}),
			),
			want: map[string]float64{"catalog-v2": 100},
		},
		{
			name: "a route attached to another Service is not followed",
			objs: objs(httpRoute("r", "other", gwapiv1.HTTPRouteRule{BackendRefs: []gwapiv1.HTTPBackendRef{backend("catalog-v2", 1)}})),
			want: map[string]float64{"catalog-v1": 50, "catalog-v2": 50},
		},
		{
			name:        "a backend that does not exist answers 500 for its share",
			objs:        objs(httpRoute("r", "catalog", gwapiv1.HTTPRouteRule{BackendRefs: []gwapiv1.HTTPBackendRef{backend("catalog-v1", 1), backend("catalog-v3", 1)}})),
			want:        map[string]float64{"catalog-v1": 50},
			wantOutcome: map[string]int{OutcomeServed: 50, OutcomeInvalidBackend: 50},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, outcomes := simulate(t, tt.objs, nil, 100, 4)
			if !maps.Equal(got, tt.want) {
				t.Errorf("requests by workload = %v, want %v (routing: %s)", got, tt.want, compile(testNS, "catalog", testSource, tt.objs).summary())
			}
			if tt.wantOutcome != nil && !maps.Equal(outcomes, tt.wantOutcome) {
				t.Errorf("outcomes = %v, want %v", outcomes, tt.wantOutcome)
			}
		})
	}
}

// TestRouteStatus: the status the simulator reports as Istio would.
func TestRouteStatus(t *testing.T) {
	svcs := map[string]*corev1.Service{"catalog": service(), "catalog-v1": versionService("v1")}
	gwName := "gw"
	host := gwapiv1.Hostname("*.example.com")
	gws := map[string]*gwapiv1.Gateway{testNS + "/" + gwName: {
		ObjectMeta: metav1.ObjectMeta{Name: gwName, Namespace: testNS},
		Spec:       gwapiv1.GatewaySpec{GatewayClassName: IstioGatewayClass, Listeners: []gwapiv1.Listener{{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType, Hostname: &host}}},
	}}
	gwRoute := func(hostname string, backends ...gwapiv1.HTTPBackendRef) *gwapiv1.HTTPRoute {
		hr := &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "ingress", Namespace: testNS, Generation: 4}}
		hr.Spec.ParentRefs = []gwapiv1.ParentReference{{Name: gwapiv1.ObjectName(gwName)}, {Name: "not-istio"}}
		hr.Spec.Hostnames = []gwapiv1.Hostname{gwapiv1.Hostname(hostname)}
		hr.Spec.Rules = []gwapiv1.HTTPRouteRule{{BackendRefs: backends}}
		return hr
	}
	tests := []struct {
		name  string
		route *gwapiv1.HTTPRoute
		want  string
	}{
		{"mesh route", httpRoute("r", "catalog", gwapiv1.HTTPRouteRule{BackendRefs: []gwapiv1.HTTPBackendRef{backend("catalog-v1", 1)}}), "catalog: Accepted=True ResolvedRefs=True"},
		{"missing backend", httpRoute("r", "catalog", gwapiv1.HTTPRouteRule{BackendRefs: []gwapiv1.HTTPBackendRef{backend("catalog-v2", 1)}}), "catalog: Accepted=True ResolvedRefs=False (backend(s) not found: catalog-v2)"},
		{"gateway route", gwRoute("shop.example.com", backend("catalog-v1", 1)), "gw: Accepted=True ResolvedRefs=True"},
		{"no listener for the hostname", gwRoute("shop.example.org", backend("catalog-v1", 1)), "gw: Accepted=False (no listener of Gateway gw matches the route's hostnames) ResolvedRefs=True"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := routeStatus(tt.route, "catalog", svcs, gws)
			if got := describeParents(st); got != tt.want {
				t.Errorf("status %q, want %q", got, tt.want)
			}
			for _, p := range st {
				for _, c := range p.Conditions {
					if c.ObservedGeneration != tt.route.Generation {
						t.Errorf("%s observedGeneration %d, want %d", c.Type, c.ObservedGeneration, tt.route.Generation)
					}
				}
			}
			// Writing the same status again changes nothing.
			merged, changed := mergeParentStatus(nil, st)
			if !changed {
				t.Error("first status: no change")
			}
			if _, changed := mergeParentStatus(merged, routeStatus(tt.route, "catalog", svcs, gws)); changed {
				t.Error("the same status again: changed")
			}
		})
	}
}
