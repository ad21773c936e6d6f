package specs

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Limits of the Gateway API's HTTPRoute (v1) that a release's routes must fit.
const (
	// MaxRouteMatches is the most matches an HTTPRoute rule holds.
	MaxRouteMatches = 64
	// MaxRouteHeaders is the most header matches one HTTPRoute match holds.
	MaxRouteHeaders = 16
	// MaxRouteParents is the most parentRefs an HTTPRoute holds.
	MaxRouteParents = 32
)

// VersionService is the name of the Service Gateway API routing renders
// for one version: HTTPRoute backends are Services, with no subsets.
func (r *Release) VersionService(version string) string {
	return r.ServiceName() + "-" + version
}

// GatewayRef splits a route's gateway reference, "name" or
// "namespace/name" as Istio writes them, into namespace (empty: the
// release's) and name.
func GatewayRef(g string) (namespace, name string) {
	if ns, n, ok := strings.Cut(g, "/"); ok {
		return ns, n
	}
	return "", g
}

// routing validates spec.routing, each route's routing, and what Gateway
// API routing cannot express.
func (v *validator) routing() {
	r := v.r
	s := &r.Spec
	kind := func(p, value string) bool {
		switch value {
		case "", RoutingIstio, RoutingGatewayAPI:
			return true
		}
		v.fail(p, "must be %q or %q, got %q", RoutingIstio, RoutingGatewayAPI, value)
		return false
	}
	kind("spec.routing", s.Routing)
	gatewayAPI, gatewayAPIMesh := false, false
	for i, rt := range s.Routes {
		p := fmt.Sprintf("spec.routes[%d]", i)
		if !kind(p+".routing", rt.Routing) || r.RoutingOf(rt) != RoutingGatewayAPI {
			continue
		}
		gatewayAPI = true
		if rt.IsMesh() {
			gatewayAPIMesh = true
			if len(rt.Gateways) > 1 {
				v.fail(p+".gateways", "a Gateway API route attaches either to the Service (mesh) or to Gateways, not both; split it into two routes")
			}
			for j, h := range rt.Hosts {
				if !r.namesService(h) {
					v.fail(fmt.Sprintf("%s.hosts[%d]", p, j), "%q is not the release's Service %s: a Gateway API mesh route attaches to the Service itself, so its hosts can only name it", h, r.ServiceName())
				}
			}
			continue
		}
		if len(rt.Gateways) > MaxRouteParents {
			v.fail(p+".gateways", "an HTTPRoute holds at most %d parentRefs, got %d", MaxRouteParents, len(rt.Gateways))
		}
		for j, g := range rt.Gateways {
			if g == "" {
				continue // reported with the routes
			}
			ns, name := GatewayRef(g)
			gp := fmt.Sprintf("%s.gateways[%d]", p, j)
			if strings.Contains(name, "/") || (strings.Contains(g, "/") && ns == "") {
				v.fail(gp, "%q is not a Gateway: write name or namespace/name", g)
				continue
			}
			if ns != "" {
				if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
					v.fail(gp, "%q: namespace %q is not valid: %s", g, ns, strings.Join(msgs, "; "))
				}
			}
			if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
				v.fail(gp, "%q: Gateway name %q is not valid: %s", g, name, strings.Join(msgs, "; "))
			}
		}
		for j, h := range rt.Hosts {
			if h == "" {
				continue
			}
			if !routeHostname(h) {
				v.fail(fmt.Sprintf("%s.hosts[%d]", p, j), "%q is not an HTTPRoute hostname: a lowercase DNS name, optionally starting with *., and not an IP address", h)
			}
		}
	}
	if !gatewayAPI {
		return
	}
	for _, ver := range s.Versions {
		svc := r.VersionService(ver.Name)
		if msgs := validation.IsDNS1035Label(svc); len(msgs) > 0 && ver.Name != "" {
			v.fail("spec.versions", "Gateway API routing renders Service %q for version %s, which is not a valid Service name: %s; shorten the service or version name", svc, ver.Name, strings.Join(msgs, "; "))
		}
	}
	for i, st := range s.Stages {
		p := fmt.Sprintf("spec.stages[%d]", i)
		var ms []Match
		switch {
		case st.DarkLaunch != nil:
			p, ms = p+".darkLaunch.match", st.DarkLaunch.Match
		case st.Weighted != nil:
			p, ms = p+".weighted.match", st.Weighted.Match
		}
		if len(ms) > MaxRouteMatches {
			v.fail(p, "an HTTPRoute rule holds at most %d matches, got %d", MaxRouteMatches, len(ms))
		}
		for j, m := range ms {
			mp := fmt.Sprintf("%s[%d]", p, j)
			if len(m.SourceLabels) > 0 && gatewayAPIMesh {
				v.fail(mp+".sourceLabels", "a Gateway API HTTPRoute cannot match the client's labels; match a header the clients send instead")
			}
			if n := len(m.Headers); m.Cookie != nil && n+1 > MaxRouteHeaders || n > MaxRouteHeaders {
				v.fail(mp+".headers", "an HTTPRoute match holds at most %d header matches (a cookie match is one)", MaxRouteHeaders)
			}
		}
	}
}

// namesService reports whether host names the release's Service in its
// namespace, in any of the forms Kubernetes DNS resolves.
func (r *Release) namesService(host string) bool {
	svc, ns := r.ServiceName(), r.Metadata.Namespace
	switch strings.TrimSuffix(host, ".") {
	case svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local":
		return true
	}
	return false
}

// routeHostname reports whether h is a valid HTTPRoute hostname: a DNS
// name, optionally with a leading "*." label, and not an IP address.
func routeHostname(h string) bool {
	if len(validation.IsValidIP(nil, h)) == 0 {
		return false
	}
	if strings.HasPrefix(h, "*.") {
		return len(validation.IsWildcardDNS1123Subdomain(h)) == 0
	}
	return len(validation.IsDNS1123Subdomain(h)) == 0
}
