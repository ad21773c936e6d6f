package cluster

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Available reports, without waiting, whether a Deployment has rolled out
// and is available; when it is not, reason says why. The reconciler polls
// it, so that a slow rollout never holds a worker.
func (a *Applier) Available(ctx context.Context, namespace, name string) (bool, string, error) {
	// A watched Deployment that has rolled out needs no request; anything
	// else is read fresh, so a reason or a rollback never rests on a
	// cache that lags.
	if u, _ := a.cache.get(schema.GroupKind{Group: "apps", Kind: "Deployment"}, namespace, name); u != nil {
		var d deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err == nil {
			if ok, err := rolledOut(&d); ok && err == nil {
				return true, "", nil
			}
		}
	}
	d, err := a.getDeployment(ctx, namespace, name)
	if apierrors.IsNotFound(err) {
		return false, "the Deployment does not exist", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("read deployment %s/%s: %w", namespace, name, err)
	}
	ok, err := rolledOut(d)
	if errors.Is(err, errProgressDeadline) {
		return false, "failed to progress: " + a.explainDeployment(ctx, namespace, name), nil
	}
	if err != nil {
		return false, "", err
	}
	if ok {
		return true, "", nil
	}
	s := d.Status
	return false, fmt.Sprintf("%d of %d replicas updated, %d available", s.UpdatedReplicas, s.Replicas, s.AvailableReplicas), nil
}
