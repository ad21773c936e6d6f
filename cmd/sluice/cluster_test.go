package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// diffExit is diff's exit status for err: 0, 1 (differences) or 2.
func diffExit(err error) int {
	var c exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &c):
		return c.code
	}
	return -1
}

// TestDiff compares steps with the real API server as apply does: a step
// not applied yet shows its objects created, an applied one nothing, a hand
// edit shows as a change, a step that retires a version shows the prune.
func TestDiff(t *testing.T) {
	env := testEnv.Env(t)
	ctx := t.Context()
	const ns = "difftest"
	if err := env.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	dir := fixture(t, map[string]string{spec: exampleSpec(t, "namespace: istioinaction", "namespace: "+ns)})
	file := filepath.Join(dir, spec)
	kc := env.KubeconfigPath()
	diff := func(step string) (string, int) {
		t.Helper()
		out, _, err := sluice(ctx, "diff", file, "--step", step, "--kubeconfig", kc)
		code := diffExit(err)
		if code != 0 && code != 1 {
			t.Fatalf("diff --step %s: %v", step, err)
		}
		return out, code
	}
	contains := func(what, out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s lacks %q:\n%s", what, w, out)
			}
		}
	}

	out, code := diff("deploy")
	if code != 1 {
		t.Errorf("diff before any apply: exit %d", code)
	}
	contains("diff before any apply", out,
		"--- live/Deployment difftest/catalog-v2\n+++ create/Deployment difftest/catalog-v2\n",
		"+kind: Deployment\n", "+++ create/VirtualService difftest/catalog-mesh\n")

	if _, _, err := sluice(ctx, "apply", file, "--step", "deploy", "--kubeconfig", kc); err != nil {
		t.Fatal(err)
	}
	out, code = diff("deploy")
	if code != 0 || out != "No differences: the step is applied (7 object(s) unchanged)\n" {
		t.Errorf("diff of the applied step: exit %d:\n%s", code, out)
	}

	out, code = diff("dark-launch")
	if code != 1 {
		t.Errorf("diff of the next step: exit %d", code)
	}
	contains("diff of the next step", out, "--- live/VirtualService difftest/catalog-mesh\n+++ update/VirtualService difftest/catalog-mesh\n", "+  - match:\n", "-    sluice.dev/step: deploy\n+    sluice.dev/step: dark-launch\n")
	if strings.Contains(out, "Deployment") {
		t.Errorf("the next step changes no Deployment:\n%s", out)
	}

	// A hand edit is drift that the apply would undo.
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())
	if _, err := kube.AppsV1().Deployments(ns).Patch(ctx, "catalog-v1", types.MergePatchType,
		[]byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	out, code = diff("deploy")
	if code != 1 {
		t.Errorf("diff after a hand edit: exit %d", code)
	}
	contains("diff after a hand edit", out, "+++ update/Deployment difftest/catalog-v1\n", "-  replicas: 3\n+  replicas: 1\n")

	out, _ = diff("stable")
	contains("diff of the steady state", out, "--- live/Deployment difftest/catalog-v2\n+++ prune/Deployment difftest/catalog-v2\n")
}

// TestGates runs a step's gates against the real Prometheus: a builtin
// metric without traffic has no data, a constant query is compared with
// its threshold, and a Prometheus that is down is reported as such.
func TestGates(t *testing.T) {
	env := testEnv.Env(t)
	ctx := t.Context()
	dir := fixture(t, map[string]string{spec: exampleSpec(t, `      - name: request-duration
        thresholdRange:
          max: 500
        interval: 30s
`, `      - name: constant
        query: vector(42)
        thresholdRange: {max: 10}
      - name: half
        query: scalar(vector(0.5)) * {{ len .Namespace }} / {{ len .Namespace }}
        thresholdRange: {min: 0, max: 1}
`)})
	file := filepath.Join(dir, spec)
	out, _, err := sluice(ctx, "gates", file, "--prometheus-url", env.PrometheusURL())
	var exit exitError
	if !errors.As(err, &exit) {
		t.Fatalf("gates: %v\n%s", err, out)
	}
	golden(t, "gates.txt", out)

	out, _, err = sluice(ctx, "gates", file, "--step", "canary-20", "--prometheus-url", env.PrometheusURL())
	if !errors.As(err, &exit) || !strings.Contains(out, "step canary-20: version v2 (Deployment catalog-v2)") {
		t.Errorf("gates --step canary-20: %v\n%s", err, out)
	}

	if err := env.StopPrometheus(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// t.Context is done by the time cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := env.StartPrometheus(ctx); err != nil {
			t.Error(err)
		}
	})
	out, _, err = sluice(ctx, "gates", file, "--prometheus-url", env.PrometheusURL())
	if !errors.As(err, &exit) || strings.Count(out, "prometheus error: ") != 3 || !strings.Contains(out, "connection refused") {
		t.Errorf("gates with Prometheus down: %v\n%s", err, out)
	}
}
