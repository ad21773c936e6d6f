package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
)

// crdEstablishTimeout bounds the wait for a freshly applied CRD; the API
// server establishes one within seconds.
const crdEstablishTimeout = time.Minute

// waitCRDs waits until every CRD among items is established, then makes
// the mapper rediscover so the new kinds resolve.
func (a *Applier) waitCRDs(ctx context.Context, items []*item, opts ApplyOptions) error {
	if opts.DryRun {
		return nil
	}
	crds := a.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	changed := false
	for _, it := range items {
		if it.rank != rankCRD {
			continue
		}
		changed = changed || it.action != actUnchanged
		err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, crdEstablishTimeout, true, func(ctx context.Context) (bool, error) {
			crd, err := crds.Get(ctx, it.ref.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				switch {
				case m["type"] == "Established" && m["status"] == "True":
					return true, nil
				case m["type"] == "NamesAccepted" && m["status"] == "False":
					return false, fmt.Errorf("names not accepted: %v", m["message"])
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("wait for %s to be established: %w", it.ref, err)
		}
	}
	if changed {
		a.mapper.Reset()
	}
	return nil
}

// waitPollInterval is how often WaitAvailable reads the Deployment: a
// rollout takes seconds at least, and one GET a second is cheap.
const waitPollInterval = time.Second

// diagnoseTimeout bounds the reads that explain a failed wait.
const diagnoseTimeout = 15 * time.Second

// errProgressDeadline marks a Deployment its controller gave up on.
var errProgressDeadline = errors.New("progress deadline exceeded")

// WaitAvailable waits until the Deployment namespace/name has rolled out:
// its controller observed the latest spec and every desired replica is
// updated and available, with no old replica left. It fails after
// deadline, or as soon as the Deployment's own progress deadline is
// exceeded, with an error explaining why: unavailable replicas, the
// Deployment's conditions, and the first pods that are not ready.
func (a *Applier) WaitAvailable(ctx context.Context, namespace, name string, deadline time.Duration) error {
	if deadline <= 0 {
		return fmt.Errorf("wait for deployment %s/%s: deadline %s must be positive", namespace, name, deadline)
	}
	waitCtx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	var lastErr error
	err := wait.PollUntilContextCancel(waitCtx, waitPollInterval, true, func(ctx context.Context) (bool, error) {
		d, err := a.getDeployment(ctx, namespace, name)
		switch {
		case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
			return false, err
		case err != nil:
			// Not there yet, or a transient failure: keep polling.
			if ctx.Err() == nil {
				lastErr = err
			}
			return false, nil
		}
		lastErr = nil
		return rolledOut(d)
	})
	if err == nil {
		return nil
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("wait for deployment %s/%s: %w", namespace, name, ctx.Err())
	}
	// The diagnosis runs past the wait's deadline, and past the caller's
	// when that is what ended the wait, so it is bounded on its own.
	diagCtx, cancelDiag := context.WithTimeout(context.WithoutCancel(ctx), diagnoseTimeout)
	defer cancelDiag()
	why := a.explainDeployment(diagCtx, namespace, name)
	switch {
	case errors.Is(err, errProgressDeadline):
		return fmt.Errorf("deployment %s/%s failed to progress: %s", namespace, name, why)
	case waitCtx.Err() != nil:
		if lastErr != nil && !apierrors.IsNotFound(lastErr) {
			why += fmt.Sprintf("; last read failed: %v", lastErr)
		}
		return fmt.Errorf("deployment %s/%s not available within %s: %s", namespace, name, deadline, why)
	}
	return fmt.Errorf("wait for deployment %s/%s: %w", namespace, name, err)
}

// rolledOut is the Deployment check kubectl rollout status makes.
func rolledOut(d *deployment) (bool, error) {
	if d.Generation > d.Status.ObservedGeneration {
		return false, nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type == deploymentProgressing && c.Reason == reasonProgressDeadlineExceed {
			return false, errProgressDeadline
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.UpdatedReplicas >= want && s.Replicas <= s.UpdatedReplicas && s.AvailableReplicas >= s.UpdatedReplicas, nil
}

// maxPodsExplained bounds the pods described when a wait fails.
const maxPodsExplained = 3

// explainDeployment says why a Deployment is not available, from its
// status, its newest ReplicaSet and its pods.
func (a *Applier) explainDeployment(ctx context.Context, namespace, name string) string {
	d, err := a.getDeployment(ctx, namespace, name)
	if apierrors.IsNotFound(err) {
		return "the Deployment does not exist"
	}
	if err != nil {
		return fmt.Sprintf("cannot read the Deployment: %v", err)
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	unavailable := max(s.UnavailableReplicas, want-s.AvailableReplicas)
	parts := []string{fmt.Sprintf("%d of %d replicas unavailable (updated %d, ready %d, available %d; observed generation %d of %d)",
		unavailable, want, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas, s.ObservedGeneration, d.Generation)}
	var conds []string
	for _, c := range s.Conditions {
		conds = append(conds, condition(string(c.Type), string(c.Status), c.Reason, c.Message))
	}
	if len(conds) > 0 {
		parts = append(parts, "conditions: "+strings.Join(conds, ", "))
	}
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return strings.Join(append(parts, fmt.Sprintf("invalid selector: %v", err)), "; ")
	}
	// The controller copies a ReplicaSet's failure to the Deployment; read
	// the ReplicaSet only when it has not (yet).
	if rs := a.newestReplicaSet(ctx, d, selector.String()); rs != nil && !slices.ContainsFunc(s.Conditions, func(c statusCondition) bool {
		return c.Type == deploymentReplicaFailure
	}) {
		for _, c := range rs.Status.Conditions {
			if c.Type == replicaSetReplicaFailure && c.Status == conditionTrue {
				parts = append(parts, fmt.Sprintf("replicaset %s: %s", rs.Name, condition(string(c.Type), string(c.Status), c.Reason, c.Message)))
			}
		}
	}
	var items []pod
	if err := a.listTyped(ctx, podsResource, namespace, selector.String(), func(u *unstructured.Unstructured) error {
		var p pod
		if err := fromUnstructured(u, &p); err != nil {
			return err
		}
		items = append(items, p)
		return nil
	}); err != nil {
		return strings.Join(append(parts, fmt.Sprintf("cannot list pods: %v", err)), "; ")
	}
	slices.SortFunc(items, func(x, y pod) int { return cmp.Compare(x.Name, y.Name) })
	var explained []string
	for i := range items {
		if why := podNotReady(&items[i]); why != "" && len(explained) < maxPodsExplained {
			explained = append(explained, why)
		}
	}
	switch {
	case len(items) == 0:
		parts = append(parts, "no pods match the selector "+selector.String())
	case len(explained) > 0:
		parts = append(parts, "pods: "+strings.Join(explained, "; "))
	}
	return strings.Join(parts, "; ")
}

// newestReplicaSet returns the Deployment's ReplicaSet with the highest
// revision, or nil.
func (a *Applier) newestReplicaSet(ctx context.Context, d *deployment, selector string) *replicaSet {
	var newest *replicaSet
	err := a.listTyped(ctx, replicaSetsResource, d.Namespace, selector, func(u *unstructured.Unstructured) error {
		rs := &replicaSet{}
		if err := fromUnstructured(u, rs); err != nil {
			return err
		}
		if metav1.IsControlledBy(rs, d) && (newest == nil || revision(rs) > revision(newest)) {
			newest = rs
		}
		return nil
	})
	if err != nil {
		return nil
	}
	return newest
}

// The built-in resources WaitAvailable, Available and their diagnoses
// read, with the dynamic client (see workloads.go).
const (
	deploymentsResource = "deployments"
	replicaSetsResource = "replicasets"
	podsResource        = "pods"
)

func builtin(resource string) schema.GroupVersionResource {
	if resource == podsResource {
		return schema.GroupVersionResource{Version: "v1", Resource: resource}
	}
	return schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: resource}
}

// getDeployment reads a Deployment from the API server.
func (a *Applier) getDeployment(ctx context.Context, namespace, name string) (*deployment, error) {
	u, err := a.dyn.Resource(builtin(deploymentsResource)).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	d := &deployment{}
	if err := fromUnstructured(u, d); err != nil {
		return nil, fmt.Errorf("deployment %s/%s: %w", namespace, name, err)
	}
	return d, nil
}

// listTyped lists a resource's objects in a namespace matching selector
// and hands each to fn.
func (a *Applier) listTyped(ctx context.Context, resource string, namespace, selector string, fn func(*unstructured.Unstructured) error) error {
	list, err := a.dyn.Resource(builtin(resource)).Namespace(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return err
	}
	for i := range list.Items {
		if err := fn(&list.Items[i]); err != nil {
			return err
		}
	}
	return nil
}

func fromUnstructured(u *unstructured.Unstructured, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)
}

func revision(rs *replicaSet) int64 {
	r, _ := strconv.ParseInt(rs.Annotations["deployment.kubernetes.io/revision"], 10, 64)
	return r
}

// podNotReady describes why a pod is not ready, or returns "" if it is.
func podNotReady(p *pod) string {
	if p.DeletionTimestamp != nil {
		return ""
	}
	var why []string
	ready := false
	for _, c := range p.Status.Conditions {
		switch {
		case c.Type == podReady && c.Status == conditionTrue:
			ready = true
		case c.Type == podReady, c.Type == podScheduled && c.Status != conditionTrue:
			why = append(why, condition(string(c.Type), string(c.Status), c.Reason, c.Message))
		}
	}
	if ready {
		return ""
	}
	statuses := append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...)
	for _, cs := range statuses {
		switch {
		case cs.State.Waiting != nil:
			why = append(why, fmt.Sprintf("container %s waiting: %s", cs.Name, reasonMessage(cs.State.Waiting.Reason, cs.State.Waiting.Message)))
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0:
			why = append(why, fmt.Sprintf("container %s terminated: %s (exit code %d)", cs.Name, reasonMessage(cs.State.Terminated.Reason, cs.State.Terminated.Message), cs.State.Terminated.ExitCode))
		case !cs.Ready:
			why = append(why, fmt.Sprintf("container %s not ready", cs.Name))
		}
	}
	if len(why) == 0 {
		why = append(why, "no Ready condition yet")
	}
	return fmt.Sprintf("pod %s (%s) not ready: %s", p.Name, p.Status.Phase, strings.Join(why, ", "))
}

func condition(typ, status, reason, message string) string {
	s := typ + "=" + status
	if rm := reasonMessage(reason, message); rm != "" {
		s += " (" + rm + ")"
	}
	return s
}

func reasonMessage(reason, message string) string {
	switch {
	case reason != "" && message != "":
		return reason + ": " + message
	case reason != "":
		return reason
	}
	return message
}
