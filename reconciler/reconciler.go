// Package reconciler is Sluice's main loop: it follows the Git repository,
// walks each release through the steps of its plan behind its metric
// gates, and records every transition in Git before the cluster sees it.
package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"k8s.io/client-go/util/workqueue"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/gates"
	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/renderer"
	"sluice.dev/sluice/specs"
)

// Cluster applies a step's objects and reports whether a workload is up.
type Cluster interface {
	Apply(ctx context.Context, set cluster.Set, opts cluster.ApplyOptions) (*cluster.Result, error)
	Available(ctx context.Context, namespace, name string) (ok bool, reason string, err error)
}

// Gates evaluates a step's metric gates.
type Gates interface {
	Evaluate(ctx context.Context, t gates.Target, metrics []specs.Metric) ([]gates.Result, error)
}

// Config configures a Reconciler.
type Config struct {
	Repo    *gitsync.Repo
	Cluster Cluster
	// Gates may be nil when no release has metrics; a step with metrics
	// then holds with an error in its status.
	Gates Gates
	// Paths are the repository directories searched for release specs;
	// default the whole repository.
	Paths []string
	// StatusDir holds Sluice's status files; default DefaultStatusDir.
	StatusDir string
	// SyncInterval is how often Git is fetched; default 1m. Trigger syncs at once.
	SyncInterval time.Duration
	// Workers reconcile releases in parallel; default 4.
	Workers int
	// AllowedNamespaces, when set, are the only namespaces releases may target.
	AllowedNamespaces []string
	// ProgressDeadline bounds how long a step's Deployments may take to
	// become available before the release rolls back; default 10m.
	ProgressDeadline time.Duration
	// ReapplyInterval re-applies an unchanged step, which corrects drift;
	// default 5m.
	ReapplyInterval time.Duration
	Log             *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Reconciler walks every release in the repository through its plan.
type Reconciler struct {
	cfg      Config
	log      *slog.Logger
	renderer *renderer.Renderer
	queue    workqueue.TypedRateLimitingInterface[string]
	trigger  chan struct{}

	mu     sync.Mutex
	snap   *snapshot
	parsed map[string]parsedFile   // spec file path -> parse result, by blob
	memo   map[string]*releaseMemo // release ID -> what is not worth a commit
	ready  bool
}

// releaseMemo is what Sluice keeps in memory only: things that a restart
// may safely forget (it re-applies, re-waits and re-checks).
type releaseMemo struct {
	stepKey   string // revision/step the fields below belong to
	applied   string // hash of the applied render
	appliedAt time.Time
	passed    int
	noData    int // checks in a row without data
	lastCheck time.Time
	lastErr   string
}

// New checks cfg and returns a Reconciler.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Repo == nil || cfg.Cluster == nil {
		return nil, errors.New("reconciler: Repo and Cluster are required")
	}
	if len(cfg.Paths) == 0 {
		cfg.Paths = []string{"."}
	}
	if cfg.StatusDir == "" {
		cfg.StatusDir = DefaultStatusDir
	}
	cfg.StatusDir = path.Clean(cfg.StatusDir)
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = time.Minute
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.ProgressDeadline <= 0 {
		cfg.ProgressDeadline = 10 * time.Minute
	}
	if cfg.ReapplyInterval <= 0 {
		cfg.ReapplyInterval = 5 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Reconciler{
		cfg:      cfg,
		log:      cfg.Log,
		renderer: renderer.New(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 2*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "releases"}),
		trigger: make(chan struct{}, 1),
		parsed:  map[string]parsedFile{},
		memo:    map[string]*releaseMemo{},
	}, nil
}

// Trigger asks for a Git sync now (a push webhook, say).
func (r *Reconciler) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Ready reports whether the first sync has succeeded.
func (r *Reconciler) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready
}

// Run syncs and reconciles until ctx ends.
func (r *Reconciler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range r.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r.processNext(ctx) {
			}
		}()
	}
	defer func() {
		r.queue.ShutDownWithDrain()
		wg.Wait()
	}()
	t := time.NewTicker(r.cfg.SyncInterval)
	defer t.Stop()
	for {
		if err := r.syncOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("git sync failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.trigger:
		}
	}
}

// syncOnce fetches Git and, when the head moved, queues every release.
func (r *Reconciler) syncOnce(ctx context.Context) error {
	res, err := r.cfg.Repo.Sync(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	first := !r.ready
	r.ready = true
	r.mu.Unlock()
	if !res.Changed && !first {
		return nil
	}
	snap, err := r.refresh(ctx)
	if err != nil {
		return err
	}
	for id := range snap.releases {
		r.queue.Add(id)
	}
	return nil
}

func (r *Reconciler) processNext(ctx context.Context) bool {
	id, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(id)
	after, err := r.reconcile(ctx, id)
	switch {
	case ctx.Err() != nil:
		r.queue.Forget(id)
	case err != nil:
		r.log.Error("reconcile failed", "release", id, "err", err)
		r.queue.AddRateLimited(id)
	default:
		r.queue.Forget(id)
		if after > 0 {
			r.queue.AddAfter(id, after)
		}
	}
	return true
}

// ReconcileAll runs one pass over every release without the queue, for
// tests and one-shot runs; it returns the first error.
func (r *Reconciler) ReconcileAll(ctx context.Context) error {
	if err := r.syncOnce(ctx); err != nil {
		return err
	}
	snap, err := r.refresh(ctx)
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(snap.releases))
	for id := range snap.releases {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var errs []error
	for _, id := range ids {
		if _, err := r.reconcile(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// reconcile does what one release needs now and says when to look again.
func (r *Reconciler) reconcile(ctx context.Context, id string) (time.Duration, error) {
	snap, err := r.refresh(ctx)
	if err != nil {
		return 0, err
	}
	e, ok := snap.releases[id]
	if !ok {
		r.mu.Lock()
		delete(r.memo, id)
		r.mu.Unlock()
		return 0, nil // gone from Git: Sluice leaves the cluster as it is
	}
	st, err := snap.status(r.cfg.StatusDir, e.namespace, e.name)
	if err != nil {
		r.log.Warn("status file unreadable; starting from the spec", "release", id, "err", err)
	}
	// Records carry whole seconds: they are for people and for Git diffs.
	rc := &run{r: r, snap: snap, e: e, st: st, now: r.cfg.Now().UTC().Truncate(time.Second), memo: r.memoFor(id)}
	after, err := rc.step(ctx)
	r.log.Debug("reconciled", "release", id, "head", snap.head.String()[:12], "phase", phaseOf(rc.st), "step", stepOf(rc.st), "next", after, "err", err)
	return after, err
}

func (r *Reconciler) memoFor(id string) *releaseMemo {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.memo[id]
	if m == nil {
		m = &releaseMemo{}
		r.memo[id] = m
	}
	return m
}

func (r *Reconciler) allowed(ns string) bool {
	return len(r.cfg.AllowedNamespaces) == 0 || slices.Contains(r.cfg.AllowedNamespaces, ns)
}

// commit records a status (and at promotion the spec edit) in Git.
func (r *Reconciler) commit(ctx context.Context, e *entry, st *Status, subject, action string, edits []gitsync.Edit) error {
	data, err := st.Marshal()
	if err != nil {
		return err
	}
	trailers := []gitsync.Trailer{
		{Key: gitsync.TrailerRelease, Value: e.id},
		{Key: gitsync.TrailerAction, Value: action},
	}
	if st.Step != "" {
		trailers = append(trailers, gitsync.Trailer{Key: gitsync.TrailerStep, Value: st.Step})
	}
	if st.Revision != "" {
		trailers = append(trailers, gitsync.Trailer{Key: "Sluice-Revision", Value: st.Revision})
	}
	body := ""
	if st.Message != "" {
		body = "\n\n" + st.Message
	}
	res, err := r.cfg.Repo.Commit(ctx, gitsync.Change{
		Message:  subject + body,
		Trailers: trailers,
		Files:    map[string][]byte{StatusPath(r.cfg.StatusDir, e.namespace, e.name): data},
		Edits:    edits,
	})
	if err != nil {
		return fmt.Errorf("record %s: %w", subject, err)
	}
	if !res.NoChange {
		r.log.Info(subject, "release", e.id, "commit", res.Hash.String()[:12], "action", action)
	}
	return nil
}

// headTree returns the tree at the repository's head.
func headTree(ctx context.Context, repo *gitsync.Repo) (plumbing.Hash, *gitsync.Tree, error) {
	head, ok, err := repo.Head()
	if err != nil {
		return plumbing.ZeroHash, nil, err
	}
	if !ok {
		return plumbing.ZeroHash, nil, errors.New("nothing synced yet")
	}
	t, err := repo.Tree(ctx, head)
	return head, t, err
}

func stepLabel(s specs.Step) string {
	if s.Kind == specs.KindWeighted {
		return fmt.Sprintf("%d%%", s.Weight)
	}
	return s.Name
}

func gateSummary(vals []GateValue) string {
	parts := make([]string, 0, len(vals))
	for _, g := range vals {
		parts = append(parts, g.String())
	}
	return strings.Join(parts, ", ")
}

// String reads like "success-rate 99.8 >= 99" or "p99 212ms <= 500ms".
func (g GateValue) String() string {
	name, unit := g.Metric, ""
	switch g.Metric {
	case specs.MetricRequestSuccessRate:
		name = "success-rate"
	case specs.MetricRequestDuration:
		name, unit = "p99", "ms"
	}
	if g.Value == nil {
		return name + " no data"
	}
	v := *g.Value
	f := func(x float64) string { return strings.TrimSuffix(fmt.Sprintf("%.1f", x), ".0") + unit }
	switch {
	case g.Min != nil && v < *g.Min:
		return fmt.Sprintf("%s %s < %s", name, f(v), f(*g.Min))
	case g.Max != nil && v > *g.Max:
		return fmt.Sprintf("%s %s > %s", name, f(v), f(*g.Max))
	case g.Min != nil:
		return fmt.Sprintf("%s %s >= %s", name, f(v), f(*g.Min))
	case g.Max != nil:
		return fmt.Sprintf("%s %s <= %s", name, f(v), f(*g.Max))
	}
	return fmt.Sprintf("%s %s", name, f(v))
}

func phaseOf(st *Status) Phase {
	if st == nil {
		return ""
	}
	return st.Phase
}

func stepOf(st *Status) string {
	if st == nil {
		return ""
	}
	return st.Step
}
