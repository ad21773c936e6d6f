package renderer

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"sluice.dev/sluice/specs"
)

// A router renders the traffic routing of a step for the routes of a
// release that use it (spec.routing, or a route's own routing): Istio's
// VirtualServices and DestinationRule, or the Gateway API's HTTPRoutes
// and per-version Services. backends are the versions that must stay
// reachable: the live ones, and during promote and rollback both.
type router interface {
	// generate returns documents that join the step's kustomize build,
	// so the release's namespace and owner labels apply to them.
	generate(rel *specs.Release, step specs.Step, backends []string) ([][]byte, error)
	// finish adds to (or changes) the objects the build produced.
	finish(rel *specs.Release, step specs.Step, backends []string, objs []*unstructured.Unstructured, owner map[string]string) ([]*unstructured.Unstructured, error)
}

// routersOf are the routers a release's routes use, Istio's first.
func routersOf(rel *specs.Release) []router {
	var out []router
	if rel.Uses(specs.RoutingIstio) {
		out = append(out, istioRouter{})
	}
	if rel.Uses(specs.RoutingGatewayAPI) {
		out = append(out, gatewayAPIRouter{})
	}
	return out
}

// istioRouter renders a DestinationRule and VirtualServices (istio.go).
type istioRouter struct{}

func (istioRouter) generate(rel *specs.Release, step specs.Step, backends []string) ([][]byte, error) {
	return istioObjects(rel, step, backends)
}

func (istioRouter) finish(_ *specs.Release, _ specs.Step, _ []string, objs []*unstructured.Unstructured, _ map[string]string) ([]*unstructured.Unstructured, error) {
	return objs, nil
}

// gatewayAPIRouter renders per-version Services and HTTPRoutes
// (gatewayapi.go). Both derive from built objects (the shared Service, a
// source's own HTTPRoute), so it works after the build.
type gatewayAPIRouter struct{}

func (gatewayAPIRouter) generate(*specs.Release, specs.Step, []string) ([][]byte, error) {
	return nil, nil
}

func (gatewayAPIRouter) finish(rel *specs.Release, step specs.Step, backends []string, objs []*unstructured.Unstructured, owner map[string]string) ([]*unstructured.Unstructured, error) {
	return gatewayAPI(rel, step, backends, objs, owner)
}
