package meshsim

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// OutcomeInvalidBackend is a request a Gateway API rule sends to a backend
// that does not resolve (no such Service or port), or a rule with no
// backend: the data plane answers 500.
const OutcomeInvalidBackend = "invalid_backend"

// Gateway API controller names Istio reports route status under.
const (
	MeshController    = "istio.io/mesh-controller"
	GatewayController = "istio.io/gateway-controller"
	// IstioGatewayClass is the GatewayClass Istio's gateway controller serves.
	IstioGatewayClass = "istio"
)

// attaches reports whether an HTTPRoute governs the source's requests to
// the service: through a parentRef to the Service for sidecars (GAMMA),
// or to the Gateway a simulated ingress stands for.
func attaches(hr *gwapiv1.HTTPRoute, service string, src *Source) bool {
	for _, p := range hr.Spec.ParentRefs {
		if parentOf(p, hr.Namespace, service, src) {
			return true
		}
	}
	return false
}

func parentOf(p gwapiv1.ParentReference, routeNS, service string, src *Source) bool {
	group, kind := gwapiv1.GroupName, "Gateway"
	if p.Group != nil {
		group = string(*p.Group)
	}
	if p.Kind != nil {
		kind = string(*p.Kind)
	}
	ns := routeNS
	if p.Namespace != nil && *p.Namespace != "" {
		ns = string(*p.Namespace)
	}
	if src.Gateway == "mesh" {
		return group == "" && kind == "Service" && string(p.Name) == service && ns == routeNS
	}
	gwNS, gwName := routeNS, src.Gateway
	if n, name, ok := strings.Cut(src.Gateway, "/"); ok {
		gwNS, gwName = n, name
	}
	return group == gwapiv1.GroupName && kind == "Gateway" && string(p.Name) == gwName && ns == gwNS
}

// gatewayRoutes compiles the HTTPRoutes that attach for the source into
// t's routes, ordered as the Gateway API orders rules across routes: by
// how specific each match is (an exact path, then the longest prefix, a
// method, the most header matches, the most query parameter matches),
// then the oldest route, then by namespace/name, rule and match order.
// Each entry is one match of one rule; the first that matches wins.
func (t *table) gatewayRoutes(routes []*gwapiv1.HTTPRoute, resolve func(ns string, ref gwapiv1.BackendObjectReference) *endpoints) {
	type entry struct {
		r        route
		hr       *gwapiv1.HTTPRoute
		rule, mi int
		exact    bool
		prefix   int
		method   bool
		headers  int
		query    int
	}
	var entries []entry
	var ids []string
	for _, hr := range routes {
		ids = append(ids, fmt.Sprintf("%s/%s@%s", hr.Namespace, hr.Name, hr.ResourceVersion))
		for ri, rule := range hr.Spec.Rules {
			base := route{name: fmt.Sprintf("%s/rules[%d]", hr.Name, ri), abortPercent: -1}
			if rule.Name != nil {
				base.name = hr.Name + "/" + string(*rule.Name)
			}
			var weights []string
			for _, b := range rule.BackendRefs {
				w := 1
				if b.Weight != nil {
					w = int(*b.Weight)
				}
				base.dests = append(base.dests, destination{weight: w, endpoints: resolve(hr.Namespace, b.BackendObjectReference), label: string(b.Name)})
				weights = append(weights, fmt.Sprintf("%s=%d", b.Name, w))
			}
			base.key = fmt.Sprintf("route|%s/%s|%d|%s|%s", hr.Namespace, hr.Name, ri, base.name, strings.Join(weights, ","))
			t.keys[base.key] = true
			for _, f := range rule.Filters {
				switch {
				case f.Type == gwapiv1.HTTPRouteFilterRequestRedirect:
					base.terminal = OutcomeDirect
				case f.Type == gwapiv1.HTTPRouteFilterRequestMirror && f.RequestMirror != nil:
					p := 100.0
					switch m := f.RequestMirror; {
					case m.Percent != nil:
						p = float64(*m.Percent)
					case m.Fraction != nil:
						d := 100.0
						if m.Fraction.Denominator != nil {
							d = float64(*m.Fraction.Denominator)
						}
						p = 100 * float64(m.Fraction.Numerator) / d
					}
					ref := f.RequestMirror.BackendRef
					key := fmt.Sprintf("mirror|%s|%s|%g", base.key, ref.Name, p)
					t.keys[key] = true
					base.mirrors = append(base.mirrors, mirror{key: key, percent: p, endpoints: resolve(hr.Namespace, ref), label: string(ref.Name)})
				}
			}
			if base.terminal == "" && len(base.dests) == 0 {
				base.terminal = OutcomeInvalidBackend
			}
			matches := rule.Matches
			if len(matches) == 0 {
				matches = []gwapiv1.HTTPRouteMatch{{}}
			}
			for mi, m := range matches {
				e := entry{r: base, hr: hr, rule: ri, mi: mi, prefix: 1}
				cm, err := compileGatewayMatch(m)
				if err != nil {
					t.warnings = append(t.warnings, fmt.Sprintf("route %s match[%d]: %v; it never matches", base.name, mi, err))
					cm = match{queryParams: true}
				}
				e.r.matches = []match{cm}
				if m.Path != nil && m.Path.Type != nil && m.Path.Value != nil {
					switch *m.Path.Type {
					case gwapiv1.PathMatchExact:
						e.exact = true
					case gwapiv1.PathMatchPathPrefix:
						e.prefix = len(*m.Path.Value)
					}
				}
				e.method = m.Method != nil
				e.headers, e.query = len(m.Headers), len(m.QueryParams)
				entries = append(entries, e)
			}
		}
	}
	sort.SliceStable(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		switch {
		case a.exact != b.exact:
			return a.exact
		case a.prefix != b.prefix:
			return a.prefix > b.prefix
		case a.method != b.method:
			return a.method
		case a.headers != b.headers:
			return a.headers > b.headers
		case a.query != b.query:
			return a.query > b.query
		case !a.hr.CreationTimestamp.Equal(&b.hr.CreationTimestamp):
			return a.hr.CreationTimestamp.Before(&b.hr.CreationTimestamp)
		case a.hr.Namespace+"/"+a.hr.Name != b.hr.Namespace+"/"+b.hr.Name:
			return a.hr.Namespace+"/"+a.hr.Name < b.hr.Namespace+"/"+b.hr.Name
		case a.rule != b.rule:
			return a.rule < b.rule
		}
		return a.mi < b.mi
	})
	for _, e := range entries {
		t.routes = append(t.routes, e.r)
	}
	t.kind = "HTTPRoute"
	t.vs = strings.Join(ids, ",")
}

// compileGatewayMatch turns an HTTPRoute match into the simulator's. A
// missing path is the API's default, a "/" prefix; header names match
// case-insensitively, values exactly or by a regular expression that
// must match the whole value, as Envoy (and so Istio) evaluates it.
func compileGatewayMatch(m gwapiv1.HTTPRouteMatch) (match, error) {
	var cm match
	if p := m.Path; p != nil && p.Value != nil {
		typ := gwapiv1.PathMatchPathPrefix
		if p.Type != nil {
			typ = *p.Type
		}
		switch typ {
		case gwapiv1.PathMatchExact:
			cm.uri = &strMatch{kind: "exact", value: *p.Value}
		case gwapiv1.PathMatchRegularExpression:
			sm, err := anchored(*p.Value)
			if err != nil {
				return match{}, fmt.Errorf("path %w", err)
			}
			cm.uri = sm
		default:
			cm.uri = &strMatch{kind: "pathprefix", value: *p.Value}
		}
	}
	if m.Method != nil {
		cm.method = &strMatch{kind: "exact", value: string(*m.Method)}
	}
	for _, h := range m.Headers {
		if cm.headers == nil {
			cm.headers = map[string]*strMatch{}
		}
		name := strings.ToLower(string(h.Name))
		if h.Type != nil && *h.Type == gwapiv1.HeaderMatchRegularExpression {
			sm, err := anchored(h.Value)
			if err != nil {
				return match{}, fmt.Errorf("header %s: %w", name, err)
			}
			cm.headers[name] = sm
			continue
		}
		cm.headers[name] = &strMatch{kind: "exact", value: h.Value}
	}
	cm.queryParams = len(m.QueryParams) > 0
	return cm, nil
}

// gatewayParents are the parents of an HTTPRoute that this simulator's
// Istio would report on: the Service it simulates (mesh controller) and
// Gateways of the istio class (gateway controller).
func gatewayParents(hr *gwapiv1.HTTPRoute, service string, gateways map[string]*gwapiv1.Gateway) []gwapiv1.ParentReference {
	var out []gwapiv1.ParentReference
	for _, p := range hr.Spec.ParentRefs {
		if parentOf(p, hr.Namespace, service, &Source{Gateway: "mesh"}) {
			out = append(out, p)
			continue
		}
		if (p.Group == nil || *p.Group == gwapiv1.GroupName) && (p.Kind == nil || *p.Kind == "Gateway") {
			ns := hr.Namespace
			if p.Namespace != nil && *p.Namespace != "" {
				ns = string(*p.Namespace)
			}
			if gw := gateways[ns+"/"+string(p.Name)]; gw != nil && gw.Spec.GatewayClassName == IstioGatewayClass {
				out = append(out, p)
			}
		}
	}
	return out
}

// routeStatus computes the status Istio would report on an HTTPRoute's
// parents: Accepted (the parent exists; a Gateway needs a listener whose
// hostname the route's hostnames intersect) and ResolvedRefs (every
// backend and mirror names an existing Service and one of its ports).
func routeStatus(hr *gwapiv1.HTTPRoute, service string, services map[string]*corev1.Service, gateways map[string]*gwapiv1.Gateway) []gwapiv1.RouteParentStatus {
	var missing []string
	check := func(ref gwapiv1.BackendObjectReference) {
		if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Service") || (ref.Namespace != nil && string(*ref.Namespace) != hr.Namespace) {
			missing = append(missing, string(ref.Name)+" (not a Service of the route's namespace)")
			return
		}
		svc := services[string(ref.Name)]
		if svc == nil {
			missing = append(missing, string(ref.Name))
			return
		}
		if ref.Port != nil && !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == *ref.Port }) {
			missing = append(missing, fmt.Sprintf("%s port %d", ref.Name, *ref.Port))
		}
	}
	for _, rule := range hr.Spec.Rules {
		for _, b := range rule.BackendRefs {
			check(b.BackendObjectReference)
		}
		for _, f := range rule.Filters {
			if f.RequestMirror != nil {
				check(f.RequestMirror.BackendRef)
			}
		}
	}
	resolved := condition("ResolvedRefs", true, "ResolvedRefs", "All references resolved", hr.Generation)
	if len(missing) > 0 {
		resolved = condition("ResolvedRefs", false, string(gwapiv1.RouteReasonBackendNotFound), "backend(s) not found: "+strings.Join(missing, ", "), hr.Generation)
	}
	var out []gwapiv1.RouteParentStatus
	for _, p := range gatewayParents(hr, service, gateways) {
		controller := GatewayController
		accepted := condition("Accepted", true, "Accepted", "Route was valid", hr.Generation)
		if p.Kind != nil && *p.Kind == "Service" {
			controller = MeshController
			if services[string(p.Name)] == nil {
				accepted = condition("Accepted", false, string(gwapiv1.RouteReasonNoMatchingParent), "parent Service "+string(p.Name)+" not found", hr.Generation)
			}
		} else {
			ns := hr.Namespace
			if p.Namespace != nil && *p.Namespace != "" {
				ns = string(*p.Namespace)
			}
			if !hostnamesIntersect(hr.Spec.Hostnames, gateways[ns+"/"+string(p.Name)]) {
				accepted = condition("Accepted", false, string(gwapiv1.RouteReasonNoMatchingListenerHostname), "no listener of Gateway "+string(p.Name)+" matches the route's hostnames", hr.Generation)
			}
		}
		out = append(out, gwapiv1.RouteParentStatus{
			ParentRef:      p,
			ControllerName: gwapiv1.GatewayController(controller),
			Conditions:     []metav1.Condition{accepted, resolved},
		})
	}
	return out
}

func hostnamesIntersect(route []gwapiv1.Hostname, gw *gwapiv1.Gateway) bool {
	if len(route) == 0 {
		return true
	}
	for _, l := range gw.Spec.Listeners {
		if l.Hostname == nil || *l.Hostname == "" {
			return true
		}
		for _, h := range route {
			if hostMatches(string(h), string(*l.Hostname)) || hostMatches(string(*l.Hostname), string(h)) {
				return true
			}
		}
	}
	return false
}

// hostMatches reports whether host falls under pattern, which may start
// with a "*." wildcard label.
func hostMatches(host, pattern string) bool {
	if host == pattern {
		return true
	}
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
	}
	return false
}

func condition(typ string, ok bool, reason, message string, generation int64) metav1.Condition {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: generation}
}

// readGatewayAPI reads the namespace's HTTPRoutes and Gateways into objs,
// and returns their fingerprint; read has listed the Services. Without the Gateway API's
// CRDs there are none.
func (s *Simulator) readGatewayAPI(ctx context.Context, objs *objects) ([]string, error) {
	ns := s.cfg.Namespace
	var fp []string
	routes, err := s.gw.GatewayV1().HTTPRoutes(ns).List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("meshsim: list HTTPRoutes in %s: %w", ns, err)
	}
	for i := range routes.Items {
		hr := &routes.Items[i]
		objs.httpRoutes = append(objs.httpRoutes, hr)
		fp = append(fp, "httproute:"+hr.Name+"@"+hr.ResourceVersion)
	}
	objs.gateways = map[string]*gwapiv1.Gateway{}
	gws, err := s.gw.GatewayV1().Gateways(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("meshsim: list Gateways: %w", err)
	}
	if gws != nil {
		for i := range gws.Items {
			gw := &gws.Items[i]
			objs.gateways[gw.Namespace+"/"+gw.Name] = gw
			fp = append(fp, "gateway:"+gw.Namespace+"/"+gw.Name+"@"+gw.ResourceVersion)
		}
	}
	return fp, nil
}

// writeRouteStatus writes, as Istio's controllers would, the status of
// every HTTPRoute of the namespace whose parents are the simulated
// Service or an istio-class Gateway and whose backends include the
// Service or one named after it (a version's), leaving other parents'
// entries alone. It writes only what changed.
func (s *Simulator) writeRouteStatus(ctx context.Context, objs objects) error {
	for _, hr := range objs.httpRoutes {
		if !s.ownsRoute(hr) {
			continue
		}
		want := routeStatus(hr, s.cfg.Service, objs.services, objs.gateways)
		if len(want) == 0 {
			continue
		}
		parents, changed := mergeParentStatus(hr.Status.Parents, want)
		if !changed {
			continue
		}
		upd := hr.DeepCopy()
		upd.Status.Parents = parents
		if _, err := s.gw.GatewayV1().HTTPRoutes(hr.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				continue // the next poll reads it again
			}
			return fmt.Errorf("meshsim: write status of HTTPRoute %s/%s: %w", hr.Namespace, hr.Name, err)
		}
		s.log.Info("meshsim route status", "httpRoute", hr.Namespace+"/"+hr.Name, "generation", hr.Generation, "status", describeParents(want))
	}
	return nil
}

// ownsRoute reports whether the route concerns the simulated Service.
func (s *Simulator) ownsRoute(hr *gwapiv1.HTTPRoute) bool {
	svc := s.cfg.Service
	for _, p := range hr.Spec.ParentRefs {
		if parentOf(p, hr.Namespace, svc, &Source{Gateway: "mesh"}) {
			return true
		}
	}
	for _, r := range hr.Spec.Rules {
		for _, b := range r.BackendRefs {
			if n := string(b.Name); n == svc || strings.HasPrefix(n, svc+"-") {
				return true
			}
		}
	}
	return false
}

// mergeParentStatus replaces the entries of want's parents (same
// parentRef and controller) in cur, keeping each condition's transition
// time when its status did not change, and reports whether anything did.
func mergeParentStatus(cur, want []gwapiv1.RouteParentStatus) ([]gwapiv1.RouteParentStatus, bool) {
	now := metav1.Now()
	out := slices.Clone(cur)
	changed := false
	for _, w := range want {
		i := slices.IndexFunc(out, func(p gwapiv1.RouteParentStatus) bool {
			return p.ControllerName == w.ControllerName && reflect.DeepEqual(p.ParentRef, w.ParentRef)
		})
		for j := range w.Conditions {
			c := &w.Conditions[j]
			c.LastTransitionTime = now
			if i >= 0 {
				for _, old := range out[i].Conditions {
					if old.Type == c.Type && old.Status == c.Status {
						c.LastTransitionTime = old.LastTransitionTime
					}
				}
			}
		}
		if i < 0 {
			out = append(out, w)
			changed = true
			continue
		}
		if !reflect.DeepEqual(out[i].Conditions, w.Conditions) {
			out[i] = w
			changed = true
		}
	}
	return out, changed
}

func describeParents(ps []gwapiv1.RouteParentStatus) string {
	var parts []string
	for _, p := range ps {
		var cs []string
		for _, c := range p.Conditions {
			cs = append(cs, fmt.Sprintf("%s=%s", c.Type, c.Status))
			if c.Status != metav1.ConditionTrue {
				cs[len(cs)-1] += " (" + c.Message + ")"
			}
		}
		parts = append(parts, fmt.Sprintf("%s: %s", p.ParentRef.Name, strings.Join(cs, " ")))
	}
	return strings.Join(parts, "; ")
}
