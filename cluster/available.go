package cluster

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Available reports, without waiting, whether a Deployment has rolled out
// and is available; when it is not, reason says why. The reconciler polls
// it, so that a slow rollout never holds a worker.
func (a *Applier) Available(ctx context.Context, namespace, name string) (bool, string, error) {
	d, err := a.kube.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
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
