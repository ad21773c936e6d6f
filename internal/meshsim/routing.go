package meshsim

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Outcomes of a simulated request, the values of meshsim_requests_total's
// outcome label. Only OutcomeServed reaches a destination sidecar, so only it
// (and mirrors) shows in Istio's destination metrics.
const (
	OutcomeServed     = "served"      // a workload answered
	OutcomeNoRoute    = "no_route"    // no HTTP route matched: Envoy's 404 NR
	OutcomeNoSubset   = "no_subset"   // the subset is not in a DestinationRule: 503 NC
	OutcomeNoEndpoint = "no_endpoint" // no Deployment behind it has an available replica: 503 UH
	OutcomeExternal   = "external"    // routed to another host, outside the simulation
	OutcomeAborted    = "aborted"     // fault injection aborted it at the client
	OutcomeDirect     = "direct"      // redirect or direct response from the client sidecar
)

// workload is one Deployment that can serve the service.
type workload struct {
	name      string
	namespace string
	app       string // the pod template's app label, "unknown" without one
	version   string // the pod template's version label, "unknown" without one
	labels    map[string]string
	available int32
}

// endpoints are the workloads one destination resolves to, weighted by
// available replicas as Envoy's load balancer spreads requests over pods.
type endpoints struct {
	key       string       // identifies the set and its weights, for the balancer
	svc       *serviceInfo // the Service a Gateway API backend names; nil: the simulated one
	outcome   string       // OutcomeServed when workloads is not empty
	workloads []*workload
	weights   []int
}

type strMatch struct {
	kind  string // exact, prefix, regex or present
	value string
	re    *regexp.Regexp
}

func (m *strMatch) match(v string, present bool) bool {
	if !present {
		return false
	}
	switch m.kind {
	case "exact":
		return v == m.value
	case "prefix":
		return strings.HasPrefix(v, m.value)
	case "regex":
		return m.re.MatchString(v)
	case "pathprefix":
		// Gateway API path prefixes match whole path segments.
		p := strings.TrimSuffix(m.value, "/")
		return v == m.value || p == "" || v == p || strings.HasPrefix(v, p+"/")
	default:
		return true
	}
}

func (m *strMatch) String() string {
	if m.kind == "present" {
		return "present"
	}
	return m.kind + " " + m.value
}

type match struct {
	uri, scheme, method, authority *strMatch
	ignoreURICase                  bool
	headers, withoutHeaders        map[string]*strMatch
	queryParams                    bool // the simulated requests carry none, so this never matches
	port                           uint32
	sourceLabels                   map[string]string
	sourceNamespace                string
	gateways                       []string
}

type destination struct {
	weight    int
	endpoints *endpoints
	label     string // host/subset, for summaries
}

type mirror struct {
	key       string
	percent   float64
	endpoints *endpoints
	label     string
}

type route struct {
	key          string // the route's identity and weights, for the balancer
	name         string
	matches      []match // none: matches every request
	dests        []destination
	mirrors      []mirror
	abortPercent float64 // < 0 without an abort fault
	terminal     string  // OutcomeDirect (redirect, direct response) or OutcomeNoRoute (delegate)
}

// Request is one simulated request as the client sidecar sees it.
type Request struct {
	Method    string
	Scheme    string
	Authority string
	Path      string
	Port      uint32
	Headers   map[string]string // lower-case names
}

// Source is the simulated client workload.
type Source struct {
	Workload  string
	Namespace string
	Labels    map[string]string
	Gateway   string // "mesh" for sidecars; a gateway name to simulate an ingress
}

// table is an immutable, compiled view of the routing objects.
type table struct {
	kind         string // VirtualService or HTTPRoute, the kind of the routes followed
	service      serviceInfo
	vs           string // namespace/name@resourceVersion, "" when no VirtualService applies
	routes       []route
	defaultRoute *endpoints // without a VirtualService: the Service's endpoints
	warnings     []string
	keys         map[string]bool // balancer keys in use
}

type serviceInfo struct {
	name, namespace, fqdn string
	port                  uint32
}

// objects are what the simulator reads from the API server.
type objects struct {
	service          *corev1.Service
	virtualService   *istionet.VirtualService
	destinationRules []*istionet.DestinationRule
	deployments      []*appsv1.Deployment
	// Every Service of the namespace by name (Gateway API backends,
	// VirtualService destinations other than the simulated Service).
	services map[string]*corev1.Service
	// Gateway API: every HTTPRoute and Gateway of the namespace.
	httpRoutes []*gwapiv1.HTTPRoute
	gateways   map[string]*gwapiv1.Gateway // by namespace/name
}

func fqdn(host, namespace string) string {
	if strings.Contains(host, "*") {
		return host
	}
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	switch len(parts) {
	case 1:
		return parts[0] + "." + namespace + ".svc.cluster.local"
	case 2:
		return parts[0] + "." + parts[1] + ".svc.cluster.local"
	case 3:
		if parts[2] == "svc" {
			return strings.Join(parts, ".") + ".cluster.local"
		}
	}
	return strings.Join(parts, ".")
}

// compile builds the routing table for service namespace/name from objs.
func compile(namespace, name string, src Source, objs objects) *table {
	t := &table{
		kind:    "VirtualService",
		service: serviceInfo{name: name, namespace: namespace, fqdn: fqdn(name, namespace)},
		keys:    map[string]bool{},
	}
	if objs.service != nil && len(objs.service.Spec.Ports) > 0 {
		t.service.port = uint32(objs.service.Spec.Ports[0].Port)
	}

	// Subsets by host, of the DestinationRule for each; Istio picks the
	// oldest when several claim a host.
	subsets := map[string]map[string]map[string]string{}
	drs := slices.Clone(objs.destinationRules)
	sort.SliceStable(drs, func(i, j int) bool {
		if !drs[i].CreationTimestamp.Equal(&drs[j].CreationTimestamp) {
			return drs[i].CreationTimestamp.Before(&drs[j].CreationTimestamp)
		}
		return drs[i].Name < drs[j].Name
	})
	for _, dr := range drs {
		h := fqdn(dr.Spec.GetHost(), dr.Namespace)
		if _, ok := subsets[h]; ok {
			continue
		}
		subsets[h] = map[string]map[string]string{}
		for _, s := range dr.Spec.GetSubsets() {
			subsets[h][s.GetName()] = s.GetLabels()
		}
	}

	resolved := map[string]*endpoints{}
	resolve := func(host, subset string, vsNamespace string) *endpoints {
		h := fqdn(host, vsNamespace)
		id := h + "|" + subset
		if ep, ok := resolved[id]; ok {
			return ep
		}
		ep := &endpoints{outcome: OutcomeServed}
		resolved[id] = ep
		// The simulated Service, or another of its namespace (as
		// Flagger routes to <name>-primary and <name>-canary): Envoy
		// sends the request to the pods that Service selects, and their
		// sidecars report it for that Service.
		svc := objs.service
		if h != t.service.fqdn {
			svc = t.localService(h, objs.services)
			if svc == nil {
				ep.outcome = OutcomeExternal
				return ep
			}
			ep.svc = &serviceInfo{name: svc.Name, namespace: svc.Namespace, fqdn: h}
			if len(svc.Spec.Ports) > 0 {
				ep.svc.port = uint32(svc.Spec.Ports[0].Port)
			}
		}
		var selector map[string]string
		switch {
		case svc == nil:
			ep.outcome = OutcomeNoEndpoint
			return ep
		case subset == "":
		case !hasKey(subsets[h], subset):
			ep.outcome = OutcomeNoSubset
			return ep
		default:
			selector = subsets[h][subset]
		}
		var ids []string
		for _, w := range selected(svc, objs.deployments) {
			if w.available > 0 && subsetOf(selector, w.labels) {
				ep.workloads = append(ep.workloads, w)
				ep.weights = append(ep.weights, int(w.available))
				ids = append(ids, fmt.Sprintf("%s=%d", w.name, w.available))
			}
		}
		if len(ep.workloads) == 0 {
			ep.outcome = OutcomeNoEndpoint
		}
		ep.key = "ep|" + id + "|" + strings.Join(ids, ",")
		t.keys[ep.key] = true
		return ep
	}

	// HTTPRoutes attached to the Service (GAMMA) or to the simulated
	// ingress Gateway govern its traffic, as Istio gives them precedence.
	var attached []*gwapiv1.HTTPRoute
	for _, hr := range objs.httpRoutes {
		if attaches(hr, name, &src) {
			attached = append(attached, hr)
		}
	}
	if len(attached) > 0 {
		t.gatewayRoutes(attached, t.backendResolver(namespace, objs))
		return t
	}

	vs := objs.virtualService
	if vs != nil && !slices.Contains(vsGateways(vs), src.Gateway) {
		t.warnings = append(t.warnings, fmt.Sprintf("VirtualService %s/%s does not bind gateway %q; using the Service's default routing", vs.Namespace, vs.Name, src.Gateway))
		vs = nil
	}
	if vs == nil {
		t.defaultRoute = resolve(name, "", namespace)
		return t
	}
	t.vs = fmt.Sprintf("%s/%s@%s", vs.Namespace, vs.Name, vs.ResourceVersion)
	for i, hr := range vs.Spec.GetHttp() {
		r := route{name: hr.GetName(), abortPercent: -1}
		if r.name == "" {
			r.name = fmt.Sprintf("http[%d]", i)
		}
		for j, m := range hr.GetMatch() {
			cm, err := compileMatch(m)
			if err != nil {
				t.warnings = append(t.warnings, fmt.Sprintf("route %s match[%d]: %v; it never matches", r.name, j, err))
				cm = match{queryParams: true}
			}
			r.matches = append(r.matches, cm)
		}
		switch {
		case hr.GetDelegate() != nil:
			t.warnings = append(t.warnings, fmt.Sprintf("route %s delegates to another VirtualService, which the simulator does not follow", r.name))
			r.terminal = OutcomeNoRoute
		case hr.GetRedirect() != nil || hr.GetDirectResponse() != nil:
			r.terminal = OutcomeDirect
		}
		if a := hr.GetFault().GetAbort(); a != nil {
			r.abortPercent = 100
			if p := a.GetPercentage(); p != nil {
				r.abortPercent = p.GetValue()
			}
		}
		var weights []string
		for _, d := range hr.GetRoute() {
			w := int(d.GetWeight())
			if len(hr.GetRoute()) == 1 && w == 0 {
				w = 100
			}
			dest := d.GetDestination()
			r.dests = append(r.dests, destination{
				weight:    w,
				endpoints: resolve(dest.GetHost(), dest.GetSubset(), vs.Namespace),
				label:     destLabel(dest),
			})
			weights = append(weights, fmt.Sprintf("%s=%d", destLabel(dest), w))
		}
		r.key = fmt.Sprintf("route|%s/%s|%d|%s|%s", vs.Namespace, vs.Name, i, r.name, strings.Join(weights, ","))
		t.keys[r.key] = true
		addMirror := func(d *networking.Destination, pct *networking.Percent, legacy uint32, hasLegacy bool) {
			p := 100.0
			switch {
			case pct != nil:
				p = pct.GetValue()
			case hasLegacy:
				p = float64(legacy)
			}
			key := fmt.Sprintf("mirror|%s|%s|%g", r.key, destLabel(d), p)
			t.keys[key] = true
			r.mirrors = append(r.mirrors, mirror{key: key, percent: p, endpoints: resolve(d.GetHost(), d.GetSubset(), vs.Namespace), label: destLabel(d)})
		}
		if m := hr.GetMirror(); m != nil {
			// Istio still honours the deprecated mirrorPercent, so the simulator does.
			addMirror(m, hr.GetMirrorPercentage(), hr.GetMirrorPercent().GetValue(), hr.GetMirrorPercent() != nil) //nolint:staticcheck // see above
		}
		for _, mp := range hr.GetMirrors() {
			if mp.GetDestination() != nil {
				addMirror(mp.GetDestination(), mp.GetPercentage(), 0, false)
			}
		}
		if r.abortPercent >= 0 {
			t.keys["abort|"+r.key] = true
		}
		t.routes = append(t.routes, r)
	}
	return t
}

// localService is the Service of the simulated namespace that a host's
// FQDN names, nil for hosts outside it.
func (t *table) localService(host string, services map[string]*corev1.Service) *corev1.Service {
	name, ok := strings.CutSuffix(host, "."+t.service.namespace+".svc.cluster.local")
	if !ok || strings.Contains(name, ".") {
		return nil
	}
	return services[name]
}

// selected are the Deployments whose pods a Service selects, by name.
func selected(svc *corev1.Service, deployments []*appsv1.Deployment) []*workload {
	if len(svc.Spec.Selector) == 0 {
		return nil
	}
	var out []*workload
	for _, d := range deployments {
		labels := d.Spec.Template.Labels
		if !subsetOf(svc.Spec.Selector, labels) {
			continue
		}
		out = append(out, &workload{
			name:      d.Name,
			namespace: d.Namespace,
			app:       labelOr(labels, "app", "unknown"),
			version:   labelOr(labels, "version", "unknown"),
			labels:    labels,
			available: d.Status.AvailableReplicas,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func vsGateways(vs *istionet.VirtualService) []string {
	if len(vs.Spec.GetGateways()) == 0 {
		return []string{"mesh"}
	}
	return vs.Spec.GetGateways()
}

func destLabel(d *networking.Destination) string {
	if d.GetSubset() == "" {
		return d.GetHost()
	}
	return d.GetHost() + "/" + d.GetSubset()
}

func compileStr(m *networking.StringMatch) (*strMatch, error) {
	if m == nil {
		return nil, nil
	}
	switch mt := m.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return &strMatch{kind: "exact", value: mt.Exact}, nil
	case *networking.StringMatch_Prefix:
		return &strMatch{kind: "prefix", value: mt.Prefix}, nil
	case *networking.StringMatch_Regex:
		// Envoy's safe_regex must match the whole value.
		re, err := regexp.Compile(`^(?:` + mt.Regex + `)$`)
		if err != nil {
			return nil, fmt.Errorf("regex %q: %w", mt.Regex, err)
		}
		return &strMatch{kind: "regex", value: mt.Regex, re: re}, nil
	default:
		return &strMatch{kind: "present"}, nil
	}
}

func compileMatch(m *networking.HTTPMatchRequest) (match, error) {
	var (
		cm  match
		err error
	)
	for _, f := range []struct {
		dst **strMatch
		src *networking.StringMatch
	}{{&cm.uri, m.GetUri()}, {&cm.scheme, m.GetScheme()}, {&cm.method, m.GetMethod()}, {&cm.authority, m.GetAuthority()}} {
		if *f.dst, err = compileStr(f.src); err != nil {
			return match{}, err
		}
	}
	cm.ignoreURICase = m.GetIgnoreUriCase()
	compileMap := func(in map[string]*networking.StringMatch) (map[string]*strMatch, error) {
		if len(in) == 0 {
			return nil, nil
		}
		out := make(map[string]*strMatch, len(in))
		for k, v := range in {
			sm, err := compileStr(v)
			if err != nil {
				return nil, fmt.Errorf("header %s: %w", k, err)
			}
			if sm == nil {
				sm = &strMatch{kind: "present"}
			}
			out[strings.ToLower(k)] = sm
		}
		return out, nil
	}
	if cm.headers, err = compileMap(m.GetHeaders()); err != nil {
		return match{}, err
	}
	if cm.withoutHeaders, err = compileMap(m.GetWithoutHeaders()); err != nil {
		return match{}, err
	}
	cm.queryParams = len(m.GetQueryParams()) > 0
	cm.port = m.GetPort()
	cm.sourceLabels = m.GetSourceLabels()
	cm.sourceNamespace = m.GetSourceNamespace()
	cm.gateways = m.GetGateways()
	return cm, nil
}

func (m *match) matches(req *Request, src *Source) bool {
	if m.queryParams {
		return false
	}
	if m.uri != nil {
		path, want := req.Path, m.uri
		if m.ignoreURICase && want.kind != "regex" {
			path = strings.ToLower(path)
			want = &strMatch{kind: want.kind, value: strings.ToLower(want.value)}
		}
		if !want.match(path, true) {
			return false
		}
	}
	if m.scheme != nil && !m.scheme.match(req.Scheme, true) ||
		m.method != nil && !m.method.match(req.Method, true) ||
		m.authority != nil && !m.authority.match(req.Authority, true) {
		return false
	}
	for name, sm := range m.headers {
		v, ok := req.Headers[name]
		if !sm.match(v, ok) {
			return false
		}
	}
	for name, sm := range m.withoutHeaders {
		v, ok := req.Headers[name]
		if sm.match(v, ok) {
			return false
		}
	}
	if m.port != 0 && m.port != req.Port {
		return false
	}
	if !subsetOf(m.sourceLabels, src.Labels) {
		return false
	}
	if m.sourceNamespace != "" && m.sourceNamespace != src.Namespace {
		return false
	}
	if len(m.gateways) > 0 && !slices.Contains(m.gateways, src.Gateway) {
		return false
	}
	return true
}

// find returns the first route matching req, as Envoy evaluates them in
// order, or nil.
func (t *table) find(req *Request, src *Source) *route {
	for i := range t.routes {
		r := &t.routes[i]
		if len(r.matches) == 0 {
			return r
		}
		for j := range r.matches {
			if r.matches[j].matches(req, src) {
				return r
			}
		}
	}
	return nil
}

// summary describes the table in one line for logs and /routing.
func (t *table) summary() string {
	var b strings.Builder
	if t.vs == "" {
		fmt.Fprintf(&b, "no VirtualService: %s -> %s", t.service.fqdn, t.defaultRoute.describe())
		return b.String()
	}
	fmt.Fprintf(&b, "%s %s:", t.kind, t.vs)
	for _, r := range t.routes {
		fmt.Fprintf(&b, " [%s", r.name)
		if len(r.matches) > 0 {
			var ms []string
			for _, m := range r.matches {
				ms = append(ms, m.describe())
			}
			fmt.Fprintf(&b, " if %s", strings.Join(ms, " or "))
		}
		if r.terminal != "" {
			fmt.Fprintf(&b, " -> %s", r.terminal)
		}
		for _, d := range r.dests {
			fmt.Fprintf(&b, " -> %s %d%% (%s)", d.label, d.weight, d.endpoints.describe())
		}
		for _, m := range r.mirrors {
			fmt.Fprintf(&b, " mirror %s %g%% (%s)", m.label, m.percent, m.endpoints.describe())
		}
		if r.abortPercent >= 0 {
			fmt.Fprintf(&b, " abort %g%%", r.abortPercent)
		}
		b.WriteString("]")
	}
	return b.String()
}

func (e *endpoints) describe() string {
	if e.outcome != OutcomeServed {
		return e.outcome
	}
	var parts []string
	for i, w := range e.workloads {
		parts = append(parts, fmt.Sprintf("%s x%d", w.name, e.weights[i]))
	}
	return strings.Join(parts, ", ")
}

func (m *match) describe() string {
	var parts []string
	names := make([]string, 0, len(m.headers))
	for k := range m.headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %s", k, m.headers[k]))
	}
	if m.uri != nil {
		parts = append(parts, "uri "+m.uri.String())
	}
	if len(m.sourceLabels) > 0 {
		parts = append(parts, fmt.Sprintf("sourceLabels %v", m.sourceLabels))
	}
	if len(m.withoutHeaders) > 0 || m.scheme != nil || m.method != nil || m.authority != nil || m.queryParams || m.port != 0 || m.sourceNamespace != "" || len(m.gateways) > 0 {
		parts = append(parts, "...")
	}
	if len(parts) == 0 {
		return "any"
	}
	return strings.Join(parts, " and ")
}

func subsetOf(sub, set map[string]string) bool {
	for k, v := range sub {
		if got, ok := set[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func hasKey(m map[string]map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

func labelOr(labels map[string]string, key, def string) string {
	if v := labels[key]; v != "" {
		return v
	}
	return def
}

// backendResolver resolves Gateway API backends: a Service of the
// namespace and one of its ports, to the available workloads its
// selector picks among the namespace's Deployments.
func (t *table) backendResolver(namespace string, objs objects) func(ns string, ref gwapiv1.BackendObjectReference) *endpoints {
	resolved := map[string]*endpoints{}
	return func(ns string, ref gwapiv1.BackendObjectReference) *endpoints {
		if ref.Namespace != nil && *ref.Namespace != "" {
			ns = string(*ref.Namespace)
		}
		port := int32(0)
		if ref.Port != nil {
			port = *ref.Port
		}
		id := fmt.Sprintf("%s/%s:%d", ns, ref.Name, port)
		if ep, ok := resolved[id]; ok {
			return ep
		}
		ep := &endpoints{outcome: OutcomeServed}
		resolved[id] = ep
		svc := objs.services[string(ref.Name)]
		switch {
		case ref.Group != nil && *ref.Group != "" || ref.Kind != nil && *ref.Kind != "Service":
			ep.outcome = OutcomeInvalidBackend
			return ep
		case ns != namespace:
			ep.outcome = OutcomeExternal
			return ep
		case svc == nil || ref.Port != nil && !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == port }):
			ep.outcome = OutcomeInvalidBackend
			return ep
		case len(svc.Spec.Selector) == 0:
			ep.outcome = OutcomeNoEndpoint
			return ep
		}
		if svc.Name != t.service.name {
			ep.svc = &serviceInfo{name: svc.Name, namespace: ns, fqdn: fqdn(svc.Name, ns), port: uint32(port)}
		}
		var ids []string
		for _, d := range objs.deployments {
			labels := d.Spec.Template.Labels
			if d.Status.AvailableReplicas <= 0 || !subsetOf(svc.Spec.Selector, labels) {
				continue
			}
			ep.workloads = append(ep.workloads, &workload{
				name: d.Name, namespace: d.Namespace,
				app: labelOr(labels, "app", "unknown"), version: labelOr(labels, "version", "unknown"),
				labels: labels, available: d.Status.AvailableReplicas,
			})
			ep.weights = append(ep.weights, int(d.Status.AvailableReplicas))
			ids = append(ids, fmt.Sprintf("%s=%d", d.Name, d.Status.AvailableReplicas))
		}
		if len(ep.workloads) == 0 {
			ep.outcome = OutcomeNoEndpoint
		}
		ep.key = "ep|" + id + "|" + strings.Join(ids, ",")
		t.keys[ep.key] = true
		return ep
	}
}

// anchored compiles a regular expression that must match a whole value.
func anchored(re string) (*strMatch, error) {
	c, err := regexp.Compile(`^(?:` + re + `)$`)
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", re, err)
	}
	return &strMatch{kind: "regex", value: re, re: c}, nil
}
