package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"sluice.dev/sluice/dashboard"
	"sluice.dev/sluice/forge"
	"sluice.dev/sluice/gates"
	"sluice.dev/sluice/gitsync"
)

// dashboardFlags are the dashboard's own flags, shared by `sluice run`
// (on its admin listener) and `sluice dashboard`.
type dashboardFlags struct {
	commitURL string
}

// newDashboard is the dashboard over repo, with Prometheus' charts when
// ev is set and commit links from --dashboard-commit-url or the forge.
func newDashboard(repo *gitsync.Repo, statusDir string, ev *gates.Evaluator, commitURL, forgeName, forgeURL, forgeRepo, gitURL string, log *slog.Logger) (*dashboard.Dashboard, error) {
	link, err := dashboard.CommitURLTemplate(commitURL)
	if err != nil {
		return nil, err
	}
	if link == nil && forgeName != "" {
		if forgeRepo == "" {
			forgeRepo, _ = forge.RepoFromGitURL(gitURL)
		}
		// A forge whose pages cannot be told only costs the links.
		link, _ = dashboard.ForgeCommitURL(forgeName, forgeURL, forgeRepo)
	}
	opts := dashboard.Options{Source: dashboard.RepoSource(repo), StatusDir: statusDir, CommitURL: link, Log: log}
	if ev != nil {
		opts.Metrics = ev
	}
	return dashboard.New(opts)
}

func newDashboardCommand() *cobra.Command {
	var (
		rf                   recordFlags
		df                   dashboardFlags
		repoArg, listen      string
		promURL, promToken   string
		promCA               string
		interval             time.Duration
		forgeName, forgeURL  string
		forgeRepo, logFormat string
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the read-only web dashboard of releases from Git and Prometheus",
		Long: `Dashboard serves the web dashboard that ` + "`sluice run`" + ` serves at /ui/ on its admin
listener, for someone with only Git and Prometheus access: every release
with its phase, step and reason, and a page per release with its plan, the
traffic set and observed, a chart per gate with every recorded check, the
Git timeline and the release window. It reads the repository (a URL or a
local clone's directory, synced every --interval) and Prometheus, and
writes nothing. It needs no access to the cluster.`,
		Example: `  sluice dashboard --repo . --prometheus-url http://localhost:9090
  sluice dashboard --repo https://git.example.com/platform/releases.git \
    --git-password-file ~/.config/sluice/token --prometheus-url http://localhost:9090 \
    --commit-url 'https://git.example.com/platform/releases/commit/{commit}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log, err := newLogger(cmd.ErrOrStderr(), logFormat, "info")
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("git-depth") {
				// Release pages read every commit of a release's history.
				rf.git.depth = gitsync.FullHistory
			}
			repo, err := rf.open(cmd, repoArg)
			if err != nil {
				return err
			}
			defer repo.Close()
			var ev *gates.Evaluator
			if promURL != "" {
				if ev, err = gates.New(gates.Options{Address: promURL, BearerTokenFile: promToken, CAFile: promCA, Logger: log}); err != nil {
					return err
				}
			}
			gitURL := rf.git.url
			if repoArg != "" {
				gitURL = repoArg
			}
			dir, err := rf.dir()
			if err != nil {
				return err
			}
			d, err := newDashboard(repo, dir, ev, df.commitURL, forgeName, forgeURL, forgeRepo, gitURL, log)
			if err != nil {
				return err
			}
			return serveDashboard(ctx, cmd, d, repo, listen, interval, log)
		},
	}
	rf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&repoArg, "repo", "", "the repository: a URL or a local clone's directory (default: --git-url, else .)")
	f.StringVar(&listen, "listen", "127.0.0.1:8081", "address to serve the dashboard on")
	f.DurationVar(&interval, "interval", 10*time.Second, "how often to fetch Git")
	f.StringVar(&promURL, "prometheus-url", "", "Prometheus for the traffic and gate charts (without it, only the checks recorded in Git are drawn)")
	f.StringVar(&promToken, "prometheus-token-file", "", "file holding a bearer token for Prometheus")
	f.StringVar(&promCA, "prometheus-ca-file", "", "CA bundle for an HTTPS Prometheus")
	f.StringVar(&df.commitURL, "commit-url", "", "link commits to this URL, {commit} replaced by the hash, e.g. https://github.com/org/releases/commit/{commit}")
	f.StringVar(&forgeName, "forge", "", "link commits to the forge's pages instead: gitea, github or gitlab")
	f.StringVar(&forgeURL, "forge-url", "", "the forge's address, as for sluice run (empty with github: github.com)")
	f.StringVar(&forgeRepo, "forge-repo", "", "the repository on the forge, owner/name (default: from the Git URL)")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	return cmd
}

// serveDashboard syncs repo every interval and serves d on listen until
// ctx ends.
func serveDashboard(ctx context.Context, cmd *cobra.Command, d http.Handler, repo *gitsync.Repo, listen string, interval time.Duration, log *slog.Logger) error {
	if interval <= 0 {
		return fmt.Errorf("--interval %s: want more than 0", interval)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", d)
	mux.Handle("GET /{$}", http.RedirectHandler(dashboard.Prefix, http.StatusFound))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 60 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(cmd.OutOrStdout(), "Sluice dashboard of %s on http://%s%s\n", repo.URL(), ln.Addr(), dashboard.Prefix)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		case err := <-errc:
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		case <-tick.C:
			if _, err := repo.Sync(ctx); err != nil && ctx.Err() == nil {
				log.Warn("git sync failed; the dashboard shows the last synced head", "err", err)
			}
		}
	}
}
