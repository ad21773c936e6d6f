package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/gates"
	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/reconciler"
)

// gitFlags are the flags that name a Git remote and its credentials.
type gitFlags struct {
	url, branch, cacheDir string
	depth                 int
	auth                  gitsync.Auth
}

func (g *gitFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&g.url, "git-url", os.Getenv("SLUICE_GIT_URL"), "Git remote with the release specs: file://, https:// or ssh:// (env SLUICE_GIT_URL)")
	f.StringVar(&g.branch, "git-branch", envOr("SLUICE_GIT_BRANCH", "main"), "branch to follow (env SLUICE_GIT_BRANCH)")
	f.IntVar(&g.depth, "git-depth", 0, "fetch depth; 0 means shallow (1), -1 means full history")
	f.StringVar(&g.cacheDir, "git-cache-dir", "", "directory for the local clone (default: in memory)")
	f.StringVar(&g.auth.UsernameFile, "git-username-file", "", "file holding the HTTPS username")
	f.StringVar(&g.auth.PasswordFile, "git-password-file", "", "file holding the HTTPS password or token")
	f.StringVar(&g.auth.SSHKeyFile, "git-ssh-key-file", "", "file holding the SSH private key")
	f.StringVar(&g.auth.SSHPassphraseFile, "git-ssh-passphrase-file", "", "file holding the SSH key's passphrase")
	f.StringVar(&g.auth.KnownHostsFile, "git-known-hosts-file", "", "known_hosts file; SSH host keys are always verified")
	f.StringVar(&g.auth.CAFile, "git-ca-file", "", "CA bundle for HTTPS remotes")
}

func (g *gitFlags) config() gitsync.Config {
	return gitsync.Config{URL: g.url, Branch: g.branch, Depth: g.depth, Dir: g.cacheDir, Auth: g.auth}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func newRunCommand() *cobra.Command {
	var (
		git                     gitFlags
		paths                   []string
		statusDir               string
		interval, progress      time.Duration
		workers                 int
		promURL, promToken      string
		promCA                  string
		kubeconfig, kubeContext string
		namespaces              []string
		listen                  string
		authorName, authorEmail string
		logFormat, logLevel     string
		reapply                 time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Follow a Git repository and walk its releases through their stages",
		Long: `Run is Sluice's controller loop. It syncs the Git repository every
--interval (and at once on POST /sync), loads every release spec under
--path, and for each release applies its current step, checks the step's
Prometheus gates every analysis interval, and advances, promotes or rolls
back. Every transition is committed to Git (the status file of the release,
and at promotion the release spec itself) before the cluster is changed, so
the repository is the record of every release.`,
		Example: `  sluice run --git-url https://git.example.com/platform/releases.git \
    --git-password-file /etc/sluice/git/token \
    --prometheus-url http://prometheus.istio-system:9090`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(cmd.ErrOrStderr(), logFormat, logLevel)
			if err != nil {
				return err
			}
			if git.url == "" {
				return errors.New("--git-url is required")
			}
			ctx := cmd.Context()
			gcfg := git.config()
			gcfg.Author = gitsync.Signature{Name: authorName, Email: authorEmail}
			repo, err := gitsync.Open(ctx, gcfg, log.With("component", "git"))
			if err != nil {
				return err
			}
			restCfg, err := kubeConfig(kubeconfig, kubeContext)
			if err != nil {
				return err
			}
			applier, err := cluster.New(restCfg, cluster.Options{Log: log.With("component", "cluster")})
			if err != nil {
				return err
			}
			var g reconciler.Gates
			if promURL != "" {
				ev, err := gates.New(gates.Options{Address: promURL, BearerTokenFile: promToken, CAFile: promCA})
				if err != nil {
					return err
				}
				g = ev
			}
			rec, err := reconciler.New(reconciler.Config{
				Repo: repo, Cluster: applier, Gates: g,
				Paths: paths, StatusDir: statusDir, SyncInterval: interval, Workers: workers,
				AllowedNamespaces: namespaces, ProgressDeadline: progress, ReapplyInterval: reapply,
				Log: log,
			})
			if err != nil {
				return err
			}
			if listen != "" {
				srv, addr, err := serveAdmin(ctx, listen, rec, log)
				if err != nil {
					return err
				}
				defer srv.Close()
				log.Info("serving /healthz, /readyz and POST /sync", "addr", addr)
			}
			log.Info("sluice started", "git", repo.URL(), "branch", git.branch, "paths", paths, "interval", interval)
			return rec.Run(ctx)
		},
	}
	git.register(cmd)
	f := cmd.Flags()
	f.StringSliceVar(&paths, "path", []string{"."}, "repository directories holding release specs (repeatable)")
	f.StringVar(&statusDir, "status-dir", reconciler.DefaultStatusDir, "repository directory for Sluice's status files")
	f.DurationVar(&interval, "interval", time.Minute, "how often to fetch Git")
	f.IntVar(&workers, "workers", 4, "releases reconciled in parallel")
	f.DurationVar(&progress, "progress-deadline", 10*time.Minute, "how long a step's Deployments may take to become available before a rollback")
	f.DurationVar(&reapply, "reapply-interval", 5*time.Minute, "how often an unchanged step is applied again, which corrects drift")
	f.StringVar(&promURL, "prometheus-url", os.Getenv("SLUICE_PROMETHEUS_URL"), "Prometheus for the metric gates (env SLUICE_PROMETHEUS_URL)")
	f.StringVar(&promToken, "prometheus-token-file", "", "file holding a bearer token for Prometheus")
	f.StringVar(&promCA, "prometheus-ca-file", "", "CA bundle for an HTTPS Prometheus")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config, then $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&kubeContext, "context", "", "kubeconfig context")
	f.StringSliceVar(&namespaces, "allowed-namespaces", nil, "namespaces releases may target (default: any)")
	f.StringVar(&listen, "listen", ":8080", "address for /healthz, /readyz and POST /sync; empty to disable")
	f.StringVar(&authorName, "git-author-name", "Sluice", "author of Sluice's commits")
	f.StringVar(&authorEmail, "git-author-email", "sluice@localhost", "author e-mail of Sluice's commits")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func newLogger(w interface{ Write([]byte) (int, error) }, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// kubeConfig loads the in-cluster config, or a kubeconfig file and context.
func kubeConfig(path, context string) (*rest.Config, error) {
	if path == "" && context == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			return cfg, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	return cfg, nil
}

// serveAdmin serves health, readiness and the on-demand sync trigger.
func serveAdmin(ctx context.Context, addr string, rec *reconciler.Reconciler, log *slog.Logger) (*http.Server, string, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !rec.Ready() {
			http.Error(w, "waiting for the first Git sync", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /sync", func(w http.ResponseWriter, _ *http.Request) {
		rec.Trigger()
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, "sync triggered")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server stopped", "err", err)
		}
	}()
	return srv, strings.TrimPrefix(ln.Addr().String(), "[::]"), nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
