package gates_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"sluice.dev/sluice/gates"
	"sluice.dev/sluice/internal/testenv"
	"sluice.dev/sluice/specs"
)

var (
	// testEnv is the Prometheus the gates query, started by the first test
	// that needs it; the query-building and transport tests need none.
	testEnv     = testenv.NewShared(testenv.Options{Prometheus: true})
	fixtureAddr string // where the fixture serves /metrics
)

func TestMain(m *testing.M) {
	// The fixture is an in-process exporter on loopback: cheap, and needs
	// nothing installed.
	f, err := startFixture()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gates fixture:", err)
		os.Exit(1)
	}
	fixtureAddr = f.addr
	code := testEnv.Main(m)
	f.close()
	os.Exit(code)
}

const fixtureNS = "gates-fixture"

// fixtureWorkload is one workload whose Istio metrics the fixture exports:
// every tick it serves ok requests and failed ones (code 500), each taking
// latencyMs.
type fixtureWorkload struct {
	name       string
	ok, failed int
	latencyMs  float64
}

// Expected readings of the fixture's workloads. All of one workload's
// requests fall in one histogram bucket, so histogram_quantile interpolates
// to a known p99: (200-100)*0.99+100 = 199 for 150ms, (50-20)*0.99+20 = 49.7
// for 30ms.
var fixtureWorkloads = []fixtureWorkload{
	{name: "shop-v1", ok: 9, failed: 1, latencyMs: 150}, // success rate 90, p99 199
	{name: "shop-v2", ok: 10, latencyMs: 30},            // success rate 100, p99 49.7
	{name: "shop-v3", failed: 4, latencyMs: 30},         // success rate 0
}

// fixture serves Istio's request metrics for fixtureWorkloads on loopback,
// a small exporter standing in for sidecars with exactly known numbers.
// Scrapes and ticks share a lock, so every scrape sees whole ticks.
type fixture struct {
	mu       sync.Mutex
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	addr  string
	close func()
}

func startFixture() (*fixture, error) {
	labels := []string{"reporter", "destination_workload", "destination_workload_namespace", "response_code"}
	f := &fixture{
		reg:      prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_requests_total", Help: "requests"}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "istio_request_duration_milliseconds", Help: "durations",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000},
		}, labels),
	}
	f.reg.MustRegister(f.requests, f.duration)
	// Create every series up front so all start in the same scrape and
	// Prometheus extrapolates their rates alike.
	for _, w := range fixtureWorkloads {
		for code, n := range map[string]int{"200": w.ok, "500": w.failed} {
			if n > 0 {
				f.requests.WithLabelValues("destination", w.name, fixtureNS, code)
				f.duration.WithLabelValues("destination", w.name, fixtureNS, code)
			}
		}
	}
	gather := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.reg.Gather()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(gather, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				f.tick()
			}
		}
	}()
	f.addr = ln.Addr().String()
	f.close = func() {
		cancel()
		<-done
		_ = srv.Close()
	}
	return f, nil
}

func (f *fixture) tick() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range fixtureWorkloads {
		for code, n := range map[string]int{"200": w.ok, "500": w.failed} {
			for range n {
				f.requests.WithLabelValues("destination", w.name, fixtureNS, code).Inc()
				f.duration.WithLabelValues("destination", w.name, fixtureNS, code).Observe(w.latencyMs)
			}
		}
	}
}

// scrapeFixture makes Prometheus scrape the fixture, once for the package
// (adding a target twice is a no-op, but each call waits for a scrape).
var (
	scrapeOnce sync.Once
	scrapeErr  error
)

func scrapeFixture(env *testenv.Env) error {
	scrapeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		scrapeErr = env.AddScrapeTarget(ctx, "gates-fixture", fixtureAddr)
	})
	return scrapeErr
}

func evaluator(t testing.TB) *gates.Evaluator {
	t.Helper()
	env := testEnv.Env(t)
	if err := scrapeFixture(env); err != nil {
		t.Fatalf("start fixture: %v", err)
	}
	e, err := gates.New(gates.Options{Address: env.PrometheusURL(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func ptr(f float64) *float64 { return &f }

// waitFor polls check until it returns "" (success) or the timeout passes,
// and fails with check's last complaint.
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
		time.Sleep(250 * time.Millisecond)
	}
}

var builtins = []specs.Metric{
	{Name: specs.MetricRequestSuccessRate, ThresholdRange: specs.ThresholdRange{Min: ptr(99)}, Interval: specs.Duration{Duration: 30 * time.Second}},
	{Name: specs.MetricRequestDuration, ThresholdRange: specs.ThresholdRange{Max: ptr(100)}, Interval: specs.Duration{Duration: 30 * time.Second}},
}

func TestBuiltinGatesAgainstPrometheus(t *testing.T) {
	e := evaluator(t)
	tests := []struct {
		workload             string
		successRate, p99     float64
		successPass, p99Pass bool
		successText, p99Text string
	}{
		{workload: "shop-v1", successRate: 90, p99: 199, successText: "success-rate 90 < 99", p99Text: "p99 199ms > 100ms"},
		{workload: "shop-v2", successRate: 100, p99: 49.7, successPass: true, p99Pass: true, successText: "success-rate 100 >= 99", p99Text: "p99 49.7ms <= 100ms"},
		{workload: "shop-v3", successRate: 0, p99: 49.7, p99Pass: true, successText: "success-rate 0 < 99", p99Text: "p99 49.7ms <= 100ms"},
	}
	for _, tt := range tests {
		t.Run(tt.workload, func(t *testing.T) {
			target := gates.Target{Namespace: fixtureNS, Service: "shop", Workload: tt.workload}
			var res []gates.Result
			// The window fills as Prometheus scrapes; the ratios are exact
			// from the second scrape on, so this takes a few seconds.
			waitFor(t, 30*time.Second, func() string {
				var err error
				res, err = e.Evaluate(context.Background(), target, builtins)
				if err != nil {
					return err.Error()
				}
				if res[0].NoData || res[1].NoData ||
					math.Abs(res[0].Value-tt.successRate) > 0.01 || math.Abs(res[1].Value-tt.p99) > 0.01 {
					return fmt.Sprintf("results %v %v, want success rate %g and p99 %g", res[0], res[1], tt.successRate, tt.p99)
				}
				return ""
			})
			if res[0].Passed != tt.successPass || res[1].Passed != tt.p99Pass {
				t.Errorf("passed = %v, %v; want %v, %v", res[0].Passed, res[1].Passed, tt.successPass, tt.p99Pass)
			}
			if res[0].String() != tt.successText || res[1].String() != tt.p99Text {
				t.Errorf("strings = %q, %q; want %q, %q", res[0], res[1], tt.successText, tt.p99Text)
			}
			if !strings.Contains(res[0].Query, `destination_workload="`+tt.workload+`"`) {
				t.Errorf("query %s does not select the workload", res[0].Query)
			}
		})
	}
}

func TestNoDataIsAResultNotAnError(t *testing.T) {
	e := evaluator(t)
	res, err := e.Evaluate(context.Background(), gates.Target{Namespace: fixtureNS, Workload: "shop-v9"}, builtins)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !r.NoData || r.Passed {
			t.Errorf("%s = %+v, want no data, not passed", r.Metric, r)
		}
	}
	if got := res[0].String(); got != "success-rate no data" {
		t.Errorf("String() = %q", got)
	}
}

func TestCustomQueryTemplateAgainstPrometheus(t *testing.T) {
	e := evaluator(t)
	target := gates.Target{Namespace: fixtureNS, Service: "shop", Workload: "shop-v1", Version: "v1"}
	metrics := []specs.Metric{
		{
			// shop-v1 has two series, codes 200 and 500.
			Name:           "series",
			Query:          `count(count_over_time(istio_requests_total{destination_workload_namespace="{{ .Namespace }}",destination_workload="{{ .Workload }}"}[{{ .Window }}]))`,
			ThresholdRange: specs.ThresholdRange{Min: ptr(2), Max: ptr(2)},
			Interval:       specs.Duration{Duration: 20 * time.Second},
		},
		{
			Name:           "error-share",
			Query:          `sum(rate(istio_requests_total{destination_workload="{{ .Service }}-{{ .Version }}",response_code=~"5.."}[{{ .Window }}])) / sum(rate(istio_requests_total{destination_workload="{{ .Workload }}"}[{{ .Window }}]))`,
			ThresholdRange: specs.ThresholdRange{Max: ptr(0.05)},
		},
	}
	waitFor(t, 30*time.Second, func() string {
		res, err := e.Evaluate(context.Background(), target, metrics)
		if err != nil {
			return err.Error()
		}
		if res[0].NoData || res[0].Value != 2 || !res[0].Passed {
			return fmt.Sprintf("series = %+v, want 2, passed", res[0])
		}
		if !strings.Contains(res[0].Query, `[20s]`) || !strings.Contains(res[0].Query, `destination_workload="shop-v1"`) {
			return "query not templated: " + res[0].Query
		}
		if res[1].NoData || math.Abs(res[1].Value-0.1) > 0.001 || res[1].Passed {
			return fmt.Sprintf("error-share = %+v, want 0.1, failed", res[1])
		}
		return ""
	})

	// An unknown variable is the spec's error, not Prometheus'.
	_, err := e.Evaluate(context.Background(), target, []specs.Metric{{Name: "bad", Query: `up{cluster="{{ .Cluster }}"}`, ThresholdRange: specs.ThresholdRange{Min: ptr(1)}}})
	var pe *gates.PrometheusError
	if err == nil || errors.As(err, &pe) || !strings.Contains(err.Error(), "Cluster") {
		t.Errorf("unknown template variable: error = %v, want a non-Prometheus error naming Cluster", err)
	}
}

func TestBadQueryIsAPrometheusError(t *testing.T) {
	e := evaluator(t)
	_, err := e.Evaluate(context.Background(), gates.Target{Namespace: fixtureNS, Workload: "shop-v1"},
		[]specs.Metric{{Name: "broken", Query: `sum(rate(istio_requests_total[1m])`, ThresholdRange: specs.ThresholdRange{Min: ptr(1)}}})
	var pe *gates.PrometheusError
	if !errors.As(err, &pe) || pe.Metric != "broken" || !strings.Contains(err.Error(), "bad_data") {
		t.Fatalf("error = %v, want a *PrometheusError for metric broken with bad_data", err)
	}
}

// TestPrometheusDown stops the real Prometheus: evaluating is then a
// *PrometheusError, never a failed metric, and works again once it is back.
func TestPrometheusDown(t *testing.T) {
	env := testEnv.Env(t)
	e := evaluator(t)
	target := gates.Target{Namespace: fixtureNS, Workload: "shop-v2"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := env.StopPrometheus(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			if err := env.StartPrometheus(context.Background()); err != nil {
				t.Errorf("restart prometheus: %v", err)
			}
		}
	})

	res, err := e.Evaluate(ctx, target, builtins)
	var pe *gates.PrometheusError
	if !errors.As(err, &pe) {
		t.Fatalf("Evaluate with Prometheus stopped = %v, %v; want a *PrometheusError", res, err)
	}
	if res != nil || pe.Metric != specs.MetricRequestSuccessRate || !strings.Contains(pe.Address, "127.0.0.1") {
		t.Errorf("results %v, error %+v: want no results and the first metric and address named", res, pe)
	}

	if err := env.StartPrometheus(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	waitFor(t, 30*time.Second, func() string {
		res, err := e.Evaluate(ctx, target, builtins)
		if err != nil {
			return err.Error()
		}
		if !res[0].Passed {
			return fmt.Sprintf("after restart: %v", res[0])
		}
		return ""
	})
}

// BenchmarkEvaluate measures one evaluation of both builtin gates against
// the real Prometheus.
func BenchmarkEvaluate(b *testing.B) {
	e := evaluator(b)
	target := gates.Target{Namespace: fixtureNS, Workload: "shop-v1"}
	for b.Loop() {
		if _, err := e.Evaluate(context.Background(), target, builtins); err != nil {
			b.Fatal(err)
		}
	}
}
