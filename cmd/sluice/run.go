package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/forge"
	"sluice.dev/sluice/gates"
	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/leader"
	"sluice.dev/sluice/notify"
	"sluice.dev/sluice/observe"
	"sluice.dev/sluice/reconciler"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/server"
	"sluice.dev/sluice/specs"
	"sluice.dev/sluice/webhook"
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

// runFlags are the flags of `sluice run`.
type runFlags struct {
	git                     gitFlags
	paths                   []string
	statusDir               string
	maxSpecSize             sizeFlag
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
	onDelete                string
	webhookSecretFile       string
	leaderElect             bool
	shards                  int
	leaseNamespace, leaseID string
	leaseDuration           time.Duration
	renewDeadline           time.Duration
	retryPeriod             time.Duration
	advertise               string
	kubeQPS                 float64
	kubeBurst               int
	watchLive               bool
	commitLinger            time.Duration
	forge, forgeURL         string
	forgeRepo, forgeToken   string
	pprofListen             string
	dashboard               bool
	dash                    dashboardFlags
	notifyConfig, commitURL string
	releaseSelector         string
	cluster                 string
	gateWebhookSecretFile   string
}

func newRunCommand() *cobra.Command {
	return runCommand(&runFlags{}, func(cmd *cobra.Command, fl *runFlags) error {
		return runController(cmd.Context(), cmd.ErrOrStderr(), fl)
	})
}

// runCommand is `sluice run` with its flags in fl and its action run.
func runCommand(fl *runFlags, run func(*cobra.Command, *runFlags) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Follow a Git repository and walk its releases through their stages",
		Long: `Run is Sluice's controller loop. It syncs the Git repository every
--interval (and at once on POST /sync or a push webhook), loads every
release spec under --path, and for each release applies its current step,
checks the step's Prometheus gates every analysis interval, and advances,
promotes or rolls back. Every transition is committed to Git (the status
file of the release, and at promotion the release spec itself) before the
cluster is changed, so the repository is the record of every release.

With --leader-elect (the default inside a cluster) replicas elect a leader
with a Lease: only the leader reconciles; the others keep their clone in
sync, are ready, and take over when the leader stops renewing the Lease.
With --shards N above 1, releases are split into N shards (FNV-1a of
"namespace/name" mod N), each a Lease; every replica reconciles the
releases of the shards it holds, and holds a fair share of them.

Every flag can also be set with an environment variable: SLUICE_ and the
flag's name in capitals with underscores (--git-url is SLUICE_GIT_URL,
--allowed-namespaces is SLUICE_ALLOWED_NAMESPACES, comma-separated). A flag
given on the command line wins.`,
		Example: `  sluice run --git-url https://git.example.com/platform/releases.git \
    --git-password-file /etc/sluice/git/password \
    --prometheus-url http://prometheus.istio-system:9090 \
    --allowed-namespaces istioinaction,shop`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd.Flags())
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd, fl) },
	}
	fl.git.register(cmd)
	f := cmd.Flags()
	f.StringSliceVar(&fl.paths, "path", []string{"."}, "repository directories holding release specs (repeatable)")
	f.StringVar(&fl.statusDir, "status-dir", record.DefaultStatusDir, "repository directory for Sluice's status files")
	fl.maxSpecSize = sizeFlag{n: specs.DefaultMaxSpecSize}
	f.Var(&fl.maxSpecSize, "max-spec-size", "refuse release spec files larger than this (KiB, MiB; 0: no limit), unread; their releases are reported invalid")
	f.DurationVar(&fl.interval, "interval", time.Minute, "how often to fetch Git")
	// Workers mostly wait on Git and the API server (kustomize builds are
	// bounded by the CPUs apart), and every worker waiting on a status
	// commit joins the same batch, so more workers mean fewer pushes.
	f.IntVar(&fl.workers, "workers", 16, "releases reconciled in parallel")
	f.DurationVar(&fl.progress, "progress-deadline", 10*time.Minute, "how long a step's Deployments may take to become available before a rollback")
	f.DurationVar(&fl.reapply, "reapply-interval", 5*time.Minute, "how often an unchanged step is applied again, which corrects drift the cluster's watches missed")
	f.StringVar(&fl.onDelete, "on-delete", reconciler.OnDeleteDelete, `what happens to a release's objects when its spec is deleted from Git: "delete" removes them (but objects annotated sluice.dev/on-delete: orphan), "orphan" leaves them all`)
	f.Float64Var(&fl.kubeQPS, "kube-qps", cluster.DefaultQPS, "requests per second Sluice may send the API server (client-side limit)")
	f.IntVar(&fl.kubeBurst, "kube-burst", cluster.DefaultBurst, "requests Sluice may send the API server in a burst above --kube-qps")
	f.BoolVar(&fl.watchLive, "watch-live-objects", true, "watch the objects Sluice manages and read them from memory, instead of listing them at every apply")
	f.DurationVar(&fl.commitLinger, "commit-linger", reconciler.DefaultCommitLinger, "how long status records of releases that move together are gathered into one commit")
	f.StringVar(&fl.notifyConfig, "notifications-config", "", "YAML file of the chat and webhook channels told about release transitions; empty disables")
	f.StringVar(&fl.commitURL, "commit-url", "", "link of a commit in notifications, {commit} replaced by its hash (e.g. https://git.example.com/org/repo/commit/{commit})")
	f.StringVar(&fl.gateWebhookSecretFile, "gate-webhook-secret-file", "", "file holding the key that signs the webhook gates' requests (X-Sluice-Signature: sha256=<HMAC-SHA256 of the body>), read at every call; empty: unsigned")
	f.StringVar(&fl.pprofListen, "pprof-listen", "", "address to serve Go's net/http/pprof profiles on (e.g. 127.0.0.1:6060); empty disables")
	f.StringVar(&fl.forge, "forge", "", "the forge hosting --git-url, for commit statuses and approval pull requests: gitea, github or gitlab; empty disables")
	f.StringVar(&fl.forgeURL, "forge-url", "", "the forge's address: Gitea's or GitLab's root URL, GitHub's API URL (empty: api.github.com; a GitHub Enterprise Server's address gets /api/v3/)")
	f.StringVar(&fl.forgeRepo, "forge-repo", "", "the repository on the forge, owner/name (default: from --git-url)")
	f.StringVar(&fl.forgeToken, "forge-token-file", "", "file holding the forge's API token, read at every call")
	f.StringVar(&fl.promURL, "prometheus-url", "", "Prometheus for the metric gates")
	f.StringVar(&fl.promToken, "prometheus-token-file", "", "file holding a bearer token for Prometheus, read at every query")
	f.StringVar(&fl.promCA, "prometheus-ca-file", "", "CA bundle for an HTTPS Prometheus")
	f.StringVar(&fl.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config, then $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&fl.kubeContext, "context", "", "kubeconfig context")
	f.StringSliceVar(&fl.namespaces, "allowed-namespaces", nil, "namespaces releases may target (default: any)")
	f.StringVar(&fl.listen, "listen", ":8080", "address for /healthz, /readyz, /metrics, POST /sync and POST /hooks/git; empty to disable")
	f.BoolVar(&fl.dashboard, "dashboard", true, "serve the read-only web dashboard at /ui/ on --listen")
	f.StringVar(&fl.dash.commitURL, "dashboard-commit-url", "", "the dashboard links commits to this URL, {commit} replaced by the hash (default: the --forge's commit pages)")
	f.StringVar(&fl.webhookSecretFile, "webhook-secret-file", "", "file holding the push webhooks' shared secret; without it POST /hooks/git is not served")
	f.StringVar(&fl.authorName, "git-author-name", "Sluice", "author of Sluice's commits")
	f.StringVar(&fl.authorEmail, "git-author-email", "sluice@localhost", "author e-mail of Sluice's commits")
	f.StringVar(&fl.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&fl.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.BoolVar(&fl.leaderElect, "leader-elect", inCluster(), "elect one leader among replicas with a Lease; only the leader reconciles (default true in a cluster)")
	f.IntVar(&fl.shards, "shards", 1, "split the releases into this many shards (FNV-1a of namespace/name mod shards), each a Lease <leader-election-id>-<i>; every replica reconciles the shards it holds, a fair share of them; 1: one leader reconciles every release (needs --leader-elect above 1)")
	f.StringVar(&fl.leaseNamespace, "leader-election-namespace", podNamespace(), "namespace of the leader election Lease (default: the pod's namespace)")
	f.StringVar(&fl.leaseID, "leader-election-id", "sluice", "name of the leader election Lease")
	f.DurationVar(&fl.leaseDuration, "leader-election-lease-duration", leader.DefaultLeaseDuration, "how long standbys wait after the leader's last renewal before taking over (and, with shards, others after a shard's last renewal); whole seconds, at least the renew deadline + 1s: any other value is refused")
	f.DurationVar(&fl.renewDeadline, "leader-election-renew-deadline", leader.DefaultRenewDeadline, "how long the leader tries to renew the Lease before it stops leading")
	f.DurationVar(&fl.retryPeriod, "leader-election-retry-period", leader.DefaultRetryPeriod, "how often replicas try to acquire or renew the Lease")
	f.StringVar(&fl.advertise, "advertise-address", "", "host:port where other replicas reach this one's POST /sync, to pass on syncs to the leader (default: $POD_IP and the --listen port)")
	f.StringVar(&fl.releaseSelector, "release-selector", "", "label selector over the releases' metadata.labels (e.g. team=shop or shard in (a,b)): this Sluice reconciles only the releases it selects; empty: every release")
	f.StringVar(&fl.cluster, "cluster", "", "name of the cluster this Sluice runs on: it reconciles only the releases whose spec.clusters name it or name no cluster, and keeps its status files under --status-dir/NAME")
	annotateEnv(f)
	return cmd
}

// envName is the environment variable that sets a flag of `sluice run`.
func envName(flag string) string {
	return "SLUICE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// annotateEnv names each flag's environment variable in its help.
func annotateEnv(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(f.Usage, "(env ") {
			f.Usage += " (env " + envName(f.Name) + ")"
		}
	})
}

// applyEnv sets each flag not given on the command line from its
// environment variable, as a Deployment passes them from a ConfigMap.
func applyEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		name := envName(f.Name)
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s (--%s): %w", name, f.Name, err))
		}
	})
	return errors.Join(errs...)
}

// inCluster reports whether sluice runs in a Kubernetes pod.
func inCluster() bool { return os.Getenv("KUBERNETES_SERVICE_HOST") != "" }

// podNamespace is the pod's namespace: $POD_NAMESPACE (the downward API),
// else the ServiceAccount's, else sluice-system.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "sluice-system"
}

// runController is `sluice run`.
func runController(ctx context.Context, stderr io.Writer, fl *runFlags) error {
	log, err := newLogger(stderr, fl.logFormat, fl.logLevel)
	if err != nil {
		return err
	}
	// client-go (leader election) logs through klog: make it use our format.
	klog.SetSlogLogger(log.With("component", "client-go"))
	if fl.git.url == "" {
		return errors.New("--git-url (or SLUICE_GIT_URL) is required")
	}
	if fl.shards < 1 {
		return fmt.Errorf("--shards %d: want at least 1", fl.shards)
	}
	if fl.shards > 1 && !fl.leaderElect {
		return fmt.Errorf("--shards %d needs --leader-elect: the shards are Leases", fl.shards)
	}
	gcfg := fl.git.config()
	gcfg.Author = gitsync.Signature{Name: fl.authorName, Email: fl.authorEmail}
	repo, err := gitsync.Open(ctx, gcfg, log.With("component", "git"))
	if err != nil {
		return err
	}
	defer repo.Close()
	restCfg, err := kubeConfig(fl.kubeconfig, fl.kubeContext)
	if err != nil {
		return err
	}
	if fl.kubeQPS <= 0 || fl.kubeBurst <= 0 {
		return fmt.Errorf("--kube-qps %g and --kube-burst %d: want both above 0", fl.kubeQPS, fl.kubeBurst)
	}
	restCfg.QPS, restCfg.Burst = float32(fl.kubeQPS), fl.kubeBurst
	if fl.pprofListen != "" {
		stop, err := servePprof(ctx, fl.pprofListen, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	// The mark on every object it applies tells `sluice apply` that this
	// controller manages the release, and which Git branch it follows.
	// With shards, every object applied is labelled with its shard, and
	// the watches of live objects follow the shards held.
	applier, err := cluster.New(restCfg, cluster.Options{Log: log.With("component", "cluster"),
		Annotations: map[string]string{cluster.AnnotationController: repo.URL() + " " + repo.Branch()}, Shards: fl.shards})
	if err != nil {
		return err
	}
	// Events and the Lease go through the dynamic client: client-go's
	// typed clientset would link and register every built-in API group.
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	// The Leases get a client of their own, with its own client-side rate
	// limit: behind a cold start's burst of Events in a shared limiter, a
	// renewal missed its renew deadline and the shard moved (measured with
	// 10,000 releases on three replicas).
	leaseDyn, err := dynamic.NewForConfig(rest.CopyConfig(restCfg))
	if err != nil {
		return fmt.Errorf("kubernetes client for the Leases: %w", err)
	}
	var g reconciler.Gates
	var ev *gates.Evaluator
	if fl.promURL != "" {
		ev, err = gates.New(gates.Options{Address: fl.promURL, BearerTokenFile: fl.promToken, CAFile: fl.promCA, Logger: log.With("component", "gates")})
		if err != nil {
			return err
		}
		g = ev
	}
	fp, err := newForge(fl)
	if err != nil {
		return err
	}
	host := os.Getenv("POD_NAME")
	if host == "" {
		if host, err = os.Hostname(); err != nil {
			host = "sluice"
		}
	}
	advertise := fl.advertise
	if advertise == "" && os.Getenv("POD_IP") != "" && fl.listen != "" {
		if _, port, err := net.SplitHostPort(fl.listen); err == nil {
			advertise = net.JoinHostPort(os.Getenv("POD_IP"), port)
		}
	}
	identity := leader.NewIdentity(host, advertise)

	metrics := observe.NewMetrics()
	observers := reconciler.Observers{metrics, observe.NewEvents(dyn, identity, log.With("component", "events"))}
	// rec is set below, before any transition can be reported.
	var rec *reconciler.Reconciler
	if fl.notifyConfig != "" {
		annotations := func(id string) map[string]string {
			if rec == nil {
				return nil
			}
			return rec.Annotations(id)
		}
		n, err := notify.Open(fl.notifyConfig, notify.Options{CommitURL: fl.commitURL, Source: notify.Source(fl.git.url), Annotations: annotations,
			Registerer: metrics.Registry(), Log: log.With("component", "notify")})
		if err != nil {
			return err
		}
		// Queued messages get a few seconds to go out at shutdown.
		defer func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := n.Close(ctx); err != nil {
				log.Warn("stopping notifications", "err", err)
			}
		}()
		observers = append(observers, n)
	}
	selector, err := releaseSelector(fl.releaseSelector)
	if err != nil {
		return err
	}
	statusDir, err := clusterStatusDir(fl.statusDir, fl.cluster)
	if err != nil {
		return err
	}
	// With shards, rec (set below) is told of each shard gained and lost.
	var shards *leader.Shards
	if fl.shards > 1 {
		shardsHeld := func() {
			n := len(shards.Held())
			metrics.SetShardsHeld(n)
			metrics.SetLeader(n > 0)
		}
		shards, err = leader.NewShards(leader.ShardsConfig{
			Client: leader.NewLeases(leaseDyn), Namespace: fl.leaseNamespace, Name: fl.leaseID, Shards: fl.shards, Identity: identity,
			LeaseDuration: fl.leaseDuration, RenewDeadline: fl.renewDeadline, RetryPeriod: fl.retryPeriod,
			OnGain: func(i int) { applier.ShardGained(i); rec.ShardGained(i); shardsHeld() },
			OnLoss: func(i int) { rec.ShardLost(i); applier.ShardLost(i); shardsHeld() },
			Log:    log.With("component", "shards"),
		})
		if err != nil {
			return err
		}
	}
	// Load webhooks run in the background; they end with ctx.
	hooks := webhook.New(webhook.Options{SecretFile: fl.gateWebhookSecretFile, UserAgent: "sluice/" + version})
	defer hooks.Wait()
	cfg := reconciler.Config{
		Repo: repo, Cluster: applier, Gates: g, Selector: selector, ClusterName: fl.cluster,
		Paths: fl.paths, StatusDir: statusDir, MaxSpecSize: cmp.Or(fl.maxSpecSize.n, -1), SyncInterval: fl.interval, Workers: fl.workers,
		AllowedNamespaces: fl.namespaces, ProgressDeadline: fl.progress, ReapplyInterval: fl.reapply,
		CommitLinger: fl.commitLinger, Forge: fp, OnDelete: fl.onDelete,
		Webhooks: hooks,
		Observer: observers,
		Log:      log,
	}
	if shards != nil {
		cfg.Shards = shards
	}
	rec, err = reconciler.New(cfg)
	if err != nil {
		return err
	}
	leaders := &leaderTracker{self: identity}
	if shards != nil {
		leaders.others = shards.Holders
	}
	if fl.listen != "" {
		opts := server.Options{
			Addr: fl.listen, Syncer: rec, Metrics: metrics.Registry(),
			WebhookSecretFile: fl.webhookSecretFile, Log: log.With("component", "http"),
		}
		if fl.leaderElect {
			opts.Relay = coalesce(ctx, leaders.relay(log))
		}
		if fl.dashboard {
			if opts.Dashboard, err = newDashboard(repo, statusDir, ev, fl.dash.commitURL, fl.forge, fl.forgeURL, fl.forgeRepo, fl.git.url, log.With("component", "dashboard")); err != nil {
				return err
			}
		}
		srv, err := server.Start(ctx, opts)
		if err != nil {
			return err
		}
		defer srv.Close()
		log.Info("serving /healthz, /readyz, /metrics and POST /sync", "addr", srv.Addr(), "webhooks", fl.webhookSecretFile != "")
	} else if fl.webhookSecretFile != "" {
		return errors.New("--webhook-secret-file needs --listen")
	}
	log.Info("sluice started", "git", repo.URL(), "branch", fl.git.branch, "paths", fl.paths, "interval", fl.interval, "leader_elect", fl.leaderElect,
		"shards", fl.shards, "cluster", fl.cluster, "release_selector", fl.releaseSelector)
	// The leader reads the objects it manages from watches: an unchanged
	// release then costs no API request. Without the watches (RBAC that
	// grants no watch, say) each apply lists them instead.
	lead := func(ctx context.Context) error {
		if fl.watchLive {
			start := time.Now()
			if err := applier.WatchLive(ctx); err != nil {
				log.Warn("not watching live objects; every apply lists them", "err", err)
			} else if shards != nil {
				log.Info("watching the live objects of the shards held, as they are gained")
			} else {
				log.Info("watching live objects", "synced_in", time.Since(start).Round(time.Millisecond))
			}
		}
		return rec.Run(ctx)
	}
	if !fl.leaderElect {
		metrics.SetLeader(true)
		return lead(ctx)
	}
	if shards != nil {
		// Every replica reconciles, the releases of the shards it holds.
		// On shutdown it stops reconciling first, and releases its shards
		// after, so that no two replicas act on a shard at once.
		shardsCtx, stopShards := context.WithCancel(context.WithoutCancel(ctx))
		shared := make(chan struct{})
		go func() {
			defer close(shared)
			_ = shards.Run(shardsCtx)
		}()
		err := lead(ctx)
		stopShards()
		<-shared
		return err
	}

	// A standby keeps its clone in sync, so it is ready and takes over warm.
	followCtx, stopFollow := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		_ = rec.Follow(followCtx)
	}()
	defer func() { stopFollow(); <-followed }()
	err = leader.Run(ctx, leader.Config{
		Client:    leader.NewLeases(leaseDyn),
		Namespace: fl.leaseNamespace, Name: fl.leaseID, Identity: identity,
		LeaseDuration: fl.leaseDuration, RenewDeadline: fl.renewDeadline, RetryPeriod: fl.retryPeriod,
		OnNewLeader: leaders.set,
		Log:         log.With("component", "leader"),
	}, func(ctx context.Context) error {
		stopFollow()
		<-followed
		metrics.SetLeader(true)
		defer metrics.SetLeader(false)
		return lead(ctx)
	})
	if errors.Is(err, leader.ErrLost) {
		// Exit, so that a restart comes back as a standby with nothing
		// half-done in memory.
		return fmt.Errorf("%w: exiting", err)
	}
	return err
}

// leaderTracker knows which replica leads, to pass sync requests on to it;
// with shards, every other replica holding one (others).
type leaderTracker struct {
	self   string
	others func() []string
	mu     sync.Mutex
	cur    string
}

func (t *leaderTracker) set(identity string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cur = identity
}

// targets are the replicas a sync request is passed on to: the leader
// when another replica leads; with shards, every other replica holding
// one, since each reconciles its own releases from its own clone.
func (t *leaderTracker) targets() []string {
	if t.others != nil {
		return t.others()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur == t.self || t.cur == "" {
		return nil
	}
	return []string{t.cur}
}

// relay forwards a sync request to the replicas that reconcile (targets)
// and advertise an address: a webhook delivery that lands on a standby,
// or on one replica of several sharing the releases, still reaches every
// replica that reconciles.
func (t *leaderTracker) relay(log *slog.Logger) func(context.Context) {
	client := &http.Client{Timeout: 5 * time.Second}
	return func(ctx context.Context) {
		var wg sync.WaitGroup
		for _, to := range t.targets() {
			addr := leader.Address(to)
			if to == t.self || addr == "" {
				continue
			}
			wg.Go(func() {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/sync", nil)
				if err != nil {
					log.Warn("cannot pass the sync on", "to", to, "err", err)
					return
				}
				req.Header.Set(server.RelayedHeader, t.self)
				resp, err := client.Do(req)
				if err != nil {
					log.Warn("cannot pass the sync on", "to", to, "err", err)
					return
				}
				resp.Body.Close()
				log.Debug("sync passed on", "to", to, "status", resp.StatusCode)
			})
		}
		wg.Wait()
	}
}

// coalesce runs fn in one goroutine, once for any number of calls of the
// function it returns made while fn runs or waits to: a burst of webhook
// deliveries passes the sync on once or twice, not once a delivery. The
// returned function never blocks; fn gets ctx.
func coalesce(ctx context.Context, fn func(context.Context)) func(context.Context) {
	kick := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
				fn(ctx)
			}
		}
	}()
	return func(context.Context) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
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

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// servePprof serves Go's profiles on their own listener, apart from the
// admin address, so they are never exposed by accident.
func servePprof(ctx context.Context, addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof-listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("serving pprof", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

// newForge is the forge of --forge, or nil without it.
func newForge(fl *runFlags) (forge.Provider, error) {
	if fl.forge == "" {
		if fl.forgeURL != "" || fl.forgeToken != "" || fl.forgeRepo != "" {
			return nil, errors.New("--forge-url, --forge-repo and --forge-token-file need --forge (gitea, github or gitlab)")
		}
		return nil, nil
	}
	repo := fl.forgeRepo
	if repo == "" {
		var err error
		if repo, err = forge.RepoFromGitURL(fl.git.url); err != nil {
			return nil, err
		}
	}
	return forge.New(forge.Config{Provider: fl.forge, URL: fl.forgeURL, Repo: repo, TokenFile: fl.forgeToken})
}
