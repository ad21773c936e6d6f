package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	sigsyaml "sigs.k8s.io/yaml"
)

func TestFlaggerObjects(t *testing.T) {
	objs, err := flaggerObjects(filepath.Join("..", "..", "examples", "catalog"), "flagger-good-1")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
		if o.GetNamespace() != "flagger-good-1" {
			t.Errorf("%s %s in namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
	if len(objs) != 3 || kinds[0] != "ServiceAccount" || kinds[1] != "Deployment" || kinds[2] != "Canary" {
		t.Fatalf("kinds = %v, want ServiceAccount, Deployment, Canary", kinds)
	}
	dep := objs[1]
	sel, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "selector", "matchLabels")
	if len(sel) != 1 || sel["app"] != "catalog" {
		t.Errorf("selector = %v, want app: catalog alone", sel)
	}
	if v, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "metadata", "labels", "version"); v != "v1" {
		t.Errorf("pods' version = %q, want v1", v)
	}
	canary := objs[2]
	analysis, _, _ := unstructured.NestedMap(canary.Object, "spec", "analysis")
	for key, want := range map[string]any{"interval": "10s", "threshold": 2.0, "maxWeight": 50.0, "stepWeight": 10.0} {
		if got := analysis[key]; got != want {
			t.Errorf("analysis %s = %v, want %v", key, got, want)
		}
	}
}

func TestApplyVersion(t *testing.T) {
	objs, err := flaggerObjects(filepath.Join("..", "..", "examples", "catalog"), "ns")
	if err != nil {
		t.Fatal(err)
	}
	dep := objs[1]
	if err := applyVersion(dep, "v2"); err != nil {
		t.Fatal(err)
	}
	if err := applyVersion(dep, "v2"); err != nil { // idempotent
		t.Fatal(err)
	}
	if v, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "metadata", "labels", "version"); v != "v2" {
		t.Errorf("pods' version = %q, want v2", v)
	}
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	env, _ := containers[0].(map[string]any)["env"].([]any)
	var show int
	for _, e := range env {
		if e.(map[string]any)["name"] == "SHOW_IMAGE" {
			show++
		}
	}
	// The example's own variable stays, and v2's is added once.
	if len(env) != 2 || show != 1 {
		t.Errorf("env = %v, want KUBERNETES_NAMESPACE and one SHOW_IMAGE", env)
	}
}

func TestAllOnHost(t *testing.T) {
	vs := func(y string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		if err := sigsyaml.Unmarshal([]byte(y), &u.Object); err != nil {
			t.Fatal(err)
		}
		return u
	}
	for _, tt := range []struct {
		name, yaml string
		want       bool
	}{
		{"all on the primary", "spec: {http: [{route: [{destination: {host: catalog-primary}, weight: 100}, {destination: {host: catalog-canary}, weight: 0}]}]}", true},
		{"canary at 50", "spec: {http: [{route: [{destination: {host: catalog-primary}, weight: 50}, {destination: {host: catalog-canary}, weight: 50}]}]}", false},
		{"one destination without weight", "spec: {http: [{route: [{destination: {host: catalog-primary}}]}]}", true},
		{"the canary without weight", "spec: {http: [{route: [{destination: {host: catalog-canary}}]}]}", false},
		{"no routes", "spec: {}", false},
	} {
		if got := allOnHost(vs(tt.yaml), "catalog-primary"); got != tt.want {
			t.Errorf("%s: allOnHost = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBinaryBuild(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if got := binaryBuild(exe); !strings.HasPrefix(got, "go") || !strings.Contains(got, "CGO_ENABLED=") {
		t.Errorf("binaryBuild(the test binary) = %q, want its Go version and CGO_ENABLED", got)
	}
	if got := binaryBuild(filepath.Join(t.TempDir(), "missing")); got != "" {
		t.Errorf("binaryBuild(a missing file) = %q, want \"\"", got)
	}
}
