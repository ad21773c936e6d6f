package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"sluice.dev/sluice/internal/testenv"
	"sluice.dev/sluice/specs"
)

// Config configures one run of the harness.
type Config struct {
	RepoSpec
	// Sluice is the sluice binary to run.
	Sluice string
	// Dir holds the Git remote, the kubeconfig and sluice's log.
	Dir string
	// Workers is sluice's --workers; 0 leaves its default.
	Workers int
	// SluiceArgs are added to `sluice run`.
	SluiceArgs []string
	// SluiceEnv (KEY=VALUE) is added to sluice's environment only, so that
	// GOMEMLIMIT, say, does not reach the test cluster's components.
	SluiceEnv []string
	// Passes is how many no-change passes and changed releases are
	// measured; default 3 each.
	Passes int
	// ColdTimeout bounds the cold start; default 2 minutes plus 100 ms
	// per release.
	ColdTimeout time.Duration
	Log         *slog.Logger
}

// Run starts a fresh test cluster with Prometheus, generates the
// repository, runs sluice against them and measures it.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.RepoSpec = cfg.RepoSpec.withDefaults()
	if cfg.Releases <= 0 {
		return nil, fmt.Errorf("bench: %d releases: want at least 1", cfg.Releases)
	}
	if cfg.Sluice == "" || cfg.Dir == "" {
		return nil, errors.New("bench: Config.Sluice and Config.Dir are required")
	}
	if cfg.Passes <= 0 {
		cfg.Passes = 3
	}
	if cfg.ColdTimeout <= 0 {
		cfg.ColdTimeout = 2*time.Minute + time.Duration(cfg.Releases)*100*time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	log := cfg.Log.With("releases", cfg.Releases)

	bare := filepath.Join(cfg.Dir, "remote", "releases.git")
	start := time.Now()
	if err := Generate(ctx, bare, cfg.RepoSpec); err != nil {
		return nil, err
	}
	log.Info("repository generated", "took", time.Since(start).Round(time.Millisecond))

	env, err := testenv.Start(ctx, testenv.Options{Prometheus: true, Logger: cfg.Log.With("component", "testenv")})
	if err != nil {
		return nil, fmt.Errorf("bench: start the test cluster: %w", err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			log.Warn("stop the test cluster", "err", err)
		}
	}()
	for _, ns := range cfg.NamespaceNames() {
		if err := env.CreateNamespace(ctx, ns); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	git, err := startGitServer(filepath.Dir(bare))
	if err != nil {
		return nil, err
	}
	defer git.Close()
	proxy, err := startAPIProxy(env.RESTConfig())
	if err != nil {
		return nil, err
	}
	defer proxy.Close()
	dyn, err := dynamic.NewForConfig(env.RESTConfig())
	if err != nil {
		return nil, fmt.Errorf("bench: dynamic client: %w", err)
	}

	h := &harness{cfg: cfg, log: log, env: env, git: git, proxy: proxy, dyn: dyn, bare: bare}
	return h.run(ctx)
}

type harness struct {
	cfg   Config
	log   *slog.Logger
	env   *testenv.Env
	git   *gitServer
	proxy *apiProxy
	dyn   dynamic.Interface
	bare  string

	cmd     *exec.Cmd
	waitErr chan error
	admin   string
	logPath string
}

var (
	gvrVirtualService = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	gvrDeployment     = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
)

func (h *harness) run(ctx context.Context) (*Result, error) {
	// The watches end before the cluster stops.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := &Result{
		Releases: h.cfg.Releases, Namespaces: h.cfg.Namespaces, Replicas: h.cfg.Replicas,
		Workers: h.cfg.Workers, Machine: ReadMachine(), Date: time.Now().UTC().Format(time.DateOnly),
		SluiceEnv: h.cfg.SluiceEnv, LoadStart: LoadAvg(),
	}
	// Count every release's VirtualService as it appears: Sluice applies
	// it last, after the status commit and the rest of the step.
	applied, err := h.watch(ctx, gvrVirtualService, "", specs.LabelManagedBy+"="+specs.ManagedByValue)
	if err != nil {
		return nil, err
	}
	if err := h.startSluice(ctx); err != nil {
		return nil, err
	}
	defer h.stopSluice()

	// Cold start: from the process's start until every release's first
	// step is applied.
	began := time.Now()
	before := h.sample(ctx)
	seen := map[string]bool{}
	coldCtx, cancel := context.WithTimeout(ctx, h.cfg.ColdTimeout)
	defer cancel()
	for len(seen) < h.cfg.Releases {
		select {
		case ev, ok := <-applied:
			if !ok {
				return nil, errors.New("bench: the VirtualService watch ended")
			}
			if ev.Type == watch.Added || ev.Type == watch.Modified {
				if u, ok := ev.Object.(*unstructured.Unstructured); ok {
					seen[u.GetNamespace()+"/"+u.GetName()] = true
				}
			}
		case err := <-h.waitErr:
			return nil, fmt.Errorf("bench: sluice exited during the cold start: %v\n%s", err, h.tail())
		case <-coldCtx.Done():
			return nil, fmt.Errorf("bench: cold start: %d of %d releases applied after %s\n%s", len(seen), h.cfg.Releases, h.cfg.ColdTimeout, h.tail())
		}
		if len(seen)%max(1, h.cfg.Releases/10) == 0 {
			h.log.Info("cold start", "applied", len(seen), "elapsed", time.Since(began).Round(time.Millisecond))
		}
	}
	coldWall := time.Since(began)
	if err := h.quiesce(ctx); err != nil {
		return nil, err
	}
	res.Cold = h.sample(ctx).since(before, coldWall)
	// Everything from the process start counts, including its start-up.
	res.Cold.CPUMillis = h.sample(ctx).cpu.Seconds() * 1000
	res.RSSAfterColdMiB = h.rssMiB()
	h.log.Info("cold start done", "took", coldWall.Round(time.Millisecond), "commits", res.Cold.Commits, "pushes", res.Cold.GitPushes)

	// No-change passes: a person's commit that touches no release, then
	// a sync; every release is reconciled and nothing should be written.
	for i := range h.cfg.Passes {
		p, err := h.steadyPass(ctx, i)
		if err != nil {
			return nil, err
		}
		res.Steady = append(res.Steady, p)
		h.log.Info("no-change pass", "took", time.Duration(p.WallMillis*float64(time.Millisecond)).Round(time.Millisecond),
			"api_requests", p.API.Total, "api_writes", p.API.Writes)
	}

	// One release changed at a time: a candidate pushed, then a sync.
	list := h.cfg.List()
	for i := range h.cfg.Passes {
		r := list[(len(list)*(i+1)/(h.cfg.Passes+1))%len(list)]
		p, err := h.changeOne(ctx, r)
		if err != nil {
			return nil, err
		}
		res.Changed = append(res.Changed, p)
		h.log.Info("one release changed", "release", r.ID(), "took", time.Duration(p.WallMillis*float64(time.Millisecond)).Round(time.Millisecond))
	}
	res.RSSEndMiB = h.rssMiB()
	_, peak, err := memory(h.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	res.PeakRSSMiB = float64(peak) / (1 << 20)
	res.LoadEnd = LoadAvg()
	res.summarize()
	return res, nil
}

// steadyPass measures one sync of a commit that changes no release.
func (h *harness) steadyPass(ctx context.Context, i int) (Phase, error) {
	if err := h.quiesce(ctx); err != nil {
		return Phase{}, err
	}
	head, err := Commit(ctx, h.bare, fmt.Sprintf("README: note %d", i), map[string][]byte{
		"README.md": fmt.Appendf(nil, "# Sluice benchmark repository\n\nNote %d: nothing here changes a release.\n", i),
	})
	if err != nil {
		return Phase{}, err
	}
	offset := h.logSize()
	reconciles := h.reconciles(ctx)
	before := h.sample(ctx)
	began := time.Now()
	if err := h.triggerSync(ctx); err != nil {
		return Phase{}, err
	}
	took, err := h.waitPass(ctx, offset, head, reconciles)
	if err != nil {
		return Phase{}, err
	}
	wall := time.Since(began)
	p := h.sample(ctx).since(before, wall)
	p.SluiceMillis = took.Seconds() * 1000
	return p, nil
}

// changeOne measures one release's candidate from the sync to its first
// step applied (the candidate's Deployment created).
func (h *harness) changeOne(ctx context.Context, r Release) (Phase, error) {
	if err := h.quiesce(ctx); err != nil {
		return Phase{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	events, err := h.watch(ctx, gvrDeployment, r.Namespace, specs.LabelRelease+"="+r.Name)
	if err != nil {
		return Phase{}, err
	}
	if _, err := Commit(ctx, h.bare, "release "+r.Name+" v2", map[string][]byte{r.File: []byte(ReleaseSpec(r, "v2"))}); err != nil {
		return Phase{}, err
	}
	before := h.sample(ctx)
	began := time.Now()
	if err := h.triggerSync(ctx); err != nil {
		return Phase{}, err
	}
	want := r.Name + "-v2"
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return Phase{}, fmt.Errorf("bench: %s: the Deployment watch ended", r.ID())
			}
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok || u.GetName() != want || ev.Type == watch.Deleted {
				continue
			}
			wall := time.Since(began)
			if err := h.quiesce(ctx); err != nil {
				return Phase{}, err
			}
			return h.sample(ctx).since(before, wall), nil
		case <-ctx.Done():
			return Phase{}, fmt.Errorf("bench: %s: candidate not applied: %w\n%s", r.ID(), ctx.Err(), h.tail())
		}
	}
}

// watch streams the events of one resource from now on, resuming after
// the API server closes the watch.
func (h *harness) watch(ctx context.Context, gvr schema.GroupVersionResource, namespace, selector string) (<-chan watch.Event, error) {
	ri := h.dyn.Resource(gvr).Namespace(namespace)
	list, err := ri.List(ctx, metav1.ListOptions{LabelSelector: selector, Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("bench: list %s: %w", gvr.Resource, err)
	}
	lw := &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.LabelSelector = selector
			return ri.Watch(ctx, opts)
		},
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.LabelSelector = selector
			return ri.List(ctx, opts)
		},
	}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.GetResourceVersion(), lw)
	if err != nil {
		return nil, fmt.Errorf("bench: watch %s: %w", gvr.Resource, err)
	}
	go func() {
		<-ctx.Done()
		w.Stop()
	}()
	return w.ResultChan(), nil
}

// startSluice runs `sluice run` against the Git server and the API proxy.
func (h *harness) startSluice(ctx context.Context) error {
	kubeconfig := filepath.Join(h.cfg.Dir, "kubeconfig")
	kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    server: %s\ncontexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\nusers:\n- name: bench\n  user: {}\ncurrent-context: bench\n", h.proxy.URL)
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	h.admin = ln.Addr().String()
	ln.Close()
	args := []string{"run",
		"--git-url", h.git.URL + "/releases.git",
		"--kubeconfig", kubeconfig,
		"--prometheus-url", h.env.PrometheusURL(),
		"--listen", h.admin,
		// The harness triggers every sync itself, and no periodic
		// re-apply may fall inside a measurement.
		"--interval", "1h",
		"--reapply-interval", "1h",
		"--leader-elect=false",
		"--git-author-name", "Sluice", "--git-author-email", "sluice@example.com",
	}
	if h.cfg.Workers > 0 {
		args = append(args, "--workers", strconv.Itoa(h.cfg.Workers))
	}
	args = append(args, h.cfg.SluiceArgs...)
	h.logPath = filepath.Join(h.cfg.Dir, "sluice.log")
	logFile, err := os.Create(h.logPath)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	h.cmd = exec.Command(h.cfg.Sluice, args...)
	h.cmd.Env = append(os.Environ(), h.cfg.SluiceEnv...)
	h.cmd.Stdout, h.cmd.Stderr = logFile, logFile
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("bench: start sluice: %w", err)
	}
	h.waitErr = make(chan error, 1)
	go func() {
		h.waitErr <- h.cmd.Wait()
		logFile.Close()
	}()
	return nil
}

func (h *harness) stopSluice() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.waitErr:
	case <-time.After(15 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.waitErr
	}
}

func (h *harness) triggerSync(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+h.admin+"/sync", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("bench: POST /sync: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("bench: POST /sync: %s", resp.Status)
	}
	return nil
}

// quiesce waits until sluice has sent nothing to the API server or the Git
// server for a second, so one measurement does not spill into the next.
func (h *harness) quiesce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	last := h.sample(ctx)
	quietSince := time.Now()
	for time.Since(quietSince) < time.Second {
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: sluice never went quiet: %w", ctx.Err())
		case err := <-h.waitErr:
			return fmt.Errorf("bench: sluice exited: %v\n%s", err, h.tail())
		case <-time.After(100 * time.Millisecond):
		}
		s := h.sample(ctx)
		if s.api.Total != last.api.Total || s.fetches != last.fetches || s.pushes != last.pushes {
			quietSince = time.Now()
		}
		last = s
	}
	return nil
}

// passDone is the line sluice logs when every release queued by a sync
// has been reconciled once.
const passDone = "reconcile pass done"

// waitPass waits for sluice's log to report the pass over head, from
// offset on, and returns how long sluice says it took. A sluice that does
// not log passes is followed by its reconcile counter instead (from
// reconciles on), which is coarser.
func (h *harness) waitPass(ctx context.Context, offset int64, head string, reconciles float64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	short := head[:12]
	for i := 0; ; i++ {
		if line := h.findLog(offset, passDone, "head="+short); line != "" {
			return logDuration(line, "took"), nil
		}
		if i%10 == 9 && reconciles >= 0 && h.reconciles(ctx) >= reconciles+float64(h.cfg.Releases) {
			return 0, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("bench: no %q for head %s in sluice's log: %w\n%s", passDone, short, ctx.Err(), h.tail())
		case err := <-h.waitErr:
			return 0, fmt.Errorf("bench: sluice exited: %v\n%s", err, h.tail())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// reconciles reads sluice's count of reconciles from its metrics; -1 when
// it cannot.
func (h *harness) reconciles(ctx context.Context) float64 {
	n, matched, ok := sumMetric(ctx, "http://"+h.admin+"/metrics", func(line string) bool {
		return strings.HasPrefix(line, "sluice_reconcile_duration_seconds_count")
	})
	if !ok || !matched {
		return -1
	}
	return n
}

// sumMetric adds up the samples of a Prometheus text exposition whose lines
// match; matched says whether any did, ok whether the endpoint answered.
func sumMetric(ctx context.Context, url string, match func(line string) bool) (sum float64, matched, ok bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !match(line) {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
			matched = true
		}
	}
	return sum, matched, true
}

func (h *harness) logSize() int64 {
	fi, err := os.Stat(h.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// findLog returns the first line after offset holding every one of parts.
func (h *harness) findLog(offset int64, parts ...string) string {
	f, err := os.Open(h.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			return line
		}
	}
	return ""
}

// logDuration reads key=<duration> from a text log line.
func logDuration(line, key string) time.Duration {
	for f := range strings.FieldsSeq(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			d, _ := time.ParseDuration(v)
			return d
		}
	}
	return 0
}

// tail is the end of sluice's log, for errors.
func (h *harness) tail() string {
	data, err := os.ReadFile(h.logPath)
	if err != nil {
		return ""
	}
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return "sluice log (" + h.logPath + "), last lines:\n" + string(data)
}

func (h *harness) rssMiB() float64 {
	rss, _, err := memory(h.cmd.Process.Pid)
	if err != nil {
		return 0
	}
	return float64(rss) / (1 << 20)
}

// sample is every counter at one moment.
type sample struct {
	cpu             time.Duration
	api             apiCounts
	fetches, pushes int64
	commits         int
	promQueries     int64
}

func (h *harness) sample(ctx context.Context) sample {
	s := sample{api: h.proxy.snapshot(), fetches: h.git.fetches.Load(), pushes: h.git.pushes.Load()}
	s.cpu, _ = cpuTime(h.cmd.Process.Pid)
	s.commits, _ = CommitCount(ctx, h.bare)
	s.promQueries = promQueries(ctx, h.env.PrometheusURL())
	return s
}

func (s sample) since(before sample, wall time.Duration) Phase {
	return Phase{
		WallMillis:  wall.Seconds() * 1000,
		CPUMillis:   (s.cpu - before.cpu).Seconds() * 1000,
		API:         s.api.sub(before.api),
		GitFetches:  s.fetches - before.fetches,
		GitPushes:   s.pushes - before.pushes,
		Commits:     s.commits - before.commits,
		PromQueries: s.promQueries - before.promQueries,
	}
}

// promQueries is how many queries Prometheus has answered, from its own
// metrics; -1 when they cannot be read.
func promQueries(ctx context.Context, base string) int64 {
	n, _, ok := sumMetric(ctx, base+"/metrics", func(line string) bool {
		return strings.HasPrefix(line, "prometheus_http_requests_total{") &&
			(strings.Contains(line, `handler="/api/v1/query"`) || strings.Contains(line, `handler="/api/v1/query_range"`))
	})
	if !ok {
		return -1
	}
	return int64(n)
}

// median of xs, 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
