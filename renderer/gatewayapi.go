package renderer

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"sluice.dev/sluice/internal/gwroute"
	"sluice.dev/sluice/specs"
)

// gatewayAPI renders the Gateway API routing of a step: one Service per
// version (HTTPRoute has no subsets; the shared Service stays for
// clients) and one HTTPRoute per route context. It works on the objects
// the kustomize build produced, since a version's Service copies the
// shared one and a route merges into an HTTPRoute of the same name that
// the source may provide.
func gatewayAPI(rel *specs.Release, step specs.Step, backends []string, objs []*unstructured.Unstructured, owner map[string]string) ([]*unstructured.Unstructured, error) {
	svcName := rel.ServiceName()
	ns := rel.Metadata.Namespace
	shared := slices.IndexFunc(objs, func(o *unstructured.Unstructured) bool {
		return o.GetAPIVersion() == "v1" && o.GetKind() == "Service" && o.GetName() == svcName && o.GetNamespace() == ns
	})
	if shared < 0 {
		return nil, fmt.Errorf("gateway API routing copies the Service %s per version, but the source does not define it", svcName)
	}
	var services []*unstructured.Unstructured
	for _, v := range backends {
		svc, err := versionService(objs[shared], rel.VersionService(v), v)
		if err != nil {
			return nil, err
		}
		services = append(services, svc)
	}
	out := slices.Concat(objs[:shared+1], services, objs[shared+1:])

	for _, rt := range rel.Spec.Routes {
		if rel.RoutingOf(rt) != specs.RoutingGatewayAPI {
			continue
		}
		route, err := httpRouteObject(rel, step, rt, owner)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(out, func(o *unstructured.Unstructured) bool {
			return o.GroupVersionKind().Group == gwroute.Group && o.GetKind() == gwroute.Kind && o.GetName() == route.GetName()
		})
		if i < 0 {
			out = append(out, route)
			continue
		}
		// The source provides the route: its rules, filters and parents
		// stay; Sluice's go in.
		out[i] = &unstructured.Unstructured{Object: gwroute.Merge(route.Object, out[i].Object)}
	}
	return out, nil
}

// versionService is the shared Service restricted to one version's pods.
func versionService(shared *unstructured.Unstructured, name, version string) (*unstructured.Unstructured, error) {
	svc := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Service"}}
	svc.SetName(name)
	svc.SetNamespace(shared.GetNamespace())
	svc.SetLabels(shared.GetLabels())
	spec := map[string]any{}
	ports, _, _ := unstructured.NestedSlice(shared.Object, "spec", "ports")
	for _, p := range ports {
		if pm, ok := p.(map[string]any); ok {
			delete(pm, "nodePort")
		}
	}
	if len(ports) > 0 {
		spec["ports"] = ports
	}
	selector, _, _ := unstructured.NestedStringMap(shared.Object, "spec", "selector")
	if len(selector) == 0 {
		return nil, fmt.Errorf("gateway API routing needs the Service %s to select its pods, but it has no selector", shared.GetName())
	}
	sel := map[string]any{LabelVersion: version}
	for k, v := range selector {
		sel[k] = v
	}
	spec["selector"] = sel
	for _, f := range []string{"sessionAffinity", "publishNotReadyAddresses", "ipFamilyPolicy", "ipFamilies", "trafficDistribution"} {
		if v, ok := shared.Object["spec"].(map[string]any)[f]; ok {
			spec[f] = v
		}
	}
	svc.Object["spec"] = spec
	return svc, nil
}

// RouteName is the name of the HTTPRoute (or VirtualService) a release
// renders for one of its routes.
func RouteName(rel *specs.Release, rt specs.Route) string {
	return rel.Metadata.Name + "-" + rt.Name
}

// HTTPRouteNames are the HTTPRoutes a release renders, in spec order.
func HTTPRouteNames(rel *specs.Release) []string {
	var out []string
	for _, rt := range rel.Spec.Routes {
		if rel.RoutingOf(rt) == specs.RoutingGatewayAPI {
			out = append(out, RouteName(rel, rt))
		}
	}
	return out
}

// httpRouteObject renders one route context as an HTTPRoute.
func httpRouteObject(rel *specs.Release, step specs.Step, rt specs.Route, owner map[string]string) (*unstructured.Unstructured, error) {
	route := gatewayRoute(rel, step, rt)
	route.Labels = maps.Clone(owner)
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(route)
	if err != nil {
		return nil, fmt.Errorf("HTTPRoute %s: %w", route.Name, err)
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// gatewayRoute renders one route context of a step as an HTTPRoute: the
// same traffic as the VirtualService Istio routing renders for it.
func gatewayRoute(rel *specs.Release, step specs.Step, rt specs.Route) *gwapiv1.HTTPRoute {
	ns := rel.Metadata.Namespace
	owned := gwroute.Owned{}
	for _, v := range rel.Spec.Versions {
		owned.Backends = append(owned.Backends, rel.VersionService(v.Name))
	}
	var spec gwapiv1.HTTPRouteSpec
	if rt.IsMesh() {
		// GAMMA: a route whose parent is the Service governs the mesh's
		// traffic to it, on every port as a VirtualService does.
		spec.ParentRefs = []gwapiv1.ParentReference{{
			Group: ptr(gwapiv1.Group("")),
			Kind:  ptr(gwapiv1.Kind("Service")),
			Name:  gwapiv1.ObjectName(rel.ServiceName()),
		}}
	} else {
		for _, g := range rt.Gateways {
			gns, name := specs.GatewayRef(g)
			ref := gwapiv1.ParentReference{
				Group: ptr(gwapiv1.Group(gwroute.Group)),
				Kind:  ptr(gwapiv1.Kind("Gateway")),
				Name:  gwapiv1.ObjectName(name),
			}
			if gns != "" && gns != ns {
				ref.Namespace = ptr(gwapiv1.Namespace(gns))
			}
			spec.ParentRefs = append(spec.ParentRefs, ref)
		}
		for _, h := range rt.Hosts {
			spec.Hostnames = append(spec.Hostnames, gwapiv1.Hostname(h))
			owned.Hostnames = append(owned.Hostnames, h)
		}
	}
	for _, p := range spec.ParentRefs {
		ref := map[string]any{"group": string(*p.Group), "kind": string(*p.Kind), "name": string(p.Name)}
		if p.Namespace != nil {
			ref["namespace"] = string(*p.Namespace)
		}
		owned.ParentRefs = append(owned.ParentRefs, gwroute.KeyOf(ref, ns))
	}
	spec.Rules = routeRules(rel, step, rt)
	return &gwapiv1.HTTPRoute{
		TypeMeta: metav1.TypeMeta{APIVersion: gwroute.APIVersion, Kind: gwroute.Kind},
		ObjectMeta: metav1.ObjectMeta{
			Name:      RouteName(rel, rt),
			Namespace: ns,
			Annotations: map[string]string{
				AnnotationStep:          step.Name,
				gwroute.AnnotationOwned: gwroute.EncodeOwned(owned),
			},
		},
		Spec: spec,
	}
}

func routeRules(rel *specs.Release, step specs.Step, rt specs.Route) []gwapiv1.HTTPRouteRule {
	stable, candidate := rel.Spec.Stable, rel.Spec.Candidate
	port := rel.Spec.Service.Port
	backend := func(version string, weight int32) gwapiv1.HTTPBackendRef {
		return gwapiv1.HTTPBackendRef{BackendRef: gwapiv1.BackendRef{
			BackendObjectReference: serviceRef(rel.VersionService(version), port),
			Weight:                 ptr(weight),
		}}
	}
	split := func(w int32) []gwapiv1.HTTPBackendRef {
		switch {
		case w <= 0:
			return []gwapiv1.HTTPBackendRef{backend(stable, 100)}
		case w >= 100:
			return []gwapiv1.HTTPBackendRef{backend(candidate, 100)}
		}
		return []gwapiv1.HTTPBackendRef{backend(stable, 100-w), backend(candidate, w)}
	}
	rule := func(name string, matches []gwapiv1.HTTPRouteMatch, backends []gwapiv1.HTTPBackendRef) gwapiv1.HTTPRouteRule {
		if len(matches) == 0 {
			// What the API server defaults to, written out so that the
			// applied route reads back as rendered.
			matches = []gwapiv1.HTTPRouteMatch{{Path: rootPath()}}
		}
		return gwapiv1.HTTPRouteRule{Name: ptr(gwapiv1.SectionName(name)), Matches: matches, BackendRefs: backends}
	}
	toStable := rule(gwroute.RuleMain, nil, split(0))

	switch step.Kind {
	case specs.KindPromote:
		return []gwapiv1.HTTPRouteRule{rule(gwroute.RuleMain, nil, split(100))}
	case specs.KindDarkLaunch, specs.KindWeighted:
		if len(step.Match) == 0 {
			return []gwapiv1.HTTPRouteRule{rule(gwroute.RuleMain, nil, split(step.Weight))}
		}
		matches := routeMatches(step.Match)
		if len(matches) == 0 {
			// Only sourceLabels were given, which mean nothing at a
			// gateway (validation refuses them on a mesh route).
			return []gwapiv1.HTTPRouteRule{toStable}
		}
		// Gateway API orders rules by how specific their matches are, not
		// by their order: the header matches make this rule win over the
		// main one for the requests it matches, on every implementation.
		return []gwapiv1.HTTPRouteRule{rule(gwroute.RuleMatch, matches, split(step.Weight)), toStable}
	case specs.KindMirror:
		r := toStable
		r.Filters = []gwapiv1.HTTPRouteFilter{{
			Type:          gwapiv1.HTTPRouteFilterRequestMirror,
			RequestMirror: mirrorFilter(serviceRef(rel.VersionService(candidate), port), step.MirrorPercent),
		}}
		return []gwapiv1.HTTPRouteRule{r}
	}
	// stable, deploy and rollback: the candidate gets no request.
	return []gwapiv1.HTTPRouteRule{toStable}
}

func serviceRef(name string, port int32) gwapiv1.BackendObjectReference {
	return gwapiv1.BackendObjectReference{
		Group: ptr(gwapiv1.Group("")),
		Kind:  ptr(gwapiv1.Kind("Service")),
		Name:  gwapiv1.ObjectName(name),
		Port:  ptr(port),
	}
}

// mirrorFilter mirrors percent of requests: a whole percentage as
// percent, any other as a fraction in millionths.
func mirrorFilter(ref gwapiv1.BackendObjectReference, percent float64) *gwapiv1.HTTPRequestMirrorFilter {
	f := &gwapiv1.HTTPRequestMirrorFilter{BackendRef: ref}
	if percent == math.Trunc(percent) {
		f.Percent = ptr(int32(percent))
		return f
	}
	f.Fraction = &gwapiv1.Fraction{Numerator: int32(math.Round(percent * 10000)), Denominator: ptr(int32(1000000))}
	return f
}

func rootPath() *gwapiv1.HTTPPathMatch {
	return &gwapiv1.HTTPPathMatch{Type: ptr(gwapiv1.PathMatchPathPrefix), Value: ptr("/")}
}

// routeMatches translates a release's matches to HTTPRoute matches.
// Gateway API has exact and regular expression header matches: a prefix
// becomes a regular expression, and every regular expression is anchored,
// since Gateway API leaves it to each implementation whether one matches
// the whole value (Envoy, and so Istio, do) or any part of it.
func routeMatches(ms []specs.Match) []gwapiv1.HTTPRouteMatch {
	var out []gwapiv1.HTTPRouteMatch
	for _, m := range ms {
		var headers []gwapiv1.HTTPHeaderMatch
		for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
			headers = append(headers, headerMatch(k, m.Headers[k]))
		}
		if c := m.Cookie; c != nil {
			headers = append(headers, gwapiv1.HTTPHeaderMatch{
				Type:  ptr(gwapiv1.HeaderMatchRegularExpression),
				Name:  "cookie",
				Value: "^(.*?;\\s*)?(" + regexp.QuoteMeta(c.Name) + "=" + regexp.QuoteMeta(c.Value) + ")(;.*)?$",
			})
		}
		if len(headers) == 0 {
			continue // sourceLabels alone
		}
		out = append(out, gwapiv1.HTTPRouteMatch{Path: rootPath(), Headers: headers})
	}
	return out
}

func headerMatch(name string, s specs.StringMatch) gwapiv1.HTTPHeaderMatch {
	h := gwapiv1.HTTPHeaderMatch{Name: gwapiv1.HTTPHeaderName(name)}
	switch {
	case s.Exact != "":
		h.Type, h.Value = ptr(gwapiv1.HeaderMatchExact), s.Exact
	case s.Prefix != "":
		h.Type, h.Value = ptr(gwapiv1.HeaderMatchRegularExpression), "^"+regexp.QuoteMeta(s.Prefix)+".*$"
	default:
		h.Type, h.Value = ptr(gwapiv1.HeaderMatchRegularExpression), "^(?:"+s.Regex+")$"
	}
	return h
}

func ptr[T any](v T) *T { return &v }
