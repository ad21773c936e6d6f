// Package gates evaluates a release step's metric gates against Prometheus,
// Flagger-style: each metric is a PromQL query over a window whose single
// value must fall inside the metric's threshold range.
//
// The builtin metrics read Istio's standard metrics as the destination
// sidecar reports them (reporter="destination"), like Flagger's Istio provider.
package gates

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"sluice.dev/sluice/internal/secret"
	"sluice.dev/sluice/specs"
)

// DefaultWindow is a metric's window when its Interval is unset, as in Flagger.
const DefaultWindow = time.Minute

// DefaultTimeout bounds one query when Options.Timeout is unset.
const DefaultTimeout = 10 * time.Second

// Options say how to reach Prometheus.
type Options struct {
	// Address is Prometheus' base URL, e.g. http://prometheus.istio-system:9090.
	Address string
	// BearerTokenFile, when set, is read at every request (so a rotated
	// token is picked up) and sent as "Authorization: Bearer <token>".
	BearerTokenFile string
	// CAFile, when set, is the PEM bundle that verifies Prometheus' TLS
	// certificate instead of the system roots.
	CAFile string
	// Timeout bounds each query, both on the client and (as the query's
	// timeout parameter) inside Prometheus. Default DefaultTimeout.
	Timeout time.Duration
	// Logger receives query warnings from Prometheus. Nil means slog.Default().
	Logger *slog.Logger
}

// Evaluator runs metric gates against one Prometheus. It is safe for
// concurrent use.
type Evaluator struct {
	api       promv1.API
	address   string // redacted, for messages
	password  string // the address' password, kept out of errors
	tokenFile string // the bearer token's file, whose content is kept out of errors
	timeout   time.Duration
	log       *slog.Logger
}

// New checks opts and returns an Evaluator. It does not contact Prometheus:
// a Prometheus that is down is an Evaluate-time *PrometheusError.
func New(opts Options) (*Evaluator, error) {
	if opts.Address == "" {
		return nil, errors.New("gates: prometheus address is empty")
	}
	u, err := url.Parse(opts.Address)
	if err != nil {
		// url.Parse's message repeats the input, which may hold a password.
		return nil, errors.New("gates: prometheus address is not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("gates: prometheus address %s: scheme must be http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("gates: prometheus address %s: no host", u.Redacted())
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("gates: timeout %s is negative", opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	rt, err := newTransport(opts)
	if err != nil {
		return nil, fmt.Errorf("gates: prometheus %s: %w", u.Redacted(), err)
	}
	client, err := promapi.NewClient(promapi.Config{
		Address: opts.Address,
		Client:  &http.Client{Transport: rt, Timeout: opts.Timeout},
	})
	if err != nil {
		return nil, fmt.Errorf("gates: prometheus client for %s: %w", u.Redacted(), err)
	}
	password, _ := u.User.Password()
	return &Evaluator{
		api:       promv1.NewAPI(client),
		address:   u.Redacted(),
		password:  password,
		tokenFile: opts.BearerTokenFile,
		timeout:   opts.Timeout,
		log:       opts.Logger,
	}, nil
}

// Target is the workload a step's gates are about.
type Target struct {
	Namespace string // the release's namespace
	Service   string // the Kubernetes Service, e.g. catalog
	Workload  string // the version's Deployment, e.g. catalog-v2
	Version   string // the version's name, e.g. v2
}

// Result is one metric's outcome.
type Result struct {
	Metric string // the metric's name
	Query  string // the PromQL that ran, templates filled in
	Value  float64
	NoData bool // the query returned nothing, NaN or ±Inf; Value is then meaningless
	Min    *float64
	Max    *float64
	Passed bool
}

// PrometheusError means Prometheus could not answer: it is unreachable, timed
// out, rejected the query or failed. The gate's outcome is unknown, which is
// different from a metric that failed.
type PrometheusError struct {
	Address string // Prometheus' URL, without credentials
	Metric  string
	Query   string
	Err     error
}

func (e *PrometheusError) Error() string {
	return fmt.Sprintf("prometheus %s: metric %s: query %s: %v", e.Address, e.Metric, e.Query, e.Err)
}

func (e *PrometheusError) Unwrap() error { return e.Err }

// Evaluate runs every metric's query now. See EvaluateAt.
func (e *Evaluator) Evaluate(ctx context.Context, t Target, metrics []specs.Metric) ([]Result, error) {
	return e.EvaluateAt(ctx, time.Now(), t, metrics)
}

// EvaluateAt runs every metric's query at instant at, over the metric's
// window, and returns one Result per metric in order. A metric out of range
// or without data is a Result that did not pass, not an error. The error is a
// *PrometheusError when Prometheus failed or did not answer in time (the
// gates' outcome is unknown; try again later). Any other error is the
// caller's cancelled context, or the spec's or the target's fault (a bad
// template, a query returning several series), which retrying will not fix.
func (e *Evaluator) EvaluateAt(ctx context.Context, at time.Time, t Target, metrics []specs.Metric) ([]Result, error) {
	if err := t.validate(); err != nil {
		return nil, fmt.Errorf("gates: %w", err)
	}
	results := make([]Result, 0, len(metrics))
	for _, m := range metrics {
		r, err := e.evaluate(ctx, at, t, m)
		if err != nil {
			return nil, err
		}
		results = append(results, r)
	}
	return results, nil
}

func (e *Evaluator) evaluate(ctx context.Context, at time.Time, t Target, m specs.Metric) (Result, error) {
	query, err := buildQuery(t, m)
	if err != nil {
		return Result{}, fmt.Errorf("gates: metric %s: %w", m.Name, err)
	}
	r := Result{Metric: m.Name, Query: query, Min: m.ThresholdRange.Min, Max: m.ThresholdRange.Max}

	qctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	val, warnings, _, err := e.api.Query(qctx, query, at, promv1.WithTimeout(e.timeout))
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			// The caller gave up; that says nothing about Prometheus. A
			// deadline that passed, the caller's or ours, means Prometheus
			// did not answer in time, which is Prometheus' failure.
			return Result{}, fmt.Errorf("gates: metric %s: %w", m.Name, context.Cause(ctx))
		}
		return Result{}, &PrometheusError{Address: e.address, Metric: m.Name, Query: query, Err: e.redact(err)}
	}
	if len(warnings) > 0 {
		e.log.WarnContext(ctx, "prometheus query warnings", "metric", m.Name, "query", query, "warnings", []string(warnings))
	}
	v, ok, err := singleValue(val)
	if err != nil {
		return Result{}, fmt.Errorf("gates: metric %s: query %s: %w", m.Name, query, err)
	}
	if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
		r.NoData = true
		return r, nil
	}
	r.Value = v
	r.Passed = inRange(v, r.Min, r.Max)
	return r, nil
}

// redact keeps the credentials out of a client error, by the policy gitsync
// and forge share: the result does not unwrap, since a client's error chain
// may hold the request and its Authorization header.
func (e *Evaluator) redact(err error) error {
	secrets := []string{e.password}
	if e.tokenFile != "" {
		// Read now: the token may have rotated since the request.
		if tok, rerr := readToken(e.tokenFile); rerr == nil {
			secrets = append(secrets, tok)
		}
	}
	return secret.Error("", err, secrets)
}

// singleValue extracts the one number a gate compares. ok is false when the
// query returned nothing; several series are an error, since picking one
// would hide a query that forgot to aggregate.
func singleValue(val model.Value) (v float64, ok bool, err error) {
	switch val := val.(type) {
	case model.Vector:
		switch len(val) {
		case 0:
			return 0, false, nil
		case 1:
			return float64(val[0].Value), true, nil
		default:
			return 0, false, fmt.Errorf("returned %d series (first %s), a gate needs one: aggregate it, e.g. with sum()", len(val), val[0].Metric)
		}
	case *model.Scalar:
		return float64(val.Value), true, nil
	case model.Matrix:
		return 0, false, errors.New("returned a range vector, a gate needs one number: wrap it in a function such as rate()")
	case nil:
		return 0, false, nil
	default:
		return 0, false, fmt.Errorf("returned a %s, a gate needs a number", val.Type())
	}
}

func inRange(v float64, lo, hi *float64) bool {
	if lo != nil && v < *lo {
		return false
	}
	if hi != nil && v > *hi {
		return false
	}
	return true
}
