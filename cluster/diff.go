package cluster

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// Change is one object an Apply of a set would create, change or prune.
type Change struct {
	Object ObjectRef
	// Action is "create", "update" or "prune".
	Action string
	// Live is the object as the cluster holds it, Desired as it would
	// after the apply (as the API server's dry run returns it); each is
	// normalised (see Normalize) and nil when the object does not exist
	// on that side.
	Live, Desired map[string]any
}

// DiffResult is what Diff found.
type DiffResult struct {
	Changes   []Change
	Unchanged []ObjectRef
}

// Diff tells what Apply would change in the cluster for set, without
// changing anything. It compares the way Apply does: an object whose
// applied hash and fields are those of the set is unchanged (Apply makes
// no write for it); any other object is applied with a server-side dry
// run, and the object the server returns is compared with the live one
// after Normalize, so only what the apply would really change shows.
// Objects the release rendered before and no longer renders are prunes.
func (a *Applier) Diff(ctx context.Context, set Set) (*DiffResult, error) {
	release, err := validateOwner(set.Owner)
	if err != nil {
		return nil, err
	}
	items, err := prepare(set, a.annotations, a.shardLabel(set.Owner))
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", release, err)
	}
	r := &run{
		release:     release,
		owner:       labels.SelectorFromSet(set.Owner),
		ownerLabels: set.Owner,
		namespaces:  namespacesOf(items, set.Owner),
		opts:        ApplyOptions{DryRun: true},
		res:         &Result{DryRun: true},
	}
	if err := a.resolve(ctx, items); err != nil {
		return nil, fmt.Errorf("release %s: %w", release, err)
	}
	kinds, err := a.listKinds(ctx, items, a.pruneKinds)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", release, err)
	}
	live, err := a.readLive(ctx, r, kinds)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", release, err)
	}
	if err := errors.Join(parallel(len(items), func(i int) error {
		return a.classify(ctx, release, items[i], live)
	})...); err != nil {
		return nil, fmt.Errorf("release %s: %w", release, err)
	}
	changes := make([]*Change, len(items))
	errs := parallel(len(items), func(i int) error {
		it := items[i]
		if it.action == actUnchanged {
			return nil
		}
		opts := metav1.ApplyOptions{FieldManager: a.fieldManager, Force: true, DryRun: []string{metav1.DryRunAll}}
		got, err := a.dyn.Resource(it.mapping.Resource).Namespace(it.ref.Namespace).Apply(ctx, it.ref.Name, it.obj, opts)
		if err != nil {
			return &ObjectError{Object: it.ref, Op: "validate", Err: err}
		}
		c := &Change{Object: it.ref, Action: "update", Desired: Normalize(got)}
		if it.action == actCreate {
			c.Action = "create"
		} else {
			cur, ok := live[it.key]
			if !ok {
				// Not labelled as the release's: classify read it.
				cur, err = a.dyn.Resource(it.mapping.Resource).Namespace(it.ref.Namespace).Get(ctx, it.ref.Name, metav1.GetOptions{})
				if err != nil {
					return &ObjectError{Object: it.ref, Op: "read", Err: err}
				}
			}
			c.Live = Normalize(cur)
			if reflect.DeepEqual(c.Live, c.Desired) {
				return nil // the apply would only restamp the hash
			}
		}
		changes[i] = c
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("release %s: %w", release, err)
	}
	res := &DiffResult{}
	for i, it := range items {
		if changes[i] == nil {
			res.Unchanged = append(res.Unchanged, it.ref)
			continue
		}
		res.Changes = append(res.Changes, *changes[i])
	}
	for _, p := range pruneCandidates(items, live, r.owner, kinds) {
		var cur *unstructured.Unstructured
		for k, u := range live {
			if u.GetUID() == p.uid && k.name == p.ref.Name {
				cur = u
			}
		}
		c := Change{Object: p.ref, Action: "prune"}
		if cur != nil {
			c.Live = Normalize(cur)
		}
		res.Changes = append(res.Changes, c)
	}
	slices.SortStableFunc(res.Changes, func(x, y Change) int { return compareRefs(x.Object, y.Object) })
	return res, nil
}

// Normalize is an object as people compare it: without what the server
// keeps for itself (status, managed fields, resource version, generation,
// UID, creation time), without Sluice's applied hash, which changes
// whenever anything does, without the controller's mark, and without
// kubectl's last-applied copy (the watches drop it).
func Normalize(u *unstructured.Unstructured) map[string]any {
	if u == nil {
		return nil
	}
	c := u.DeepCopy()
	delete(c.Object, "status")
	for _, f := range []string{"resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink"} {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	unstructured.RemoveNestedField(c.Object, "metadata", "annotations", AnnotationAppliedHash)
	unstructured.RemoveNestedField(c.Object, "metadata", "annotations", AnnotationController)
	unstructured.RemoveNestedField(c.Object, "metadata", "annotations", lastApplied)
	if ann, ok, _ := unstructured.NestedMap(c.Object, "metadata", "annotations"); ok && len(ann) == 0 {
		unstructured.RemoveNestedField(c.Object, "metadata", "annotations")
	}
	return c.Object
}
