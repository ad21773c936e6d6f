package gates

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/common/model"

	"sluice.dev/sluice/specs"
)

// Builtin queries over Istio's standard metrics, as Flagger's Istio provider
// writes them. Values are substituted already quoted as PromQL strings. The
// success rate's "or vector(0)" makes a workload that fails every request
// read 0 rather than no data (no non-5xx series exists then); without any
// traffic the denominator is still empty, so that stays no data.
const (
	successRateQuery = `(sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace=%[1]s,destination_workload=%[2]s,response_code!~"5.*"}[%[3]s])) or vector(0)) / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace=%[1]s,destination_workload=%[2]s}[%[3]s])) * 100`
	durationQuery    = `histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace=%[1]s,destination_workload=%[2]s}[%[3]s])) by (le))`
)

// labelValue is what Sluice's target fields may hold: Kubernetes names and
// label values. Keeping to it means a template can put them inside a PromQL
// string without escaping, and nothing can inject PromQL.
var labelValue = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

func (t Target) validate() error {
	for _, f := range []struct{ name, v string }{
		{"namespace", t.Namespace}, {"service", t.Service}, {"workload", t.Workload}, {"version", t.Version},
	} {
		if f.v != "" && (len(f.v) > 253 || !labelValue.MatchString(f.v)) {
			return fmt.Errorf("target %s %q is not a Kubernetes name or label value", f.name, f.v)
		}
	}
	return nil
}

// window is a metric's window in PromQL duration syntax.
func window(m specs.Metric) (string, error) {
	d := m.Interval.Duration
	switch {
	case d == 0:
		d = DefaultWindow
	case d < 0:
		return "", fmt.Errorf("interval %s is negative", d)
	case d%time.Millisecond != 0:
		return "", fmt.Errorf("interval %s is finer than PromQL's milliseconds", d)
	}
	return model.Duration(d).String(), nil
}

// buildQuery renders the PromQL of a metric for a target: the metric's own
// query template when it has one, else the builtin of its name.
func buildQuery(t Target, m specs.Metric) (string, error) {
	w, err := window(m)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(m.Query) != "" {
		return renderTemplate(t, m, w)
	}
	var format string
	switch m.Name {
	case specs.MetricRequestSuccessRate:
		format = successRateQuery
	case specs.MetricRequestDuration:
		format = durationQuery
	default:
		return "", fmt.Errorf("no query: %q is not a builtin metric (%s, %s)", m.Name, specs.MetricRequestSuccessRate, specs.MetricRequestDuration)
	}
	if t.Namespace == "" || t.Workload == "" {
		return "", errors.New("builtin metric needs the target's namespace and workload")
	}
	return fmt.Sprintf(format, quote(t.Namespace), quote(t.Workload), w), nil
}

// renderTemplate fills a custom query. Only the target's non-empty fields
// are defined, so a template naming an unknown or empty one fails instead of
// quietly querying for "".
func renderTemplate(t Target, m specs.Metric, w string) (string, error) {
	tmpl, err := template.New(m.Name).Option("missingkey=error").Parse(m.Query)
	if err != nil {
		return "", fmt.Errorf("query template: %w", err)
	}
	vars := map[string]string{"Window": w}
	for k, v := range map[string]string{"Namespace": t.Namespace, "Service": t.Service, "Workload": t.Workload, "Version": t.Version} {
		if v != "" {
			vars[k] = v
		}
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, vars); err != nil {
		return "", fmt.Errorf("query template (variables: .Namespace .Service .Workload .Version .Window; set for this target: %s): %w",
			strings.Join(setVars(vars), " "), err)
	}
	q := strings.TrimSpace(b.String())
	if q == "" {
		return "", errors.New("query template renders to nothing")
	}
	return q, nil
}

func setVars(vars map[string]string) []string {
	var out []string
	for _, k := range []string{"Namespace", "Service", "Workload", "Version", "Window"} {
		if _, ok := vars[k]; ok {
			out = append(out, "."+k)
		}
	}
	return out
}

// quote writes a PromQL string literal; PromQL reads Go's escapes.
func quote(s string) string { return fmt.Sprintf("%q", s) }
