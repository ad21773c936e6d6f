package gwroute

import (
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func obj(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

const owned = `{"parentRefs":[{"group":"","kind":"Service","namespace":"shop","name":"shop"}],"backends":["shop-v1","shop-v2"]}`

// TestMerge: what a person or the source adds survives; Sluice's own
// parts follow desired (flagger #1857 wiped users' filters), and its
// match rule treats requests as its main rule does (rollouts plugin #87).
func TestMerge(t *testing.T) {
	desired := `
metadata:
  name: shop-mesh
  namespace: shop
  annotations: {sluice.dev/route-owned: '` + owned + `'}
spec:
  parentRefs: [{group: "", kind: Service, name: shop}]
  rules:
  - name: sluice-match
    matches: [{headers: [{name: x-canary, type: Exact, value: "1"}]}]
    backendRefs: [{name: shop-v2, weight: 100}]
  - name: sluice
    backendRefs: [{name: shop-v1, weight: 100}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: shop-v2}, percent: 10}
`
	tests := []struct {
		name, live, want string
	}{
		{
			name: "no live route",
			live: ``,
			want: `
parentRefs: [{group: "", kind: Service, name: shop}]
rules:
- name: sluice-match
  matches: [{headers: [{name: x-canary, type: Exact, value: "1"}]}]
  backendRefs: [{name: shop-v2, weight: 100}]
- name: sluice
  backendRefs: [{name: shop-v1, weight: 100}]
  filters: [{type: RequestMirror, requestMirror: {backendRef: {name: shop-v2}, percent: 10}}]
`,
		},
		{
			name: "a person's filter, timeout, rule and parent stay; Sluice's old mirror and rules go",
			live: `
metadata:
  name: shop-mesh
  namespace: shop
  annotations: {sluice.dev/route-owned: '` + owned + `'}
spec:
  parentRefs: [{group: "", kind: Service, name: shop}, {group: "", kind: Service, name: shop-admin}]
  rules:
  - name: sluice-old
    backendRefs: [{name: shop-v1}]
  - name: sluice
    backendRefs: [{name: shop-v1, weight: 50}, {name: shop-v2, weight: 50}]
    timeouts: {request: 5s}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: x-team, value: shop}]}
    - type: RequestMirror
      requestMirror: {backendRef: {name: shop-v2}, percent: 50}
    - type: RequestMirror
      requestMirror: {backendRef: {name: audit}}
  - name: admin
    matches: [{path: {type: PathPrefix, value: /admin}}]
    backendRefs: [{name: shop}]
`,
			want: `
parentRefs: [{group: "", kind: Service, name: shop}, {group: "", kind: Service, name: shop-admin}]
rules:
- name: sluice-match
  matches: [{headers: [{name: x-canary, type: Exact, value: "1"}]}]
  backendRefs: [{name: shop-v2, weight: 100}]
  timeouts: {request: 5s}
  filters:
  - type: RequestHeaderModifier
    requestHeaderModifier: {add: [{name: x-team, value: shop}]}
  - type: RequestMirror
    requestMirror: {backendRef: {name: audit}}
- name: sluice
  backendRefs: [{name: shop-v1, weight: 100}]
  timeouts: {request: 5s}
  filters:
  - type: RequestHeaderModifier
    requestHeaderModifier: {add: [{name: x-team, value: shop}]}
  - type: RequestMirror
    requestMirror: {backendRef: {name: audit}}
  - type: RequestMirror
    requestMirror: {backendRef: {name: shop-v2}, percent: 10}
- name: admin
  matches: [{path: {type: PathPrefix, value: /admin}}]
  backendRefs: [{name: shop}]
`,
		},
		{
			name: "a parent Sluice attached before and no longer renders goes",
			live: `
metadata:
  name: shop-mesh
  namespace: shop
  annotations: {sluice.dev/route-owned: '{"parentRefs":[{"group":"gateway.networking.k8s.io","kind":"Gateway","namespace":"shop","name":"old"}]}'}
spec:
  parentRefs: [{name: old}, {name: kept, namespace: infra}]
  rules: [{name: sluice, backendRefs: [{name: shop-v1}]}]
`,
			want: `
parentRefs: [{group: "", kind: Service, name: shop}, {name: kept, namespace: infra}]
rules:
- name: sluice-match
  matches: [{headers: [{name: x-canary, type: Exact, value: "1"}]}]
  backendRefs: [{name: shop-v2, weight: 100}]
- name: sluice
  backendRefs: [{name: shop-v1, weight: 100}]
  filters: [{type: RequestMirror, requestMirror: {backendRef: {name: shop-v2}, percent: 10}}]
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var live map[string]any
			if tt.live != "" {
				live = obj(t, tt.live)
			}
			d := obj(t, desired)
			got := Merge(d, live)
			if !reflect.DeepEqual(d, obj(t, desired)) {
				t.Error("Merge modified desired")
			}
			want := obj(t, tt.want)
			if !reflect.DeepEqual(got["spec"], want) {
				g, _ := yaml.Marshal(got["spec"])
				t.Errorf("got\n%s", g)
			}
		})
	}
}

// TestMergeSourceFilterChanges: a filter the source sets replaces the
// live filter of its type instead of repeating it (the API allows one).
func TestMergeSourceFilterChanges(t *testing.T) {
	desired := obj(t, `
metadata: {name: r, namespace: ns, annotations: {sluice.dev/route-owned: '{}'}}
spec:
  rules:
  - name: sluice
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x, value: "2"}]}}]
  - {matches: [{path: {type: PathPrefix, value: /a}}]}
`)
	live := obj(t, `
metadata: {name: r, namespace: ns}
spec:
  rules:
  - name: sluice
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x, value: "1"}]}}]
  - {matches: [{path: {type: PathPrefix, value: /a}}]}
`)
	got := Merge(desired, live)
	if !reflect.DeepEqual(got["spec"], desired["spec"]) {
		g, _ := yaml.Marshal(got["spec"])
		t.Errorf("got\n%s", g)
	}
}

func TestReady(t *testing.T) {
	route := func(status string) map[string]any {
		return obj(t, `
metadata:
  name: shop-ingress
  namespace: shop
  generation: 3
  annotations: {sluice.dev/route-owned: '{"parentRefs":[{"group":"gateway.networking.k8s.io","kind":"Gateway","namespace":"shop","name":"gw"},{"group":"gateway.networking.k8s.io","kind":"Gateway","namespace":"infra","name":"edge"}]}'}
status: `+status)
	}
	cond := func(typ, status string, gen int) string {
		return `{type: ` + typ + `, status: "` + status + `", reason: R` + typ + `, message: "m ` + typ + `", observedGeneration: ` + string(rune('0'+gen)) + `}`
	}
	both := func(a, r string, gen int) string {
		return "[" + cond("Accepted", a, gen) + ", " + cond("ResolvedRefs", r, gen) + "]"
	}
	tests := []struct {
		name, status string
		ok           bool
		reason       string
	}{
		{"no status", `{}`, false, "HTTPRoute shop-ingress: no controller has reported on parent Gateway shop/gw yet"},
		{"one parent", `{parents: [{parentRef: {name: gw}, controllerName: c, conditions: ` + both("True", "True", 3) + `}]}`, false, "parent Gateway infra/edge yet"},
		{"stale", `{parents: [{parentRef: {name: gw}, controllerName: c, conditions: ` + both("True", "True", 2) + `}]}`, false, "has not observed generation 3 yet"},
		{"not accepted", `{parents: [{parentRef: {name: gw}, controllerName: c, conditions: ` + both("False", "True", 3) + `}]}`, false, "parent Gateway shop/gw: Accepted=False (RAccepted: m Accepted)"},
		{"unresolved", `{parents: [{parentRef: {name: gw}, controllerName: c, conditions: ` + both("True", "False", 3) + `}]}`, false, "ResolvedRefs=False (RResolvedRefs: m ResolvedRefs)"},
		{"all accepted", `{parents: [{parentRef: {name: gw}, controllerName: c, conditions: ` + both("True", "True", 3) + `}, {parentRef: {name: edge, namespace: infra}, controllerName: c, conditions: ` + both("True", "True", 3) + `}]}`, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason := Ready(route(tt.status))
			if ok != tt.ok || !strings.Contains(reason, tt.reason) {
				t.Errorf("Ready = %v, %q; want %v, %q", ok, reason, tt.ok, tt.reason)
			}
		})
	}
}
