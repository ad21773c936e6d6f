package meshsim

import (
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const testNS = "istioinaction"

func service() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "catalog", Namespace: testNS},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "catalog"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
}

func deployment(version string, available int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "catalog-" + version, Namespace: testNS},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "catalog", "version": version}},
		}},
		Status: appsv1.DeploymentStatus{AvailableReplicas: available},
	}
}

func destinationRule(subsets ...string) *istionet.DestinationRule {
	dr := &istionet.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "catalog", Namespace: testNS}}
	dr.Spec.Host = "catalog"
	for _, s := range subsets {
		dr.Spec.Subsets = append(dr.Spec.Subsets, &networking.Subset{Name: s, Labels: map[string]string{"version": s}})
	}
	return dr
}

func to(subset string, weight int32) *networking.HTTPRouteDestination {
	return &networking.HTTPRouteDestination{Destination: &networking.Destination{Host: "catalog", Subset: subset}, Weight: weight}
}

func virtualService(routes ...*networking.HTTPRoute) *istionet.VirtualService {
	vs := &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "catalog-mesh", Namespace: testNS, ResourceVersion: "1"}}
	vs.Spec.Hosts = []string{"catalog"}
	vs.Spec.Gateways = []string{"mesh"}
	vs.Spec.Http = routes
	return vs
}

func headerRoute(name string, m *networking.StringMatch, dests ...*networking.HTTPRouteDestination) *networking.HTTPRoute {
	return &networking.HTTPRoute{
		Name:  name,
		Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"x-istio-cohort": m}}},
		Route: dests,
	}
}

func exact(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
}

func prefix(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: s}}
}

func regex(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: s}}
}

var testSource = Source{Workload: "webapp", Namespace: testNS, Labels: map[string]string{"app": "webapp"}, Gateway: "mesh"}

// simulate runs n requests, every cohortEvery-th with the cohort header
// (0: none), and returns the destination requests by workload and code and
// the outcomes.
func simulate(t *testing.T, objs objects, behaviors map[string]Behavior, n, cohortEvery int) (byWorkload map[string]float64, byCode map[string]float64, outcomes map[string]int) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	tbl := compile(testNS, "catalog", testSource, objs)
	g := newGenerator(testSource, Behavior{Latency: 20 * time.Millisecond}, behaviors, 0, 1, m)
	plain := &Request{Method: "GET", Scheme: "http", Path: "/items", Authority: "catalog", Port: 80, Headers: map[string]string{}}
	cohort := &Request{Method: "GET", Scheme: "http", Path: "/items", Authority: "catalog", Port: 80, Headers: map[string]string{"x-istio-cohort": "internal"}}
	outcomes = map[string]int{}
	for i := 1; i <= n; i++ {
		req := plain
		if cohortEvery > 0 && i%cohortEvery == 0 {
			req = cohort
		}
		outcomes[g.serve(tbl, req)]++
	}
	byWorkload, err = CountRequests(reg, "destination_workload")
	if err != nil {
		t.Fatal(err)
	}
	byCode, err = CountRequests(reg, "response_code")
	if err != nil {
		t.Fatal(err)
	}
	return byWorkload, byCode, outcomes
}

func TestRouting(t *testing.T) {
	base := func(vs *istionet.VirtualService, deps ...*appsv1.Deployment) objects {
		if deps == nil {
			deps = []*appsv1.Deployment{deployment("v1", 1), deployment("v2", 1)}
		}
		o := objects{service: service(), destinationRules: []*istionet.DestinationRule{destinationRule("v1", "v2")}, deployments: deps}
		if vs != nil {
			o.virtualService = vs
		}
		return o
	}
	darkLaunch := headerRoute("dark-launch", exact("internal"), to("v2", 100))
	stable := &networking.HTTPRoute{Name: "stable", Route: []*networking.HTTPRouteDestination{to("v1", 100)}}
	canary := func(w1, w2 int32) *networking.HTTPRoute {
		return &networking.HTTPRoute{Name: "canary", Route: []*networking.HTTPRouteDestination{to("v1", w1), to("v2", w2)}}
	}

	tests := []struct {
		name        string
		objs        objects
		n, cohort   int
		want        map[string]float64 // requests by destination workload
		wantOutcome map[string]int
	}{
		{
			name: "weights 70/30 split exactly",
			objs: base(virtualService(canary(70, 30))),
			n:    1000,
			want: map[string]float64{"catalog-v1": 700, "catalog-v2": 300},
		},
		{
			name: "dark launch header goes to v2, the rest to v1",
			objs: base(virtualService(darkLaunch, stable)),
			n:    1000, cohort: 10,
			want: map[string]float64{"catalog-v1": 900, "catalog-v2": 100},
		},
		{
			name: "dark launch beside a 70/30 canary",
			objs: base(virtualService(darkLaunch, canary(70, 30))),
			n:    1000, cohort: 10,
			want: map[string]float64{"catalog-v1": 630, "catalog-v2": 370},
		},
		{
			name: "prefix header match",
			objs: base(virtualService(headerRoute("p", prefix("int"), to("v2", 100)), stable)),
			n:    100, cohort: 4,
			want: map[string]float64{"catalog-v1": 75, "catalog-v2": 25},
		},
		{
			name: "regex header match is anchored",
			objs: base(virtualService(headerRoute("r", regex("intern"), to("v2", 100)), stable)),
			n:    100, cohort: 4,
			want: map[string]float64{"catalog-v1": 100},
		},
		{
			name: "regex header match",
			objs: base(virtualService(headerRoute("r", regex("int.*al"), to("v2", 100)), stable)),
			n:    100, cohort: 4,
			want: map[string]float64{"catalog-v1": 75, "catalog-v2": 25},
		},
		{
			name: "source labels of the client match",
			objs: base(virtualService(&networking.HTTPRoute{
				Match: []*networking.HTTPMatchRequest{{SourceLabels: map[string]string{"app": "webapp"}}},
				Route: []*networking.HTTPRouteDestination{to("v2", 100)},
			}, stable)),
			n:    100,
			want: map[string]float64{"catalog-v2": 100},
		},
		{
			name: "source labels of another client do not",
			objs: base(virtualService(&networking.HTTPRoute{
				Match: []*networking.HTTPMatchRequest{{SourceLabels: map[string]string{"app": "other"}}},
				Route: []*networking.HTTPRouteDestination{to("v2", 100)},
			}, stable)),
			n:    100,
			want: map[string]float64{"catalog-v1": 100},
		},
		{
			name: "matches of one route are ORed, conditions of one match ANDed",
			objs: base(virtualService(&networking.HTTPRoute{
				Match: []*networking.HTTPMatchRequest{
					{Headers: map[string]*networking.StringMatch{"x-istio-cohort": exact("internal")}, SourceLabels: map[string]string{"app": "other"}},
					{Uri: prefix("/items")},
				},
				Route: []*networking.HTTPRouteDestination{to("v2", 100)},
			}, stable)),
			n:    100,
			want: map[string]float64{"catalog-v2": 100},
		},
		{
			name: "withoutHeaders excludes the cohort",
			objs: base(virtualService(&networking.HTTPRoute{
				Match: []*networking.HTTPMatchRequest{{WithoutHeaders: map[string]*networking.StringMatch{"x-istio-cohort": exact("internal")}}},
				Route: []*networking.HTTPRouteDestination{to("v2", 100)},
			}, stable)),
			n: 100, cohort: 5,
			want: map[string]float64{"catalog-v1": 20, "catalog-v2": 80},
		},
		{
			name: "no route matches: 404 counted nowhere",
			objs: base(virtualService(darkLaunch)),
			n:    100, cohort: 10,
			want:        map[string]float64{"catalog-v2": 10},
			wantOutcome: map[string]int{OutcomeServed: 10, OutcomeNoRoute: 90},
		},
		{
			name:        "subset without available replicas: 503 counted nowhere",
			objs:        base(virtualService(canary(70, 30)), deployment("v1", 1), deployment("v2", 0)),
			n:           100,
			want:        map[string]float64{"catalog-v1": 70},
			wantOutcome: map[string]int{OutcomeServed: 70, OutcomeNoEndpoint: 30},
		},
		{
			name:        "subset missing from the DestinationRule",
			objs:        base(virtualService(&networking.HTTPRoute{Route: []*networking.HTTPRouteDestination{to("v3", 100)}})),
			n:           10,
			want:        map[string]float64{},
			wantOutcome: map[string]int{OutcomeNoSubset: 10},
		},
		{
			name: "another host is outside the simulation",
			objs: base(virtualService(&networking.HTTPRoute{Route: []*networking.HTTPRouteDestination{
				{Destination: &networking.Destination{Host: "reviews"}},
			}})),
			n:           10,
			want:        map[string]float64{},
			wantOutcome: map[string]int{OutcomeExternal: 10},
		},
		{
			name: "fully qualified host is the service",
			objs: base(virtualService(&networking.HTTPRoute{Route: []*networking.HTTPRouteDestination{
				{Destination: &networking.Destination{Host: "catalog.istioinaction.svc.cluster.local", Subset: "v2"}},
			}})),
			n:    10,
			want: map[string]float64{"catalog-v2": 10},
		},
		{
			name: "mirror 20% to v2 on top of 100% v1",
			objs: base(virtualService(&networking.HTTPRoute{
				Route:            []*networking.HTTPRouteDestination{to("v1", 100)},
				Mirror:           &networking.Destination{Host: "catalog", Subset: "v2"},
				MirrorPercentage: &networking.Percent{Value: 20},
			})),
			n:           1000,
			want:        map[string]float64{"catalog-v1": 1000, "catalog-v2": 200},
			wantOutcome: map[string]int{OutcomeServed: 1000},
		},
		{
			name: "legacy mirrorPercent and mirrors list",
			objs: base(virtualService(&networking.HTTPRoute{
				Route:         []*networking.HTTPRouteDestination{to("v1", 100)},
				Mirror:        &networking.Destination{Host: "catalog", Subset: "v2"},
				MirrorPercent: wrapperspb.UInt32(50), //nolint:staticcheck // the legacy field, on purpose
				Mirrors: []*networking.HTTPMirrorPolicy{
					{Destination: &networking.Destination{Host: "catalog", Subset: "v2"}, Percentage: &networking.Percent{Value: 10}},
				},
			})),
			n:    100,
			want: map[string]float64{"catalog-v1": 100, "catalog-v2": 60},
		},
		{
			name: "abort fault stops requests at the client",
			objs: base(virtualService(&networking.HTTPRoute{
				Route: []*networking.HTTPRouteDestination{to("v1", 100)},
				Fault: &networking.HTTPFaultInjection{Abort: &networking.HTTPFaultInjection_Abort{
					ErrorType:  &networking.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: 503},
					Percentage: &networking.Percent{Value: 25},
				}},
			})),
			n:           100,
			want:        map[string]float64{"catalog-v1": 75},
			wantOutcome: map[string]int{OutcomeServed: 75, OutcomeAborted: 25},
		},
		{
			name: "no VirtualService: the Service spreads by available replicas",
			objs: base(nil, deployment("v1", 2), deployment("v2", 1)),
			n:    300,
			want: map[string]float64{"catalog-v1": 200, "catalog-v2": 100},
		},
		{
			name: "VirtualService of another gateway does not apply to the mesh",
			objs: func() objects {
				vs := virtualService(canary(0, 100))
				vs.Spec.Gateways = []string{"catalog-gateway"}
				return base(vs, deployment("v1", 1), deployment("v2", 1))
			}(),
			n:    100,
			want: map[string]float64{"catalog-v1": 50, "catalog-v2": 50},
		},
		{
			name: "a subset over two Deployments spreads by replicas",
			objs: func() objects {
				o := base(virtualService(&networking.HTTPRoute{Route: []*networking.HTTPRouteDestination{to("v1", 100)}}))
				extra := deployment("v1", 3)
				extra.Name = "catalog-v1-extra"
				o.deployments = append(o.deployments, extra)
				return o
			}(),
			n:    400,
			want: map[string]float64{"catalog-v1": 100, "catalog-v1-extra": 300},
		},
		{
			name: "no Service: nothing is served",
			objs: objects{deployments: []*appsv1.Deployment{deployment("v1", 1)}},
			n:    10, want: map[string]float64{},
			wantOutcome: map[string]int{OutcomeNoEndpoint: 10},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, outcomes := simulate(t, tt.objs, nil, tt.n, tt.cohort)
			if !maps.Equal(got, tt.want) {
				t.Errorf("requests by workload = %v, want %v (routing: %s)", got, tt.want, compile(testNS, "catalog", testSource, tt.objs).summary())
			}
			if tt.wantOutcome != nil && !maps.Equal(outcomes, tt.wantOutcome) {
				t.Errorf("outcomes = %v, want %v", outcomes, tt.wantOutcome)
			}
		})
	}
}

func TestErrorRateIsExact(t *testing.T) {
	objs := objects{
		service:          service(),
		destinationRules: []*istionet.DestinationRule{destinationRule("v1", "v2")},
		deployments:      []*appsv1.Deployment{deployment("v1", 1), deployment("v2", 1)},
		virtualService: virtualService(&networking.HTTPRoute{Route: []*networking.HTTPRouteDestination{
			to("v1", 50), to("v2", 50),
		}}),
	}
	_, byCode, _ := simulate(t, objs, map[string]Behavior{"v2": {ErrorRate: 0.1, Latency: time.Millisecond}}, 2000, 0)
	want := map[string]float64{"200": 1900, "500": 100}
	if !maps.Equal(byCode, want) {
		t.Errorf("requests by code = %v, want %v", byCode, want)
	}
}

func TestTakeSpreadsShares(t *testing.T) {
	for _, p := range []float64{0, 0.01, 0.1, 1.0 / 3, 0.5, 0.9, 1} {
		g := newGenerator(testSource, Behavior{}, nil, 0, 1, nil)
		taken := 0
		for n := 1; n <= 1000; n++ {
			if g.take("k", p) {
				taken++
			}
			// Within one request of the exact share at every point.
			if d := float64(taken) - p*float64(n); d > 1 || d < -1 {
				t.Fatalf("p=%g after %d requests: took %d, want %g±1", p, n, taken, p*float64(n))
			}
		}
	}
}

func TestPickInterleaves(t *testing.T) {
	g := newGenerator(testSource, Behavior{}, nil, 0, 1, nil)
	weights := []int{70, 30, 0}
	counts := make([]int, 3)
	for n := 1; n <= 1000; n++ {
		counts[g.pick("k", weights)]++
		if d := float64(counts[1]) - 0.3*float64(n); d > 1 || d < -1 {
			t.Fatalf("after %d picks: %v, want v2 at 30%%±1", n, counts)
		}
	}
	if counts[2] != 0 {
		t.Errorf("zero weight picked %d times", counts[2])
	}
	if got := g.pick("none", []int{0, 0}); got != -1 {
		t.Errorf("pick with all weights zero = %d, want -1", got)
	}
}

func TestInvalidRegexNeverMatches(t *testing.T) {
	objs := objects{
		service:          service(),
		destinationRules: []*istionet.DestinationRule{destinationRule("v1", "v2")},
		deployments:      []*appsv1.Deployment{deployment("v1", 1), deployment("v2", 1)},
		virtualService: virtualService(headerRoute("bad", regex("(unclosed"), to("v2", 100)),
			&networking.HTTPRoute{Route: []*networking.HTTPRouteDestination{to("v1", 100)}}),
	}
	tbl := compile(testNS, "catalog", testSource, objs)
	if len(tbl.warnings) != 1 {
		t.Errorf("warnings = %q, want one about the regex", tbl.warnings)
	}
	got, _, _ := simulate(t, objs, nil, 10, 1)
	if want := map[string]float64{"catalog-v1": 10}; !maps.Equal(got, want) {
		t.Errorf("requests by workload = %v, want %v", got, want)
	}
}

func TestFQDN(t *testing.T) {
	for _, tt := range []struct{ host, want string }{
		{"catalog", "catalog.istioinaction.svc.cluster.local"},
		{"catalog.other", "catalog.other.svc.cluster.local"},
		{"catalog.other.svc", "catalog.other.svc.cluster.local"},
		{"catalog.istioinaction.svc.cluster.local", "catalog.istioinaction.svc.cluster.local"},
		{"catalog.istioinaction.io", "catalog.istioinaction.io"},
	} {
		if got := fqdn(tt.host, testNS); got != tt.want {
			t.Errorf("fqdn(%q) = %q, want %q", tt.host, got, tt.want)
		}
	}
}

// flaggerObjects are the objects Flagger's Istio router and Kubernetes
// router make for a Canary named catalog: the apex Service and the
// primary one select the primary Deployment, the canary Service the
// target Deployment, and the VirtualService routes to the primary and
// canary Services by host, with no subsets.
func flaggerObjects(primaryWeight, canaryWeight int32) objects {
	svc := func(name, app string) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": app},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
			},
		}
	}
	dep := func(name, app, version string) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app, "version": version}},
			}},
			Status: appsv1.DeploymentStatus{AvailableReplicas: 1},
		}
	}
	dr := func(host string) *istionet.DestinationRule {
		d := &istionet.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: host, Namespace: testNS}}
		d.Spec.Host = host
		return d
	}
	apex := svc("catalog", "catalog-primary")
	vs := virtualService(&networking.HTTPRoute{Route: []*networking.HTTPRouteDestination{
		{Destination: &networking.Destination{Host: "catalog-primary"}, Weight: primaryWeight},
		{Destination: &networking.Destination{Host: "catalog-canary"}, Weight: canaryWeight},
	}})
	vs.Name = "catalog"
	return objects{
		service:          apex,
		virtualService:   vs,
		destinationRules: []*istionet.DestinationRule{dr("catalog-canary"), dr("catalog-primary")},
		deployments:      []*appsv1.Deployment{dep("catalog", "catalog", "v2"), dep("catalog-primary", "catalog-primary", "v1")},
		services: map[string]*corev1.Service{
			"catalog":         apex,
			"catalog-primary": svc("catalog-primary", "catalog-primary"),
			"catalog-canary":  svc("catalog-canary", "catalog"),
		},
	}
}

func TestRoutingByServiceHost(t *testing.T) {
	t.Run("weights between two Services of the namespace", func(t *testing.T) {
		objs := flaggerObjects(90, 10)
		reg := prometheus.NewRegistry()
		m, err := newMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		tbl := compile(testNS, "catalog", testSource, objs)
		g := newGenerator(testSource, Behavior{Latency: 20 * time.Millisecond}, map[string]Behavior{"v2": {ErrorRate: 0.1, Latency: time.Millisecond}}, 0, 1, m)
		req := &Request{Method: "GET", Scheme: "http", Path: "/", Authority: "catalog", Port: 80, Headers: map[string]string{}}
		for range 1000 {
			if o := g.serve(tbl, req); o != OutcomeServed {
				t.Fatalf("outcome %s, want %s (routing: %s)", o, OutcomeServed, tbl.summary())
			}
		}
		for label, want := range map[string]map[string]float64{
			// Flagger's queries select the target by workload.
			"destination_workload": {"catalog-primary": 900, "catalog": 100},
			// Istio reports each request for the Service it was sent to.
			"destination_service_name": {"catalog-primary": 900, "catalog-canary": 100},
			"destination_service":      {"catalog-primary.istioinaction.svc.cluster.local": 900, "catalog-canary.istioinaction.svc.cluster.local": 100},
			"response_code":            {"200": 990, "500": 10},
		} {
			got, err := CountRequests(reg, label)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, want) {
				t.Errorf("requests by %s = %v, want %v (routing: %s)", label, got, want, tbl.summary())
			}
		}
	})
	t.Run("weight 0 to the canary sends it nothing", func(t *testing.T) {
		got, _, outcomes := simulate(t, flaggerObjects(100, 0), nil, 50, 0)
		if want := map[string]float64{"catalog-primary": 50}; !maps.Equal(got, want) {
			t.Errorf("requests by workload = %v, want %v", got, want)
		}
		if want := map[string]int{OutcomeServed: 50}; !maps.Equal(outcomes, want) {
			t.Errorf("outcomes = %v, want %v", outcomes, want)
		}
	})
	t.Run("a Service without available pods", func(t *testing.T) {
		objs := flaggerObjects(50, 50)
		objs.deployments[0].Status.AvailableReplicas = 0 // the canary, scaled to zero
		got, _, outcomes := simulate(t, objs, nil, 10, 0)
		if want := map[string]float64{"catalog-primary": 5}; !maps.Equal(got, want) {
			t.Errorf("requests by workload = %v, want %v", got, want)
		}
		if want := map[string]int{OutcomeServed: 5, OutcomeNoEndpoint: 5}; !maps.Equal(outcomes, want) {
			t.Errorf("outcomes = %v, want %v", outcomes, want)
		}
	})
	t.Run("a subset of another Service's DestinationRule", func(t *testing.T) {
		objs := flaggerObjects(0, 0)
		objs.destinationRules[0].Spec.Subsets = []*networking.Subset{{Name: "v2", Labels: map[string]string{"version": "v2"}}}
		objs.virtualService.Spec.Http[0].Route = []*networking.HTTPRouteDestination{
			{Destination: &networking.Destination{Host: "catalog-canary.istioinaction.svc.cluster.local", Subset: "v2"}},
		}
		got, _, _ := simulate(t, objs, nil, 10, 0)
		if want := map[string]float64{"catalog": 10}; !maps.Equal(got, want) {
			t.Errorf("requests by workload = %v, want %v", got, want)
		}
		objs.virtualService.Spec.Http[0].Route[0].Destination.Subset = "v1"
		if _, _, outcomes := simulate(t, objs, nil, 10, 0); !maps.Equal(outcomes, map[string]int{OutcomeNoSubset: 10}) {
			t.Errorf("outcomes for a subset the DestinationRule lacks = %v, want all %s", outcomes, OutcomeNoSubset)
		}
	})
	t.Run("a Service of another namespace is outside the simulation", func(t *testing.T) {
		objs := flaggerObjects(0, 0)
		objs.virtualService.Spec.Http[0].Route = []*networking.HTTPRouteDestination{
			{Destination: &networking.Destination{Host: "catalog-primary.other.svc.cluster.local"}},
		}
		if _, _, outcomes := simulate(t, objs, nil, 10, 0); !maps.Equal(outcomes, map[string]int{OutcomeExternal: 10}) {
			t.Errorf("outcomes = %v, want all %s", outcomes, OutcomeExternal)
		}
	})
}
