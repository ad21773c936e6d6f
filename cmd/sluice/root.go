package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=v0.1.0".
var version = "dev"

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "sluice",
		Short: "GitOps progressive delivery on Istio",
		Long: `Sluice walks each release spec in a Git repository through its stages:
deploy (the candidate runs, with no traffic), dark launch (only matching
requests reach it), weighted steps (10%, 20%, ...) and promote, holding each
step until its Prometheus gates pass and rolling back when they fail. Every
transition is committed back to Git.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	if strings.HasPrefix(filepath.Base(os.Args[0]), "kubectl-") {
		// Installed as kubectl-sluice, it is a kubectl plugin: kubectl sluice status.
		root.Use = "kubectl sluice"
	}
	root.AddCommand(
		newValidateCommand(),
		newPlanCommand(),
		newRenderCommand(),
		newApplyCommand(),
		newDiffCommand(),
		newGatesCommand(),
		newRunCommand(),
		newStatusCommand(),
		newHistoryCommand(),
		newApproveCommand(),
		newAbortCommand(),
		newRetryCommand(),
		newPauseCommand(),
		newResumeCommand(),
		newPromoteCommand(),
		newDashboardCommand(),
		newVersionCommand(),
	)
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of sluice",
		Example: "  sluice version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := version
			goVersion := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
				if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
					v = bi.Main.Version
				}
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "sluice %s (%s)\n", v, goVersion)
			return err
		},
	}
}
