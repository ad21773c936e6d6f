package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
)

// item is one desired object on its way to the cluster.
type item struct {
	ref     ObjectRef
	key     objKey
	obj     *unstructured.Unstructured // owner-labelled, hash-annotated copy
	hash    string
	rank    int
	mapping *meta.RESTMapping
	action  action
	drift   []Drift
	// unseen: the watched shards do not hold it, so it may exist under
	// another shard's release; the dry run's answer tells (dryRunRV).
	unseen   bool
	dryRunRV string
}

// Dependency ranks: an object is applied after every object of a lower
// rank, so Deployments exist before the DestinationRule whose subsets
// select them, and subsets exist before the VirtualService routes to them.
const (
	rankNamespace = iota
	rankCRD
	rankConfig
	rankService
	rankWorkload
	rankWorkloadPolicy
	rankOther
	rankMeshEntry
	rankDestinationRule
	rankVirtualService
)

func rankOf(gk schema.GroupKind) int {
	switch gk.Group {
	case "":
		switch gk.Kind {
		case "Namespace":
			return rankNamespace
		case "ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim", "ResourceQuota", "LimitRange":
			return rankConfig
		case "Service":
			return rankService
		case "Pod", "ReplicationController":
			return rankWorkload
		}
	case "apiextensions.k8s.io":
		if gk.Kind == "CustomResourceDefinition" {
			return rankCRD
		}
	case "rbac.authorization.k8s.io":
		return rankConfig
	case "apps", "batch":
		return rankWorkload
	case "autoscaling", "policy":
		return rankWorkloadPolicy
	case "gateway.networking.k8s.io":
		if gk.Kind == "HTTPRoute" {
			// After the per-version Services its backends name.
			return rankVirtualService
		}
	case "networking.istio.io":
		switch gk.Kind {
		case "DestinationRule":
			return rankDestinationRule
		case "VirtualService":
			return rankVirtualService
		default:
			return rankMeshEntry
		}
	}
	return rankOther
}

// validateOwner checks the ownership labels and returns the release's
// name for messages.
func validateOwner(owner map[string]string) (string, error) {
	for _, k := range []string{LabelManagedBy, LabelRelease} {
		if owner[k] == "" {
			return "", fmt.Errorf("apply: set owner lacks label %s; without it pruning could select objects of other releases", k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(owner)) {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			return "", fmt.Errorf("apply: set owner label key %q is invalid: %s", k, strings.Join(msgs, "; "))
		}
		if msgs := validation.IsValidLabelValue(owner[k]); len(msgs) > 0 {
			return "", fmt.Errorf("apply: set owner label %s=%q is invalid: %s", k, owner[k], strings.Join(msgs, "; "))
		}
	}
	release := owner[LabelRelease]
	if ns := owner[LabelReleaseNamespace]; ns != "" {
		release = ns + "/" + release
	}
	return release, nil
}

// prepare copies the set's objects, stamps the owner labels, the shard
// label (when not "") and the hash annotation on them, and sorts them in
// dependency order. The caller's objects are not modified.
func prepare(set Set, annotations map[string]string, shard string) ([]*item, error) {
	var errs []error
	seen := map[objKey]int{}
	items := make([]*item, 0, len(set.Objects))
	for i, src := range set.Objects {
		it, err := prepareOne(src, set.Owner, annotations, shard)
		if err != nil {
			errs = append(errs, fmt.Errorf("object %d: %w", i, err))
			continue
		}
		if j, dup := seen[it.key]; dup {
			errs = append(errs, fmt.Errorf("object %d: %s is also object %d", i, it.ref, j))
			continue
		}
		seen[it.key] = i
		items = append(items, it)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortStableFunc(items, func(x, y *item) int {
		if x.rank != y.rank {
			return x.rank - y.rank
		}
		return compareRefs(x.ref, y.ref)
	})
	return items, nil
}

func prepareOne(src *unstructured.Unstructured, owner, annotations map[string]string, shard string) (*item, error) {
	if src == nil {
		return nil, errors.New("nil object")
	}
	u := src.DeepCopy()
	ref := refOf(u)
	gvk := u.GroupVersionKind()
	switch {
	case gvk.Kind == "" || gvk.Version == "":
		return nil, fmt.Errorf("%s: apiVersion and kind are required", ref)
	case u.GetName() == "":
		return nil, fmt.Errorf("%s: metadata.name is required (generateName is not supported: Sluice must find the object again)", ref)
	}
	// Drop what the server owns so hashing and applying see only intent.
	delete(u.Object, "status")
	for _, f := range []string{"resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	lbls := u.GetLabels()
	if lbls == nil {
		lbls = map[string]string{}
	}
	for k, v := range owner {
		if cur, ok := lbls[k]; ok && cur != v {
			return nil, fmt.Errorf("%s: label %s=%q conflicts with the release's owner label %s=%q", ref, k, cur, k, v)
		}
		lbls[k] = v
	}
	// The shard label is not an owner label: pruning must still find the
	// release's objects labelled under another number of shards, or none.
	if shard != "" {
		lbls[LabelShard] = shard
	}
	u.SetLabels(lbls)
	ann := u.GetAnnotations()
	delete(ann, AnnotationAppliedHash)
	if len(annotations) > 0 && ann == nil {
		ann = map[string]string{}
	}
	maps.Copy(ann, annotations)
	if len(ann) == 0 {
		ann = nil
	}
	u.SetAnnotations(ann)
	hash, err := hashObject(u)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationAppliedHash] = hash
	u.SetAnnotations(ann)
	return &item{ref: ref, key: keyOf(u), obj: u, hash: hash, rank: rankOf(gvk.GroupKind())}, nil
}

// hashObject hashes the canonical JSON of an object (encoding/json sorts
// map keys, so equal objects hash equally).
func hashObject(u *unstructured.Unstructured) (string, error) {
	b, err := json.Marshal(u.Object)
	if err != nil {
		return "", fmt.Errorf("hash: %w", err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
