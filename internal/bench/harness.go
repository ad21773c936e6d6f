package bench

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
	// GitInMemory keeps each sluice's clone in memory; by default it is on
	// disk under Dir (--git-cache-dir), as deploy/ runs sluice.
	GitInMemory bool
	// Passes is how many no-change passes and changed releases are
	// measured; default 3 each.
	Passes int
	// ColdTimeout bounds the cold start; default 2 minutes plus 100 ms
	// per release.
	ColdTimeout time.Duration

	// SluiceReplicas is how many sluice processes share the releases
	// (default 1) and Shards their --shards (default 1). With more than
	// one of either they run with --leader-elect, their Leases in
	// LeaseNamespace (default sluice-system), and the result adds the
	// per-replica figures, the takeover of a killed replica's releases
	// and the check of the Git history.
	SluiceReplicas, Shards int
	LeaseNamespace         string
	// ShardOf, when set, is sluice's placement of a release (namespace/
	// name) among shards: the takeover then changes releases of every
	// shard and knows which were the killed replica's. Without it, the
	// takeover changes releases spread over the list and waits for all.
	ShardOf func(id string, shards int) int
	// TakeoverTimeout bounds the wait for a killed replica's releases
	// to be applied by the others; default 2 minutes.
	TakeoverTimeout time.Duration

	Log *slog.Logger
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
	cfg.SluiceReplicas, cfg.Shards = max(1, cfg.SluiceReplicas), max(1, cfg.Shards)
	cfg.LeaseNamespace = cmp.Or(cfg.LeaseNamespace, "sluice-system")
	cfg.TakeoverTimeout = cmp.Or(cfg.TakeoverTimeout, 2*time.Minute)
	log := cfg.Log.With("releases", cfg.Releases)
	if cfg.multi() {
		log = log.With("replicas", cfg.SluiceReplicas, "shards", cfg.Shards)
	}

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
	namespaces := cfg.NamespaceNames()
	if cfg.multi() {
		namespaces = append(namespaces, cfg.LeaseNamespace)
	}
	for _, ns := range namespaces {
		if err := env.CreateNamespace(ctx, ns); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	git, err := startGitServer(filepath.Dir(bare))
	if err != nil {
		return nil, err
	}
	defer git.Close()
	dyn, err := dynamic.NewForConfig(env.RESTConfig())
	if err != nil {
		return nil, fmt.Errorf("bench: dynamic client: %w", err)
	}

	h := &harness{cfg: cfg, log: log, env: env, git: git, dyn: dyn, bare: bare, changed: map[string]bool{}}
	return h.run(ctx)
}

type harness struct {
	cfg  Config
	log  *slog.Logger
	env  *testenv.Env
	git  *gitServer
	dyn  dynamic.Interface
	bare string

	replicas []*replica
	exits    chan replicaExit
	// changed are the releases given a candidate so far.
	changed map[string]bool
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
		SluiceEnv: h.cfg.SluiceEnv, GitInMemory: h.cfg.GitInMemory, LoadStart: LoadAvg(),
	}
	// Count every release's VirtualService as it appears: Sluice applies
	// it last, after the status commit and the rest of the step.
	applied, err := h.watch(ctx, gvrVirtualService, "", specs.LabelManagedBy+"="+specs.ManagedByValue)
	if err != nil {
		return nil, err
	}
	if err := h.startSluice(); err != nil {
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
		case ev := <-h.exits:
			if err := h.unexpected(ev); err != nil {
				return nil, fmt.Errorf("during the cold start: %w", err)
			}
		case <-coldCtx.Done():
			return nil, fmt.Errorf("bench: cold start: %d of %d releases applied after %s: %w (%s)\n%s", len(seen), h.cfg.Releases,
				time.Since(began).Round(time.Second), coldCtx.Err(), h.usageSummary(), h.tail())
		}
		if len(seen)%max(1, h.cfg.Releases/10) == 0 {
			args := []any{"applied", len(seen), "elapsed", time.Since(began).Round(time.Millisecond)}
			if h.cfg.multi() {
				args = append(args, "usage", h.usageSummary())
			}
			h.log.Info("cold start", args...)
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
	h.log.Info("cold start done", "took", coldWall.Round(time.Millisecond), "commits", res.Cold.Commits, "pushes", res.Cold.GitPushes,
		"sluice_cpu_ms", res.Cold.CPUMillis, "cluster_cpu_ms", res.Cold.ClusterCPUMillis)
	cold := h.perReplica(ctx)

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
	if h.cfg.multi() {
		if err := h.measureShared(ctx, res, cold); err != nil {
			return nil, err
		}
	}
	res.RSSEndMiB = h.rssMiB()
	peak, err := h.peakRSS()
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
	offsets := h.logSizes()
	reconciles := h.reconciles(ctx)
	active := h.activeReplicas(ctx)
	before := h.sample(ctx)
	began := time.Now()
	if err := h.triggerSync(ctx); err != nil {
		return Phase{}, err
	}
	took, err := h.waitPass(ctx, active, offsets, head, reconciles)
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
	h.changed[r.ID()] = true
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
		case ev := <-h.exits:
			if err := h.unexpected(ev); err != nil {
				return err
			}
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

// waitPass waits for the log of every active replica (sluice's log, with
// one process) to report the pass over head, each from its offset on, and
// returns how long the slowest says it took. A sluice that does not log
// passes is followed by its reconcile counter instead (from reconciles
// on, summed over the replicas), which is coarser.
func (h *harness) waitPass(ctx context.Context, active []*replica, offsets []int64, head string, reconciles float64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	short := head[:12]
	took := map[*replica]time.Duration{}
	for i := 0; ; i++ {
		for _, r := range active {
			if _, ok := took[r]; ok {
				continue
			}
			if line := findLog(r.logPath, offsets[r.index], passDone, "head="+short); line != "" {
				took[r] = logDuration(line, "took")
			}
		}
		if len(active) > 0 && len(took) == len(active) {
			return slices.Max(slices.Collect(maps.Values(took))), nil
		}
		if i%10 == 9 && reconciles >= 0 && h.reconciles(ctx) >= reconciles+float64(h.cfg.Releases) {
			return 0, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("bench: no %q for head %s in the log of %d of %d active replicas: %w\n%s", passDone, short, len(active)-len(took), len(active), ctx.Err(), h.tail())
		case ev := <-h.exits:
			if err := h.unexpected(ev); err != nil {
				return 0, err
			}
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// activeReplicas are the replicas that reconcile releases now: the one
// process, or those holding shards or leading.
func (h *harness) activeReplicas(ctx context.Context) []*replica {
	if !h.cfg.multi() {
		return h.replicas
	}
	var out []*replica
	for _, r := range h.live() {
		if r.active(ctx) {
			out = append(out, r)
		}
	}
	return out
}

// reconciles reads the running replicas' count of reconciles from their
// metrics, summed; -1 when one cannot.
func (h *harness) reconciles(ctx context.Context) float64 {
	var sum float64
	for _, r := range h.live() {
		n, ok := r.metric(ctx, "sluice_reconcile_duration_seconds_count")
		if !ok {
			return -1
		}
		sum += n
	}
	return sum
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

// logSizes are the replicas' log sizes, by index.
func (h *harness) logSizes() []int64 {
	out := make([]int64, len(h.replicas))
	for i, r := range h.replicas {
		if fi, err := os.Stat(r.logPath); err == nil {
			out[i] = fi.Size()
		}
	}
	return out
}

// findLog returns the first line of the log at path after offset holding
// every one of parts.
func findLog(path string, offset int64, parts ...string) string {
	f, err := os.Open(path)
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

// tail is the end of every replica's log, for errors.
func (h *harness) tail() string {
	var b strings.Builder
	for _, r := range h.replicas {
		data, err := os.ReadFile(r.logPath)
		if err != nil {
			continue
		}
		if n := 4000 / len(h.replicas); len(data) > n {
			data = data[len(data)-n:]
		}
		fmt.Fprintf(&b, "sluice log (%s), last lines:\n%s", r.logPath, data)
	}
	return b.String()
}

// rssMiB is the resident memory of the running replica that holds the
// most.
func (h *harness) rssMiB() float64 {
	var most uint64
	for _, r := range h.live() {
		_, rss, _ := r.usage()
		most = max(most, rss)
	}
	return float64(most) / (1 << 20)
}

// peakRSS is the highest memory high-water mark (VmHWM) of any replica,
// a killed one's as read before its end.
func (h *harness) peakRSS() (uint64, error) {
	var most uint64
	for _, r := range h.replicas {
		_, _, peak := r.usage()
		if peak == 0 {
			return 0, fmt.Errorf("bench: read %s's memory: no VmHWM", r.name)
		}
		most = max(most, peak)
	}
	return most, nil
}

// sample is every counter at one moment.
type sample struct {
	cpu             time.Duration
	cluster         map[string]time.Duration
	api             apiCounts
	fetches, pushes int64
	commits         int
	promQueries     int64
}

func (h *harness) sample(ctx context.Context) sample {
	s := sample{fetches: h.git.fetches.Load(), pushes: h.git.pushes.Load()}
	s.cluster = map[string]time.Duration{}
	for name, pid := range h.env.PIDs() {
		if c, err := cpuTime(pid); err == nil {
			s.cluster[name] = c
		}
	}
	for _, r := range h.replicas {
		cpu, _, _ := r.usage()
		s.cpu += cpu
		s.api = s.api.add(r.proxy.snapshot())
	}
	s.commits, _ = CommitCount(ctx, h.bare)
	s.promQueries = promQueries(ctx, h.env.PrometheusURL())
	return s
}

// clusterCPU is each component's CPU time from before to after, in ms.
func clusterCPU(before, after map[string]time.Duration) map[string]float64 {
	out := map[string]float64{}
	for name, c := range after {
		if b, ok := before[name]; ok {
			out[name] = float64((c - b).Milliseconds())
		}
	}
	return out
}

func (s sample) since(before sample, wall time.Duration) Phase {
	return Phase{
		WallMillis: wall.Seconds() * 1000,
		CPUMillis:  (s.cpu - before.cpu).Seconds() * 1000,

		ClusterCPUMillis: clusterCPU(before.cluster, s.cluster),
		API:              s.api.sub(before.api),
		GitFetches:       s.fetches - before.fetches,
		GitPushes:        s.pushes - before.pushes,
		Commits:          s.commits - before.commits,
		PromQueries:      s.promQueries - before.promQueries,
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
