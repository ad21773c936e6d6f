package meshsim_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	networking "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/gates"
	"sluice.dev/sluice/internal/meshsim"
	"sluice.dev/sluice/internal/testenv"
	"sluice.dev/sluice/specs"
)

// testEnv is started by the first test that needs a cluster; the routing
// tests need none.
var testEnv = testenv.NewShared(testenv.Options{Prometheus: true})

func TestMain(m *testing.M) { os.Exit(testEnv.Main(m)) }

type clients struct {
	kube  kubernetes.Interface
	istio istioclient.Interface
}

func newClients(t *testing.T) clients {
	t.Helper()
	env := testEnv.Env(t)
	kube, err := kubernetes.NewForConfig(env.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	istio, err := istioclient.NewForConfig(env.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return clients{kube, istio}
}

func ptr[T any](v T) *T { return &v }

// uniqueNamespace names a fresh namespace, so tests can run again (-count)
// against the same cluster.
func uniqueNamespace(prefix string) string {
	return fmt.Sprintf("%s-%05d", prefix, rand.IntN(100000))
}

// deployCatalog creates the catalog app as Sluice renders it: Service,
// Deployments catalog-v1 and catalog-v2, DestinationRule with subsets v1 and
// v2, and waits until both Deployments are available.
func deployCatalog(ctx context.Context, t *testing.T, c clients, ns string) {
	t.Helper()
	env := testEnv.Env(t)
	if err := env.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "catalog", Namespace: ns, Labels: map[string]string{"app": "catalog"}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "catalog"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
	if _, err := c.kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1", "v2"} {
		labels := map[string]string{"app": "catalog", "version": v}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "catalog-" + v, Namespace: ns, Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr(int32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "catalog", Image: "istioinaction/catalog:latest"}}},
				},
			},
		}
		if _, err := c.kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dr := &istionet.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "catalog", Namespace: ns}}
	dr.Spec.Host = "catalog"
	dr.Spec.Subsets = []*networking.Subset{
		{Name: "v1", Labels: map[string]string{"version": "v1"}},
		{Name: "v2", Labels: map[string]string{"version": "v2"}},
	}
	if _, err := c.istio.NetworkingV1().DestinationRules(ns).Create(ctx, dr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, func() string {
		for _, v := range []string{"v1", "v2"} {
			d, err := c.kube.AppsV1().Deployments(ns).Get(ctx, "catalog-"+v, metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			if d.Status.AvailableReplicas < 1 {
				return fmt.Sprintf("deployment %s has %d available replicas", d.Name, d.Status.AvailableReplicas)
			}
		}
		return ""
	})
}

func weighted(w1, w2 int32) *networking.HTTPRoute {
	return &networking.HTTPRoute{Name: "canary", Route: []*networking.HTTPRouteDestination{
		{Destination: &networking.Destination{Host: "catalog", Subset: "v1"}, Weight: w1},
		{Destination: &networking.Destination{Host: "catalog", Subset: "v2"}, Weight: w2},
	}}
}

var darkLaunch = &networking.HTTPRoute{
	Name: "dark-launch",
	Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{
		"x-istio-cohort": {MatchType: &networking.StringMatch_Exact{Exact: "internal"}},
	}}},
	Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "catalog", Subset: "v2"}, Weight: 100}},
}

func setRoutes(ctx context.Context, t *testing.T, c clients, ns string, routes ...*networking.HTTPRoute) {
	t.Helper()
	vsc := c.istio.NetworkingV1().VirtualServices(ns)
	vs, err := vsc.Get(ctx, "catalog-mesh", metav1.GetOptions{})
	if err != nil {
		vs = &istionet.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "catalog-mesh", Namespace: ns}}
		vs.Spec.Hosts = []string{"catalog"}
		vs.Spec.Gateways = []string{"mesh"}
		vs.Spec.Http = routes
		if _, err := vsc.Create(ctx, vs, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	vs.Spec.Http = routes
	if _, err := vsc.Update(ctx, vs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func startSim(ctx context.Context, t *testing.T, cfg meshsim.Config) *meshsim.Simulator {
	t.Helper()
	env := testEnv.Env(t)
	cfg.RESTConfig = env.RESTConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	sim, err := meshsim.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Error(err)
		}
	})
	return sim
}

func counts(t *testing.T, sim *meshsim.Simulator) map[string]float64 {
	t.Helper()
	c, err := meshsim.CountRequests(sim.Gatherer(), "destination_workload")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// shareOK reports how far the v2 share of requests is from want.
func shareOK(c map[string]float64, min float64, want, tol float64) string {
	total := c["catalog-v1"] + c["catalog-v2"]
	if total < min {
		return fmt.Sprintf("%v requests so far, waiting for %g", c, min)
	}
	if got := c["catalog-v2"] / total; math.Abs(got-want) > tol {
		return fmt.Sprintf("v2 share %.4f of %v, want %.2f±%.3f", got, c, want, tol)
	}
	return ""
}

// TestSplitFollowsTheVirtualService: with a dark-launch route for 10% of
// requests and a 70/30 canary for the rest, v2 gets 10% + 90%*30% = 37% of
// the requests, both in the simulator's registry and in the real
// Prometheus; the gates read v2's 10% errors as a 90% success rate; and the
// split follows changes of the VirtualService and of availability.
func TestSplitFollowsTheVirtualService(t *testing.T) {
	env := testEnv.Env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newClients(t)
	ns := uniqueNamespace("split")
	deployCatalog(ctx, t, c, ns)
	setRoutes(ctx, t, c, ns, darkLaunch, weighted(70, 30))

	sim := startSim(ctx, t, meshsim.Config{
		Namespace: ns, Service: "catalog", RPS: 50, CohortShare: 0.1,
		Versions: map[string]meshsim.Behavior{
			"v1": {Latency: 30 * time.Millisecond},
			"v2": {ErrorRate: 0.1, Latency: 300 * time.Millisecond},
		},
		Jitter: 0.1, Seed: 7,
	})
	if r := sim.Routing(); !strings.Contains(r, "dark-launch") || !strings.Contains(r, "catalog-v2 x1") {
		t.Fatalf("routing = %s, want the dark launch and canary routes with both workloads", r)
	}
	if err := env.AddScrapeTarget(ctx, "meshsim-split", sim.Addr()); err != nil {
		t.Fatal(err)
	}

	// Straight from the simulator: shares are spread exactly, so even a few
	// hundred requests are within a request or two of 37%.
	waitFor(t, 30*time.Second, func() string { return shareOK(counts(t, sim), 300, 0.37, 0.01) })

	// Through Prometheus.
	prom := promClient(t)
	waitFor(t, 30*time.Second, func() string {
		c, msg := promCounts(ctx, prom, `sum by (destination_workload) (istio_requests_total{reporter="destination",destination_workload_namespace="`+ns+`"})`)
		if msg != "" {
			return msg
		}
		return shareOK(c, 300, 0.37, 0.01)
	})

	// The gates read v2's 10% errors as 90% success, v1's none as 100%,
	// and latencies by where their bucket puts them: v2's 300ms±10%, all
	// in the 200-500ms bucket, as 200 + 300*0.99 = 497ms.
	e, err := gates.New(gates.Options{Address: env.PrometheusURL()})
	if err != nil {
		t.Fatal(err)
	}
	metrics := []specs.Metric{
		{Name: specs.MetricRequestSuccessRate, ThresholdRange: specs.ThresholdRange{Min: ptr(99.0)}, Interval: specs.Duration{Duration: 30 * time.Second}},
		{Name: specs.MetricRequestDuration, ThresholdRange: specs.ThresholdRange{Max: ptr(500.0)}, Interval: specs.Duration{Duration: 30 * time.Second}},
	}
	for _, tt := range []struct {
		workload    string
		success     float64
		successPass bool
		p99         float64
	}{
		{"catalog-v2", 90, false, 497},
		{"catalog-v1", 100, true, 49.7}, // 30ms±10%: 20 + 30*0.99
	} {
		waitFor(t, 30*time.Second, func() string {
			res, err := e.Evaluate(ctx, gates.Target{Namespace: ns, Service: "catalog", Workload: tt.workload}, metrics)
			if err != nil {
				return err.Error()
			}
			if res[0].NoData || math.Abs(res[0].Value-tt.success) > 1 || res[0].Passed != tt.successPass {
				return fmt.Sprintf("%s: %s, want success rate %g", tt.workload, res[0], tt.success)
			}
			if res[1].NoData || math.Abs(res[1].Value-tt.p99) > 1 || !res[1].Passed {
				return fmt.Sprintf("%s: %s, want p99 %gms", tt.workload, res[1], tt.p99)
			}
			return ""
		})
	}

	// All traffic back to v1: v2's count stops growing.
	setRoutes(ctx, t, c, ns, weighted(100, 0))
	waitFor(t, 10*time.Second, func() string {
		if r := sim.Routing(); !strings.Contains(r, "catalog/v2 0%") || strings.Contains(r, "dark-launch") {
			return "routing not updated yet: " + r
		}
		return ""
	})
	noMoreV2(t, sim, "catalog-v2")

	// Back to 70/30, but v2 has no available replica: its 30% fail with a
	// 503 that no destination reports.
	setRoutes(ctx, t, c, ns, weighted(70, 30))
	d, err := c.kube.AppsV1().Deployments(ns).Get(ctx, "catalog-v2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Replicas = ptr(int32(0))
	if _, err := c.kube.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() string {
		if r := sim.Routing(); !strings.Contains(r, "catalog/v2 30% (no_endpoint)") {
			return "routing not updated yet: " + r
		}
		return ""
	})
	noMoreV2(t, sim, "catalog-v2")
}

// noMoreV2 checks that workload's count stays put while 100 more requests
// are served.
func noMoreV2(t *testing.T, sim *meshsim.Simulator, workload string) {
	t.Helper()
	before := counts(t, sim)
	waitFor(t, 30*time.Second, func() string {
		now := counts(t, sim)
		if now[workload] != before[workload] {
			before = now // routing may still have been switching
			return fmt.Sprintf("%s still gets requests: %v", workload, now)
		}
		if served := now["catalog-v1"] - before["catalog-v1"]; served < 100 {
			return fmt.Sprintf("v1 served %g since, waiting for 100", served)
		}
		return ""
	})
}

func promClient(t *testing.T) promv1.API {
	t.Helper()
	env := testEnv.Env(t)
	client, err := promapi.NewClient(promapi.Config{Address: env.PrometheusURL()})
	if err != nil {
		t.Fatal(err)
	}
	return promv1.NewAPI(client)
}

func promCounts(ctx context.Context, api promv1.API, query string) (map[string]float64, string) {
	val, _, _, err := api.Query(ctx, query, time.Now())
	if err != nil {
		return nil, err.Error()
	}
	vec, ok := val.(model.Vector)
	if !ok {
		return nil, fmt.Sprintf("query returned %s", val.Type())
	}
	out := map[string]float64{}
	for _, s := range vec {
		out[string(s.Metric["destination_workload"])] = float64(s.Value)
	}
	return out, ""
}

// TestVersionsEndpoint changes a version's behaviour over HTTP, as the demo
// does.
func TestVersionsEndpoint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := newClients(t)
	ns := uniqueNamespace("versions")
	deployCatalog(ctx, t, c, ns)
	setRoutes(ctx, t, c, ns, weighted(0, 100))
	sim := startSim(ctx, t, meshsim.Config{Namespace: ns, Service: "catalog", RPS: 200})
	base := "http://" + sim.Addr()

	post := func(query string) (int, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/versions/v2?"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := post("errorRate=0.25&latencyMs=300"); code != http.StatusOK || !strings.Contains(body, `"errorRate":0.25`) {
		t.Fatalf("POST = %d %s, want 200 with the new behaviour", code, body)
	}
	if got := sim.Versions()["v2"]; got.ErrorRate != 0.25 || got.Latency != 300*time.Millisecond {
		t.Errorf("Versions()[v2] = %+v", got)
	}
	for _, bad := range []string{"errorRate=1.5", "errorRate=x", "latencyMs=-5", "latencyMs=NaN"} {
		if code, body := post(bad); code != http.StatusBadRequest {
			t.Errorf("POST %s = %d %s, want 400", bad, code, body)
		}
	}

	// From the change on, a quarter of v2's requests fail.
	before, err := meshsim.CountRequests(sim.Gatherer(), "response_code")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() string {
		now, err := meshsim.CountRequests(sim.Gatherer(), "response_code")
		if err != nil {
			return err.Error()
		}
		ok, failed := now["200"]-before["200"], now["500"]-before["500"]
		if ok+failed < 200 {
			return fmt.Sprintf("%g requests since the change, waiting for 200", ok+failed)
		}
		if share := failed / (ok + failed); math.Abs(share-0.25) > 0.01 {
			return fmt.Sprintf("error share %.3f, want 0.25", share)
		}
		return ""
	})

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`istio_requests_total{connection_security_policy="mutual_tls",destination_app="catalog",destination_service="catalog.` + ns + `.svc.cluster.local",destination_service_name="catalog",destination_service_namespace="` + ns + `",destination_version="v2",destination_workload="catalog-v2",destination_workload_namespace="` + ns + `",reporter="destination",request_protocol="http",response_code="500",response_flags="-",source_workload="webapp",source_workload_namespace="` + ns + `"}`,
		`istio_request_duration_milliseconds_bucket{`,
		`meshsim_requests_total{outcome="served"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestStartFailsClearly(t *testing.T) {
	env := testEnv.Env(t)
	ctx := context.Background()
	for _, tt := range []struct {
		cfg  meshsim.Config
		want string
	}{
		{meshsim.Config{Namespace: "ns", Service: "catalog"}, "RESTConfig is nil"},
		{meshsim.Config{RESTConfig: env.RESTConfig(), Namespace: "Bad_NS", Service: "catalog"}, `namespace "Bad_NS"`},
		{meshsim.Config{RESTConfig: env.RESTConfig(), Namespace: "ns", Service: "catalog", RPS: -1}, "rate -1"},
		{meshsim.Config{RESTConfig: env.RESTConfig(), Namespace: "ns", Service: "catalog", CohortShare: 2}, "cohort share 2"},
		{meshsim.Config{RESTConfig: env.RESTConfig(), Namespace: "ns", Service: "catalog", Versions: map[string]meshsim.Behavior{"v2": {ErrorRate: 2}}}, "version v2: error rate 2"},
		{meshsim.Config{RESTConfig: env.RESTConfig(), Namespace: "ns", Service: "catalog", ListenAddress: "256.0.0.1:0"}, "listen on 256.0.0.1:0"},
	} {
		sim, err := meshsim.Start(ctx, tt.cfg)
		if err == nil {
			_ = sim.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Start(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}

	// A client the API server refuses fails at Start, not silently later.
	rc, err := env.ServiceAccountConfig(ctx, "default", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	_, err = meshsim.Start(ctx, meshsim.Config{RESTConfig: rc, Namespace: "default", Service: "catalog", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("Start without permissions = %v, want forbidden", err)
	}
}
