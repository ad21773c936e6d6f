package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/specs"
)

func newDiffCommand() *cobra.Command {
	var (
		name, step, repo        string
		kubeconfig, kubeContext string
		limit                   = sizeFlag{n: specs.DefaultMaxSpecSize}
	)
	cmd := &cobra.Command{
		Use:   "diff FILE --step NAME|INDEX",
		Short: "Show what applying one step would change in the cluster",
		Long: `Diff renders one step of a release (as "sluice render" does) and shows, as
a unified diff of YAML per object, what "sluice apply" (and so the
controller) would change in the cluster: objects it would create, change
or prune. It compares the way apply does: an object Sluice applied from
the same render and nobody changed since is unchanged; any other is sent
to the API server as a server-side dry-run apply and the result compared
with the live object, without the fields the server keeps for itself.
Nothing is changed.

Exit status is 0 when the step would change nothing, 1 when it would
change something (as kubectl diff), and 2 on an error.`,
		Example: `  # Before merging a pull request that moves the release to canary-20
  sluice diff examples/catalog/releases/catalog.yaml --step canary-20`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, _, out, err := renderStep(cmd.Context(), args[0], name, step, repo, limit.n)
			if err != nil {
				return exitCode{err, 2}
			}
			cfg, err := kubeConfig(kubeconfig, kubeContext)
			if err != nil {
				return exitCode{err, 2}
			}
			a, err := cluster.New(cfg, cluster.Options{})
			if err != nil {
				return exitCode{err, 2}
			}
			res, err := a.Diff(cmd.Context(), cluster.Set{Owner: out.Owner, Objects: out.Objects})
			if err != nil {
				return exitCode{err, 2}
			}
			if err := writeDiff(cmd.OutOrStdout(), res); err != nil {
				return exitCode{err, 2}
			}
			if len(res.Changes) > 0 {
				return exitCode{exitError{fmt.Errorf("%d object(s) differ", len(res.Changes))}, 1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&step, "step", "", "step name or index (see sluice plan)")
	f.StringVar(&name, "release", "", "release name (or namespace/name), when FILE holds more than one")
	f.StringVar(&repo, "repo", "", "repository root that source paths are relative to")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config, then $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&kubeContext, "context", "", "kubeconfig context")
	limit.register(cmd)
	return cmd
}

// writeDiff prints each change as a unified diff of the object's YAML.
func writeDiff(w io.Writer, res *cluster.DiffResult) error {
	for _, c := range res.Changes {
		live, err := yamlOf(c.Live)
		if err != nil {
			return err
		}
		desired, err := yamlOf(c.Desired)
		if err != nil {
			return err
		}
		ref := c.Object.String()
		text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(live), B: difflib.SplitLines(desired),
			FromFile: "live/" + ref, ToFile: c.Action + "/" + ref, Context: 3,
		})
		if err != nil {
			return fmt.Errorf("diff %s: %w", ref, err)
		}
		if _, err := io.WriteString(w, text); err != nil {
			return err
		}
	}
	if len(res.Changes) == 0 {
		_, err := fmt.Fprintf(w, "No differences: the step is applied (%d object(s) unchanged)\n", len(res.Unchanged))
		return err
	}
	return nil
}

func yamlOf(obj map[string]any) (string, error) {
	if obj == nil {
		return "", nil
	}
	b, err := yaml.Marshal(obj)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n") + "\n", nil
}
