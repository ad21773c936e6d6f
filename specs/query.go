package specs

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// QueryVariables are the variables a metric's query template may use, in
// the order people read them; a gate sets every one of them (see gates).
var queryVariables = []string{"Namespace", "Service", "Workload", "Version", "Window"}

// QueryVariables lists the variables of a query template.
func QueryVariables() []string { return append([]string(nil), queryVariables...) }

// missingKey is text/template's message for a variable the map lacks.
var missingKey = regexp.MustCompile(`map has no entry for key "([^"]*)"`)

// RenderQuery fills a metric's query template with vars. A variable the
// template names and vars lacks is an error naming the known ones.
func RenderQuery(m Metric, vars map[string]string) (string, error) {
	tmpl, err := template.New(m.Name).Option("missingkey=error").Parse(m.Query)
	if err != nil {
		return "", fmt.Errorf("is not a valid template: %w", err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, vars); err != nil {
		if sub := missingKey.FindStringSubmatch(err.Error()); sub != nil {
			return "", fmt.Errorf("template names {{ .%s }}, which is not a variable%s (variables: %s)",
				sub[1], suggestVariable(sub[1]), variableList())
		}
		return "", fmt.Errorf("template fails: %w", err)
	}
	q := strings.TrimSpace(b.String())
	if q == "" {
		return "", errors.New("template renders to nothing")
	}
	return q, nil
}

func variableList() string {
	out := make([]string, len(queryVariables))
	for i, v := range queryVariables {
		out[i] = "{{ ." + v + " }}"
	}
	return strings.Join(out, ", ")
}

func suggestVariable(got string) string {
	best, bestDist := "", 3
	for _, v := range queryVariables {
		if d := editDistance(strings.ToLower(got), strings.ToLower(v)); d < bestDist {
			best, bestDist = v, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean {{ .%s }}?)", best)
}

// CheckQuery renders a metric's query template with vars and parses the
// result with Prometheus' own PromQL parser; a gate needs an expression
// that gives one number (a scalar or an instant vector).
func CheckQuery(m Metric, vars map[string]string) error {
	q, err := RenderQuery(m, vars)
	if err != nil {
		return err
	}
	return CheckPromQL(q)
}

// CheckPromQL parses a query as Prometheus would.
func CheckPromQL(q string) error {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		var perrs parser.ParseErrors
		if errors.As(err, &perrs) && len(perrs) > 0 {
			msgs := make([]string, len(perrs))
			for i, pe := range perrs {
				msgs[i] = fmt.Sprintf("at %s: %s", pe.PositionRange.StartPosInput(pe.Query, pe.LineOffset), pe.Err)
			}
			return fmt.Errorf("is not valid PromQL (%s): %s", strings.Join(msgs, "; "), q)
		}
		return fmt.Errorf("is not valid PromQL (%v): %s", err, q)
	}
	switch expr.Type() {
	case parser.ValueTypeMatrix:
		return fmt.Errorf("gives a range vector, a gate needs one number: wrap it in a function such as rate(): %s", q)
	case parser.ValueTypeString:
		return fmt.Errorf("gives a string, a gate needs one number: %s", q)
	}
	return nil
}

// sampleVars are the values a gate would give the template for this
// release: its namespace, Service, candidate (else stable) version and its
// Deployment's usual name, and the metric's window.
func (v *validator) sampleVars(m Metric) map[string]string {
	r := v.r
	or := func(s, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	version := or(r.Spec.Candidate, or(r.Spec.Stable, "v1"))
	win := m.Interval.Duration
	if win <= 0 {
		win = time.Minute
	}
	return map[string]string{
		"Namespace": or(r.Metadata.Namespace, "default"),
		"Service":   or(r.ServiceName(), "app"),
		"Workload":  or(r.ServiceName(), "app") + "-" + version,
		"Version":   version,
		"Window":    model.Duration(win).String(),
	}
}
