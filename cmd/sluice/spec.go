package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"sluice.dev/sluice/renderer"
	"sluice.dev/sluice/specs"
)

func newPlanCommand() *cobra.Command {
	var (
		output, name string
		limit        = sizeFlag{n: specs.DefaultMaxSpecSize}
	)
	cmd := &cobra.Command{
		Use:   "plan FILE",
		Short: "Show the steps a release walks through",
		Long: `Plan expands a release spec into the ordered steps Sluice walks: each
step's name, kind, the candidate's traffic, the gates that hold it and
whether it needs approval.`,
		Example: `  sluice plan examples/catalog/releases/catalog.yaml
  sluice plan examples/catalog/releases/catalog.yaml -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rel, err := loadOne(cmd.Context(), args[0], name, limit.n)
			if err != nil {
				return err
			}
			steps, err := specs.Plan(rel)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				return writeJSON(cmd.OutOrStdout(), steps)
			case "", "table":
				return planTable(cmd.OutOrStdout(), rel, steps)
			}
			return fmt.Errorf("unknown output format %q (use table or json)", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().StringVar(&name, "release", "", "release name (or namespace/name), when FILE holds more than one")
	limit.register(cmd)
	return cmd
}

func newRenderCommand() *cobra.Command {
	var (
		output, name, step, repo string
		limit                    = sizeFlag{n: specs.DefaultMaxSpecSize}
	)
	cmd := &cobra.Command{
		Use:   "render FILE --step NAME|INDEX",
		Short: "Print the manifests of one step of a release",
		Long: `Render builds the Kubernetes and Istio manifests of one step of a release
with kustomize: the stable and candidate Deployments, the app's shared
resources, a DestinationRule with a subset per version and a VirtualService
per routing context (with spec.routing: gatewayAPI, a Service per version
and an HTTPRoute per routing context). Paths in FILE resolve against the repository root
(--repo; by default the nearest directory above FILE, up to the enclosing
Git work tree, that holds the release's sources). The steps are those of
"sluice plan", plus "stable" (no candidate) and "rollback".`,
		Example: `  sluice render examples/catalog/releases/catalog.yaml --step canary-20
  sluice render examples/catalog/releases/catalog.yaml --step 1 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, _, out, err := renderStep(cmd.Context(), args[0], name, step, repo, limit.n)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				objs := make([]map[string]any, len(out.Objects))
				for i, o := range out.Objects {
					objs[i] = o.Object
				}
				return writeJSON(cmd.OutOrStdout(), objs)
			case "", "yaml":
				b, err := out.YAML()
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			return fmt.Errorf("unknown output format %q (use yaml or json)", output)
		},
	}
	cmd.Flags().StringVar(&step, "step", "", "step name or index (see sluice plan)")
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	cmd.Flags().StringVar(&name, "release", "", "release name (or namespace/name), when FILE holds more than one")
	cmd.Flags().StringVar(&repo, "repo", "", "repository root that source paths are relative to")
	limit.register(cmd)
	return cmd
}

// renderStep loads the release of file (the one named, when it holds
// several), finds the step and renders it against the repository root.
func renderStep(ctx context.Context, file, name, step, repo string, limit int64) (*specs.Release, specs.Step, *renderer.Output, error) {
	if step == "" {
		return nil, specs.Step{}, nil, errors.New("--step is required: name a step of `sluice plan`, or its index")
	}
	rel, err := loadOne(ctx, file, name, limit)
	if err != nil {
		return nil, specs.Step{}, nil, err
	}
	st, err := specs.FindStep(rel, step)
	if err != nil {
		return nil, specs.Step{}, nil, err
	}
	root, err := repoRoot(file, repo, rel)
	if err != nil {
		return nil, specs.Step{}, nil, err
	}
	out, err := renderer.Render(ctx, root, rel, st)
	if err != nil {
		return nil, specs.Step{}, nil, err
	}
	return rel, st, out, nil
}

// loadOne reads the release of a file, or the one named (name or
// namespace/name) when it holds several. A release defined twice in the
// file is an error rather than a silent pick of the first.
func loadOne(ctx context.Context, file, name string, limit int64) (*specs.Release, error) {
	rels, err := loadFile(ctx, file, limit)
	if err != nil {
		return nil, err
	}
	if dups := specs.Duplicates(rels); len(dups) > 0 {
		return nil, dups
	}
	if name == "" {
		if len(rels) > 1 {
			names := make([]string, len(rels))
			for i, r := range rels {
				names[i] = r.ID()
			}
			return nil, fmt.Errorf("%s holds %d releases (%s): choose one with --release", file, len(rels), strings.Join(names, ", "))
		}
		return rels[0], nil
	}
	var found []*specs.Release
	for _, r := range rels {
		if r.Metadata.Name == name || r.ID() == name {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%s has no release named %q", file, name)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("%s has %d releases named %q, in different namespaces: choose one with --release NAMESPACE/NAME", file, len(found), name)
}

// loadFile parses a spec file under the size limit, and returns as soon
// as ctx is done (a signal) even when the read blocks (a FIFO, a network
// file system): the abandoned read ends with the process.
func loadFile(ctx context.Context, file string, limit int64) ([]*specs.Release, error) {
	type result struct {
		rels []*specs.Release
		err  error
	}
	done := make(chan result, 1)
	go func() {
		rels, err := specs.LoadFileContext(ctx, file, limit)
		done <- result{rels, err}
	}()
	select {
	case r := <-done:
		return r.rels, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", file, context.Cause(ctx))
	}
}

// releaseFiles expands directories into the YAML files in them that are
// Sluice's (apiVersion sluice.dev/..., whatever the kind). A file over the
// size limit is not read: its first bytes tell whether it is one, and it
// is then listed so that loading it reports the size.
func releaseFiles(ctx context.Context, args []string, limit int64) ([]string, error) {
	var files []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == ".git" {
					return filepath.SkipDir
				}
				return nil
			}
			if ext := filepath.Ext(p); ext != ".yaml" && ext != ".yml" {
				return nil
			}
			ours, err := isSpecFile(p, limit)
			if err != nil {
				return err
			}
			if ours {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("search %s: %w", a, err)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no release specs (apiVersion: %s) found in %s", specs.APIVersion, strings.Join(args, ", "))
	}
	sort.Strings(files)
	return files, nil
}

// sniffSize is how much of a file over the limit is read to tell whether
// it is a release spec.
const sniffSize = 64 << 10

func isSpecFile(p string, limit int64) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	if !st.Mode().IsRegular() {
		return false, nil
	}
	if specs.CheckSize(p, st.Size(), limit) != nil {
		prefix, err := io.ReadAll(io.LimitReader(f, sniffSize))
		if err != nil {
			return false, err
		}
		return specs.MaybeRelease(prefix), nil
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return false, err
	}
	return specs.IsRelease(data), nil
}

// repoRoot opens the repository a release's paths are relative to: the
// --repo flag, or else the directory above the file, up to the enclosing
// Git work tree, in which most of the release's sources exist (the nearest
// one on a tie). Taking most rather than all means one missing source is
// reported alone, not every source as missing from the wrong root.
func repoRoot(file, flag string, rel *specs.Release) (fs.FS, error) {
	dir, err := findRoot(file, flag, rel)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	// The root stays open for the life of the command.
	return root.FS(), nil
}

func findRoot(file, flag string, rel *specs.Release) (string, error) {
	if flag != "" {
		return flag, nil
	}
	abs, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return "", err
	}
	best, bestN := abs, 0
	for d := abs; ; d = filepath.Dir(d) {
		if n := sourcesIn(d, rel); n > bestN {
			best, bestN = d, n
		}
		if _, err := os.Stat(filepath.Join(d, ".git")); err == nil || filepath.Dir(d) == d {
			break
		}
	}
	return best, nil
}

// sourcesIn counts the release's distinct source directories under dir.
func sourcesIn(dir string, rel *specs.Release) int {
	seen := map[string]bool{}
	n := 0
	for i := range rel.Spec.Versions {
		src := rel.SourceOf(&rel.Spec.Versions[i])
		if seen[src] || specs.CheckRepoPath(src) != nil {
			continue
		}
		seen[src] = true
		if st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(src))); err == nil && st.IsDir() {
			n++
		}
	}
	return n
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func planTable(w io.Writer, rel *specs.Release, steps []specs.Step) error {
	fmt.Fprintf(w, "Release %s: %s -> %s\n\n", rel.ID(), rel.Spec.Stable, orNone(rel.Spec.Candidate))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSTEP\tKIND\tCANDIDATE TRAFFIC\tGATES\tAPPROVAL")
	for _, s := range steps {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", s.Index, s.Name, s.Kind, traffic(s), describeGates(s.Gates), orNone(approvalText(s)))
	}
	return tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func traffic(s specs.Step) string {
	switch s.Kind {
	case specs.KindStable, specs.KindDeploy, specs.KindRollback:
		return "0%"
	case specs.KindMirror:
		return fmt.Sprintf("0%% (%g%% mirrored)", s.MirrorPercent)
	}
	t := fmt.Sprintf("%d%%", s.Weight)
	if len(s.Match) > 0 {
		t += " of " + specs.DescribeMatch(s.Match)
	}
	return t
}

func describeGates(g specs.Gates) string {
	out := describeMetrics(g)
	for _, w := range g.Webhooks {
		out += fmt.Sprintf("; webhook %s (%s)", w.Name, w.Type)
	}
	return out
}

func describeMetrics(g specs.Gates) string {
	if len(g.Metrics) == 0 {
		if g.HasChecks() {
			return fmt.Sprintf("every %s x%d", specs.Duration{Duration: g.Interval}, g.Iterations)
		}
		return "available"
	}
	var ms []string
	for _, m := range g.Metrics {
		var b []string
		if m.ThresholdRange.Min != nil {
			b = append(b, fmt.Sprintf(">=%g", *m.ThresholdRange.Min))
		}
		if m.ThresholdRange.Max != nil {
			b = append(b, fmt.Sprintf("<=%g", *m.ThresholdRange.Max))
		}
		ms = append(ms, fmt.Sprintf("%s %s/%s", m.Name, strings.Join(b, ","), m.Interval))
	}
	return fmt.Sprintf("every %s x%d: %s", specs.Duration{Duration: g.Interval}, g.Iterations, strings.Join(ms, "; "))
}
