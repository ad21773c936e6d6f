package leader

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Leases reads and writes coordination.k8s.io/v1 Leases. NewLeases makes
// one from a dynamic client; a test may give its own.
type Leases interface {
	Get(ctx context.Context, namespace, name string) (*coordinationv1.Lease, error)
	// Create and Update return the Lease as the API server stored it.
	// Update is a compare-and-swap on the Lease's resourceVersion: it
	// fails with a Conflict when the Lease changed since it was read.
	Create(ctx context.Context, lease *coordinationv1.Lease) (*coordinationv1.Lease, error)
	Update(ctx context.Context, lease *coordinationv1.Lease) (*coordinationv1.Lease, error)
	// List returns every Lease in namespace.
	List(ctx context.Context, namespace string) ([]coordinationv1.Lease, error)
}

// NewLeases returns Leases over a dynamic client. (client-go's typed
// coordination client would link and register every built-in API group.)
func NewLeases(client dynamic.Interface) Leases { return dynamicLeases{client: client} }

type dynamicLeases struct{ client dynamic.Interface }

func (l dynamicLeases) leases(namespace string) dynamic.ResourceInterface {
	return l.client.Resource(schema.GroupVersionResource{Group: coordinationv1.GroupName, Version: "v1", Resource: "leases"}).Namespace(namespace)
}

func (l dynamicLeases) Get(ctx context.Context, namespace, name string) (*coordinationv1.Lease, error) {
	u, err := l.leases(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return toLease(u)
}

func (l dynamicLeases) Create(ctx context.Context, lease *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	u, err := fromLease(lease)
	if err != nil {
		return nil, err
	}
	out, err := l.leases(lease.Namespace).Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return toLease(out)
}

func (l dynamicLeases) Update(ctx context.Context, lease *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	u, err := fromLease(lease)
	if err != nil {
		return nil, err
	}
	out, err := l.leases(lease.Namespace).Update(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		return nil, err
	}
	return toLease(out)
}

func (l dynamicLeases) List(ctx context.Context, namespace string) ([]coordinationv1.Lease, error) {
	list, err := l.leases(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]coordinationv1.Lease, 0, len(list.Items))
	for i := range list.Items {
		lease, err := toLease(&list.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, *lease)
	}
	return out, nil
}

func toLease(u *unstructured.Unstructured) (*coordinationv1.Lease, error) {
	lease := &coordinationv1.Lease{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, lease); err != nil {
		return nil, fmt.Errorf("lease %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return lease, nil
}

func fromLease(lease *coordinationv1.Lease) (*unstructured.Unstructured, error) {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(lease)
	if err != nil {
		return nil, fmt.Errorf("lease %s/%s: %w", lease.Namespace, lease.Name, err)
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetAPIVersion(coordinationv1.SchemeGroupVersion.String())
	u.SetKind("Lease")
	return u, nil
}
