package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// readCRDs decodes every CustomResourceDefinition in a multi-document YAML
// file.
func readCRDs(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("CRDs: %w", err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 64<<10)
	var crds []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("CRDs: decode %s: %w", path, err)
		}
		if obj == nil {
			continue // empty document
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetKind() != "CustomResourceDefinition" {
			return nil, fmt.Errorf("CRDs: %s holds a %s %q, want only CustomResourceDefinitions", path, u.GetKind(), u.GetName())
		}
		crds = append(crds, u)
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("CRDs: no CustomResourceDefinition in %s", path)
	}
	return crds, nil
}

// installCRDs creates the CRDs of the files (Istio's, the Gateway API's)
// and waits until the API server serves them (Established), so their
// schemas validate from the first request.
func (e *Env) installCRDs(ctx context.Context, paths []string) error {
	var crds []*unstructured.Unstructured
	for _, path := range paths {
		c, err := readCRDs(path)
		if err != nil {
			return err
		}
		crds = append(crds, c...)
	}
	dyn, err := dynamic.NewForConfig(e.admin)
	if err != nil {
		return fmt.Errorf("CRDs: dynamic client: %w", err)
	}
	client := dyn.Resource(crdGVR)
	names := make([]string, 0, len(crds))
	for _, crd := range crds {
		if _, err := client.Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("CRDs: create %s: %w", crd.GetName(), err)
		}
		names = append(names, crd.GetName())
	}
	apiserver := e.proc(compAPIServer)
	pending := names
	err = apiserver.waitReady(ctx, "CRDs to be Established", func(ctx context.Context) (bool, error) {
		list, err := client.List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		established := map[string]bool{}
		for _, item := range list.Items {
			conds, _, _ := unstructured.NestedSlice(item.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					established[item.GetName()] = true
				}
			}
		}
		pending = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return established[n] })
		return len(pending) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("%w (not established: %s)", err, strings.Join(pending, ", "))
	}
	e.log.Debug("testenv: CRDs established", "count", len(names), "files", len(paths))
	return nil
}

// nodeName is the name of the i-th fake node.
func nodeName(i int) string { return fmt.Sprintf("kwok-node-%d", i) }

// createNodes registers the fake nodes. kwok adopts them (by annotation) and
// plays their kubelet; the TaintNodesByCondition admission plugin gives them
// the not-ready taint until the node lifecycle controller sees them Ready.
func (e *Env) createNodes(ctx context.Context) error {
	for i := range e.opts.Nodes {
		name := nodeName(i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{NodeAnnotation: "fake"},
				Labels: map[string]string{
					"kubernetes.io/hostname": name,
					"kubernetes.io/os":       "linux",
					"kubernetes.io/arch":     "amd64",
					"type":                   "kwok",
				},
			},
			Status: corev1.NodeStatus{
				Allocatable: nodeResources(),
				Capacity:    nodeResources(),
			},
		}
		if _, err := e.clients.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create node %s: %w", name, err)
		}
	}
	return nil
}

func nodeResources() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
}

// waitNodesReady waits until every fake node is Ready (kwok works) and has
// lost the not-ready taint (the node lifecycle controller works), so pods
// schedule at once.
func (e *Env) waitNodesReady(ctx context.Context) error {
	state := "no nodes listed"
	err := e.proc(compKwok).waitReady(ctx, "nodes to be Ready and untainted", func(ctx context.Context) (bool, error) {
		list, err := e.clients.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		var notReady []string
		for _, n := range list.Items {
			if n.Annotations[NodeAnnotation] != "fake" {
				continue
			}
			if !nodeReady(&n) {
				notReady = append(notReady, n.Name+" (not Ready)")
				continue
			}
			for _, t := range n.Spec.Taints {
				if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
					notReady = append(notReady, n.Name+" (tainted "+t.Key+")")
					break
				}
			}
		}
		state = strings.Join(notReady, ", ")
		return len(list.Items) >= e.opts.Nodes && len(notReady) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("%w (%s)", err, state)
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitDefaultServiceAccount waits for the controller manager to create the
// namespace's "default" ServiceAccount; until then the API server rejects
// pods there, and ReplicaSets back off.
func (e *Env) waitDefaultServiceAccount(ctx context.Context, namespace string) error {
	return e.proc(compControllerManager).waitReady(ctx, "ServiceAccount "+namespace+"/default",
		func(ctx context.Context) (bool, error) {
			_, err := e.clients.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return err == nil, err
		})
}
