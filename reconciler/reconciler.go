// Package reconciler is Sluice's main loop: it follows the Git repository,
// walks each release through the steps of its plan behind its metric
// gates, and records every transition in Git before the cluster sees it.
package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/workqueue"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/forge"
	"sluice.dev/sluice/gates"
	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/renderer"
	"sluice.dev/sluice/specs"
	"sluice.dev/sluice/webhook"
)

// Cluster applies a step's objects and reports whether a workload is up.
type Cluster interface {
	Apply(ctx context.Context, set cluster.Set, opts cluster.ApplyOptions) (*cluster.Result, error)
	Available(ctx context.Context, namespace, name string) (ok bool, reason string, err error)
}

// RouteChecker is a Cluster that tells whether the controllers of a
// step's Gateway API HTTPRoutes accepted them; a step with routes is not
// available before they have.
type RouteChecker interface {
	RoutesReady(ctx context.Context, namespace string, routes []string) (ok bool, reason string, err error)
}

// What happens to a deleted release's objects (Config.OnDelete).
const (
	OnDeleteDelete = specs.OnDeleteDelete
	OnDeleteOrphan = specs.OnDeleteOrphan
)

// ChangeNotifier is a Cluster that tells which release's objects changed
// (a Deployment became available, a person edited a route).
type ChangeNotifier interface {
	// OnChange has fn told of each change; spec is false when only an
	// object's status changed.
	OnChange(fn func(namespace, release string, spec bool))
}

// Gates evaluates a step's metric gates.
type Gates interface {
	Evaluate(ctx context.Context, t gates.Target, metrics []specs.Metric) ([]gates.Result, error)
}

// Shards are the shards of releases this replica holds; leader.Shards
// is one.
type Shards interface {
	// Of is the shard of a release ID.
	Of(id string) int
	// Holds reports whether this replica holds shard i now.
	Holds(i int) bool
	// Hold is Holds with a context that ends when the shard is lost,
	// and done, to call once the caller stops acting on the shard.
	Hold(i int) (ctx context.Context, done func(), ok bool)
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
	// MaxSpecSize bounds a release spec file in bytes; a larger one is
	// refused unread (its releases are reported invalid). Default
	// specs.DefaultMaxSpecSize; negative: no limit.
	MaxSpecSize int64
	// StatusDir holds Sluice's status files; default record.DefaultStatusDir.
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
	// CommitLinger is how long Run gathers releases' status records into
	// one commit after the first; default DefaultCommitLinger. A batch is
	// pushed at once when every worker waits on it.
	CommitLinger time.Duration
	// Forge, when set, gets the releases' commit statuses and approval
	// pull requests (stages with approval: pullRequest); without it such a
	// stage waits, saying it needs one.
	Forge forge.Provider
	// Selector, when set, confines this Sluice to the releases whose
	// metadata.labels it matches (sluice run --release-selector); the
	// others are another's: never reconciled, never deleted.
	Selector labels.Selector
	// ClusterName, when set, is the cluster this Sluice reconciles
	// (sluice run --cluster): only the releases that name it in
	// spec.clusters, or name no cluster, are its own. Without it, only
	// releases naming no cluster are. StatusDir is then the cluster's
	// own, <root>/<ClusterName> (as sluice run sets it); the records of a
	// release on the other clusters are read from <root>/<cluster>.
	ClusterName string
	// Shards, when set, splits the releases among replicas (sluice run
	// --shards): a release is this replica's only while it holds the
	// release's shard, and a reconcile stops acting (applying,
	// committing) when the shard is lost. Tell the Reconciler of shards
	// gained and lost with ShardGained and ShardLost.
	Shards Shards
	// Webhooks posts the releases' webhook gates; default a client that
	// does not sign (webhook.New with no SecretFile).
	Webhooks *webhook.Client
	// OnDelete is what happens to a release's objects when its spec is
	// deleted from Git: OnDeleteDelete (default) removes them (but those
	// annotated sluice.dev/on-delete: orphan), OnDeleteOrphan leaves them
	// all. The status file is removed either way.
	OnDelete string
	// Observer is told about syncs, reconciles, gate evaluations and
	// transitions (metrics, Kubernetes Events); default none.
	Observer Observer
	Log      *slog.Logger
	// Now is the clock of the records; default time.Now. Durations are
	// measured with the monotonic clock whatever Now is.
	Now func() time.Time
}

// Reconciler walks every release in the repository through its plan.
type Reconciler struct {
	cfg      Config
	log      *slog.Logger
	renderer *renderer.Renderer
	hooks    *webhook.Client
	queue    workqueue.TypedRateLimitingInterface[string]
	trigger  chan struct{}

	// batch gathers status commits while Run runs; nil otherwise.
	batch *batcher
	// watched is set when the cluster tells which release's objects
	// changed (ChangeNotifier): availability then needs no polling.
	watched bool

	// refreshMu lets one worker at a time build a snapshot; it guards
	// listings and listed too.
	refreshMu sync.Mutex
	listings  map[string]listing // directory -> its YAML files, by tree hash
	listed    bool               // listings describe the last snapshot

	mu     sync.Mutex
	pass   *pass
	snap   *snapshot
	parsed map[string]parsedFile   // spec file path -> parse result, by blob
	memo   map[string]*releaseMemo // release ID -> what is not worth a commit
	// statuses keeps the parse of each release's status file by blob.
	statuses *record.StatusCache
	ready    bool
	// awaitSync are shards gained (Config.Shards) whose releases wait for
	// a Git sync begun after the gain, by the gain's number: the previous
	// holder may have recorded transitions this replica has not fetched.
	awaitSync map[int]int
	gains     int
}

// releaseMemo is what Sluice keeps of a release in memory only: things
// that a restart may safely forget (it re-applies, re-waits and re-checks).
type releaseMemo struct {
	// counters are the state machine's (Memo).
	counters  Memo
	applied   string // hash of the applied render
	renderKey string // renderer key of the applied render
	appliedAt time.Time
	// eventTarget is the VirtualService Events go to, kept from the last
	// valid spec so that an invalid one can still be reported there.
	eventTarget string
	// forgeStatus is the commit status last set on the forge.
	forgeStatus string
	// changed is set, from the cluster's watches, when one of the
	// release's objects changed: the next apply compares them with the
	// render even if it applied it recently.
	changed atomic.Bool
	// failure is the run of failed reconciles the release is in, if any.
	failure *Failure
}

// New checks cfg and returns a Reconciler.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Repo == nil || cfg.Cluster == nil {
		return nil, errors.New("reconciler: Repo and Cluster are required")
	}
	if len(cfg.Paths) == 0 {
		cfg.Paths = []string{"."}
	}
	switch cfg.OnDelete {
	case "":
		cfg.OnDelete = OnDeleteDelete
	case OnDeleteDelete, OnDeleteOrphan:
	default:
		return nil, fmt.Errorf("reconciler: on-delete %q: want %q or %q", cfg.OnDelete, OnDeleteDelete, OnDeleteOrphan)
	}
	if cfg.StatusDir == "" {
		cfg.StatusDir = record.DefaultStatusDir
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
	if cfg.CommitLinger <= 0 {
		cfg.CommitLinger = DefaultCommitLinger
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Observer == nil {
		cfg.Observer = NopObserver{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Webhooks == nil {
		cfg.Webhooks = webhook.New(webhook.Options{})
	}
	_, watched := cfg.Cluster.(ChangeNotifier)
	return &Reconciler{
		watched:  watched,
		cfg:      cfg,
		log:      cfg.Log,
		renderer: renderer.New(),
		hooks:    cfg.Webhooks,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 2*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "releases"}),
		trigger:   make(chan struct{}, 1),
		parsed:    map[string]parsedFile{},
		memo:      map[string]*releaseMemo{},
		statuses:  record.NewStatusCache(),
		awaitSync: map[int]int{},
	}, nil
}

// Trigger asks for a Git sync now (a push webhook, say).
func (r *Reconciler) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Ready reports whether a Git sync has succeeded since the start, as
// leader (Run) or as standby (Follow).
func (r *Reconciler) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready
}

// Run syncs and reconciles until ctx ends. Its first successful sync
// queues every release, whatever a Follow before it has seen.
func (r *Reconciler) Run(ctx context.Context) error {
	// The batcher outlives the workers, which may wait on it while they
	// drain.
	batchCtx, stopBatch := context.WithCancel(context.WithoutCancel(ctx))
	b := newBatcher(r.cfg.Repo, r.log, r.cfg.CommitLinger, r.cfg.Workers)
	batched := make(chan struct{})
	go func() {
		defer close(batched)
		b.run(batchCtx)
	}()
	r.mu.Lock()
	r.batch = b
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.batch = nil
		r.mu.Unlock()
		stopBatch()
		<-batched
	}()
	if n, ok := r.cfg.Cluster.(ChangeNotifier); ok {
		n.OnChange(func(namespace, release string, spec bool) {
			id := namespace + "/" + release
			if spec {
				r.memoFor(id).changed.Store(true)
			}
			r.queue.Add(id)
		})
	}
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
	r.log.Info("reconciling releases")
	t := time.NewTicker(r.cfg.SyncInterval)
	defer t.Stop()
	queued := false
	for {
		if err := r.syncOnce(ctx, !queued); err != nil {
			if ctx.Err() == nil {
				r.log.Error("git sync failed", "err", err)
			}
		} else {
			queued = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.trigger:
		}
	}
}

// Follow keeps the clone in sync without reconciling, as a standby replica
// does while another leads: it syncs every SyncInterval and on Trigger, so
// the standby is Ready and its clone warm when it takes over. It never
// writes to Git or to the cluster.
func (r *Reconciler) Follow(ctx context.Context) error {
	r.log.Info("standing by: syncing Git, not reconciling")
	t := time.NewTicker(r.cfg.SyncInterval)
	defer t.Stop()
	for {
		if _, err := r.sync(ctx); err != nil && ctx.Err() == nil {
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

// sync fetches Git and marks the reconciler ready on success.
func (r *Reconciler) sync(ctx context.Context) (gitsync.SyncResult, error) {
	start := time.Now()
	res, err := r.cfg.Repo.Sync(ctx)
	if ctx.Err() == nil {
		r.cfg.Observer.GitSynced(time.Since(start), err)
	}
	if err != nil {
		return res, err
	}
	r.mu.Lock()
	r.ready = true
	r.mu.Unlock()
	return res, nil
}

// syncOnce fetches Git and, when the head moved or all is set, queues
// every release.
func (r *Reconciler) syncOnce(ctx context.Context, all bool) error {
	start := time.Now()
	r.mu.Lock()
	prev := r.snap
	gained := maps.Clone(r.awaitSync)
	r.mu.Unlock()
	res, err := r.sync(ctx)
	if err != nil {
		return err
	}
	if !res.Changed && !all && len(gained) == 0 {
		return nil
	}
	snap, err := r.refresh(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	for i, n := range gained {
		if r.awaitSync[i] == n {
			delete(r.awaitSync, i)
		}
	}
	r.mu.Unlock()
	if !res.Changed && !all {
		r.queueShards(snap, gained)
		return nil
	}
	p := &pass{head: snap.head.String()[:12], start: start, pending: make(map[string]bool, len(snap.releases)+len(snap.gone)),
		invalidFiles: len(snap.invalidFiles)}
	for id, e := range snap.releases {
		if r.mine(e) {
			p.pending[id] = true
		}
	}
	for _, id := range snap.gone {
		if r.holds(id) {
			p.pending[id] = true
		}
	}
	p.total = len(p.pending)
	r.mu.Lock()
	r.pass = p
	r.mu.Unlock()
	// Releases whose spec changed go first: a person's push is applied
	// without waiting for a pass over every other release.
	var changed, rest []string
	for id, e := range snap.releases {
		if !r.mine(e) {
			continue
		}
		if prev == nil || prev.releases[id] != e {
			changed = append(changed, id)
		} else {
			rest = append(rest, id)
		}
	}
	for _, id := range snap.gone {
		if r.holds(id) {
			changed = append(changed, id)
		}
	}
	for _, id := range changed {
		r.queue.Add(id)
	}
	for _, id := range candidatesFirst(snap, rest) {
		r.queue.Add(id)
	}
	return nil
}

// candidatesFirst orders releases whose spec names a candidate (in flight,
// or about to start) before those at rest, keeping the order within each:
// after a restart or a shard taken over, a release mid-canary waits for
// no pass over the steady ones.
func candidatesFirst(snap *snapshot, ids []string) []string {
	out := make([]string, 0, len(ids))
	var steady []string
	for _, id := range ids {
		if e := snap.releases[id]; e != nil && e.rel != nil && e.rel.Spec.Candidate != "" {
			out = append(out, id)
		} else {
			steady = append(steady, id)
		}
	}
	return append(out, steady...)
}

// pass is the reconcile of every release after a sync that moved the
// head: its end is logged, which tells how long Sluice takes to look at
// every release once.
type pass struct {
	head    string
	start   time.Time
	pending map[string]bool
	total   int
	errors  int
	// invalidFiles counts spec files that name no release (not in total).
	invalidFiles int
}

// reconciled counts one release's reconcile towards the current pass.
func (r *Reconciler) reconciled(id string, err error) {
	r.mu.Lock()
	p := r.pass
	if p == nil || !p.pending[id] {
		r.mu.Unlock()
		return
	}
	delete(p.pending, id)
	if err != nil {
		p.errors++
	}
	done := len(p.pending) == 0
	if done {
		r.pass = nil
	}
	r.mu.Unlock()
	if done {
		r.log.Info("reconcile pass done", "head", p.head, "releases", p.total, "errors", p.errors, "invalid_files", p.invalidFiles,
			"took", time.Since(p.start).Round(time.Microsecond))
	}
}

func (r *Reconciler) processNext(ctx context.Context) bool {
	id, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(id)
	after, err := r.reconcile(ctx, id)
	r.reconciled(id, err)
	switch {
	case ctx.Err() != nil:
		r.queue.Forget(id)
	case err != nil:
		r.log.Error("reconcile failed", append(r.shardArgs(id), "release", id, "err", err)...)
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
	if err := r.syncOnce(ctx, false); err != nil {
		return err
	}
	snap, err := r.refresh(ctx)
	if err != nil {
		return err
	}
	ids := r.assigned(snap)
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
	start := time.Now()
	if sh := r.cfg.Shards; sh != nil {
		shardCtx, done, ok := sh.Hold(sh.Of(id))
		if !ok {
			// Another replica's shard now: drop it, touch nothing.
			if r.forgetRelease(id) {
				r.cfg.Observer.Removed(id)
			}
			return 0, nil
		}
		defer done()
		if r.awaitingSync(id) {
			return 0, nil // queued again after the sync
		}
		// Nothing is applied or committed once the shard is lost. Work
		// left running after reconcile returns (load webhooks) is the
		// worker's, ended when the shard is lost, not this reconcile's.
		bg := background{work: ctx, shard: shardCtx}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(shardCtx, cancel)()
		after, err := r.reconcileHeld(ctx, id, start, bg)
		if err != nil && shardCtx.Err() != nil {
			r.log.Debug("reconcile stopped: shard lost", append(r.shardArgs(id), "release", id, "err", err)...)
			return 0, nil
		}
		return after, err
	}
	return r.reconcileHeld(ctx, id, start, background{work: ctx})
}

// reconcileHeld is reconcile once the release's shard is held; bg is what
// work it leaves running is bound to.
func (r *Reconciler) reconcileHeld(ctx context.Context, id string, start time.Time, bg background) (time.Duration, error) {
	snap, err := r.refresh(ctx)
	if err != nil {
		r.cfg.Observer.Reconciled(id, time.Since(start), nil, err)
		return 0, err
	}
	e, ok := snap.releases[id]
	if ok && !r.mine(e) {
		// Another Sluice's (its labels or clusters moved it there, or a
		// watch event came for its objects): forget it, touch nothing.
		if r.forgetRelease(id) {
			r.cfg.Observer.Removed(id)
		}
		return 0, nil
	}
	if !ok {
		if slices.Contains(snap.gone, id) {
			if err := r.deleteRelease(ctx, snap, id); err != nil {
				r.cfg.Observer.Reconciled(id, time.Since(start), nil, err)
				return 0, err
			}
		}
		r.forgetRelease(id)
		r.cfg.Observer.Removed(id)
		return 0, nil
	}
	st, err := r.statuses.Read(snap.tree, r.cfg.StatusDir, e.namespace, e.name)
	if err != nil {
		r.log.Warn("status file unreadable; starting from the spec", "release", id, "err", err)
	}
	// Records carry whole seconds: they are for people and for Git diffs.
	rc := &run{r: r, snap: snap, e: e, st: st, now: r.cfg.Now().UTC().Truncate(time.Second), memo: r.memoFor(id), bg: bg}
	after, err := rc.reconcile(ctx)
	rc.memo.failure = failureAfter(rc.memo.failure, err, rc.now)
	if ctx.Err() == nil {
		rc.reportStatus(ctx)
		r.cfg.Observer.Reconciled(id, time.Since(start), rc.st, err)
		if to, ok := r.cfg.Observer.(TrafficObserver); ok && rc.st != nil {
			to.Traffic(id, stepTraffic(e, rc.st))
		}
	}
	// Its arguments cost more than the rest of an unchanged release's
	// reconcile allocates: built only when the line is written.
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.Debug("reconciled", append(r.shardArgs(id), "release", id, "head", snap.head.String()[:12], "phase", phaseOf(rc.st), "step", stepOf(rc.st), "next", after, "err", err)...)
	}
	return after, err
}

// failureAfter is the run of failures a reconcile that ended with err
// leaves: counted while the reason stays the same; a success, or a
// failure to record in Git (not the release's), ends it.
func failureAfter(f *Failure, err error, now time.Time) *Failure {
	var re *recordError
	if err == nil || errors.As(err, &re) || errors.Is(err, context.Canceled) {
		return nil
	}
	reason := err.Error()
	if f != nil && f.Reason == reason {
		return &Failure{Reason: reason, Count: f.Count + 1, Since: f.Since}
	}
	return &Failure{Reason: reason, Count: 1, Since: now}
}

// Annotations are the metadata.annotations of a release as the last
// snapshot has it; nil when the release is unknown or its spec invalid.
// Safe for concurrent use; notifiers read per-release settings from them.
func (r *Reconciler) Annotations(id string) map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.snap == nil {
		return nil
	}
	if e := r.snap.releases[id]; e != nil && e.rel != nil {
		return e.rel.Metadata.Annotations
	}
	return nil
}

// forgetRelease drops what Sluice keeps of a release in memory, and says whether
// it kept anything.
func (r *Reconciler) forgetRelease(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, known := r.memo[id]
	delete(r.memo, id)
	ns, name, _ := strings.Cut(id, "/")
	r.statuses.Forget(ns, name)
	return known
}

// holds reports whether this replica holds the shard of a release (always,
// without Config.Shards).
func (r *Reconciler) holds(id string) bool {
	return r.cfg.Shards == nil || r.cfg.Shards.Holds(r.cfg.Shards.Of(id))
}

// shardArgs are the log attributes naming a release's shard, none
// without Config.Shards.
func (r *Reconciler) shardArgs(id string) []any {
	if r.cfg.Shards == nil {
		return nil
	}
	return []any{"shard", r.cfg.Shards.Of(id)}
}

// ShardGained tells the Reconciler that this replica now holds shard i:
// it syncs Git at once, since the previous holder may have recorded
// transitions since the last sync, and then queues the shard's releases
// as never seen before (what memory kept of them from an earlier holding
// is dropped; the status files in Git say where they stand). Until that
// sync, the shard's releases are not reconciled.
func (r *Reconciler) ShardGained(i int) {
	if r.cfg.Shards == nil {
		return
	}
	r.mu.Lock()
	r.gains++
	r.awaitSync[i] = r.gains
	r.mu.Unlock()
	r.forgetShard(i)
	r.log.Info("shard gained: syncing Git, then reconciling its releases", "shard", i)
	r.Trigger()
}

// queueShards queues the releases of the shards given (as keys).
func (r *Reconciler) queueShards(snap *snapshot, shards map[int]int) {
	sh := r.cfg.Shards
	var ids []string
	for id, e := range snap.releases {
		if _, ok := shards[sh.Of(id)]; ok && r.mine(e) {
			ids = append(ids, id)
		}
	}
	for _, id := range snap.gone {
		if _, ok := shards[sh.Of(id)]; ok && r.holds(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range candidatesFirst(snap, ids) {
		r.queue.Add(id)
	}
	r.log.Info("reconciling the releases of shards gained", "shards", slices.Sorted(maps.Keys(shards)), "releases", len(ids))
}

// awaitingSync reports whether a release's shard was gained since the
// last sync began.
func (r *Reconciler) awaitingSync(id string) bool {
	if r.cfg.Shards == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.awaitSync[r.cfg.Shards.Of(id)]
	return ok
}

// ShardLost tells the Reconciler that this replica no longer holds shard
// i: what it kept of the shard's releases is dropped, and so are they
// from its queue as they come up (reconcile finds the shard not held).
func (r *Reconciler) ShardLost(i int) {
	if r.cfg.Shards == nil {
		return
	}
	n := r.forgetShard(i)
	r.log.Info("shard lost: no longer reconciling its releases", "shard", i, "releases", n)
}

// forgetShard forgets the releases of shard i, and says how many it knew.
func (r *Reconciler) forgetShard(i int) int {
	r.mu.Lock()
	var ids []string
	for id := range r.memo {
		if r.cfg.Shards.Of(id) == i {
			ids = append(ids, id)
			delete(r.memo, id)
			ns, name, _ := strings.Cut(id, "/")
			r.statuses.Forget(ns, name)
		}
	}
	r.mu.Unlock()
	for _, id := range ids {
		r.cfg.Observer.Removed(id)
	}
	return len(ids)
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

// eventTarget is the VirtualService that Events about a release go to: its
// mesh route's, else its first route's. Nothing goes to a namespace outside
// the allowed ones.
func (r *Reconciler) eventTarget(e *entry) string {
	if !r.allowed(e.namespace) {
		return ""
	}
	m := r.memoFor(e.id)
	if e.rel != nil && len(e.rel.Spec.Routes) > 0 {
		route := e.rel.Spec.Routes[0]
		for _, rt := range e.rel.Spec.Routes {
			if rt.IsMesh() {
				route = rt
				break
			}
		}
		m.eventTarget = e.rel.Metadata.Name + "-" + route.Name
	}
	return m.eventTarget
}

// eventTargetKind is the kind of the route eventTarget names: HTTPRoute
// when that route uses Gateway API routing, else VirtualService.
func (r *Reconciler) eventTargetKind(e *entry) string {
	if e.rel == nil {
		return ""
	}
	for _, rt := range e.rel.Spec.Routes {
		if e.rel.Metadata.Name+"-"+rt.Name == r.memoFor(e.id).eventTarget {
			if e.rel.RoutingOf(rt) == specs.RoutingGatewayAPI {
				return "HTTPRoute"
			}
			return "VirtualService"
		}
	}
	return ""
}

// commit records one transition (a status, and at promotion the spec
// edit) in Git.
func (r *Reconciler) commit(ctx context.Context, e *entry, en record.Entry) error {
	if en.Status != nil && e.rel != nil {
		en.Status.Labels = maps.Clone(e.rel.Metadata.Labels)
	}
	change, err := record.Change(r.cfg.StatusDir, en)
	if err != nil {
		return err
	}
	r.mu.Lock()
	b := r.batch
	r.mu.Unlock()
	var res gitsync.CommitResult
	if b != nil {
		body := ""
		if en.Status != nil {
			body = en.Status.Message
		}
		res, err = b.commit(ctx, &commitReq{release: e.id, action: en.Action, subject: en.Subject, body: body, change: change})
	} else {
		res, err = r.cfg.Repo.Commit(ctx, change)
	}
	if ctx.Err() == nil {
		r.cfg.Observer.Committed(en.Action, res.Retries, err)
	}
	if err != nil {
		return fmt.Errorf("record %s: %w", en.Subject, err)
	}
	if !res.NoChange {
		r.log.Info(en.Subject, append(r.shardArgs(e.id), "release", e.id, "commit", res.Hash.String()[:12], "action", en.Action)...)
		r.cfg.Observer.Transition(ctx, Transition{
			Release: e.id, Namespace: e.namespace, Name: e.name,
			Action: en.Action, Subject: en.Subject, Commit: res.Hash.String(), Status: en.Status,
			VirtualService: r.eventTarget(e),
			RouteKind:      r.eventTargetKind(e),
		})
	}
	return nil
}

// stepTraffic is what the recorded step gives the candidate, from the
// release's plan at this snapshot.
func stepTraffic(e *entry, st *record.Status) specs.Traffic {
	var plan []specs.Step
	if e.rel != nil && e.rel.Spec.Candidate != "" {
		plan, _ = specs.Plan(e.rel)
	}
	return record.StepTraffic(st, plan)
}

func phaseOf(st *record.Status) record.Phase {
	if st == nil {
		return ""
	}
	return st.Phase
}

func stepOf(st *record.Status) string {
	if st == nil {
		return ""
	}
	return st.Step
}
