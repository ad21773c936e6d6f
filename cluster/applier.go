// Package cluster applies the objects Sluice renders for one step of a
// release to a Kubernetes cluster: server-side apply in dependency order,
// pruning of objects the release no longer renders, no writes when nothing
// changed, drift detection, and waiting for Deployments to become available.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Ownership labels every object Sluice renders carries, and the annotation
// that records what Sluice last applied.
const (
	LabelManagedBy        = "app.kubernetes.io/managed-by"
	LabelRelease          = "sluice.dev/release"
	LabelReleaseNamespace = "sluice.dev/release-namespace"
	AnnotationAppliedHash = "sluice.dev/applied-hash"

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
		{Kind: "Service"},
		{Group: "apps", Kind: "Deployment"},
		{Group: "networking.istio.io", Kind: "DestinationRule"},
		{Group: "networking.istio.io", Kind: "VirtualService"},
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
}

// Applier applies sets of objects to one cluster. It is safe for
// concurrent use by multiple goroutines on different releases.
type Applier struct {
	dyn          dynamic.Interface
	kube         kubernetes.Interface
	mapper       *restmapper.DeferredDiscoveryRESTMapper
	fieldManager string
	log          *slog.Logger
	pruneKinds   []schema.GroupKind
}

// New returns an Applier that talks to the cluster cfg points at. When cfg
// sets no client-side rate limit, a higher one than client-go's default of
// 5 requests/s is used, since the API server's priority and fairness
// already protects it and applying many releases is otherwise throttled.
func New(cfg *rest.Config, opts Options) (*Applier, error) {
	if cfg == nil {
		return nil, errors.New("new applier: nil rest config")
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 && cfg.RateLimiter == nil {
		cfg.QPS, cfg.Burst = 50, 100
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("new applier: http client: %w", err)
	}
	dyn, err := dynamic.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("new applier: dynamic client: %w", err)
	}
	kube, err := kubernetes.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("new applier: kubernetes client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("new applier: discovery client: %w", err)
	}
	a := &Applier{
		dyn:          dyn,
		kube:         kube,
		mapper:       restmapper.NewDeferredDiscoveryRESTMapperWithContext(memory.NewMemCacheClientWithContext(dc)),
		fieldManager: opts.FieldManager,
		log:          opts.Log,
		pruneKinds:   opts.PruneKinds,
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
// The Result is returned even with an error and lists what was done.
func (a *Applier) Apply(ctx context.Context, set Set, opts ApplyOptions) (*Result, error) {
	res := &Result{DryRun: opts.DryRun}
	release, err := validateOwner(set.Owner)
	if err != nil {
		return res, err
	}
	items, err := prepare(set)
	if err != nil {
		return res, fmt.Errorf("release %s: %w", release, err)
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
	selector := labels.SelectorFromSet(set.Owner)
	if len(base) > 0 {
		if err := a.round(ctx, release, selector, base, nil, opts, res); err != nil {
			return res, err
		}
		if err := a.waitCRDs(ctx, base, opts); err != nil {
			return res, fmt.Errorf("release %s: %w", release, err)
		}
	}
	if err := a.round(ctx, release, selector, rest, a.pruneKinds, opts, res); err != nil {
		return res, err
	}
	return res, nil
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
func (a *Applier) round(ctx context.Context, release string, owner labels.Selector, items []*item, pruneKinds []schema.GroupKind, opts ApplyOptions, res *Result) error {
	if err := a.resolve(ctx, items); err != nil {
		return fmt.Errorf("release %s: %w", release, err)
	}
	kinds, err := a.listKinds(ctx, items, pruneKinds)
	if err != nil {
		return fmt.Errorf("release %s: %w", release, err)
	}
	live, err := a.readLive(ctx, owner, kinds)
	if err != nil {
		return fmt.Errorf("release %s: %w", release, err)
	}
	var writes []*item
	for _, it := range items {
		if err := a.classify(ctx, release, it, live); err != nil {
			return fmt.Errorf("release %s: %w", release, err)
		}
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
	prunes := pruneCandidates(items, live, owner, kinds)

	// Validate everything first so a set the server rejects is not left
	// half-applied.
	var errs []error
	for _, it := range writes {
		if _, err := a.apply(ctx, it, true); err != nil {
			errs = append(errs, &ObjectError{Object: it.ref, Op: "validate", Err: err})
		}
	}
	for _, p := range prunes {
		if err := a.delete(ctx, p, true); err != nil {
			errs = append(errs, &ObjectError{Object: p.ref, Op: "validate prune of", Err: err})
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("release %s: the API server rejected %d object(s), nothing was changed:\n%w", release, len(errs), errors.Join(errs...))
	}

	for _, it := range writes {
		if !opts.DryRun {
			if _, err := a.apply(ctx, it, false); err != nil {
				return fmt.Errorf("release %s: %w", release, &ObjectError{Object: it.ref, Op: "apply", Err: err})
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
		if !opts.DryRun {
			if err := a.delete(ctx, p, false); err != nil {
				return fmt.Errorf("release %s: %w", release, &ObjectError{Object: p.ref, Op: "prune", Err: err})
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
		m, err := a.mapper.RESTMappingWithContext(ctx, gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) && !reset {
			reset = true
			a.mapper.ResetWithContext(ctx)
			m, err = a.mapper.RESTMappingWithContext(ctx, gvk.GroupKind(), gvk.Version)
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
		m, err := a.mapper.RESTMappingWithContext(ctx, gk)
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

// readLive lists, in all namespaces, the objects of each kind that carry
// the owner labels: one LIST per kind serves both the unchanged check and
// pruning.
func (a *Applier) readLive(ctx context.Context, owner labels.Selector, kinds []*meta.RESTMapping) (map[objKey]*unstructured.Unstructured, error) {
	live := map[objKey]*unstructured.Unstructured{}
	for _, m := range kinds {
		opts := metav1.ListOptions{LabelSelector: owner.String(), Limit: 500}
		for {
			list, err := a.dyn.Resource(m.Resource).List(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("list %s with labels %s: %w", m.Resource.GroupResource(), owner, err)
			}
			for i := range list.Items {
				u := &list.Items[i]
				// List items may lack apiVersion/kind.
				u.SetGroupVersionKind(m.GroupVersionKind)
				live[keyOf(u)] = u
			}
			if list.GetContinue() == "" {
				break
			}
			opts.Continue = list.GetContinue()
		}
	}
	return live, nil
}

// classify decides what an item needs by comparing it with its live
// object: the hash annotation says whether Sluice applied this exact
// object last, and the field comparison whether anyone changed it since.
func (a *Applier) classify(ctx context.Context, release string, it *item, live map[objKey]*unstructured.Unstructured) error {
	cur, ok := live[it.key]
	if !ok {
		// Not labelled as ours: it may still exist, unlabelled or owned by
		// another release.
		got, err := a.dyn.Resource(it.mapping.Resource).Namespace(it.ref.Namespace).Get(ctx, it.ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			it.action = actCreate
			return nil
		case err != nil:
			return &ObjectError{Object: it.ref, Op: "read", Err: err}
		}
		cur = got
		if other := cur.GetLabels()[LabelRelease]; other != "" && cur.GetLabels()[LabelManagedBy] != "" {
			if !ownedBySameRelease(cur.GetLabels(), it.obj.GetLabels()) {
				return fmt.Errorf("%s already belongs to release %s/%s; two releases must not render the same object",
					it.ref, cur.GetLabels()[LabelReleaseNamespace], other)
			}
		} else {
			a.log.Info("adopting object that lacks Sluice's owner labels", "release", release, "object", it.ref.String())
		}
	}
	it.action = actUpdate
	if cur.GetAnnotations()[AnnotationAppliedHash] != it.hash {
		return nil
	}
	it.drift = compareFields(it.ref, it.obj.Object, cur.Object)
	if len(it.drift) == 0 {
		it.action = actUnchanged
	}
	return nil
}

func ownedBySameRelease(live, desired map[string]string) bool {
	for _, k := range []string{LabelManagedBy, LabelRelease, LabelReleaseNamespace} {
		if live[k] != desired[k] {
			return false
		}
	}
	return true
}

// prune is a live object to delete.
type prune struct {
	ref      ObjectRef
	obj      *unstructured.Unstructured
	resource schema.GroupVersionResource
	rank     int
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
		out = append(out, &prune{ref: refOf(u), obj: u, resource: resources[k.gk], rank: rank})
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
	return strings.Compare(x.Group+"\x00"+x.Kind+"\x00"+x.Namespace+"\x00"+x.Name,
		y.Group+"\x00"+y.Kind+"\x00"+y.Namespace+"\x00"+y.Name)
}

// apply server-side applies one item. Force takes fields back from other
// managers: Sluice is the source of truth for every field it renders, and
// a conflict means someone edited one by hand (drift to undo). Fields
// Sluice does not render stay with their owners.
func (a *Applier) apply(ctx context.Context, it *item, dryRun bool) (*unstructured.Unstructured, error) {
	opts := metav1.ApplyOptions{FieldManager: a.fieldManager, Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return a.dyn.Resource(it.mapping.Resource).Namespace(it.ref.Namespace).Apply(ctx, it.ref.Name, it.obj, opts)
}

// delete removes a pruned object, only if it is still the object that was
// listed (same UID).
func (a *Applier) delete(ctx context.Context, p *prune, dryRun bool) error {
	uid := p.obj.GetUID()
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &bg}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	err := a.dyn.Resource(p.resource).Namespace(p.ref.Namespace).Delete(ctx, p.ref.Name, opts)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
