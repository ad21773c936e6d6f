package meshsim

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// IstioDurationBuckets returns Istio's default buckets for
// istio_request_duration_milliseconds (a new slice each time).
func IstioDurationBuckets() []float64 {
	return []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}
}

// istioLabels are the standard labels of Istio's request metrics that
// Sluice's gates and Flagger's queries use.
var istioLabels = []string{
	"reporter",
	"source_workload", "source_workload_namespace",
	"destination_workload", "destination_workload_namespace",
	"destination_service", "destination_service_name", "destination_service_namespace",
	"destination_version", "destination_app",
	"request_protocol", "response_code", "response_flags", "connection_security_policy",
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	outcomes *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total",
			Help: "Requests served, as the destination sidecar reports them (simulated).",
		}, istioLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_request_duration_milliseconds",
			Help:    "Request duration in milliseconds, as the destination sidecar reports it (simulated).",
			Buckets: IstioDurationBuckets(),
		}, istioLabels),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshsim_requests_total",
			Help: "Requests the simulator generated, by outcome; only outcome=served reaches a destination.",
		}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.outcomes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, o := range []string{OutcomeServed, OutcomeNoRoute, OutcomeNoSubset, OutcomeNoEndpoint, OutcomeExternal, OutcomeAborted, OutcomeDirect, OutcomeInvalidBackend} {
		m.outcomes.WithLabelValues(o)
	}
	return m, nil
}

func (m *metrics) observe(src *Source, svc *serviceInfo, w *workload, code string, ms float64) {
	values := []string{
		"destination",
		src.Workload, src.Namespace,
		w.name, w.namespace,
		svc.fqdn, svc.name, svc.namespace,
		w.version, w.app,
		"http", code, "-", "mutual_tls",
	}
	m.requests.WithLabelValues(values...).Inc()
	m.duration.WithLabelValues(values...).Observe(ms)
}

// CountRequests sums istio_requests_total in g by the value of one of its
// labels (destination_workload, response_code, ...), so tests can check the
// split straight from the simulator's registry (Simulator.Gatherer).
func CountRequests(g prometheus.Gatherer, label string) (map[string]float64, error) {
	families, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "istio_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out, nil
}
