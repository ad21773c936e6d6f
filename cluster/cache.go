package cluster

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"sluice.dev/sluice/specs"
)

// liveCache mirrors, through watches, every object of the prune kinds that
// carries Sluice's managed-by label. With it an Apply reads the live state
// of its release from memory: an unchanged step costs no request at all,
// and a new one only its writes, instead of a LIST per kind and a GET per
// new object. Writes update the cache at once, so the next Apply does not
// wait for the watch to catch up.
type liveCache struct {
	kinds map[schema.GroupKind]cache.SharedIndexInformer
}

// releaseIndex indexes cached objects by release-namespace/release.
const releaseIndex = "sluice-release"

func releaseKey(lbls map[string]string) string {
	return lbls[LabelReleaseNamespace] + "/" + lbls[LabelRelease]
}

// WatchLive starts watching the Applier's prune kinds (objects labelled
// managed-by=sluice, in every namespace) and waits until the watches have
// synced; from then on Apply reads live objects of those kinds from the
// watches' cache. Without it, each Apply LISTs them. It needs list and
// watch on those kinds cluster-wide; the watches end with ctx.
func (a *Applier) WatchLive(ctx context.Context) error {
	if a.cache != nil {
		return errors.New("watch live objects: already watching")
	}
	c := &liveCache{kinds: map[schema.GroupKind]cache.SharedIndexInformer{}}
	for _, gk := range a.pruneKinds {
		m, err := a.mapper.RESTMapping(ctx, gk)
		if meta.IsNoMatchError(err) {
			continue // nothing of a kind the server does not serve
		}
		if err != nil {
			return fmt.Errorf("watch live objects: map %s to a resource: %w", gk, err)
		}
		inf := a.informer(m.Resource)
		gvk := m.GroupVersionKind
		// Only what Apply compares is kept: managed fields are most of a
		// live object's size, and list items may lack apiVersion and kind.
		if err := inf.SetTransform(func(obj any) (any, error) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				u.SetManagedFields(nil)
				u.SetGroupVersionKind(gvk)
			}
			return obj, nil
		}); err != nil {
			return fmt.Errorf("watch live objects: %w", err)
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
			return fmt.Errorf("watch live objects: %w", err)
		}
		c.kinds[gk] = inf
	}
	for _, inf := range c.kinds {
		go inf.RunWithContext(ctx)
	}
	for gk, inf := range c.kinds {
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return fmt.Errorf("watch live objects: %s did not sync: %w", gk, context.Cause(ctx))
		}
	}
	a.cache = c
	return nil
}

// informer watches one resource's objects labelled managed-by=sluice, in
// every namespace, indexed by release. It is what client-go's dynamic
// informer factory would make, without the namespace index nothing reads,
// and without that package's import of every typed informer and lister.
func (a *Applier) informer(gvr schema.GroupVersionResource) cache.SharedIndexInformer {
	client := a.dyn.Resource(gvr)
	selector := func(o metav1.ListOptions) metav1.ListOptions {
		o.LabelSelector = LabelManagedBy + "=" + specs.ManagedByValue
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

// objects returns the cached objects of one kind that carry every owner
// label, in the given namespaces (nil: all); ok is false when the kind is
// not cached.
func (c *liveCache) objects(gk schema.GroupKind, owner map[string]string, sel labels.Selector, namespaces []string) (out []*unstructured.Unstructured, ok bool) {
	if c == nil {
		return nil, false
	}
	inf := c.kinds[gk]
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
// release it belongs to; cached is false when the kind is not cached.
func (c *liveCache) get(gk schema.GroupKind, namespace, name string) (u *unstructured.Unstructured, cached bool) {
	if c == nil {
		return nil, false
	}
	inf := c.kinds[gk]
	if inf == nil {
		return nil, false
	}
	key := name
	if namespace != "" {
		key = namespace + "/" + name
	}
	obj, exists, err := inf.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return nil, true
	}
	u, _ = obj.(*unstructured.Unstructured)
	return u, true
}

// stored records what a write returned, so that reads before the watch
// delivers it see it.
func (c *liveCache) stored(gk schema.GroupKind, u *unstructured.Unstructured) {
	if c == nil || u == nil {
		return
	}
	inf := c.kinds[gk]
	if inf == nil {
		return
	}
	u = u.DeepCopy()
	u.SetManagedFields(nil)
	if u.GetLabels()[LabelManagedBy] != specs.ManagedByValue {
		_ = inf.GetIndexer().Delete(u)
		return
	}
	// An older copy must not replace a newer one the watch already gave.
	if cur, ok := c.get(gk, u.GetNamespace(), u.GetName()); ok && cur != nil && newer(cur, u) {
		return
	}
	_ = inf.GetIndexer().Update(u)
}

// deleted forgets a pruned object.
func (c *liveCache) deleted(gk schema.GroupKind, namespace, name string) {
	if c == nil {
		return
	}
	if inf := c.kinds[gk]; inf != nil {
		u := &unstructured.Unstructured{}
		u.SetNamespace(namespace)
		u.SetName(name)
		_ = inf.GetIndexer().Delete(u)
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
