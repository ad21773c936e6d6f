package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"sluice.dev/sluice/gates"
	"sluice.dev/sluice/specs"
)

func newGatesCommand() *cobra.Command {
	var (
		name, step, repo   string
		promURL, promToken string
		promCA             string
		timeout            time.Duration
		limit              = sizeFlag{n: specs.DefaultMaxSpecSize}
	)
	cmd := &cobra.Command{
		Use:   "gates FILE --prometheus-url URL [--step NAME|INDEX]",
		Short: "Run a release step's metric gates now and print each value",
		Long: `Gates runs the metric gates of one step of a release against Prometheus
now, with the same queries the controller runs (the candidate's Deployment
is found by rendering the step, as "sluice render" does), and prints each
metric's value, its threshold and whether it passes; a metric without data
says "no data", and a query Prometheus could not answer says why. Without
--step, the first step that has metric gates is used.

Exit status is 0 when every gate passes and 1 otherwise.`,
		Example: `  sluice gates examples/catalog/releases/catalog.yaml --prometheus-url http://localhost:9090
  sluice gates examples/catalog/releases/catalog.yaml --step canary-20 --prometheus-url http://localhost:9090`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if promURL == "" {
				return errors.New("--prometheus-url is required")
			}
			ctx := cmd.Context()
			if step == "" {
				rel, err := loadOne(ctx, args[0], name, limit.n)
				if err != nil {
					return err
				}
				steps, err := specs.Plan(rel)
				if err != nil {
					return err
				}
				for _, s := range steps {
					if len(s.Gates.Metrics) > 0 {
						step = s.Name
						break
					}
				}
				if step == "" {
					return fmt.Errorf("release %s has no step with metric gates", rel.ID())
				}
			}
			rel, st, out, err := renderStep(ctx, args[0], name, step, repo, limit.n)
			if err != nil {
				return err
			}
			if len(st.Gates.Metrics) == 0 {
				return fmt.Errorf("step %s has no metric gates: it is held on availability alone", st.Name)
			}
			version := rel.Spec.Candidate
			if version == "" {
				version = rel.Spec.Stable
			}
			ev, err := gates.New(gates.Options{Address: promURL, BearerTokenFile: promToken, CAFile: promCA, Timeout: timeout, Logger: discardLogger()})
			if err != nil {
				return err
			}
			target := gates.Target{Namespace: rel.Metadata.Namespace, Service: rel.ServiceName(), Workload: out.Workloads[version], Version: version}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Release %s, step %s: version %s (Deployment %s)\n\n", rel.ID(), st.Name, version, target.Workload)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "METRIC\tVALUE\tTHRESHOLD\tRESULT")
			failed := 0
			for _, m := range st.Gates.Metrics {
				value, result := "-", ""
				res, err := ev.Evaluate(ctx, target, []specs.Metric{m})
				switch {
				case ctx.Err() != nil:
					return ctx.Err()
				case err != nil:
					result = oneLine(err.Error())
					var pe *gates.PrometheusError
					if errors.As(err, &pe) {
						result = "prometheus error: " + oneLine(pe.Err.Error())
					}
				case res[0].NoData:
					value, result = "no data", "no data"
				case res[0].Passed:
					value, result = strconv.FormatFloat(res[0].Value, 'g', 6, 64), "pass"
				default:
					value, result = strconv.FormatFloat(res[0].Value, 'g', 6, 64), "fail"
				}
				if result != "pass" {
					failed++
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, value, threshold(m), result)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if failed > 0 {
				return exitError{fmt.Errorf("%d gate(s) do not pass", failed)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&step, "step", "", "step name or index (see sluice plan); default the first step with metric gates")
	f.StringVar(&name, "release", "", "release name (or namespace/name), when FILE holds more than one")
	f.StringVar(&repo, "repo", "", "repository root that source paths are relative to")
	f.StringVar(&promURL, "prometheus-url", "", "Prometheus base URL, e.g. http://localhost:9090")
	f.StringVar(&promToken, "prometheus-token-file", "", "file holding a bearer token for Prometheus")
	f.StringVar(&promCA, "prometheus-ca-file", "", "CA bundle for Prometheus' TLS certificate")
	f.DurationVar(&timeout, "timeout", gates.DefaultTimeout, "bound on each query")
	limit.register(cmd)
	return cmd
}

func threshold(m specs.Metric) string {
	var b []string
	if m.ThresholdRange.Min != nil {
		b = append(b, ">= "+strconv.FormatFloat(*m.ThresholdRange.Min, 'g', -1, 64))
	}
	if m.ThresholdRange.Max != nil {
		b = append(b, "<= "+strconv.FormatFloat(*m.ThresholdRange.Max, 'g', -1, 64))
	}
	return strings.Join(b, ", ")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
