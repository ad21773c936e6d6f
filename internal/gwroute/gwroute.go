// Package gwroute holds what the renderer and the applier share about the
// Gateway API HTTPRoutes Sluice renders: which of a route's parts are
// Sluice's, how a rendered route merges into the route a person (or the
// release's source) already has, and when a route's controller has
// accepted it.
//
// HTTPRoute's spec.parentRefs, spec.hostnames and spec.rules are atomic
// lists in the Gateway API CRDs, so server-side apply cannot share them
// item by item between field managers: whoever applies the list owns all
// of it. Sluice therefore merges before it applies: it keeps every rule,
// parentRef and hostname it did not render, and every field of its own
// rules it does not set (filters, timeouts, retries, session persistence),
// and replaces only its own rules' matches, backends and mirror filters.
package gwroute

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Group, Version and Kind of the routes Sluice renders.
const (
	Group      = "gateway.networking.k8s.io"
	Version    = "v1"
	APIVersion = Group + "/" + Version
	Kind       = "HTTPRoute"
)

// Names of Sluice's rules. RuleMain carries the step's default traffic at
// every step, so a filter a person adds to it applies all release long;
// RuleMatch exists while a step sends matching requests elsewhere.
const (
	RulePrefix = "sluice"
	RuleMain   = RulePrefix
	RuleMatch  = RulePrefix + "-match"
)

// AnnotationOwned records, as JSON, the parentRefs, hostnames and mirror
// backends Sluice rendered into a route, so that the next step can tell
// them from those a person added and drop the ones it no longer renders.
const AnnotationOwned = "sluice.dev/route-owned"

// Owned is what AnnotationOwned holds.
type Owned struct {
	ParentRefs []ParentKey `json:"parentRefs,omitempty"`
	Hostnames  []string    `json:"hostnames,omitempty"`
	// Backends are the Services a Sluice mirror filter may name (one per
	// version of the release).
	Backends []string `json:"backends,omitempty"`
}

// ParentKey identifies a parentRef with its defaults filled in.
type ParentKey struct {
	Group       string `json:"group"`
	Kind        string `json:"kind"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name"`
	SectionName string `json:"sectionName,omitempty"`
	Port        int64  `json:"port,omitempty"`
}

func (k ParentKey) String() string {
	s := k.Kind + " " + k.Name
	if k.Namespace != "" {
		s = k.Kind + " " + k.Namespace + "/" + k.Name
	}
	if k.SectionName != "" {
		s += " section " + k.SectionName
	}
	if k.Port != 0 {
		s += " port " + strconv.FormatInt(k.Port, 10)
	}
	return s
}

// KeyOf is the identity of a parentRef (an unstructured map) of a route in
// namespace routeNamespace, with the API's defaults.
func KeyOf(ref map[string]any, routeNamespace string) ParentKey {
	k := ParentKey{Group: Group, Kind: "Gateway", Namespace: routeNamespace}
	if g, ok := ref["group"].(string); ok {
		k.Group = g
	}
	if v, ok := ref["kind"].(string); ok && v != "" {
		k.Kind = v
	}
	if v, ok := ref["namespace"].(string); ok && v != "" {
		k.Namespace = v
	}
	k.Name, _ = ref["name"].(string)
	k.SectionName, _ = ref["sectionName"].(string)
	k.Port = toInt(ref["port"])
	return k
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case float64:
		return int64(x)
	case json.Number:
		n, _ := x.Int64()
		return n
	}
	return 0
}

// ReadOwned reads AnnotationOwned from an object's metadata; a missing or
// unreadable one owns nothing.
func ReadOwned(obj map[string]any) Owned {
	var o Owned
	md, _ := obj["metadata"].(map[string]any)
	ann, _ := md["annotations"].(map[string]any)
	if s, ok := ann[AnnotationOwned].(string); ok {
		_ = json.Unmarshal([]byte(s), &o)
	}
	return o
}

// EncodeOwned is AnnotationOwned's value.
func EncodeOwned(o Owned) string {
	b, _ := json.Marshal(o) // strings and numbers always marshal
	return string(b)
}

// Merge returns desired (a route Sluice rendered) merged into live (the
// route as it is, or as the release's source wrote it): live's spec with
// Sluice's parentRefs, hostnames and rules put in, and everything else
// kept. desired must carry AnnotationOwned. Neither argument is modified.
//
//   - parentRefs and hostnames: desired's, then live's that Sluice neither
//     renders now nor rendered before (per live's AnnotationOwned).
//   - rules: desired's rules, each over the live rule of the same name
//     (so its filters, timeouts and other fields stay) with desired's
//     fields put in (see mergeRule); then live's other rules, in their
//     order, but for Sluice's rules that desired no longer has (names
//     starting with RulePrefix) and unnamed rules desired holds equal.
//   - Sluice's other rules (the match rule of a dark launch) then take
//     what its main rule carries besides matches and backends (filters,
//     timeouts, ...), so matching requests are treated as the others are
//     but for where they go (rollouts-plugin-trafficrouter-gatewayapi
//     #87: a header route lost the route's URL rewrite).
//   - metadata is desired's: server-side apply merges it field by field.
func Merge(desired, live map[string]any) map[string]any {
	out := deepCopy(desired).(map[string]any)
	before, now := ReadOwned(live), ReadOwned(desired)
	mirrors := map[string]bool{}
	for _, b := range append(slices.Clone(before.Backends), now.Backends...) {
		mirrors[b] = true
	}
	defer inheritMain(out, mirrors)
	if live == nil {
		return out
	}
	dspec, _ := out["spec"].(map[string]any)
	lspec, _ := deepCopy(live["spec"]).(map[string]any)
	if dspec == nil || lspec == nil {
		return out
	}
	md, _ := live["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	if dmd, ok := out["metadata"].(map[string]any); ok {
		if n, ok := dmd["namespace"].(string); ok && n != "" {
			ns = n
		}
	}

	// parentRefs
	sluiceParents := map[ParentKey]bool{}
	for _, k := range append(slices.Clone(before.ParentRefs), now.ParentRefs...) {
		sluiceParents[k] = true
	}
	parents := list(dspec["parentRefs"])
	seen := map[ParentKey]bool{}
	for _, p := range parents {
		if m, ok := p.(map[string]any); ok {
			seen[KeyOf(m, ns)] = true
		}
	}
	for _, p := range list(lspec["parentRefs"]) {
		m, ok := p.(map[string]any)
		if !ok {
			continue
		}
		if k := KeyOf(m, ns); !sluiceParents[k] && !seen[k] {
			seen[k] = true
			parents = append(parents, m)
		}
	}
	setList(lspec, "parentRefs", parents)

	// hostnames
	sluiceHosts := map[string]bool{}
	for _, h := range append(slices.Clone(before.Hostnames), now.Hostnames...) {
		sluiceHosts[h] = true
	}
	hosts := list(dspec["hostnames"])
	seenHost := map[string]bool{}
	for _, h := range hosts {
		s, _ := h.(string)
		seenHost[s] = true
	}
	for _, h := range list(lspec["hostnames"]) {
		if s, ok := h.(string); ok && !sluiceHosts[s] && !seenHost[s] {
			seenHost[s] = true
			hosts = append(hosts, s)
		}
	}
	setList(lspec, "hostnames", hosts)

	// rules
	desiredRules := list(dspec["rules"])
	named := map[string]bool{}
	for _, r := range desiredRules {
		if m, ok := r.(map[string]any); ok {
			if name, _ := m["name"].(string); name != "" {
				named[name] = true
			}
		}
	}
	liveRules := map[string]map[string]any{}
	var others []any
	for _, r := range list(lspec["rules"]) {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		name, _ := m["name"].(string)
		switch {
		case named[name]:
			liveRules[name] = m
		case IsSluiceRule(name):
			// A rule of Sluice's that this step does not render.
		case name == "" && slices.ContainsFunc(desiredRules, func(d any) bool { return reflect.DeepEqual(d, m) }):
			// An unnamed rule the source provides, already in desired.
		default:
			others = append(others, m)
		}
	}
	var rules []any
	for _, r := range desiredRules {
		d, ok := r.(map[string]any)
		if !ok {
			continue
		}
		name, _ := d["name"].(string)
		l, ok := liveRules[name]
		if !ok {
			rules = append(rules, d)
			continue
		}
		rules = append(rules, mergeRule(d, l, IsSluiceRule(name), mirrors))
	}
	rules = append(rules, others...)
	setList(lspec, "rules", rules)
	out["spec"] = lspec
	return out
}

// mergeRule puts desired's fields into the live rule of the same name.
// For a rule of Sluice's, matches and backendRefs are Sluice's alone (an
// absent one is removed). Filters merge by type: a desired filter
// replaces live filters of its type (the API allows most types once per
// rule), Sluice's mirror filters that desired no longer has go, and the
// others a person added stay.
func mergeRule(desired, live map[string]any, sluice bool, mirrors map[string]bool) map[string]any {
	merged := live
	if sluice {
		for _, f := range []string{"matches", "backendRefs"} {
			if _, ok := desired[f]; !ok {
				delete(merged, f)
			}
		}
	}
	for k, v := range desired {
		if k != "filters" {
			merged[k] = v
		}
	}
	want := list(desired["filters"])
	types := map[any]bool{}
	for _, f := range want {
		if fm, ok := f.(map[string]any); ok && fm["type"] != "RequestMirror" && fm["type"] != "ExtensionRef" {
			types[fm["type"]] = true
		}
	}
	var filters []any
	for _, f := range list(live["filters"]) {
		fm, ok := f.(map[string]any)
		if ok && (isSluiceMirror(fm, mirrors) || types[fm["type"]] || slices.ContainsFunc(want, func(w any) bool { return reflect.DeepEqual(w, f) })) {
			continue
		}
		filters = append(filters, f)
	}
	filters = append(filters, want...)
	setList(merged, "filters", filters)
	return merged
}

// inheritMain copies onto each of Sluice's rules but the main one the
// main rule's fields other than name, matches and backendRefs that the
// rule does not set, and the main rule's filters (but for Sluice's
// mirror) of types the rule does not have (or, for repeatable types, equal
// ones it does not have).
func inheritMain(route map[string]any, mirrors map[string]bool) {
	spec, _ := route["spec"].(map[string]any)
	rules := list(spec["rules"])
	var main map[string]any
	for _, r := range rules {
		if m, ok := r.(map[string]any); ok && m["name"] == RuleMain {
			main = m
		}
	}
	if main == nil {
		return
	}
	for _, r := range rules {
		m, ok := r.(map[string]any)
		name, _ := m["name"].(string)
		if !ok || name == RuleMain || !IsSluiceRule(name) {
			continue
		}
		for k, v := range main {
			switch k {
			case "name", "matches", "backendRefs", "filters":
				continue
			}
			if _, set := m[k]; !set {
				m[k] = deepCopy(v)
			}
		}
		filters := list(m["filters"])
		for _, f := range list(main["filters"]) {
			fm, ok := f.(map[string]any)
			if !ok || isSluiceMirror(fm, mirrors) || slices.ContainsFunc(filters, func(g any) bool {
				gm, _ := g.(map[string]any)
				repeatable := fm["type"] == "ExtensionRef" || fm["type"] == "RequestMirror"
				return gm["type"] == fm["type"] && (!repeatable || reflect.DeepEqual(gm, fm))
			}) {
				continue
			}
			filters = append(filters, deepCopy(f))
		}
		setList(m, "filters", filters)
	}
}

// IsSluiceRule reports whether a rule's name marks it as Sluice's.
func IsSluiceRule(name string) bool {
	return name == RulePrefix || strings.HasPrefix(name, RulePrefix+"-")
}

func isSluiceMirror(f map[string]any, backends map[string]bool) bool {
	if f["type"] != "RequestMirror" {
		return false
	}
	rm, _ := f["requestMirror"].(map[string]any)
	ref, _ := rm["backendRef"].(map[string]any)
	name, _ := ref["name"].(string)
	kind, _ := ref["kind"].(string)
	return backends[name] && (kind == "" || kind == "Service")
}

func list(v any) []any {
	l, _ := v.([]any)
	return slices.Clone(l)
}

func setList(m map[string]any, key string, l []any) {
	if len(l) == 0 {
		delete(m, key)
		return
	}
	m[key] = l
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}

// Ready reports whether every parent Sluice attached route to (per its
// AnnotationOwned) has accepted it, with Accepted and ResolvedRefs both
// True for the route's current generation. When not, reason says which
// parent and why, with the condition's own message when one is False.
func Ready(route map[string]any) (bool, string) {
	md, _ := route["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	ns, _ := md["namespace"].(string)
	gen := toInt(md["generation"])
	owned := ReadOwned(route)
	status, _ := route["status"].(map[string]any)
	parents := list(status["parents"])
	for _, want := range owned.ParentRefs {
		var conds []any
		found := false
		for _, p := range parents {
			pm, _ := p.(map[string]any)
			ref, _ := pm["parentRef"].(map[string]any)
			if ref != nil && KeyOf(ref, ns) == want {
				conds, found = list(pm["conditions"]), true
				break
			}
		}
		if !found {
			return false, fmt.Sprintf("HTTPRoute %s: no controller has reported on parent %s yet", name, want)
		}
		for _, typ := range []string{"Accepted", "ResolvedRefs"} {
			c := condition(conds, typ)
			switch {
			case c == nil:
				return false, fmt.Sprintf("HTTPRoute %s: parent %s has no %s condition yet", name, want, typ)
			case toInt(c["observedGeneration"]) < gen:
				return false, fmt.Sprintf("HTTPRoute %s: parent %s has not observed generation %d yet (%s is for %d)", name, want, gen, typ, toInt(c["observedGeneration"]))
			case c["status"] != "True":
				reason, _ := c["reason"].(string)
				msg, _ := c["message"].(string)
				return false, fmt.Sprintf("HTTPRoute %s: parent %s: %s=%v (%s: %s)", name, want, typ, c["status"], reason, msg)
			}
		}
	}
	return true, ""
}

func condition(conds []any, typ string) map[string]any {
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			return m
		}
	}
	return nil
}
