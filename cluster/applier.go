// Package cluster applies the objects Sluice renders for one step of a
// release to a Kubernetes cluster: server-side apply in dependency order,
// pruning of objects the release no longer renders, no writes when nothing
// changed, drift detection, and waiting for Deployments to become available.
package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"sluice.dev/sluice/specs"
)

// The ownership labels every object Sluice renders carries (defined with
// the release spec), and the annotation that records what Sluice last
// applied.
const (
	LabelManagedBy        = specs.LabelManagedBy
	LabelRelease          = specs.LabelRelease
	LabelReleaseNamespace = specs.LabelReleaseNamespace
	AnnotationAppliedHash = "sluice.dev/applied-hash"
	// AnnotationController marks an object the controller (sluice run)
	// applied: its value names what it follows (the Git remote and
	// branch). `sluice apply`, which does not set it, refuses a release
	// whose live objects carry it unless --force.
	AnnotationController = "sluice.dev/controller"

	// DefaultFieldManager is the server-side apply field manager.
	DefaultFieldManager = "sluice"
)

// DefaultPruneKinds are the kinds Sluice renders, and so the kinds searched
// for objects to prune besides those in the set being applied. Namespaces
// and CRDs are never pruned: deleting them deletes everything inside.
func DefaultPruneKinds() []schema.GroupKind {
	return []schema.GroupKind{
		{Kind: "ServiceAccount"},
		{Kind: "ConfigMap"},
		{Kind: "Secret"},
		{Kind: "Service"},
		{Group: "apps", Kind: "Deployment"},
		{Group: "autoscaling", Kind: "HorizontalPodAutoscaler"},
		{Group: "networking.istio.io", Kind: "DestinationRule"},
		{Group: "networking.istio.io", Kind: "VirtualService"},
		{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute"},
	}
}

// Options configure an Applier.
type Options struct {
	// FieldManager names Sluice in managedFields; default "sluice".
	FieldManager string
	// Log receives one line per write; nil discards.
	Log *slog.Logger
	// PruneKinds are searched for stale objects besides the kinds in the
	// set; nil means DefaultPruneKinds.
	PruneKinds []schema.GroupKind
	// Annotations are set on every object applied, after the object's own
	// (the controller sets AnnotationController).
	Annotations map[string]string
	// Shards, above 1, is the number of shards releases are spread over
	// (leader.ShardOf): every object applied carries LabelShard, and
	// WatchLive watches only the shards ShardGained names. At most 1,
	// objects get no shard label and WatchLive watches all of them.
	Shards int
}

// Applier applies sets of objects to one cluster. It is safe for
// concurrent use by multiple goroutines on different releases.
type Applier struct {
	dyn          dynamic.Interface
	mapper       *discovery
	fieldManager string
	log          *slog.Logger
	pruneKinds   []schema.GroupKind
	annotations  map[string]string
	// cache, once WatchLive has synced (sharded: for a release's shard),
	// serves reads of the prune kinds.
	cache *liveCache
	// onChange is told about every change the watches see.
	onChange atomic.Pointer[func(namespace, release string, spec bool)]
}

// OnChange has fn told, from WatchLive's watches, the release (namespace
// and name) of every managed object that was added, changed or deleted: a
// Deployment becoming available, a hand edit. spec is false when only the
// object's status moved (its generation, labels and annotations are as
// they were), or the object was added, so that what Sluice applied cannot
// have changed. fn must be
// quick; it runs on the watches' goroutines.
func (a *Applier) OnChange(fn func(namespace, release string, spec bool)) {
	a.onChange.Store(&fn)
}

func (a *Applier) changed(obj any, spec bool) {
	fn := a.onChange.Load()
	if fn == nil {
		return
	}
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	l := u.GetLabels()
	if ns, name := l[LabelReleaseNamespace], l[LabelRelease]; ns != "" && name != "" {
		(*fn)(ns, name, spec)
	}
}

// Default client-side rate limit of an Applier whose rest.Config sets
// none. client-go's own default (5 requests/s) would make a cold start of
// a thousand releases take many minutes; the API server's priority and
// fairness protects it from a burst this size.
const (
	DefaultQPS   = 200
	DefaultBurst = 400
)

// New returns an Applier that talks to the cluster cfg points at. When cfg
// sets no client-side rate limit, DefaultQPS and DefaultBurst are used.
func New(cfg *rest.Config, opts Options) (*Applier, error) {
	if cfg == nil {
		return nil, errors.New("new applier: nil rest config")
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 && cfg.RateLimiter == nil {
		cfg.QPS, cfg.Burst = DefaultQPS, DefaultBurst
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("new applier: http client: %w", err)
	}
	dyn, err := dynamic.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("new applier: dynamic client: %w", err)
	}
	dc, err := newDiscovery(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("new applier: discovery client: %w", err)
	}
	a := &Applier{
		dyn:          dyn,
		mapper:       dc,
		fieldManager: opts.FieldManager,
		log:          opts.Log,
		pruneKinds:   opts.PruneKinds,
		annotations:  maps.Clone(opts.Annotations),
	}
	if a.fieldManager == "" {
		a.fieldManager = DefaultFieldManager
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.pruneKinds == nil {
		a.pruneKinds = DefaultPruneKinds()
	}
	a.cache = &liveCache{log: a.log, syncWait: shardSyncWait, shards: opts.Shards, gained: map[int]bool{}, watches: map[int]*shardWatch{}}
	return a, nil
}

// Set is everything one release renders for one step.
type Set struct {
	// Owner are the ownership labels of the release. They must include
	// LabelManagedBy and LabelRelease; every object gets them, and objects
	// carrying all of them that the set no longer contains are pruned.
	Owner   map[string]string
	Objects []*unstructured.Unstructured
}

// ApplyOptions tune one Apply.
type ApplyOptions struct {
	// DryRun validates the set with the API server (dryRun=All) and reports
	// what would change, without changing anything.
	DryRun bool
	// Urgent lists the release's objects rather than wait for the watches
	// of its shard when they have not synced yet (a shard just gained): a
	// release in progress moves on at once, the others wait and then cost
	// no request.
	Urgent bool
}

// ObjectRef names one object.
type ObjectRef struct {
	Group     string
	Kind      string
	Namespace string
	Name      string
}

func (r ObjectRef) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

func refOf(u *unstructured.Unstructured) ObjectRef {
	gvk := u.GroupVersionKind()
	return ObjectRef{Group: gvk.Group, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
}

// Result is what an Apply did, or would do under DryRun. Each list is in
// the order the operations were made.
type Result struct {
	DryRun    bool
	Created   []ObjectRef
	Updated   []ObjectRef
	Unchanged []ObjectRef
	Pruned    []ObjectRef
	// Orphaned are objects a Delete left, as their annotation asked.
	Orphaned []ObjectRef
	// Drift lists fields of objects Sluice had applied unchanged that no
	// longer hold the applied value; the apply corrects them.
	Drift []Drift
}

// Changed reports whether the apply wrote (or would write) anything.
func (r *Result) Changed() bool {
	return len(r.Created)+len(r.Updated)+len(r.Pruned) > 0
}

// Apply makes the cluster hold exactly set for its release: it validates
// every object that needs a write with a server-side dry run first (so a
// rejected set changes nothing), applies them in dependency order with
// server-side apply, then prunes objects the release rendered earlier but
// no longer renders, in reverse order. Objects that are unchanged since the
// last apply cause no write.
//
// Pruning searches the kinds of the set and the Applier's PruneKinds, in
// the namespaces of the set and the release's own (LabelReleaseNamespace).
// Namespaces and CRDs in a set are applied (and CRDs waited for) before
// the rest is validated, since the rest cannot be validated without them;
// they are never pruned.
//
// The Result is returned even with an error and lists what was done.
func (a *Applier) Apply(ctx context.Context, set Set, opts ApplyOptions) (*Result, error) {
	res := &Result{DryRun: opts.DryRun}
	release, err := validateOwner(set.Owner)
	if err != nil {
		return res, err
	}
	items, err := prepare(set, a.annotations, a.shardLabel(set.Owner))
	if err != nil {
		return res, fmt.Errorf("release %s: %w", release, err)
	}
	r := &run{
		release:     release,
		owner:       labels.SelectorFromSet(set.Owner),
		ownerLabels: set.Owner,
		namespaces:  namespacesOf(items, set.Owner),
		opts:        opts,
		res:         res,
	}
	// Namespaces and CRDs go first in a round of their own: the server can
	// neither validate nor map objects whose namespace or kind does not
	// exist yet.
	var base, rest []*item
	for _, it := range items {
		if it.rank <= rankCRD {
			base = append(base, it)
		} else {
			rest = append(rest, it)
		}
	}
	if len(base) > 0 {
		if err := a.round(ctx, r, base, nil); err != nil {
			return res, fmt.Errorf("release %s: %w", release, err)
		}
		if err := a.waitCRDs(ctx, base, opts); err != nil {
			return res, fmt.Errorf("release %s: %w", release, err)
		}
	}
	if err := a.round(ctx, r, rest, a.pruneKinds); err != nil {
		return res, fmt.Errorf("release %s: %w", release, err)
	}
	if !opts.DryRun {
		a.cache.settled(set.Owner)
	}
	return res, nil
}

// run is one Apply in progress.
type run struct {
	release     string // namespace/name, for messages
	owner       labels.Selector
	ownerLabels map[string]string
	// namespaces are searched for the release's namespaced objects; nil
	// means all.
	namespaces []string
	opts       ApplyOptions
	res        *Result
	// deleting: the release is gone; objects annotated to be orphaned
	// are left.
	deleting bool
}

// namespacesOf are the namespaces a release's objects live in: those of
// the set and the release's own, where the renderer puts everything. An
// object the release once rendered into another namespace is not pruned;
// searching only these keeps each read proportional to the release, not
// to the cluster.
func namespacesOf(items []*item, owner map[string]string) []string {
	seen := map[string]bool{}
	if ns := owner[LabelReleaseNamespace]; ns != "" {
		seen[ns] = true
	}
	for _, it := range items {
		if it.ref.Namespace != "" {
			seen[it.ref.Namespace] = true
		}
	}
	if len(seen) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(seen))
}

// action is what an object needs.
type action int

const (
	actUnchanged action = iota
	actCreate
	actUpdate
)

// round applies items and prunes stale objects of the items' kinds and
// pruneKinds.
func (a *Applier) round(ctx context.Context, r *run, items []*item, pruneKinds []schema.GroupKind) error {
	release, res := r.release, r.res
	if err := a.resolve(ctx, items); err != nil {
		return err
	}
	kinds, err := a.listKinds(ctx, items, pruneKinds)
	if err != nil {
		return err
	}
	live, err := a.readLive(ctx, r, kinds)
	if err != nil {
		return err
	}
	if err := errors.Join(parallel(len(items), func(i int) error {
		return a.classify(ctx, release, items[i], live)
	})...); err != nil {
		return err
	}
	var writes []*item
	for _, it := range items {
		switch it.action {
		case actUnchanged:
			res.Unchanged = append(res.Unchanged, it.ref)
			a.log.Debug("unchanged", "release", release, "object", it.ref.String())
		default:
			writes = append(writes, it)
			res.Drift = append(res.Drift, it.drift...)
			for _, d := range it.drift {
				a.log.Warn("drift", "release", release, "object", it.ref.String(), "field", d.Field, "live", d.Live, "desired", d.Desired)
			}
		}
	}
	prunes := pruneCandidates(items, live, r.owner, kinds)
	if r.deleting {
		prunes = slices.DeleteFunc(prunes, func(p *prune) bool {
			if p.orphan {
				res.Orphaned = append(res.Orphaned, p.ref)
			}
			return p.orphan
		})
	}

	// Validate everything first so a set the server rejects is not left
	// half-applied. Dry runs change nothing, so their order is free.
	errs := parallel(len(writes)+len(prunes), func(i int) error {
		if i < len(writes) {
			if err := a.apply(ctx, writes[i], true); err != nil {
				return &ObjectError{Object: writes[i].ref, Op: "validate", Err: err}
			}
			return nil
		}
		p := prunes[i-len(writes)]
		if err := a.delete(ctx, p, true); err != nil {
			return &ObjectError{Object: p.ref, Op: "validate prune of", Err: err}
		}
		return nil
	})
	errs = slices.DeleteFunc(errs, func(err error) bool { return err == nil })
	if len(errs) > 0 {
		return fmt.Errorf("the API server rejected %d object(s), none of them was written:\n%w", len(errs), errors.Join(errs...))
	}
	if err := a.checkUnseen(ctx, release, writes); err != nil {
		return err
	}

	for _, it := range writes {
		if !r.opts.DryRun {
			if err := a.apply(ctx, it, false); err != nil {
				return &ObjectError{Object: it.ref, Op: "apply", Err: err}
			}
			a.log.Info("applied", "release", release, "object", it.ref.String(), "created", it.action == actCreate)
		}
		if it.action == actCreate {
			res.Created = append(res.Created, it.ref)
		} else {
			res.Updated = append(res.Updated, it.ref)
		}
	}
	for _, p := range prunes {
		if !r.opts.DryRun {
			if err := a.delete(ctx, p, false); err != nil {
				return &ObjectError{Object: p.ref, Op: "prune", Err: err}
			}
			a.log.Info("pruned", "release", release, "object", p.ref.String())
		}
		res.Pruned = append(res.Pruned, p.ref)
	}
	return nil
}

// resolve maps each item's kind to its resource, rediscovering the API
// once when a kind is unknown (a CRD may have been installed since).
func (a *Applier) resolve(ctx context.Context, items []*item) error {
	reset := false
	for _, it := range items {
		gvk := it.obj.GroupVersionKind()
		m, err := a.mapper.RESTMapping(ctx, gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) && !reset {
			reset = true
			a.mapper.Reset()
			m, err = a.mapper.RESTMapping(ctx, gvk.GroupKind(), gvk.Version)
		}
		if meta.IsNoMatchError(err) {
			return fmt.Errorf("%s: the API server does not serve %s (is its CRD installed?)", it.ref, gvk)
		}
		if err != nil {
			return fmt.Errorf("%s: map %s to a resource: %w", it.ref, gvk, err)
		}
		namespaced := m.Scope.Name() == meta.RESTScopeNameNamespace
		switch {
		case namespaced && it.ref.Namespace == "":
			return fmt.Errorf("%s: %s is namespaced but metadata.namespace is empty", it.ref, gvk.Kind)
		case !namespaced && it.ref.Namespace != "":
			return fmt.Errorf("%s: %s is cluster-scoped but metadata.namespace is %q", it.ref, gvk.Kind, it.ref.Namespace)
		}
		it.mapping = m
	}
	return nil
}

// listKinds returns one mapping per kind to read: the items' kinds, then
// the prune kinds the server knows (an unknown one has nothing to prune).
func (a *Applier) listKinds(ctx context.Context, items []*item, pruneKinds []schema.GroupKind) ([]*meta.RESTMapping, error) {
	var out []*meta.RESTMapping
	seen := map[schema.GroupKind]bool{}
	for _, it := range items {
		gk := it.mapping.GroupVersionKind.GroupKind()
		if !seen[gk] {
			seen[gk] = true
			out = append(out, it.mapping)
		}
	}
	for _, gk := range pruneKinds {
		if seen[gk] {
			continue
		}
		seen[gk] = true
		m, err := a.mapper.RESTMapping(ctx, gk)
		if meta.IsNoMatchError(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("map %s to a resource: %w", gk, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// objKey identifies an object independently of the API version it was
// read in.
type objKey struct {
	gk        schema.GroupKind
	namespace string
	name      string
}

func keyOf(u *unstructured.Unstructured) objKey {
	return objKey{u.GroupVersionKind().GroupKind(), u.GetNamespace(), u.GetName()}
}

// readLive lists the objects of each kind that carry the owner labels, in
// the run's namespaces: one LIST per kind and namespace serves both the
// unchanged check and pruning. The LISTs run concurrently.
func (a *Applier) readLive(ctx context.Context, r *run, kinds []*meta.RESTMapping) (map[objKey]*unstructured.Unstructured, error) {
	type job struct {
		mapping   *meta.RESTMapping
		namespace string
		items     []unstructured.Unstructured
	}
	var jobs []*job
	live := map[objKey]*unstructured.Unstructured{}
	w := a.cache.forRelease(ctx, r.ownerLabels, r.opts.Urgent)
	for _, m := range kinds {
		if cached, ok := w.objects(m.GroupVersionKind.GroupKind(), r.ownerLabels, r.owner, r.namespaces); ok {
			for _, u := range cached {
				live[keyOf(u)] = u
			}
			continue
		}
		if m.Scope.Name() != meta.RESTScopeNameNamespace || r.namespaces == nil {
			jobs = append(jobs, &job{mapping: m, namespace: metav1.NamespaceAll})
			continue
		}
		for _, ns := range r.namespaces {
			jobs = append(jobs, &job{mapping: m, namespace: ns})
		}
	}
	if err := errors.Join(parallel(len(jobs), func(i int) error {
		var err error
		jobs[i].items, err = a.list(ctx, jobs[i].mapping, jobs[i].namespace, r.owner)
		return err
	})...); err != nil {
		return nil, err
	}
	for _, j := range jobs {
		for i := range j.items {
			u := &j.items[i]
			// List items may lack apiVersion and kind.
			u.SetGroupVersionKind(j.mapping.GroupVersionKind)
			live[keyOf(u)] = u
		}
	}
	return live, nil
}

// maxParallel bounds the requests one Apply has in flight.
const maxParallel = 8

// parallel runs fn(0..n-1) concurrently, at most maxParallel at a time,
// and returns their errors by index.
func parallel(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	return errs
}

// list reads every page of one LIST.
func (a *Applier) list(ctx context.Context, m *meta.RESTMapping, namespace string, owner labels.Selector) ([]unstructured.Unstructured, error) {
	var out []unstructured.Unstructured
	opts := metav1.ListOptions{LabelSelector: owner.String(), Limit: 500}
	for {
		page, err := a.dyn.Resource(m.Resource).Namespace(namespace).List(ctx, opts)
		if err != nil {
			where := "all namespaces"
			if namespace != "" {
				where = "namespace " + namespace
			}
			return nil, fmt.Errorf("list %s in %s with labels %s: %w", m.Resource.GroupResource(), where, owner, err)
		}
		out = append(out, page.Items...)
		if page.GetContinue() == "" {
			return out, nil
		}
		opts.Continue = page.GetContinue()
	}
}

// classify decides what an item needs by comparing it with its live
// object: the hash annotation says whether Sluice applied this exact
// object last, and the field comparison whether anyone changed it since.
func (a *Applier) classify(ctx context.Context, release string, it *item, live map[objKey]*unstructured.Unstructured) error {
	cur, ok := live[it.key]
	if !ok {
		// Not labelled as ours: it may still exist, unlabelled or owned by
		// another release. Not sharded, the cache holds every release's
		// objects, so only an object without Sluice's labels can hide from
		// it; applying takes that one over just the same. Sharded, it holds
		// only the shards held: an object it lacks is read.
		got, cached := a.cache.get(it.key.gk, it.ref.Namespace, it.ref.Name)
		if cached && got == nil {
			it.action = actCreate
			return nil
		}
		if !cached && it.key.gk != httpRouteKind {
			// The dry run, made anyway, says whether it exists: only then
			// is it read (checkUnseen), not before every creation.
			it.action, it.unseen = actCreate, true
			return nil
		}
		if !cached {
			var err error
			got, err = a.dyn.Resource(it.mapping.Resource).Namespace(it.ref.Namespace).Get(ctx, it.ref.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				it.action = actCreate
				return nil
			case err != nil:
				return &ObjectError{Object: it.ref, Op: "read", Err: err}
			}
		}
		cur = got
		if err := a.takeOver(release, it, cur); err != nil {
			return err
		}
	}
	it.action = actUpdate
	if it.key.gk == httpRouteKind {
		mergeRoute(it, cur)
	}
	if cur.GetAnnotations()[AnnotationAppliedHash] != it.hash {
		return nil
	}
	it.drift = compareFields(it.ref, it.obj.Object, cur.Object)
	if len(it.drift) == 0 {
		it.action = actUnchanged
	}
	return nil
}

// takeOver refuses an object of another release, and says when the
// release takes one over that had no owner labels.
func (a *Applier) takeOver(release string, it *item, cur *unstructured.Unstructured) error {
	have, want := cur.GetLabels(), it.obj.GetLabels()
	for _, k := range []string{LabelRelease, LabelReleaseNamespace} {
		if v, ok := have[k]; ok && v != want[k] {
			return fmt.Errorf("%s already belongs to release %s/%s; two releases must not render the same object",
				it.ref, have[LabelReleaseNamespace], have[LabelRelease])
		}
	}
	a.log.Info("taking over an object without the release's owner labels", "release", release, "object", it.ref.String())
	return nil
}

// checkUnseen reads the unseen items the dry run found existing (a new
// object has no resource version yet) and refuses those of another
// release; the others are updates.
func (a *Applier) checkUnseen(ctx context.Context, release string, items []*item) error {
	for _, it := range items {
		if !it.unseen || it.dryRunRV == "" {
			continue
		}
		cur, err := a.dyn.Resource(it.mapping.Resource).Namespace(it.ref.Namespace).Get(ctx, it.ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // gone since: still a creation
		}
		if err != nil {
			return &ObjectError{Object: it.ref, Op: "read", Err: err}
		}
		if err := a.takeOver(release, it, cur); err != nil {
			return err
		}
		it.action = actUpdate
	}
	return nil
}

// prune is a live object to delete.
type prune struct {
	ref      ObjectRef
	uid      types.UID
	resource schema.GroupVersionResource
	rank     int
	// orphan: the object asks to be left when its release is deleted.
	orphan bool
}

// pruneCandidates are live objects with every owner label that the set
// does not contain, in reverse dependency order.
func pruneCandidates(items []*item, live map[objKey]*unstructured.Unstructured, owner labels.Selector, kinds []*meta.RESTMapping) []*prune {
	want := map[objKey]bool{}
	for _, it := range items {
		want[it.key] = true
	}
	resources := map[schema.GroupKind]schema.GroupVersionResource{}
	for _, m := range kinds {
		resources[m.GroupVersionKind.GroupKind()] = m.Resource
	}
	var out []*prune
	for k, u := range live {
		if want[k] || u.GetDeletionTimestamp() != nil {
			continue
		}
		// The LIST was filtered by the server; check again so that nothing
		// without the owner labels is ever deleted.
		if !owner.Matches(labels.Set(u.GetLabels())) {
			continue
		}
		rank := rankOf(k.gk)
		if rank <= rankCRD {
			continue
		}
		out = append(out, &prune{ref: refOf(u), uid: u.GetUID(), resource: resources[k.gk], rank: rank,
			orphan: u.GetAnnotations()[specs.AnnotationOnDelete] == specs.OnDeleteOrphan})
	}
	slices.SortFunc(out, func(x, y *prune) int {
		if x.rank != y.rank {
			return y.rank - x.rank
		}
		return compareRefs(x.ref, y.ref)
	})
	return out
}

func compareRefs(x, y ObjectRef) int {
	return cmp.Or(cmp.Compare(x.Group, y.Group), cmp.Compare(x.Kind, y.Kind),
		cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
}

// apply server-side applies one item. Force takes fields back from other
// managers: Sluice is the source of truth for every field it renders, and
// a conflict means someone edited one by hand (drift to undo). Fields
// Sluice does not render stay with their owners.
func (a *Applier) apply(ctx context.Context, it *item, dryRun bool) error {
	opts := metav1.ApplyOptions{FieldManager: a.fieldManager, Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	got, err := a.dyn.Resource(it.mapping.Resource).Namespace(it.ref.Namespace).Apply(ctx, it.ref.Name, it.obj, opts)
	switch {
	case err != nil:
	case !dryRun:
		a.cache.stored(it.key.gk, got)
	case it.unseen:
		it.dryRunRV = got.GetResourceVersion()
	}
	return err
}

// delete removes a pruned object, only if it is still the object that was
// listed (same UID).
func (a *Applier) delete(ctx context.Context, p *prune, dryRun bool) error {
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.uid}, PropagationPolicy: &bg}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	err := a.dyn.Resource(p.resource).Namespace(p.ref.Namespace).Delete(ctx, p.ref.Name, opts)
	if apierrors.IsNotFound(err) {
		err = nil
	}
	if err == nil && !dryRun {
		a.cache.deleted(schema.GroupKind{Group: p.ref.Group, Kind: p.ref.Kind}, p.ref.Namespace, p.ref.Name)
	}
	return err
}

// Controller reports whether the controller (sluice run) applies set's
// release in this cluster: whether a live object of the release (with its
// owner labels, of the set's kinds or the prune kinds, in the release's
// namespaces) carries AnnotationController. It returns the first such
// object, by kind and name, and the annotation's value.
func (a *Applier) Controller(ctx context.Context, set Set) (ref ObjectRef, value string, ok bool, err error) {
	release, err := validateOwner(set.Owner)
	if err != nil {
		return ObjectRef{}, "", false, err
	}
	items, err := prepare(set, nil, "")
	if err != nil {
		return ObjectRef{}, "", false, fmt.Errorf("release %s: %w", release, err)
	}
	gks := make([]schema.GroupKind, 0, len(items)+len(a.pruneKinds))
	for _, it := range items {
		gks = append(gks, it.obj.GroupVersionKind().GroupKind())
	}
	kinds, err := a.listKinds(ctx, nil, append(gks, a.pruneKinds...))
	if err != nil {
		return ObjectRef{}, "", false, fmt.Errorf("release %s: %w", release, err)
	}
	r := &run{release: release, owner: labels.SelectorFromSet(set.Owner), ownerLabels: set.Owner, namespaces: namespacesOf(items, set.Owner)}
	live, err := a.readLive(ctx, r, kinds)
	if err != nil {
		return ObjectRef{}, "", false, fmt.Errorf("release %s: %w", release, err)
	}
	var marked []ObjectRef
	values := map[ObjectRef]string{}
	for _, u := range live {
		if v, has := u.GetAnnotations()[AnnotationController]; has {
			ref := refOf(u)
			marked = append(marked, ref)
			values[ref] = v
		}
	}
	if len(marked) == 0 {
		return ObjectRef{}, "", false, nil
	}
	slices.SortFunc(marked, compareRefs)
	return marked[0], values[marked[0]], true, nil
}
