package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fixture copies examples/catalog into a temporary repository, applies
// edits (path -> content, "" deletes; a content starting with "+" is
// appended to the file), and returns the repository's directory.
func fixture(t *testing.T, edits map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := os.CopyFS(dir, os.DirFS("../../examples/catalog")); err != nil {
		t.Fatal(err)
	}
	for name, content := range edits {
		p := filepath.Join(dir, name)
		switch {
		case content == "":
			if err := os.RemoveAll(p); err != nil {
				t.Fatal(err)
			}
			continue
		case strings.HasPrefix(content, "+"):
			old, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			content = string(old) + content[1:]
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// exampleSpec is the example's release spec with replacements (old, new, ...).
func exampleSpec(t *testing.T, oldNew ...string) string {
	t.Helper()
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(oldNew); i += 2 {
		if !strings.Contains(s, oldNew[i]) {
			t.Fatalf("%q is not in the example", oldNew[i])
		}
		s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
	}
	return s
}

const spec = "releases/catalog.yaml"

// TestValidateRefusesWhatTheControllerWould holds every case of issue 13
// with its exact output: each case edits the example repository and runs
// validate on it (REPO stands for its directory).
func TestValidateRefusesWhatTheControllerWould(t *testing.T) {
	secondDeployment := "+---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: catalog-worker\nspec:\n  selector: {matchLabels: {app: worker}}\n  template:\n    metadata: {labels: {app: worker}}\n    spec: {containers: [{name: w, image: busybox}]}\n"
	cases := []struct {
		name  string
		edits func(t *testing.T) map[string]string
		args  []string // after validate; default the repository
		want  string   // stderr, one problem a line
	}{
		{"query template typo", func(t *testing.T) map[string]string {
			return map[string]string{spec: exampleSpec(t, "        interval: 30s\n", "        interval: 30s\n      - name: errors\n        query: sum(rate(istio_requests_total{destination_workload_namespace=\"{{ .Namespac }}\"}[1m]))\n        thresholdRange: {max: 1}\n")}
		}, nil,
			`REPO/releases/catalog.yaml:41: spec.analysis.metrics[2].query: template names {{ .Namespac }}, which is not a variable (did you mean {{ .Namespace }}?) (variables: {{ .Namespace }}, {{ .Service }}, {{ .Workload }}, {{ .Version }}, {{ .Window }})`},
		{"invalid promql", func(t *testing.T) map[string]string {
			return map[string]string{spec: exampleSpec(t, "        interval: 30s\n", "        interval: 30s\n      - name: errors\n        query: 'sum(rate(istio_requests_total{reporter='\n        thresholdRange: {max: 1}\n")}
		}, nil,
			`REPO/releases/catalog.yaml:41: spec.analysis.metrics[2].query: is not valid PromQL (at 1:40: unexpected end of input inside braces): sum(rate(istio_requests_total{reporter=`},
		{"same release in two files", func(t *testing.T) map[string]string {
			return map[string]string{"releases/copy.yaml": exampleSpec(t)}
		}, nil,
			`REPO/releases/copy.yaml:7: metadata.name: release istioinaction/catalog is also defined at REPO/releases/catalog.yaml:7; a release must be defined once`},
		{"same release twice in one file", func(t *testing.T) map[string]string {
			return map[string]string{spec: exampleSpec(t) + "---\n" + exampleSpec(t)}
		}, nil,
			`REPO/releases/catalog.yaml:62: metadata.name: release istioinaction/catalog is also defined at REPO/releases/catalog.yaml:7; a release must be defined once`},
		{"plan refuses the duplicate", func(t *testing.T) map[string]string {
			return map[string]string{spec: exampleSpec(t) + "---\n" + exampleSpec(t)}
		}, []string{"plan", "--release", "catalog", "REPO/" + spec},
			`Error: REPO/releases/catalog.yaml:62: metadata.name: release istioinaction/catalog is also defined at REPO/releases/catalog.yaml:7; a release must be defined once`},
		{"a source building two Deployments", func(t *testing.T) map[string]string {
			return map[string]string{"apps/catalog/base/deployment.yaml": secondDeployment}
		}, nil,
			`REPO/releases/catalog.yaml:15: spec.versions[0].source: source apps/catalog/overlays/v1 builds 2 Deployments (catalog, catalog-worker); a release manages exactly one workload per version
REPO/releases/catalog.yaml:17: spec.versions[1].source: source apps/catalog/overlays/v2 builds 2 Deployments (catalog, catalog-worker); a release manages exactly one workload per version`},
		{"two releases rendering the same objects", func(t *testing.T) map[string]string {
			return map[string]string{"releases/other.yaml": exampleSpec(t, "  name: catalog\n  namespace", "  name: catalog-two\n  namespace")}
		}, nil,
			`REPO/releases/other.yaml:7: metadata.name: renders ServiceAccount istioinaction/catalog, which release istioinaction/catalog (REPO/releases/catalog.yaml:7) renders too; two releases must not render the same object
REPO/releases/other.yaml:7: metadata.name: renders Service istioinaction/catalog, which release istioinaction/catalog (REPO/releases/catalog.yaml:7) renders too; two releases must not render the same object
REPO/releases/other.yaml:7: metadata.name: renders Deployment istioinaction/catalog-v1, which release istioinaction/catalog (REPO/releases/catalog.yaml:7) renders too; two releases must not render the same object
REPO/releases/other.yaml:7: metadata.name: renders Deployment istioinaction/catalog-v2, which release istioinaction/catalog (REPO/releases/catalog.yaml:7) renders too; two releases must not render the same object`},
		{"kind misspelt beside a valid release", func(t *testing.T) map[string]string {
			return map[string]string{"releases/typo.yaml": exampleSpec(t, "kind: Release", "kind: Relase", "  name: catalog\n  namespace", "  name: typo\n  namespace")}
		}, nil,
			`REPO/releases/typo.yaml:5: kind: must be Release, got "Relase" (did you mean "Release"?)`},
		{"kind in lower case", func(t *testing.T) map[string]string {
			return map[string]string{spec: exampleSpec(t, "kind: Release", "kind: release")}
		}, nil,
			`REPO/releases/catalog.yaml:5: kind: must be Release, got "release" (did you mean "Release"?)`},
		{"bad time zone", func(t *testing.T) map[string]string {
			return map[string]string{spec: exampleSpec(t, "  stages:\n", "  window:\n    schedule: \"0 9 * * 1-5\"\n    duration: 8h\n    timeZone: Europe/Pariss\n  stages:\n")}
		}, nil,
			`REPO/releases/catalog.yaml:43: spec.window.timeZone: "Europe/Pariss" is not an IANA time zone such as Europe/Paris or America/New_York`},
		{"duplicated key", func(t *testing.T) map[string]string {
			return map[string]string{spec: exampleSpec(t, "  stable: v1\n", "  stable: v1\n  service:\n    port: 8080\n")}
		}, nil,
			`REPO/releases/catalog.yaml:19: spec.service: field is set twice`},
		{"one missing source without --repo", func(t *testing.T) map[string]string {
			return map[string]string{"apps/catalog/overlays/v2": ""}
		}, nil,
			`REPO/releases/catalog.yaml:17: spec.versions[1].source: source apps/catalog/overlays/v2: directory not found in the repository`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := fixture(t, tc.edits(t))
			args := []string{"validate", dir}
			if tc.args != nil {
				args = nil
				for _, a := range tc.args {
					args = append(args, strings.ReplaceAll(a, "REPO", dir))
				}
			}
			out, errOut, err := sluice(t.Context(), args...)
			if err == nil {
				t.Fatalf("%v passed:\n%s", args[0], out)
			}
			if args[0] != "validate" {
				errOut = "Error: " + err.Error() + "\n"
			}
			if got := strings.ReplaceAll(errOut, dir, "REPO"); got != tc.want+"\n" {
				t.Errorf("output:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestValidateUnmanagedKind: a source that builds a kind Sluice's
// ServiceAccount may not apply (a PodDisruptionBudget) is refused by
// validate instead of failing in the controller. (HPAs and Secrets are
// managed since deploy/rbac.yaml grants them.)
func TestValidateUnmanagedKind(t *testing.T) {
	dir := fixture(t, map[string]string{
		"apps/catalog/base/pdb.yaml":           "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: catalog}\nspec:\n  minAvailable: 1\n  selector: {matchLabels: {app: catalog}}\n",
		"apps/catalog/base/kustomization.yaml": "+  - pdb.yaml\n",
	})
	_, errOut, err := sluice(t.Context(), "validate", dir)
	if err == nil {
		t.Fatal("validate passed")
	}
	want := `REPO/releases/catalog.yaml:15: spec.versions[0].source: version v1 builds PodDisruptionBudget catalog, which Sluice may not manage: its ServiceAccount may apply only ConfigMap, Deployment, DestinationRule, HTTPRoute, HorizontalPodAutoscaler, Secret, Service, ServiceAccount, VirtualService (deploy/rbac.yaml)
REPO/releases/catalog.yaml:17: spec.versions[1].source: version v2 builds PodDisruptionBudget catalog, which Sluice may not manage: its ServiceAccount may apply only ConfigMap, Deployment, DestinationRule, HTTPRoute, HorizontalPodAutoscaler, Secret, Service, ServiceAccount, VirtualService (deploy/rbac.yaml)
`
	if got := strings.ReplaceAll(errOut, dir, "REPO"); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}

// TestValidateFormats: -o json and --format github carry every problem
// with its file, line, column and field.
func TestValidateFormats(t *testing.T) {
	dir := fixture(t, map[string]string{
		spec: exampleSpec(t, "kind: Release", "kind: Relase", "    port: 80\n", "    port: 80\n    prot: 80\n"),
	})
	for _, tc := range []struct{ flag, value, golden string }{
		{"-o", "json", "validate.json"},
		{"--format", "github", "validate.github.txt"},
	} {
		out, _, err := sluice(t.Context(), "validate", tc.flag, tc.value, dir)
		var exit exitError
		if !errors.As(err, &exit) {
			t.Fatalf("validate %s %s: %v", tc.flag, tc.value, err)
		}
		golden(t, tc.golden, strings.ReplaceAll(out, dir, "REPO"))
	}
	out, _, err := sluice(t.Context(), "validate", "-o", "json", "../../examples/catalog-gateway-api")
	if err != nil || !strings.Contains(out, `"valid": true`) || !strings.Contains(out, `"problems": []`) {
		t.Errorf("validate -o json of a valid example: %v\n%s", err, out)
	}
}

// TestValidateSizeLimit: a 50 MB file is refused from its size, in a
// directory or named; a directory's large YAML that is not Sluice's is
// skipped.
func TestValidateSizeLimit(t *testing.T) {
	dir := fixture(t, map[string]string{"istio/big.yaml": "apiVersion: v1\nkind: ConfigMap\n# " + strings.Repeat("x", 2<<20) + "\n"})
	huge := filepath.Join(dir, "releases", "huge.yaml")
	spec := exampleSpec(t, "  name: catalog\n  namespace", "  name: huge\n  namespace")
	// Sparse beyond the spec's text: only its head is ever read.
	if err := os.WriteFile(huge, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, 50<<20); err != nil {
		t.Fatal(err)
	}
	want := "REPO/releases/huge.yaml: file is 50 MiB, over the 1 MiB limit for a release spec file (--max-spec-size); split it into several files\n"
	for _, args := range [][]string{{"validate", dir}, {"validate", huge}, {"validate", "--max-spec-size", "10MiB", huge}} {
		start := time.Now()
		_, errOut, err := sluice(t.Context(), args...)
		if err == nil {
			t.Fatalf("%v passed", args)
		}
		w := want
		if len(args) == 4 {
			w = strings.Replace(want, "1 MiB limit", "10 MiB limit", 1)
		}
		if got := strings.ReplaceAll(errOut, dir, "REPO"); got != w {
			t.Errorf("%v:\n%s\nwant:\n%s", args, got, w)
		}
		t.Logf("%v: %s", args[:len(args)-1], time.Since(start))
	}
	if _, _, err := sluice(t.Context(), "plan", huge); err == nil || !strings.Contains(err.Error(), "over the 1 MiB limit") {
		t.Errorf("plan of a huge file: %v", err)
	}
	if _, _, err := sluice(t.Context(), "render", huge, "--step", "0"); err == nil || !strings.Contains(err.Error(), "over the 1 MiB limit") {
		t.Errorf("render of a huge file: %v", err)
	}
	if _, _, err := sluice(t.Context(), "validate", "--max-spec-size", "lots", huge); err == nil || !strings.Contains(err.Error(), `"lots" is not a size`) {
		t.Errorf("a bad --max-spec-size: %v", err)
	}
}

// TestValidateEndsOnSIGTERM runs the built command on a FIFO nobody
// writes, whose open blocks forever, and stops it with SIGTERM.
func TestValidateEndsOnSIGTERM(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no FIFOs or SIGTERM")
	}
	if testing.Short() {
		t.Skip("builds the command")
	}
	bin := filepath.Join(t.TempDir(), "sluice")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	fifo := filepath.Join(t.TempDir(), "stuck.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"validate", fifo}, {"plan", fifo}} {
		cmd := exec.Command(bin, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(stderr.String(), "terminated signal received") {
				t.Errorf("%s after SIGTERM: %v, stderr %q", args[0], err, stderr.String())
			}
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%s still runs 5s after SIGTERM", args[0])
		}
	}
}

// BenchmarkValidate times validate end to end: a 50 MB file refused by its
// size, and a valid 1 MiB release (the example with a long list of
// approvals), sources built and all.
func BenchmarkValidate(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "repo")
	if err := os.CopyFS(dir, os.DirFS("../../examples/catalog")); err != nil {
		b.Fatal(err)
	}
	base, err := os.ReadFile(example)
	if err != nil {
		b.Fatal(err)
	}
	var big strings.Builder
	big.WriteString(string(base) + "  approvals:\n")
	for i := 0; big.Len() < int(1<<20)-100; i++ {
		big.WriteString("    - {stage: canary, candidate: v2, by: someone-" + strings.Repeat("x", i%7) + "}\n")
	}
	valid := filepath.Join(dir, "releases", "catalog.yaml")
	if err := os.WriteFile(valid, []byte(big.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	huge := filepath.Join(b.TempDir(), "huge.yaml")
	if err := os.WriteFile(huge, []byte(strings.Repeat(string(base)+"---\n", 50<<20/len(base))), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		file string
		ok   bool
	}{{"50MB-over-limit", huge, false}, {"1MiB-valid", valid, true}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				_, errOut, err := sluice(context.Background(), "validate", bc.file)
				if (err == nil) != bc.ok {
					b.Fatalf("validate %s: %v\n%.300s", bc.name, err, errOut)
				}
			}
		})
	}
}
