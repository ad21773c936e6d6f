package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/renderer"
	"sluice.dev/sluice/specs"
)

func newValidateCommand() *cobra.Command {
	var (
		repo, output string
		limit        = sizeFlag{n: specs.DefaultMaxSpecSize}
	)
	cmd := &cobra.Command{
		Use:   "validate PATH...",
		Short: "Check release specs, and everything the controller would refuse later",
		Long: `Validate parses every release spec in the given files and directories
(directories are searched recursively for YAML files of Sluice's API group,
apiVersion sluice.dev/..., whatever their kind) and checks what the
controller would otherwise refuse later:

  - every field, strictly (unknown fields, types, values, a key set twice,
    a kind that is not Release);
  - metric query templates, executed with the variables a gate provides,
    and the PromQL they give, parsed with Prometheus' own parser;
  - each release defined once, across files and documents;
  - each version's source: a kustomize directory inside the repository
    without remote bases, building exactly one Deployment and only kinds
    Sluice's ServiceAccount may manage (deploy/rbac.yaml);
  - no two releases rendering the same object;
  - each file under --max-spec-size (checked before reading it).

Every problem is reported with its file, line and field: as text (default),
as JSON (-o json) or as GitHub workflow annotations (-o github). Exit status
is 0 when everything is valid and 1 otherwise.`,
		Example: `  # Validate one file
  sluice validate examples/catalog/releases/catalog.yaml

  # Validate every release under a directory
  sluice validate examples/

  # In a GitHub Actions workflow: problems appear on the pull request's lines
  sluice validate --format github releases/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "", "text", "json", "github":
			default:
				return fmt.Errorf("unknown output format %q (use text, json or github)", output)
			}
			rep, err := validatePaths(cmd.Context(), args, repo, limit.n)
			if err != nil {
				return err
			}
			return rep.write(cmd.OutOrStdout(), cmd.ErrOrStderr(), output)
		},
	}
	f := cmd.Flags()
	f.StringVar(&repo, "repo", "", "repository root that source paths are relative to (default: found from each file)")
	f.StringVarP(&output, "output", "o", "text", "output format: text, json or github (workflow annotations)")
	f.StringVar(&output, "format", "text", "the same as --output")
	limit.register(cmd)
	return cmd
}

// report is the outcome of a validate.
type report struct {
	Valid    bool            `json:"valid"`
	Files    int             `json:"files"`
	Releases int             `json:"releases"`
	Problems specs.ErrorList `json:"problems"`
}

func (r *report) write(stdout, stderr io.Writer, format string) error {
	failed := exitError{fmt.Errorf("%d error(s)", len(r.Problems))}
	switch format {
	case "json":
		if r.Problems == nil {
			r.Problems = specs.ErrorList{}
		}
		if err := writeJSON(stdout, r); err != nil {
			return err
		}
	case "github":
		for _, p := range r.Problems {
			fmt.Fprintln(stdout, githubAnnotation(p))
		}
		if r.Valid {
			_, err := fmt.Fprintf(stdout, "%d release(s) in %d file(s) are valid\n", r.Releases, r.Files)
			return err
		}
	default:
		for _, p := range r.Problems {
			fmt.Fprintln(stderr, p.Error())
		}
		if r.Valid {
			_, err := fmt.Fprintf(stdout, "%d release(s) in %d file(s) are valid\n", r.Releases, r.Files)
			return err
		}
	}
	if !r.Valid {
		return failed
	}
	return nil
}

// githubAnnotation is a workflow command that GitHub shows on the line of
// the file in a pull request:
// https://docs.github.com/actions/reference/workflow-commands-for-github-actions
func githubAnnotation(p specs.FieldError) string {
	props := []string{"file=" + escapeProperty(p.File)}
	if p.Line > 0 {
		props = append(props, fmt.Sprintf("line=%d", p.Line))
	}
	if p.Column > 0 {
		props = append(props, fmt.Sprintf("col=%d", p.Column))
	}
	if p.Path != "" {
		props = append(props, "title="+escapeProperty(p.Path))
	}
	msg := p.Reason
	if p.Path != "" {
		msg = p.Path + ": " + msg
	}
	return "::error " + strings.Join(props, ",") + "::" + escapeData(msg)
}

func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func escapeProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

// validatePaths runs every check of `sluice validate`. The error is not
// nil only when the validation could not run (a path that does not exist,
// a signal).
func validatePaths(ctx context.Context, args []string, repo string, limit int64) (*report, error) {
	files, err := releaseFiles(ctx, args, limit)
	if err != nil {
		return nil, err
	}
	rep := &report{Files: len(files)}
	var all []*specs.Release
	for _, f := range files {
		rels, err := loadFile(ctx, f, limit)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("validate: %w", context.Cause(ctx))
		}
		if err != nil {
			rep.Problems = append(rep.Problems, specs.AsErrorList(err, f)...)
		}
		all = append(all, rels...)
	}
	dups := specs.Duplicates(all)
	rep.Problems = append(rep.Problems, dups...)
	dup := map[*specs.Release]bool{}
	for _, r := range all {
		for _, d := range dups {
			if d.File == r.Origin.File && d.Line == r.Origin.Line("metadata.name") {
				dup[r] = true
			}
		}
	}
	rd := renderer.New()
	owners := map[objectKey]*specs.Release{}
	for _, rel := range all {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("validate: %w", context.Cause(ctx))
		}
		probs := checkSources(ctx, rd, rel, repo)
		rep.Problems = append(rep.Problems, probs...)
		if len(probs) == 0 && !dup[rel] {
			rep.Problems = append(rep.Problems, checkOverlap(ctx, rd, rel, repo, owners)...)
		}
		rep.Releases++
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("validate: %w", context.Cause(ctx))
	}
	rep.Problems.Sort()
	rep.Valid = len(rep.Problems) == 0
	return rep, nil
}

// problem is a FieldError on a field of rel.
func problem(rel *specs.Release, path, format string, args ...any) specs.FieldError {
	return specs.FieldError{File: rel.Origin.File, Line: rel.Origin.Line(path), Column: rel.Origin.Column(path), Path: path, Reason: fmt.Sprintf(format, args...)}
}

// managedKinds are the kinds Sluice's ServiceAccount may apply and prune
// (deploy/rbac.yaml); cluster's prune kinds are the same list, and a test
// there holds it to the RBAC file.
func managedKinds() map[schema.GroupKind]bool {
	out := map[schema.GroupKind]bool{}
	for _, gk := range cluster.DefaultPruneKinds() {
		out[gk] = true
	}
	return out
}

func kindList(kinds map[schema.GroupKind]bool) string {
	var out []string
	for gk := range kinds {
		out = append(out, gk.Kind)
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// checkSources checks each version's source: inside the repository, no
// remote bases, and, built as the controller builds it, exactly one
// Deployment and only kinds Sluice may manage.
func checkSources(ctx context.Context, rd *renderer.Renderer, rel *specs.Release, repo string) specs.ErrorList {
	root, err := repoRoot(rel.Origin.File, repo, rel)
	if err != nil {
		return specs.ErrorList{problem(rel, "", "%v", err)}
	}
	var out specs.ErrorList
	allowed := managedKinds()
	for i := range rel.Spec.Versions {
		v := &rel.Spec.Versions[i]
		p := fmt.Sprintf("spec.versions[%d].source", i)
		if v.Source == "" {
			p = "spec.source"
		}
		if err := renderer.CheckSources(root, rel.SourceOf(v)); err != nil {
			out = append(out, problem(rel, p, "%v", err))
			continue
		}
		// The steady state with this version as stable builds it as the
		// controller would, with the release's images, env and patches.
		alone := *rel
		alone.Spec.Stable, alone.Spec.Candidate = v.Name, ""
		rendered, err := rd.Render(ctx, root, &alone, specs.SteadyStep(&alone))
		if err != nil {
			// The field names the release and version already.
			msg := strings.TrimPrefix(err.Error(), "render "+rel.ID()+" step stable: ")
			msg = strings.TrimPrefix(msg, "render "+rel.ID()+" version "+v.Name+": ")
			out = append(out, problem(rel, p, "%s", msg))
			continue
		}
		for _, o := range rendered.Objects {
			gk := o.GroupVersionKind().GroupKind()
			if !allowed[gk] {
				out = append(out, problem(rel, p, "version %s builds %s %s, which Sluice may not manage: its ServiceAccount may apply only %s (deploy/rbac.yaml)",
					v.Name, gk.Kind, o.GetName(), kindList(allowed)))
			}
		}
	}
	return out
}

type objectKey struct {
	gk              schema.GroupKind
	namespace, name string
}

// checkOverlap renders the release's first step (both versions live) and
// reports objects another release renders too: applying them would take
// the objects from one release to the other at every pass.
func checkOverlap(ctx context.Context, rd *renderer.Renderer, rel *specs.Release, repo string, owners map[objectKey]*specs.Release) specs.ErrorList {
	root, err := repoRoot(rel.Origin.File, repo, rel)
	if err != nil {
		return nil // reported by checkSources
	}
	steps, err := specs.Plan(rel)
	if err != nil {
		return specs.ErrorList{problem(rel, "spec.stages", "%v", err)}
	}
	out, err := rd.Render(ctx, root, rel, steps[0])
	if err != nil {
		return specs.ErrorList{problem(rel, "spec", "%v", err)}
	}
	var probs specs.ErrorList
	for _, o := range out.Objects {
		k := objectKey{o.GroupVersionKind().GroupKind(), o.GetNamespace(), o.GetName()}
		other, taken := owners[k]
		if !taken {
			owners[k] = rel
			continue
		}
		if other == rel {
			continue
		}
		probs = append(probs, problem(rel, "metadata.name", "renders %s %s/%s, which release %s (%s:%d) renders too; two releases must not render the same object",
			k.gk.Kind, k.namespace, k.name, other.ID(), other.Origin.File, other.Origin.Line("metadata.name")))
	}
	return probs
}
