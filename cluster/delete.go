package cluster

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/labels"
)

// Delete removes every object of a release (all that carry its owner
// labels, in its namespace), in reverse dependency order, for a release
// whose spec is gone. Objects annotated specs.AnnotationOnDelete=orphan
// are left and listed in Result.Orphaned. Like Apply, it validates every
// deletion with a dry run first, deletes with UID preconditions, and
// never touches an object without every owner label.
func (a *Applier) Delete(ctx context.Context, owner map[string]string) (*Result, error) {
	res := &Result{}
	release, err := validateOwner(owner)
	if err != nil {
		return res, err
	}
	r := &run{
		release:     release,
		owner:       labels.SelectorFromSet(owner),
		ownerLabels: owner,
		namespaces:  namespacesOf(nil, owner),
		res:         res,
		deleting:    true,
	}
	if err := a.round(ctx, r, nil, a.pruneKinds); err != nil {
		return res, fmt.Errorf("delete release %s: %w", release, err)
	}
	a.cache.settled(owner)
	return res, nil
}
