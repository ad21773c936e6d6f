package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"sluice.dev/sluice/leader"
	"sluice.dev/sluice/specs"
)

// LabelShard names, on every object a sharded controller applies, the
// shard of its release under the configured number of shards (ShardLabel):
// each replica watches only the objects of the shards it holds.
const LabelShard = specs.LabelShard

// ShardLabel is the value of LabelShard for shard i of n: "<i>-of-<n>",
// so that objects labelled under another number of shards are told apart.
func ShardLabel(i, n int) string {
	return strconv.Itoa(i) + "-of-" + strconv.Itoa(n)
}

// liveCache mirrors, through watches, every object of the prune kinds that
// carries Sluice's managed-by label (sharded: and the label of a shard this
// replica holds). With it an Apply reads the live state of its release
// from memory: an unchanged step costs no request at all, and a new one
// only its writes, instead of a LIST per kind and a GET per new object.
// Writes update the cache at once, so the next Apply does not wait for the
// watch to catch up.
type liveCache struct {
	log *slog.Logger
	// syncWait is how long an Apply waits for its shard's watches
	// (shardSyncWait).
	syncWait time.Duration
	// shards is the Applier's number of shards; at most 1, one
	// cluster-wide watch per kind is watches[0].
	shards int

	mu sync.Mutex
	// ctx is WatchLive's, nil before it: the watches end with it.
	ctx context.Context
	// gained are the shards held (sharded only), watched once ctx is set.
	gained map[int]bool
	// watches are by shard.
	watches map[int]*shardWatch
}

// shardWatch is the watches of one shard (or the cluster-wide ones).
type shardWatch struct {
	shard  int
	kinds  map[schema.GroupKind]cache.SharedIndexInformer
	cancel context.CancelFunc
	done   <-chan struct{}
	// ready is closed once every watch has synced and the strays are
	// listed; until then Apply waits for it, a while.
	ready chan struct{}
	// late is set once an Apply gave up waiting for ready: the others
	// list at once rather than each wait in turn (a watch the RBAC
	// forbids never syncs).
	late atomic.Bool
	// strays are the releases (releaseKey) with objects of this shard
	// that the watches do not see: without LabelShard, or labelled under
	// another number of shards. Their applies list, until one succeeds.
	// Guarded by liveCache.mu.
	strays map[string]bool
}

// shardSyncWait bounds how long an Apply waits for its shard's watches to
// sync before it lists instead: a shard of thousands of objects syncs in
// seconds, and a watch that cannot sync (no RBAC for it) must not stall
// its releases.
const shardSyncWait = 30 * time.Second

// releaseIndex indexes cached objects by release-namespace/release.
const releaseIndex = "sluice-release"

func releaseKey(lbls map[string]string) string {
	return lbls[LabelReleaseNamespace] + "/" + lbls[LabelRelease]
}

// shardOf is the shard of the release an object's labels name; the
// release ID is the reconciler's, "namespace/name".
func (c *liveCache) shardOf(lbls map[string]string) int {
	return leader.ShardOf(releaseKey(lbls), c.shards)
}

// shardLabel is the LabelShard value of the objects of owner's release, ""
// when not sharded.
func (a *Applier) shardLabel(owner map[string]string) string {
	if a.cache.shards <= 1 {
		return ""
	}
	return ShardLabel(a.cache.shardOf(owner), a.cache.shards)
}

// WatchLive starts watching the Applier's prune kinds (objects labelled
// managed-by=sluice, in every namespace); from then on Apply reads live
// objects of those kinds from the watches' cache. Without it, each Apply
// LISTs them. It needs list and watch on those kinds cluster-wide; the
// watches end with ctx.
//
// Not sharded, it waits until the watches have synced. Sharded (Options
// Shards above 1) it returns at once: it watches only the objects of the
// shards ShardGained was told of, and starts and stops watches as shards
// are gained and lost; an Apply of a shard whose watches have not synced
// yet waits for them a while.
func (a *Applier) WatchLive(ctx context.Context) error {
	c := a.cache
	c.mu.Lock()
	if c.ctx != nil {
		c.mu.Unlock()
		return errors.New("watch live objects: already watching")
	}
	if c.shards > 1 {
		c.ctx = ctx
		for i := range c.gained {
			c.startShard(a, i)
		}
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	kinds, err := a.informers(ctx, LabelManagedBy+"="+specs.ManagedByValue)
	if err != nil {
		return fmt.Errorf("watch live objects: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &shardWatch{kinds: kinds, cancel: cancel, done: wctx.Done(), ready: make(chan struct{}), strays: map[string]bool{}}
	if err := w.sync(wctx); err != nil {
		cancel()
		return fmt.Errorf("watch live objects: %w", err)
	}
	close(w.ready)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx != nil {
		w.cancel()
		return errors.New("watch live objects: already watching")
	}
	c.ctx = ctx
	c.watches[0] = w
	return nil
}

// ShardGained tells the Applier that this replica holds shard i now: once
// WatchLive has been called, it watches the shard's objects. It returns at
// once; the shard's first applies wait for the watches to sync. It does
// nothing when the Applier is not sharded.
func (a *Applier) ShardGained(i int) {
	c := a.cache
	if c.shards <= 1 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gained[i] = true
	if c.ctx != nil && c.watches[i] == nil {
		c.startShard(a, i)
	}
}

// ShardLost tells the Applier that this replica no longer holds shard i:
// its watches stop and what they held is dropped.
func (a *Applier) ShardLost(i int) {
	c := a.cache
	if c.shards <= 1 {
		return
	}
	c.mu.Lock()
	delete(c.gained, i)
	w := c.watches[i]
	delete(c.watches, i)
	c.mu.Unlock()
	if w != nil {
		w.cancel()
		a.log.Info("stopped watching the live objects of a shard lost", "shard", i)
	}
}

// startShard starts watching shard i, in the background; c.mu is held.
func (c *liveCache) startShard(a *Applier, i int) {
	ctx, cancel := context.WithCancel(c.ctx)
	w := &shardWatch{shard: i, cancel: cancel, done: ctx.Done(), ready: make(chan struct{}), strays: map[string]bool{}}
	c.watches[i] = w
	go func() {
		start := time.Now()
		if err := a.syncShard(ctx, w); err != nil {
			if ctx.Err() == nil {
				a.log.Warn("not watching the live objects of a shard; its applies list them", "shard", i, "err", err)
			}
			return
		}
		c.mu.Lock()
		strays := len(w.strays)
		c.mu.Unlock()
		a.log.Info("watching the live objects of a shard", "shard", i, "synced_in", time.Since(start).Round(time.Millisecond), "releases_with_strays", strays)
	}()
}

// syncShard makes shard w's watches, waits for them to sync, lists the
// shard's strays, and then marks w ready.
func (a *Applier) syncShard(ctx context.Context, w *shardWatch) error {
	n := a.cache.shards
	sel := LabelManagedBy + "=" + specs.ManagedByValue + "," + LabelShard + "=" + ShardLabel(w.shard, n)
	// A failed discovery is retried: the shard is held until lost.
	var kinds map[schema.GroupKind]cache.SharedIndexInformer
	if err := retrying(ctx, a.log.With("shard", w.shard), "watch the live objects of a shard", func() error {
		var err error
		kinds, err = a.informers(ctx, sel)
		return err
	}); err != nil {
		return err
	}
	a.cache.mu.Lock()
	w.kinds = kinds
	a.cache.mu.Unlock()
	if err := w.sync(ctx); err != nil {
		return err
	}
	var strays map[string]bool
	if err := retrying(ctx, a.log.With("shard", w.shard), "list the strays of a shard", func() error {
		var err error
		strays, err = a.listStrays(ctx, w)
		return err
	}); err != nil {
		return err
	}
	a.cache.mu.Lock()
	maps.Copy(w.strays, strays)
	a.cache.mu.Unlock()
	close(w.ready)
	return nil
}

// retrying calls fn until it succeeds or ctx ends, backing off up to a
// minute between calls, and logs each failure.
func retrying(ctx context.Context, log *slog.Logger, what string, fn func() error) error {
	var last error
	backoff := wait.Backoff{Duration: time.Second, Factor: 2, Steps: 1 << 30, Cap: time.Minute}
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(context.Context) (bool, error) {
		last = fn()
		if last != nil && ctx.Err() == nil {
			log.Warn("retrying after an error", "op", what, "err", last)
		}
		return last == nil, nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("%w (last error: %w)", err, last)
	}
	return err
}

// listStrays finds the releases of shard w with objects its watches do not
// see: managed by Sluice but without the label of a shard under the
// current number (unlabelled, applied before sharding was on, or labelled
// under another --shards). One LIST per kind, of strays only, so it costs
// little once every object is labelled; only names and labels are kept.
func (a *Applier) listStrays(ctx context.Context, w *shardWatch) (map[string]bool, error) {
	n := a.cache.shards
	values := make([]string, n)
	for i := range n {
		values[i] = ShardLabel(i, n)
	}
	sel := LabelManagedBy + "=" + specs.ManagedByValue + "," + LabelShard + " notin (" + strings.Join(values, ",") + ")"
	out := map[string]bool{}
	for gk := range w.kinds {
		m, err := a.mapper.RESTMapping(ctx, gk)
		if err != nil {
			return nil, fmt.Errorf("list strays: map %s to a resource: %w", gk, err)
		}
		opts := metav1.ListOptions{LabelSelector: sel, Limit: 500}
		for {
			page, err := a.dyn.Resource(m.Resource).List(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("list strays: list %s with labels %s: %w", m.Resource.GroupResource(), sel, err)
			}
			for i := range page.Items {
				l := page.Items[i].GetLabels()
				if l[LabelRelease] != "" && a.cache.shardOf(l) == w.shard {
					out[releaseKey(l)] = true
				}
			}
			if page.GetContinue() == "" {
				break
			}
			opts.Continue = page.GetContinue()
		}
	}
	return out, nil
}

// informers makes (not starts) one watch per prune kind the server
// serves, of the objects sel selects.
func (a *Applier) informers(ctx context.Context, sel string) (map[schema.GroupKind]cache.SharedIndexInformer, error) {
	kinds := map[schema.GroupKind]cache.SharedIndexInformer{}
	for _, gk := range a.pruneKinds {
		m, err := a.mapper.RESTMapping(ctx, gk)
		if meta.IsNoMatchError(err) {
			continue // nothing of a kind the server does not serve
		}
		if err != nil {
			return nil, fmt.Errorf("map %s to a resource: %w", gk, err)
		}
		inf := a.informer(m.Resource, sel)
		if err := inf.SetTransform(trimmer(m.GroupVersionKind)); err != nil {
			return nil, fmt.Errorf("watch %s: %w", gk, err)
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			// An object appearing changed nothing Sluice applied: most
			// are Sluice's own creations, seen before its write returned,
			// or the watches' first list. Marking them would make every
			// release's next reconcile render and compare in full.
			AddFunc:    func(obj any) { a.changed(obj, false) },
			UpdateFunc: func(old, cur any) { a.changedUpdate(old, cur) },
			DeleteFunc: func(obj any) { a.changed(obj, true) },
		}); err != nil {
			return nil, fmt.Errorf("watch %s: %w", gk, err)
		}
		kinds[gk] = inf
	}
	return kinds, nil
}

// sync runs w's watches until ctx ends and waits for them to sync.
func (w *shardWatch) sync(ctx context.Context) error {
	for _, inf := range w.kinds {
		go inf.RunWithContext(ctx)
	}
	for gk, inf := range w.kinds {
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return fmt.Errorf("%s did not sync: %w", gk, context.Cause(ctx))
		}
	}
	return nil
}

// lastApplied is kubectl's copy of what it applied, on objects someone
// applied with kubectl before Sluice took them over: as large as the
// object, and never read.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// trimmer keeps of a watched object only what Apply compares and the
// readiness checks read: managed fields are most of a live object's size,
// and the status of kinds other than Deployments (Available) and HTTPRoutes
// (RoutesReady) is never read: Apply compares only the fields it renders,
// and renders no status. List items may lack apiVersion and kind.
func trimmer(gvk schema.GroupVersionKind) cache.TransformFunc {
	keepStatus := gvk.GroupKind() == schema.GroupKind{Group: "apps", Kind: "Deployment"} || gvk.GroupKind() == httpRouteKind
	return func(obj any) (any, error) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			u.SetManagedFields(nil)
			u.SetGroupVersionKind(gvk)
			if !keepStatus {
				delete(u.Object, "status")
			}
			if ann := u.GetAnnotations(); ann[lastApplied] != "" {
				delete(ann, lastApplied)
				u.SetAnnotations(ann)
			}
		}
		return obj, nil
	}
}

// informer watches one resource's objects that sel selects, in every
// namespace, indexed by release. It is what client-go's dynamic informer
// factory would make, without the namespace index nothing reads, and
// without that package's import of every typed informer and lister.
func (a *Applier) informer(gvr schema.GroupVersionResource, sel string) cache.SharedIndexInformer {
	client := a.dyn.Resource(gvr)
	selector := func(o metav1.ListOptions) metav1.ListOptions {
		o.LabelSelector = sel
		return o
	}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return client.List(ctx, selector(o))
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return client.Watch(ctx, selector(o))
		},
	}
	indexers := cache.Indexers{releaseIndex: func(obj any) ([]string, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return nil, nil
		}
		return []string{releaseKey(u.GetLabels())}, nil
	}}
	return cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, a.dyn), &unstructured.Unstructured{},
		cache.SharedIndexInformerOptions{Indexers: indexers, ObjectDescription: gvr.String()})
}

// changedUpdate reports an update unless only the resource version moved
// (a resync, or a write that changed nothing Sluice looks at).
func (a *Applier) changedUpdate(old, cur any) {
	o, ok1 := old.(*unstructured.Unstructured)
	c, ok2 := cur.(*unstructured.Unstructured)
	if !ok1 || !ok2 {
		a.changed(cur, true)
		return
	}
	if o.GetResourceVersion() == c.GetResourceVersion() {
		return
	}
	a.changed(cur, specChanged(o, c))
}

// specChanged tells whether an update may have changed what Sluice
// applied: the generation moved (the API server bumps it on every spec
// change of a kind that has one), or a label or annotation the object had
// was changed or removed, or the kind keeps no generation (a Service, a
// ConfigMap). A label or annotation added is not: what Sluice applies is
// there from its first write, so an addition is someone else's field. The
// Deployment controller adds deployment.kubernetes.io/revision to every
// new Deployment, and counting that made every release render and compare
// in full once after its creation.
func specChanged(old, cur *unstructured.Unstructured) bool {
	if cur.GetGeneration() == 0 || old.GetGeneration() != cur.GetGeneration() {
		return true
	}
	return !keptAll(old.GetLabels(), cur.GetLabels()) || !keptAll(old.GetAnnotations(), cur.GetAnnotations())
}

// keptAll tells whether cur holds every key of old with the same value.
func keptAll(old, cur map[string]string) bool {
	for k, v := range old {
		if w, ok := cur[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// isReady reports, without waiting, whether w's watches have synced.
func (w *shardWatch) isReady() bool {
	select {
	case <-w.ready:
		return true
	default:
		return false
	}
}

// forRelease returns the watches holding the objects of owner's release,
// or nil when Apply must list them: nothing watched for its shard, the
// watches did not sync within shardSyncWait (or have not synced and the
// apply is urgent), or the release has strays.
func (c *liveCache) forRelease(ctx context.Context, owner map[string]string, urgent bool) *shardWatch {
	c.mu.Lock()
	w := c.watches[c.shardOf(owner)]
	c.mu.Unlock()
	if w == nil {
		return nil
	}
	if !w.isReady() {
		if urgent || w.late.Load() {
			return nil
		}
		t := time.NewTimer(c.syncWait)
		defer t.Stop()
		select {
		case <-w.ready:
		case <-w.done:
			return nil
		case <-ctx.Done():
			return nil
		case <-t.C:
			if !w.late.Swap(true) {
				c.log.Warn("the watches of a shard have not synced: its applies list its objects until they do", "shard", w.shard, "waited", c.syncWait)
			}
			return nil
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.strays[releaseKey(owner)] {
		return nil
	}
	return w
}

// settled tells the cache that an Apply or Delete of owner's release
// succeeded: it has relabelled or pruned its strays, so the watches see
// all its objects from now on.
func (c *liveCache) settled(owner map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.watches[c.shardOf(owner)]; w != nil {
		delete(w.strays, releaseKey(owner))
	}
}

// synced are the watches that have synced, in no order.
func (c *liveCache) synced() []*shardWatch {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*shardWatch, 0, len(c.watches))
	for _, w := range c.watches {
		if w.isReady() {
			out = append(out, w)
		}
	}
	return out
}

// objects returns the cached objects of one kind that carry every owner
// label, in the given namespaces (nil: all); ok is false when the kind is
// not cached.
func (w *shardWatch) objects(gk schema.GroupKind, owner map[string]string, sel labels.Selector, namespaces []string) (out []*unstructured.Unstructured, ok bool) {
	if w == nil {
		return nil, false
	}
	inf := w.kinds[gk]
	if inf == nil {
		return nil, false
	}
	items, err := inf.GetIndexer().ByIndex(releaseIndex, releaseKey(owner))
	if err != nil {
		return nil, false
	}
	for _, it := range items {
		u, isU := it.(*unstructured.Unstructured)
		if !isU || !sel.Matches(labels.Set(u.GetLabels())) {
			continue
		}
		if namespaces != nil && u.GetNamespace() != "" && !contains(namespaces, u.GetNamespace()) {
			continue
		}
		out = append(out, u)
	}
	return out, true
}

// get returns the cached object of a kind by namespace and name, whichever
// release it belongs to; cached is false when the cache cannot tell: the
// kind is not cached, or (sharded) the object is not in the shards
// watched, where an object of another shard's release would not be.
func (c *liveCache) get(gk schema.GroupKind, namespace, name string) (u *unstructured.Unstructured, cached bool) {
	key := name
	if namespace != "" {
		key = namespace + "/" + name
	}
	for _, w := range c.synced() {
		inf := w.kinds[gk]
		if inf == nil {
			continue
		}
		obj, exists, err := inf.GetIndexer().GetByKey(key)
		if err != nil {
			continue
		}
		if exists {
			u, _ = obj.(*unstructured.Unstructured)
			return u, true
		}
		if c.shards <= 1 {
			return nil, true
		}
	}
	return nil, false
}

// stored records what a write returned, so that reads before the watch
// delivers it see it.
func (c *liveCache) stored(gk schema.GroupKind, u *unstructured.Unstructured) {
	if u == nil {
		return
	}
	u = u.DeepCopy()
	u.SetManagedFields(nil)
	managed := u.GetLabels()[LabelManagedBy] == specs.ManagedByValue
	shard := c.shardOf(u.GetLabels())
	for _, w := range c.synced() {
		inf := w.kinds[gk]
		if inf == nil {
			continue
		}
		if !managed || (c.shards > 1 && w.shard != shard) {
			_ = inf.GetIndexer().Delete(u)
			continue
		}
		// An older copy must not replace a newer one the watch already gave.
		if cur, exists, _ := inf.GetIndexer().Get(u); exists {
			if cu, ok := cur.(*unstructured.Unstructured); ok && newer(cu, u) {
				continue
			}
		}
		_ = inf.GetIndexer().Update(u)
	}
}

// deleted forgets a pruned object.
func (c *liveCache) deleted(gk schema.GroupKind, namespace, name string) {
	u := &unstructured.Unstructured{}
	u.SetNamespace(namespace)
	u.SetName(name)
	for _, w := range c.synced() {
		if inf := w.kinds[gk]; inf != nil {
			_ = inf.GetIndexer().Delete(u)
		}
	}
}

// newer reports whether a's resourceVersion is past b's. Resource versions
// are opaque to clients but etcd's are increasing integers; anything else
// counts as not newer.
func newer(a, b *unstructured.Unstructured) bool {
	var x, y uint64
	if _, err := fmt.Sscan(a.GetResourceVersion(), &x); err != nil {
		return false
	}
	if _, err := fmt.Sscan(b.GetResourceVersion(), &y); err != nil {
		return false
	}
	return x > y
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
