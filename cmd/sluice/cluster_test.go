package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/specs"
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

// TestApplyRefusesControlledRelease: `sluice apply` refuses a release whose
// live objects carry the controller's mark, says why, and applies it with
// --force; its own earlier applies do not count, and a server dry run goes
// on with a warning.
func TestApplyRefusesControlledRelease(t *testing.T) {
	env := testEnv.Env(t)
	ctx := t.Context()
	if err := env.CreateNamespace(ctx, "controlled"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "catalog.yaml")
	if err := os.WriteFile(file, []byte(strings.Replace(string(data), "namespace: istioinaction", "namespace: controlled", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	kc := env.KubeconfigPath()
	apply := func(args ...string) (string, string, error) {
		return sluice(ctx, append([]string{"apply", file, "--repo", "../../examples/catalog", "--kubeconfig", kc}, args...)...)
	}
	for range 2 {
		if out, _, err := apply("--step", "deploy"); err != nil {
			t.Fatalf("apply of a release no controller manages: %v\n%s", err, out)
		}
	}

	// The controller applies the dark launch, with its mark.
	_, _, out, err := renderStep(ctx, file, "", "dark-launch", "../../examples/catalog", specs.DefaultMaxSpecSize)
	if err != nil {
		t.Fatal(err)
	}
	controller, err := cluster.New(env.RESTConfig(), cluster.Options{Annotations: map[string]string{cluster.AnnotationController: "file:///srv/releases.git main"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := controller.Apply(ctx, cluster.Set{Owner: out.Owner, Objects: out.Objects}, cluster.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}

	stdout, _, err := apply("--step", "canary-30")
	if err == nil {
		t.Fatalf("apply of a release the controller manages was not refused:\n%s", stdout)
	}
	for _, want := range []string{"the controller (sluice run, following file:///srv/releases.git main) manages controlled/catalog in this cluster",
		"carries its annotation sluice.dev/controller", "pass --force"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q: %v", want, err)
		}
	}
	if stdout != "" {
		t.Errorf("a refused apply wrote:\n%s", stdout)
	}
	stdout, stderr, err := apply("--step", "canary-30", "--dry-run=server")
	if err != nil || !strings.Contains(stderr, "Warning: the controller") || !strings.Contains(stdout, "configured (server dry run)") {
		t.Errorf("a server dry run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	stdout, stderr, err = apply("--step", "canary-30", "--force")
	if err != nil || !strings.Contains(stderr, "applying anyway (--force)") || !strings.Contains(stdout, "VirtualService controlled/catalog-mesh configured") {
		t.Errorf("apply --force: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
}
