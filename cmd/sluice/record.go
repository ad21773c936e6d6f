package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
)

// recordFlags name the repository whose record is read.
type recordFlags struct {
	git       gitFlags
	statusDir string
	cluster   string
}

func (f *recordFlags) register(cmd *cobra.Command) {
	f.git.register(cmd)
	cmd.Flags().StringVar(&f.statusDir, "status-dir", record.DefaultStatusDir, "repository directory of Sluice's status files")
	cmd.Flags().StringVar(&f.cluster, "cluster", "", "the cluster whose status files to read (sluice run --cluster): those under --status-dir/NAME")
}

// dir is the directory of the status files to read: --status-dir, or the
// --cluster's directory under it.
func (f *recordFlags) dir() (string, error) { return clusterStatusDir(f.statusDir, f.cluster) }

// open syncs the repository named by --git-url, or by REPO given as a URL
// or a local clone's directory.
func (f *recordFlags) open(cmd *cobra.Command, repoArg string) (*gitsync.Repo, error) {
	url := f.git.url
	if repoArg != "" {
		url = repoArg
	}
	if url == "" {
		url = "."
	}
	if !strings.Contains(url, "://") && !strings.Contains(url, "@") {
		abs, err := filepath.Abs(url)
		if err != nil {
			return nil, err
		}
		url = "file://" + abs
	}
	cfg := f.git.config()
	cfg.URL = url
	// Reading commits nothing, but a Repo always knows who would.
	cfg.Author = gitsync.Signature{Name: "Sluice", Email: "sluice@localhost"}
	repo, err := gitsync.Open(cmd.Context(), cfg, discardLogger())
	if err != nil {
		return nil, err
	}
	if _, err := repo.Sync(cmd.Context()); err != nil {
		return nil, err
	}
	return repo, nil
}

func newHistoryCommand() *cobra.Command {
	var (
		rf     recordFlags
		output string
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "history RELEASE [REPO]",
		Short: "List a release's transitions from the Git log",
		Long: `History walks the Git log of a repository and lists the commits Sluice made
for one release (by their Sluice-Release trailer), newest first: when, what
(start, advance, check, rollback, promote, ...), the step and the message.
RELEASE is namespace/name, or a name when it is unique. It needs no access
to the cluster.`,
		Example: `  sluice history istioinaction/catalog .
  sluice history catalog --git-url https://git.example.com/platform/releases.git`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			want := args[0]
			repo, err := rf.open(cmd, secondArg(args))
			if err != nil {
				return err
			}
			events, err := record.History(cmd.Context(), repo, want, limit)
			if err != nil {
				return err
			}
			if output == "json" {
				if events == nil {
					events = []record.Transition{}
				}
				return writeJSON(cmd.OutOrStdout(), events)
			}
			if output != "" && output != "table" {
				return fmt.Errorf("unknown output format %q (use table or json)", output)
			}
			if len(events) == 0 {
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "No transitions recorded for %s.\n", want)
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WHEN\tCOMMIT\tACTION\tSTEP\tMESSAGE")
			for _, e := range events {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.When.UTC().Format(time.RFC3339), e.Commit, e.Action, orNone(e.Step), e.Subject)
			}
			return tw.Flush()
		},
	}
	rf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().IntVar(&limit, "limit", 0, "show at most this many transitions (0: all)")
	return cmd
}

func secondArg(args []string) string {
	if len(args) > 1 {
		return args[1]
	}
	return ""
}
