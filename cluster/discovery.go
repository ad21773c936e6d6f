package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
)

// discovery maps kinds to resources from the API server's discovery
// documents: the list of groups once, and a group version's resources the
// first time a kind of it is mapped. Both are kept until reset, which the
// Applier asks for when a kind is unknown (a CRD may have been installed
// since).
//
// It stands in for client-go's discovery client and deferred REST mapper,
// which read every group's resources up front and import client-go's
// clientset scheme, and with it every built-in API group: megabytes of
// code and data that Sluice does not use, paged in at start-up.
type discovery struct {
	client rest.Interface

	mu sync.Mutex
	// groups are the served groups by name ("" is the core group); nil
	// until read.
	groups map[string]metav1.APIGroup
	// resources are the resources of each group version read so far.
	resources map[schema.GroupVersion][]metav1.APIResource
}

// newDiscovery returns a discovery over cfg, sending its requests through
// httpClient.
func newDiscovery(cfg *rest.Config, httpClient *http.Client) (*discovery, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.APIPath = ""
	cfg.GroupVersion = nil
	// Status errors decode to API errors (so IsNotFound and the like
	// work); the documents themselves are read raw.
	scheme := runtime.NewScheme()
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	c, err := rest.UnversionedRESTClientForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	return &discovery{client: c}, nil
}

// Reset forgets what was discovered; the next mapping reads it again.
func (d *discovery) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.groups, d.resources = nil, nil
}

// RESTMapping maps a kind to its resource in the first of versions the
// server serves, or with no versions in the group's preferred version
// (then the others). A kind the server does not serve is a
// meta.NoKindMatchError.
func (d *discovery) RESTMapping(ctx context.Context, gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.readGroups(ctx); err != nil {
		return nil, err
	}
	noMatch := &meta.NoKindMatchError{GroupKind: gk, SearchedVersions: versions}
	group, ok := d.groups[gk.Group]
	if !ok {
		return nil, noMatch
	}
	served := make([]string, 0, len(group.Versions))
	if p := group.PreferredVersion.Version; p != "" {
		served = append(served, p)
	}
	for _, v := range group.Versions {
		if !slices.Contains(served, v.Version) {
			served = append(served, v.Version)
		}
	}
	candidates := served
	if versions = slices.DeleteFunc(slices.Clone(versions), func(v string) bool { return v == "" }); len(versions) > 0 {
		candidates = slices.DeleteFunc(versions, func(v string) bool { return !slices.Contains(served, v) })
	}
	for _, v := range candidates {
		gv := schema.GroupVersion{Group: gk.Group, Version: v}
		resources, err := d.readResources(ctx, gv)
		if err != nil {
			return nil, err
		}
		for _, r := range resources {
			if r.Kind != gk.Kind || strings.Contains(r.Name, "/") {
				continue // another kind, or a subresource
			}
			scope := meta.RESTScopeRoot
			if r.Namespaced {
				scope = meta.RESTScopeNamespace
			}
			return &meta.RESTMapping{Resource: gv.WithResource(r.Name), GroupVersionKind: gv.WithKind(gk.Kind), Scope: scope}, nil
		}
	}
	return nil, noMatch
}

// readGroups reads the served groups, once: /api (the core group's
// versions) and /apis.
func (d *discovery) readGroups(ctx context.Context) error {
	if d.groups != nil {
		return nil
	}
	var core metav1.APIVersions
	if err := d.get(ctx, "/api", &core); err != nil {
		return err
	}
	var list metav1.APIGroupList
	if err := d.get(ctx, "/apis", &list); err != nil {
		return err
	}
	groups := make(map[string]metav1.APIGroup, len(list.Groups)+1)
	if len(core.Versions) > 0 {
		g := metav1.APIGroup{PreferredVersion: metav1.GroupVersionForDiscovery{GroupVersion: core.Versions[0], Version: core.Versions[0]}}
		for _, v := range core.Versions {
			g.Versions = append(g.Versions, metav1.GroupVersionForDiscovery{GroupVersion: v, Version: v})
		}
		groups[""] = g
	}
	for _, g := range list.Groups {
		groups[g.Name] = g
	}
	d.groups = groups
	return nil
}

// readResources reads a group version's resources, once.
func (d *discovery) readResources(ctx context.Context, gv schema.GroupVersion) ([]metav1.APIResource, error) {
	if r, ok := d.resources[gv]; ok {
		return r, nil
	}
	path := "/apis/" + gv.Group + "/" + gv.Version
	if gv.Group == "" {
		path = "/api/" + gv.Version
	}
	var list metav1.APIResourceList
	if err := d.get(ctx, path, &list); err != nil {
		return nil, err
	}
	if d.resources == nil {
		d.resources = map[schema.GroupVersion][]metav1.APIResource{}
	}
	d.resources[gv] = list.APIResources
	return list.APIResources, nil
}

func (d *discovery) get(ctx context.Context, path string, into any) error {
	data, err := d.client.Get().AbsPath(path).SetHeader("Accept", "application/json").Do(ctx).Raw()
	if err != nil {
		return fmt.Errorf("discovery %s: %w", path, err)
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("discovery %s: %w", path, err)
	}
	return nil
}
