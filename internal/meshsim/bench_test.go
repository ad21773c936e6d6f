package meshsim

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	networking "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
)

// BenchmarkServe measures one simulated request through the dark-launch and
// 70/30 routes, recorded in Istio's metrics: the cost behind Config.RPS.
func BenchmarkServe(b *testing.B) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		b.Fatal(err)
	}
	objs := objects{
		service:          service(),
		destinationRules: []*istionet.DestinationRule{destinationRule("v1", "v2")},
		deployments:      []*appsv1.Deployment{deployment("v1", 1), deployment("v2", 1)},
		virtualService: virtualService(
			headerRoute("dark-launch", exact("internal"), to("v2", 100)),
			&networking.HTTPRoute{Name: "canary", Route: []*networking.HTTPRouteDestination{to("v1", 70), to("v2", 30)}},
		),
	}
	tbl := compile(testNS, "catalog", testSource, objs)
	g := newGenerator(testSource, Behavior{Latency: 20 * time.Millisecond}, map[string]Behavior{"v2": {ErrorRate: 0.1, Latency: 300 * time.Millisecond}}, 0.1, 1, m)
	plain := &Request{Method: "GET", Scheme: "http", Path: "/", Authority: "catalog", Port: 80, Headers: map[string]string{}}
	cohort := &Request{Method: "GET", Scheme: "http", Path: "/", Authority: "catalog", Port: 80, Headers: map[string]string{"x-istio-cohort": "internal"}}
	b.ReportAllocs()
	for b.Loop() {
		req := plain
		if g.take(cohortKey, 0.1) {
			req = cohort
		}
		g.serve(tbl, req)
	}
}
