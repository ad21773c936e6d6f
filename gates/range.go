package gates

import (
	"context"
	"errors"
	"fmt"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"sluice.dev/sluice/specs"
)

// Query is the PromQL a gate runs for a metric and a target, as Evaluate
// builds it, so that other readers (the dashboard's charts) query exactly
// what the gates check.
func Query(t Target, m specs.Metric) (string, error) {
	if err := t.validate(); err != nil {
		return "", fmt.Errorf("gates: %w", err)
	}
	q, err := buildQuery(t, m)
	if err != nil {
		return "", fmt.Errorf("gates: metric %s: %w", m.Name, err)
	}
	return q, nil
}

// QueryRange runs a range query against the Evaluator's Prometheus, with
// its credentials and timeout. Prometheus failures are *PrometheusError.
func (e *Evaluator) QueryRange(ctx context.Context, query string, r promv1.Range) (model.Matrix, error) {
	qctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	val, warnings, _, err := e.api.QueryRange(qctx, query, r, promv1.WithTimeout(e.timeout))
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, fmt.Errorf("gates: range query: %w", context.Cause(ctx))
		}
		return nil, &PrometheusError{Address: e.address, Metric: "range", Query: query, Err: err}
	}
	if len(warnings) > 0 {
		e.log.DebugContext(ctx, "prometheus range query warnings", "query", query, "warnings", []string(warnings))
	}
	m, ok := val.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("gates: range query %s returned a %s, want a matrix", query, val.Type())
	}
	return m, nil
}
