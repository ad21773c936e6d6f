package specs

import (
	"strings"
	"testing"
)

// TestRoutingValidation changes one thing in a valid release and asserts
// the exact message, with its line and field path, for what Gateway API
// routing cannot express.
func TestRoutingValidation(t *testing.T) {
	const gw = "  candidate: v2\n  routing: gatewayAPI\n"
	cases := []struct {
		name, old, new string
		gatewayAPI     bool // set spec.routing: gatewayAPI too
		want           []string
	}{
		{"gateway API is valid", "  candidate: v2\n", gw, false, nil},
		{"per route", "      hosts: [catalog]\n", "      hosts: [catalog]\n      routing: gatewayAPI\n    - name: ingress\n      gateways: [istio-system/public]\n      hosts: [catalog.example.com]\n", false, nil},
		{"unknown routing", "  candidate: v2\n", "  candidate: v2\n  routing: gateway\n", false,
			[]string{`release.yaml:17: spec.routing: must be "istio" or "gatewayAPI", got "gateway"`}},
		{"unknown route routing", "      hosts: [catalog]\n", "      hosts: [catalog]\n      routing: envoy\n", false,
			[]string{`release.yaml:21: spec.routes[0].routing: must be "istio" or "gatewayAPI", got "envoy"`}},
		{"mesh and gateways in one route", "      gateways: [mesh]\n", "      gateways: [mesh, public]\n      routing: gatewayAPI\n", false,
			[]string{`release.yaml:19: spec.routes[0].gateways: a Gateway API route attaches either to the Service (mesh) or to Gateways, not both; split it into two routes`}},
		{"mesh host that is not the Service", "      hosts: [catalog]\n", "      hosts: [catalog, reviews]\n      routing: gatewayAPI\n", false,
			[]string{`release.yaml:20: spec.routes[0].hosts[1]: "reviews" is not the release's Service catalog: a Gateway API mesh route attaches to the Service itself, so its hosts can only name it`}},
		{"mesh host by FQDN", "      hosts: [catalog]\n", "      hosts: [catalog.istioinaction.svc.cluster.local]\n      routing: gatewayAPI\n", false, nil},
		{"bad gateway reference", "      hosts: [catalog]\n", "      hosts: [catalog]\n    - name: ingress\n      gateways: [a/b/c]\n      hosts: [catalog.example.com]\n      routing: gatewayAPI\n", false,
			[]string{`release.yaml:22: spec.routes[1].gateways[0]: "a/b/c" is not a Gateway: write name or namespace/name`}},
		{"IP hostname", "      hosts: [catalog]\n", "      hosts: [catalog]\n    - name: ingress\n      gateways: [public]\n      hosts: [10.0.0.1]\n      routing: gatewayAPI\n", false,
			[]string{`release.yaml:23: spec.routes[1].hosts[0]: "10.0.0.1" is not an HTTPRoute hostname: a lowercase DNS name, optionally starting with *., and not an IP address`}},
		{"wildcard hostname", "      hosts: [catalog]\n", "      hosts: [catalog]\n    - name: ingress\n      gateways: [public]\n      hosts: [\"*.example.com\"]\n      routing: gatewayAPI\n", false, nil},
		{"source labels on a mesh route", "              x-istio-cohort:\n                exact: internal\n", "              x-istio-cohort:\n                exact: internal\n            sourceLabels:\n              app: webapp\n", true,
			[]string{`release.yaml:39: spec.stages[1].darkLaunch.match[0].sourceLabels: a Gateway API HTTPRoute cannot match the client's labels; match a header the clients send instead`}},
		{"source labels with Istio routing", "              x-istio-cohort:\n                exact: internal\n", "              x-istio-cohort:\n                exact: internal\n            sourceLabels:\n              app: webapp\n", false, nil},
		{"per-version Service name too long", "    name: catalog\n    port: 80\n", "    name: " + strings.Repeat("c", 61) + "\n    port: 80\n", true,
			[]string{
				`release.yaml:10: spec.versions: Gateway API routing renders Service "` + strings.Repeat("c", 61) + `-v1" for version v1, which is not a valid Service name: must be no more than 63 characters; shorten the service or version name`,
				`release.yaml:10: spec.versions: Gateway API routing renders Service "` + strings.Repeat("c", 61) + `-v2" for version v2, which is not a valid Service name: must be no more than 63 characters; shorten the service or version name`,
				`release.yaml:21: spec.routes[0].hosts[0]: "catalog" is not the release's Service ` + strings.Repeat("c", 61) + `: a Gateway API mesh route attaches to the Service itself, so its hosts can only name it`,
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(validRelease, tc.old) {
				t.Fatalf("test case: %q not in the valid release", tc.old)
			}
			doc := strings.Replace(validRelease, tc.old, tc.new, 1)
			if tc.gatewayAPI {
				doc = strings.Replace(doc, "  candidate: v2\n", gw, 1)
			}
			_, err := Parse("release.yaml", []byte(doc))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want errors:\n%s", strings.Join(tc.want, "\n"))
			}
			if got := err.Error(); got != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", got, strings.Join(tc.want, "\n"))
			}
		})
	}
}
