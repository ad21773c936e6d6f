package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"

	"sluice.dev/sluice/internal/gwroute"
)

var (
	httpRouteKind     = schema.GroupKind{Group: gwroute.Group, Kind: gwroute.Kind}
	httpRouteResource = schema.GroupVersionResource{Group: gwroute.Group, Version: gwroute.Version, Resource: "httproutes"}
)

// mergeRoute puts what a person or controller added to the live HTTPRoute
// into the item about to be applied: rules, filters, timeouts, parentRefs
// and hostnames that Sluice did not render (see gwroute.Merge). The
// route's spec lists are atomic, so an apply without the merge would
// replace them whole. The apply carries the live resourceVersion: if the
// route changes between this read and the write, the write fails and the
// next reconcile merges again, rather than losing that change.
func mergeRoute(it *item, cur *unstructured.Unstructured) {
	merged := &unstructured.Unstructured{Object: gwroute.Merge(it.obj.Object, cur.Object)}
	merged.SetResourceVersion(cur.GetResourceVersion())
	it.obj = merged
}

// RoutesReady reports, without waiting, whether the controllers of the
// HTTPRoutes namespace/names have accepted them: for every parent Sluice
// attached a route to, Accepted and ResolvedRefs are True for the route's
// current generation. When not, reason names the route and parent, with
// the condition's message when one is False.
func (a *Applier) RoutesReady(ctx context.Context, namespace string, names []string) (bool, string, error) {
	for _, name := range names {
		u, cached := a.cache.get(httpRouteKind, namespace, name)
		if u == nil || !cached {
			got, err := a.dyn.Resource(httpRouteResource).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, fmt.Sprintf("HTTPRoute %s does not exist", name), nil
			}
			if err != nil {
				return false, "", fmt.Errorf("read HTTPRoute %s/%s: %w", namespace, name, err)
			}
			u = got
		}
		if ok, reason := gwroute.Ready(u.Object); !ok {
			return false, reason, nil
		}
	}
	return true, "", nil
}

// WaitRoutes waits until RoutesReady reports the HTTPRoutes namespace/names
// accepted, or fails after deadline with its last reason.
func (a *Applier) WaitRoutes(ctx context.Context, namespace string, names []string, deadline time.Duration) error {
	if len(names) == 0 {
		return nil
	}
	waitCtx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	reason := "not read yet"
	var lastErr error
	err := wait.PollUntilContextCancel(waitCtx, waitPollInterval, true, func(ctx context.Context) (bool, error) {
		ok, why, err := a.RoutesReady(ctx, namespace, names)
		switch {
		case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
			return false, err
		case err != nil:
			// A transient failure: keep polling.
			if ctx.Err() == nil {
				lastErr = err
			}
			return false, nil
		}
		reason, lastErr = why, nil
		return ok, nil
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("wait for routes in %s: %w", namespace, ctx.Err())
	case waitCtx.Err() != nil:
		if lastErr != nil {
			reason += fmt.Sprintf("; last read failed: %v", lastErr)
		}
		return fmt.Errorf("routes in %s not accepted within %s: %s", namespace, deadline, reason)
	}
	return fmt.Errorf("wait for routes in %s: %w", namespace, err)
}
