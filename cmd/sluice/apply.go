package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/specs"
)

func newApplyCommand() *cobra.Command {
	var (
		name, step, repo        string
		kubeconfig, kubeContext string
		dryRun                  string
		force                   bool
		wait                    time.Duration
		limit                   = sizeFlag{n: specs.DefaultMaxSpecSize}
	)
	cmd := &cobra.Command{
		Use:   "apply FILE --step NAME|INDEX",
		Short: "Apply one step of a release to the cluster",
		Long: `Apply renders one step of a release (as "sluice render" does) and applies
it with server-side apply as field manager "sluice": objects in dependency
order, then the objects Sluice rendered for this release before and no longer
renders are pruned. Objects without Sluice's ownership labels are never
touched. An unchanged step makes no write. With --dry-run=server the API
server validates everything and nothing changes. With --wait, apply waits
until the step's Deployments are available.

Apply refuses a release the controller (sluice run) manages in this
cluster, that is whose live objects carry the controller's mark (the
annotation ` + cluster.AnnotationController + `): a step applied by hand
fights the controller, which puts its own step back, and may bring back a
version the release has retired. Change the release spec in Git instead,
or pass --force to apply anyway (the controller applies its step again at
its next reconcile).`,
		Example: `  # Validate the dark launch against the cluster without changing it
  sluice apply examples/catalog/releases/catalog.yaml --step dark-launch --dry-run=server

  # Apply the 20% step and wait for its Deployments
  sluice apply examples/catalog/releases/catalog.yaml --step canary-20 --wait 2m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dryRun != "none" && dryRun != "server" {
				return fmt.Errorf("--dry-run=%s: use none or server", dryRun)
			}
			rel, st, out, err := renderStep(cmd.Context(), args[0], name, step, repo, limit.n)
			if err != nil {
				return err
			}
			cfg, err := kubeConfig(kubeconfig, kubeContext)
			if err != nil {
				return err
			}
			a, err := cluster.New(cfg, cluster.Options{})
			if err != nil {
				return err
			}
			set := cluster.Set{Owner: out.Owner, Objects: out.Objects}
			if err := checkControlled(cmd, a, set, rel.ID(), force, dryRun == "server"); err != nil {
				return err
			}
			res, err := a.Apply(cmd.Context(), set, cluster.ApplyOptions{DryRun: dryRun == "server"})
			if res != nil {
				printApplyResult(cmd, res, dryRun == "server")
			}
			if err != nil {
				return err
			}
			if wait > 0 && dryRun != "server" {
				for _, v := range st.Versions {
					if err := a.WaitAvailable(cmd.Context(), rel.Metadata.Namespace, out.Workloads[v], wait); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "deployment %s/%s available\n", rel.Metadata.Namespace, out.Workloads[v])
				}
				// Gateway API routes count once their controllers accept them.
				if err := a.WaitRoutes(cmd.Context(), rel.Metadata.Namespace, out.Routes, wait); err != nil {
					return err
				}
				for _, r := range out.Routes {
					fmt.Fprintf(cmd.OutOrStdout(), "httproute %s/%s accepted\n", rel.Metadata.Namespace, r)
				}
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
	f.StringVar(&dryRun, "dry-run", "none", "none, or server to have the API server validate without persisting")
	f.Lookup("dry-run").NoOptDefVal = "server"
	f.BoolVar(&force, "force", false, "apply even when the controller manages the release in this cluster")
	f.DurationVar(&wait, "wait", 0, "wait this long for the step's Deployments to become available (0: do not wait)")
	limit.register(cmd)
	return cmd
}

// checkControlled refuses a release the controller manages in this
// cluster, unless force; a server dry run, which changes nothing, goes on
// with a warning.
func checkControlled(cmd *cobra.Command, a *cluster.Applier, set cluster.Set, release string, force, dryRun bool) error {
	ref, follows, ok, err := a.Controller(cmd.Context(), set)
	if err != nil {
		return fmt.Errorf("look for the controller's objects of %s: %w", release, err)
	}
	if !ok {
		return nil
	}
	why := fmt.Sprintf("the controller (sluice run, following %s) manages %s in this cluster: %s carries its annotation %s", follows, release, ref, cluster.AnnotationController)
	switch {
	case force:
		fmt.Fprintf(cmd.ErrOrStderr(), "Warning: %s; applying anyway (--force): the controller applies its own step again at its next reconcile\n", why)
		return nil
	case dryRun:
		fmt.Fprintf(cmd.ErrOrStderr(), "Warning: %s; an apply without --dry-run would be refused without --force\n", why)
		return nil
	}
	return fmt.Errorf("%s. A step applied by hand fights the controller, which puts its own step back, and may bring back a version the release retired: change the release spec in Git instead, or pass --force to apply anyway", why)
}

func printApplyResult(cmd *cobra.Command, res *cluster.Result, dryRun bool) {
	suffix := ""
	if dryRun {
		suffix = " (server dry run)"
	}
	w := cmd.OutOrStdout()
	for _, g := range []struct {
		verb string
		refs []cluster.ObjectRef
	}{{"created", res.Created}, {"configured", res.Updated}, {"unchanged", res.Unchanged}, {"pruned", res.Pruned}} {
		for _, r := range g.refs {
			fmt.Fprintf(w, "%s %s%s\n", r, g.verb, suffix)
		}
	}
	for _, d := range res.Drift {
		fmt.Fprintf(w, "drift corrected: %v\n", d)
	}
}
