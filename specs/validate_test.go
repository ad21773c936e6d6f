package specs

import (
	"flag"
	"os"
	"strings"
	"testing"
)

const validRelease = `apiVersion: sluice.dev/v1alpha1
kind: Release
metadata:
  name: catalog
  namespace: istioinaction
spec:
  service:
    name: catalog
    port: 80
  versions:
    - name: v1
      source: apps/catalog/overlays/v1
    - name: v2
      source: apps/catalog/overlays/v2
  stable: v1
  candidate: v2
  routes:
    - name: mesh
      gateways: [mesh]
      hosts: [catalog]
  analysis:
    interval: 45s
    threshold: 5
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
  stages:
    - name: deploy
      deploy: {}
    - name: dark-launch
      darkLaunch:
        match:
          - headers:
              x-istio-cohort:
                exact: internal
    - name: canary
      weighted:
        stepWeight: 10
        maxWeight: 50
    - name: promote
      promote: {}
`

func TestValidReleaseParses(t *testing.T) {
	rels, err := Parse("release.yaml", []byte(validRelease))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(rels) != 1 || rels[0].ID() != "istioinaction/catalog" {
		t.Fatalf("got %d releases, want istioinaction/catalog", len(rels))
	}
}

// TestValidationRules changes one thing in a valid release and asserts the
// exact message, with its line and field path.
func TestValidationRules(t *testing.T) {
	cases := []struct {
		name, old, new string
		want           []string
	}{
		{"unknown field", "    port: 80\n", "    port: 80\n    prot: 80\n",
			[]string{`release.yaml:10: spec.service.prot: unknown field (did you mean "port"?)`}},
		{"wrong type", "    port: 80\n", "    port: eighty\n",
			[]string{`release.yaml:9: spec.service.port: must be a whole number, not the string "eighty"`}},
		{"api version", "apiVersion: sluice.dev/v1alpha1", "apiVersion: sluice.dev/v1",
			[]string{`release.yaml:1: apiVersion: must be sluice.dev/v1alpha1, got "sluice.dev/v1"`}},
		{"name not DNS-1123", "  name: catalog\n  namespace", "  name: Catalog_1\n  namespace",
			[]string{`release.yaml:4: metadata.name: "Catalog_1" is not a valid name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`}},
		{"missing namespace", "  namespace: istioinaction\n", "",
			[]string{`release.yaml:3: metadata.namespace: is required`}},
		{"bad duration", "interval: 45s", "interval: 45 seconds",
			[]string{`release.yaml:22: spec.analysis.interval: "45 seconds" is not a duration (use e.g. 45s, 1m, 1h30m)`}},
		{"port range", "port: 80", "port: 70000",
			[]string{`release.yaml:9: spec.service.port: must be a port number from 1 to 65535, got 70000`}},
		{"step over max", "maxWeight: 50", "maxWeight: 5",
			[]string{`release.yaml:41: spec.stages[2].weighted.maxWeight: must be at least stepWeight (10), got 5`}},
		{"max over 100", "maxWeight: 50", "maxWeight: 150",
			[]string{`release.yaml:41: spec.stages[2].weighted.maxWeight: must be at most 100, got 150`}},
		{"weights not increasing", "        stepWeight: 10\n        maxWeight: 50\n", "        weights: [10, 30, 20]\n",
			[]string{`release.yaml:40: spec.stages[2].weighted.weights[2]: weights must increase strictly: 20 follows 30`}},
		{"weight out of range", "        stepWeight: 10\n        maxWeight: 50\n", "        weights: [0, 101]\n",
			[]string{`release.yaml:40: spec.stages[2].weighted.weights[0]: must be more than 0 and at most 100, got 0`,
				`release.yaml:40: spec.stages[2].weighted.weights[1]: must be more than 0 and at most 100, got 101`}},
		{"weights and stepWeight", "        maxWeight: 50\n", "        maxWeight: 50\n        weights: [10]\n",
			[]string{`release.yaml:39: spec.stages[2].weighted: set either weights or stepWeight with maxWeight, not both`}},
		{"threshold missing", "          min: 99\n", "",
			[]string{`release.yaml:26: spec.analysis.metrics[0].thresholdRange: set min, max or both`}},
		{"min over max", "          min: 99\n", "          min: 99\n          max: 50\n",
			[]string{`release.yaml:26: spec.analysis.metrics[0].thresholdRange: min (99) is greater than max (50)`}},
		{"success rate over 100", "min: 99", "min: 990",
			[]string{`release.yaml:27: spec.analysis.metrics[0].thresholdRange.min: a success rate is a percentage from 0 to 100, got 990`}},
		{"custom metric without query", "name: request-success-rate", "name: error-budget",
			[]string{`release.yaml:25: spec.analysis.metrics[0].query: is required: "error-budget" is not a builtin metric (request-success-rate, request-duration)`}},
		{"negative threshold", "threshold: 5", "threshold: -1",
			[]string{`release.yaml:23: spec.analysis.threshold: must be at least 1, got -1`}},
		{"cron", "  stages:\n", "  window:\n    schedule: \"61 * * * *\"\n    duration: 1h\n  stages:\n",
			[]string{`release.yaml:30: spec.window.schedule: "61 * * * *" is not a cron schedule (minute hour day-of-month month day-of-week): end of range (61) above maximum (59): 61`}},
		{"duplicate stage", "    - name: canary\n", "    - name: dark-launch\n",
			[]string{`release.yaml:38: spec.stages[2].name: stage "dark-launch" is defined twice`}},
		{"two kinds in a stage", "      promote: {}\n", "      promote: {}\n      deploy: {}\n",
			[]string{`release.yaml:42: spec.stages[3]: sets deploy and promote; a stage is exactly one of them`,
				`release.yaml:44: spec.stages[3].deploy: deploy must be the first stage`}},
		{"promote not last", "    - name: deploy\n      deploy: {}\n", "    - name: deploy\n      promote: {}\n",
			[]string{`release.yaml:31: spec.stages[0].promote: promote must be the last stage`}},
		{"unknown stable version", "stable: v1", "stable: v0",
			[]string{`release.yaml:15: spec.stable: version "v0" is not in spec.versions`}},
		{"unknown candidate version", "candidate: v2", "candidate: v3",
			[]string{`release.yaml:16: spec.candidate: version "v3" is not in spec.versions`}},
		{"absolute source", "source: apps/catalog/overlays/v1", "source: /etc/catalog",
			[]string{`release.yaml:12: spec.versions[0].source: "/etc/catalog" is absolute; give a path relative to the repository root`}},
		{"escaping source", "source: apps/catalog/overlays/v1", "source: apps/../../secrets",
			[]string{`release.yaml:12: spec.versions[0].source: "apps/../../secrets" leaves the repository`}},
		{"remote source", "source: apps/catalog/overlays/v1", "source: github.com/example/app//deploy?ref=v1",
			[]string{`release.yaml:12: spec.versions[0].source: "github.com/example/app//deploy?ref=v1" is a remote base; Sluice renders only from the repository`}},
		{"header with two matchers", "                exact: internal\n", "                exact: internal\n                prefix: int\n",
			[]string{`release.yaml:36: spec.stages[1].darkLaunch.match[0].headers.x-istio-cohort: set exactly one of exact, prefix or regex`}},
		{"bad regex", "                exact: internal\n", "                regex: \"(\"\n",
			[]string{"release.yaml:37: spec.stages[1].darkLaunch.match[0].headers.x-istio-cohort.regex: is not a valid RE2 expression: error parsing regexp: missing closing ): `(`"}},
		{"webhook type", "        interval: 1m\n", "        interval: 1m\n    webhooks:\n      - name: smoke\n        type: prestep\n        url: http://smoke.test/\n",
			[]string{`release.yaml:31: spec.analysis.webhooks[0].type: must be pre-step, check or load, got "prestep"`}},
		{"webhook url", "        interval: 1m\n", "        interval: 1m\n    webhooks:\n      - name: smoke\n        type: check\n        url: ftp://smoke.test/\n",
			[]string{`release.yaml:32: spec.analysis.webhooks[0].url: must be an http:// or https:// URL with a host`}},
		{"webhook url with a password", "        interval: 1m\n", "        interval: 1m\n    webhooks:\n      - name: smoke\n        type: check\n        url: http://u:p@smoke.test/\n",
			[]string{`release.yaml:32: spec.analysis.webhooks[0].url: must not hold a user name or password; receivers check the request's signature (X-Sluice-Signature)`}},
		{"webhook retries and timeout", "        interval: 1m\n", "        interval: 1m\n    webhooks:\n      - name: smoke\n        type: load\n        url: http://smoke.test/\n        retries: 9\n        timeout: 10m\n",
			[]string{`release.yaml:33: spec.analysis.webhooks[0].retries: must be from 0 to 5, got 9`,
				`release.yaml:34: spec.analysis.webhooks[0].timeout: must be more than 0 and at most 5m0s, got 10m`}},
		{"webhook twice, without type", "        interval: 1m\n", "        interval: 1m\n    webhooks:\n      - name: smoke\n        type: check\n        url: http://smoke.test/\n      - name: smoke\n        url: http://smoke.test/\n",
			[]string{`release.yaml:33: spec.analysis.webhooks[1].name: webhook "smoke" is listed twice`,
				`release.yaml:33: spec.analysis.webhooks[1].type: is required: pre-step, check or load`}},
		{"webhook unknown field", "        interval: 1m\n", "        interval: 1m\n    webhooks:\n      - name: smoke\n        type: check\n        url: http://smoke.test/\n        secret: x\n",
			[]string{`release.yaml:33: spec.analysis.webhooks[0].secret: unknown field (known fields: metadata, name, retries, timeout, type, url)`}},
		{"webhook named as a metric", "        interval: 1m\n", "        interval: 1m\n    webhooks:\n      - name: request-success-rate\n        type: check\n        url: http://smoke.test/\n",
			[]string{`release.yaml:30: spec.analysis.webhooks[0].name: "request-success-rate" is also a metric's name; give the webhook its own`}},
		{"skipMetrics with check webhooks", "    - name: canary\n      weighted:\n", "    - name: canary\n      analysis:\n        skipMetrics: true\n        webhooks:\n          - name: smoke\n            type: check\n            url: http://smoke.test/\n      weighted:\n",
			[]string{`release.yaml:40: spec.stages[2].analysis.skipMetrics: cannot be combined with check webhooks`}},
		{"no routes", "  routes:\n    - name: mesh\n      gateways: [mesh]\n      hosts: [catalog]\n", "",
			[]string{`release.yaml:6: spec.routes: list at least one routing context, e.g. {name: mesh, gateways: [mesh], hosts: [catalog]}`}},
		{"unknown approval", "    - name: canary\n", "    - name: canary\n      approval: mergeRequest\n",
			[]string{`release.yaml:39: spec.stages[2].approval: must be "manual" or "pullRequest", got "mergeRequest"`}},
		{"approval on deploy", "    - name: deploy\n", "    - name: deploy\n      approval: pullRequest\n",
			[]string{`release.yaml:31: spec.stages[0].approval: the deploy stage is the first step and cannot wait for an approval`}},
		{"cluster not a DNS label", "  stable: v1\n", "  stable: v1\n  clusters: [staging, Prod_1]\n",
			[]string{`release.yaml:16: spec.clusters[1]: "Prod_1" is not a valid name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`}},
		{"cluster named twice", "  stable: v1\n", "  stable: v1\n  clusters:\n    - staging\n    - prod\n    - staging\n",
			[]string{`release.yaml:19: spec.clusters[2]: cluster "staging" is named twice`}},
		{"invalid yaml", "  stable: v1\n", "  stable: [v1\n",
			[]string{`release.yaml:15: invalid YAML: did not find expected ',' or ']'`}},
		// Issue 13: what the controller would refuse later.
		{"query template typo", "        interval: 1m\n  stages:", "        interval: 1m\n      - name: errors\n        query: 'sum(rate(x{namespace=\"{{ .Namespac }}\"}[1m]))'\n        thresholdRange: {max: 1}\n  stages:",
			[]string{`release.yaml:30: spec.analysis.metrics[1].query: template names {{ .Namespac }}, which is not a variable (did you mean {{ .Namespace }}?) (variables: {{ .Namespace }}, {{ .Service }}, {{ .Workload }}, {{ .Version }}, {{ .Window }})`}},
		{"query template syntax", "        interval: 1m\n  stages:", "        interval: 1m\n      - name: errors\n        query: 'sum(x{ns=\"{{ .Namespace }\"})'\n        thresholdRange: {max: 1}\n  stages:",
			[]string{`release.yaml:30: spec.analysis.metrics[1].query: is not a valid template: template: errors:1: unexpected "}" in operand`}},
		{"invalid promql", "        interval: 1m\n  stages:", "        interval: 1m\n      - name: errors\n        query: 'sum(rate(istio_requests_total{reporter='\n        thresholdRange: {max: 1}\n  stages:",
			[]string{`release.yaml:30: spec.analysis.metrics[1].query: is not valid PromQL (at 1:40: unexpected end of input inside braces): sum(rate(istio_requests_total{reporter=`}},
		{"promql range vector", "        interval: 1m\n  stages:", "        interval: 1m\n      - name: errors\n        query: 'istio_requests_total{namespace=\"{{ .Namespace }}\"}[{{ .Window }}]'\n        thresholdRange: {max: 1}\n  stages:",
			[]string{`release.yaml:30: spec.analysis.metrics[1].query: gives a range vector, a gate needs one number: wrap it in a function such as rate(): istio_requests_total{namespace="istioinaction"}[1m]`}},
		{"valid custom query", "        interval: 1m\n  stages:", "        interval: 1m\n      - name: errors\n        query: |\n          sum(rate(istio_requests_total{destination_workload_namespace=\"{{ .Namespace }}\",destination_workload=\"{{ .Workload }}\",response_code=~\"5.*\"}[{{ .Window }}]))\n        thresholdRange: {max: 1}\n  stages:",
			nil},
		{"bad time zone", "  stages:\n", "  window:\n    schedule: \"0 9 * * 1-5\"\n    duration: 8h\n    timeZone: Europe/Pariss\n  stages:\n",
			[]string{`release.yaml:32: spec.window.timeZone: "Europe/Pariss" is not an IANA time zone such as Europe/Paris or America/New_York`}},
		{"duplicated yaml key", "  stable: v1\n", "  stable: v1\n  service:\n    port: 81\n",
			[]string{`release.yaml:16: spec.service: field is set twice`}},
		{"duplicated map key", "                exact: internal\n", "                exact: internal\n              x-istio-cohort:\n                exact: other\n",
			[]string{`release.yaml:38: spec.stages[1].darkLaunch.match[0].headers.x-istio-cohort: key is set twice`}},
		{"kind misspelt", "kind: Release", "kind: Relase",
			[]string{`release.yaml:2: kind: must be Release, got "Relase" (did you mean "Release"?)`}},
		{"kind lowercase", "kind: Release", "kind: release",
			[]string{`release.yaml:2: kind: must be Release, got "release" (did you mean "Release"?)`}},
		{"port over int32", "port: 80", "port: 99999999999",
			[]string{`release.yaml:9: spec.service.port: must be a whole number from -2147483648 to 2147483647, not "99999999999"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(validRelease, tc.old) {
				t.Fatalf("test case: %q not in the valid release", tc.old)
			}
			doc := strings.Replace(validRelease, tc.old, tc.new, 1)
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

func TestAllErrorsReportedTogether(t *testing.T) {
	doc := strings.NewReplacer(
		"    port: 80\n", "    port: 0\n    colour: blue\n",
		"stable: v1", "stable: v9",
		"maxWeight: 50", "maxWeight: 500",
		"interval: 45s", "interval: soon",
	).Replace(validRelease)
	_, err := Parse("r.yaml", []byte(doc))
	want := []string{
		`r.yaml:9: spec.service.port: must be a port number from 1 to 65535, got 0`,
		`r.yaml:10: spec.service.colour: unknown field (known fields: name, port)`,
		`r.yaml:16: spec.stable: version "v9" is not in spec.versions`,
		`r.yaml:23: spec.analysis.interval: "soon" is not a duration (use e.g. 45s, 1m, 1h30m)`,
		`r.yaml:42: spec.stages[2].weighted.maxWeight: must be at most 100, got 500`,
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

func TestExampleParses(t *testing.T) {
	if _, err := LoadFile("../examples/catalog/releases/catalog.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestIsRelease(t *testing.T) {
	if !IsRelease([]byte(validRelease)) {
		t.Error("IsRelease(valid release) = false")
	}
	data, err := os.ReadFile("../examples/catalog/apps/catalog/base/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if IsRelease(data) {
		t.Error("IsRelease(kustomization) = true")
	}
}

var updateSchema = flag.Bool("update", false, "rewrite release.schema.json")
