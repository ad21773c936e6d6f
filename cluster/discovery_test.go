package cluster

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// fakeDiscovery serves discovery documents and counts the reads of each.
type fakeDiscovery struct {
	mu    sync.Mutex
	docs  map[string]string
	reads map[string]int
}

func (f *fakeDiscovery) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads[r.URL.Path]++
	doc, ok := f.docs[r.URL.Path]
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(doc))
}

func (f *fakeDiscovery) set(path, doc string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.docs[path] = doc
}

func (f *fakeDiscovery) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads[path]
}

// TestDiscovery maps kinds as the API server's discovery documents say:
// the preferred version unless one is asked for, never a subresource,
// each document read once until a reset, and an unknown kind a NoMatch.
func TestDiscovery(t *testing.T) {
	f := &fakeDiscovery{reads: map[string]int{}, docs: map[string]string{
		"/api": `{"kind":"APIVersions","versions":["v1"]}`,
		"/apis": `{"kind":"APIGroupList","groups":[
			{"name":"apps","versions":[{"groupVersion":"apps/v1","version":"v1"}],"preferredVersion":{"groupVersion":"apps/v1","version":"v1"}},
			{"name":"autoscaling","versions":[{"groupVersion":"autoscaling/v2","version":"v2"},{"groupVersion":"autoscaling/v1","version":"v1"}],"preferredVersion":{"groupVersion":"autoscaling/v2","version":"v2"}}]}`,
		"/api/v1": `{"kind":"APIResourceList","groupVersion":"v1","resources":[
			{"name":"pods/status","namespaced":true,"kind":"Pod"},
			{"name":"pods","namespaced":true,"kind":"Pod"},
			{"name":"namespaces","namespaced":false,"kind":"Namespace"}]}`,
		"/apis/apps/v1":        `{"kind":"APIResourceList","groupVersion":"apps/v1","resources":[{"name":"deployments","namespaced":true,"kind":"Deployment"},{"name":"deployments/scale","namespaced":true,"kind":"Scale","group":"autoscaling","version":"v1"}]}`,
		"/apis/autoscaling/v2": `{"kind":"APIResourceList","groupVersion":"autoscaling/v2","resources":[{"name":"horizontalpodautoscalers","namespaced":true,"kind":"HorizontalPodAutoscaler"}]}`,
		"/apis/autoscaling/v1": `{"kind":"APIResourceList","groupVersion":"autoscaling/v1","resources":[{"name":"horizontalpodautoscalers","namespaced":true,"kind":"HorizontalPodAutoscaler"}]}`,
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	d, err := newDiscovery(&rest.Config{Host: srv.URL}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	tests := []struct {
		gk       schema.GroupKind
		versions []string
		want     schema.GroupVersionResource
		scope    meta.RESTScopeName
	}{
		{schema.GroupKind{Kind: "Pod"}, nil, schema.GroupVersionResource{Version: "v1", Resource: "pods"}, meta.RESTScopeNameNamespace},
		{schema.GroupKind{Kind: "Namespace"}, []string{"v1"}, schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, meta.RESTScopeNameRoot},
		{schema.GroupKind{Group: "apps", Kind: "Deployment"}, []string{""}, schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, meta.RESTScopeNameNamespace},
		{schema.GroupKind{Group: "autoscaling", Kind: "HorizontalPodAutoscaler"}, nil, schema.GroupVersionResource{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"}, meta.RESTScopeNameNamespace},
		{schema.GroupKind{Group: "autoscaling", Kind: "HorizontalPodAutoscaler"}, []string{"v1"}, schema.GroupVersionResource{Group: "autoscaling", Version: "v1", Resource: "horizontalpodautoscalers"}, meta.RESTScopeNameNamespace},
	}
	for _, tc := range tests {
		m, err := d.RESTMapping(ctx, tc.gk, tc.versions...)
		if err != nil {
			t.Errorf("%s %v: %v", tc.gk, tc.versions, err)
			continue
		}
		if m.Resource != tc.want || m.Scope.Name() != tc.scope || m.GroupVersionKind != tc.want.GroupVersion().WithKind(tc.gk.Kind) {
			t.Errorf("%s %v: %+v, want %s (%s)", tc.gk, tc.versions, m, tc.want, tc.scope)
		}
	}
	for _, tc := range []struct {
		gk       schema.GroupKind
		versions []string
	}{
		{schema.GroupKind{Group: "networking.istio.io", Kind: "VirtualService"}, nil}, // no such group
		{schema.GroupKind{Group: "apps", Kind: "StatefulSet"}, nil},                   // no such kind
		{schema.GroupKind{Group: "apps", Kind: "Deployment"}, []string{"v1beta2"}},    // not served in that version
		{schema.GroupKind{Group: "autoscaling", Kind: "Scale"}, nil},                  // only a subresource
	} {
		if _, err := d.RESTMapping(ctx, tc.gk, tc.versions...); !meta.IsNoMatchError(err) {
			t.Errorf("%s %v: %v, want a NoMatch error", tc.gk, tc.versions, err)
		}
	}
	for _, p := range []string{"/api", "/apis", "/api/v1", "/apis/apps/v1", "/apis/autoscaling/v2"} {
		if n := f.count(p); n != 1 {
			t.Errorf("%s read %d times, want once", p, n)
		}
	}

	// A CRD installed since: unknown until the reset, then found.
	f.set("/apis", `{"kind":"APIGroupList","groups":[{"name":"networking.istio.io","versions":[{"groupVersion":"networking.istio.io/v1","version":"v1"}],"preferredVersion":{"groupVersion":"networking.istio.io/v1","version":"v1"}}]}`)
	f.set("/apis/networking.istio.io/v1", `{"kind":"APIResourceList","groupVersion":"networking.istio.io/v1","resources":[{"name":"virtualservices","namespaced":true,"kind":"VirtualService"}]}`)
	vs := schema.GroupKind{Group: "networking.istio.io", Kind: "VirtualService"}
	if _, err := d.RESTMapping(ctx, vs); !meta.IsNoMatchError(err) {
		t.Errorf("before the reset: %v, want the NoMatch remembered", err)
	}
	d.Reset()
	if m, err := d.RESTMapping(ctx, vs); err != nil || m.Resource.Resource != "virtualservices" {
		t.Errorf("after the reset: %+v, %v", m, err)
	}
	if n := f.count("/apis"); n != 2 {
		t.Errorf("/apis read %d times, want twice (once more after the reset)", n)
	}

	// A failed read is an error, not a NoMatch, and is not remembered.
	d.Reset()
	f.mu.Lock()
	delete(f.docs, "/api/v1")
	f.mu.Unlock()
	if _, err := d.RESTMapping(ctx, schema.GroupKind{Kind: "Pod"}); err == nil || meta.IsNoMatchError(err) {
		t.Errorf("with /api/v1 failing: %v, want a read error", err)
	}
}
