package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/internal/testenv"
	"sluice.dev/sluice/record"
)

var (
	// testEnv is the API server for `sluice apply`, started by the first
	// test that needs it; plan, render and validate need none.
	testEnv = testenv.NewShared(testenv.Options{Prometheus: true})
	update  = flag.Bool("update", false, "rewrite the golden files under testdata/")
)

// runMainEnv, set in the environment, makes the test binary the sluice
// command itself: the --watch test runs it in a terminal (tmux) without
// building the binary first.
const runMainEnv = "SLUICE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(testEnv.Main(m))
}

// sluice runs the CLI in process and returns its stdout, stderr and error.
func sluice(ctx context.Context, args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	cmd := newRootCommand()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

const example = "../../examples/catalog/releases/catalog.yaml"

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/sluice -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n%s", p, got)
	}
}

func TestPlanAndRender(t *testing.T) {
	ctx := t.Context()
	out, _, err := sluice(ctx, "plan", example)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "plan.txt", out)
	out, _, err = sluice(ctx, "plan", example, "-o", "json")
	if err != nil || !strings.Contains(out, `"name": "canary-30"`) {
		t.Fatalf("plan -o json: %v\n%s", err, out)
	}
	out, _, err = sluice(ctx, "render", example, "--step", "canary-20")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../renderer/testdata/catalog/canary-20.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Errorf("render --step canary-20 differs from the renderer's golden file")
	}
	if _, _, err := sluice(ctx, "render", example, "--step", "canary-25"); err == nil || !strings.Contains(err.Error(), `no step "canary-25"`) {
		t.Errorf("unknown step: %v", err)
	}
}

// TestPlanApprovalColumn: the APPROVAL column marks only the step that
// waits, the first of a stage that needs an approval; the stage's other
// steps follow once it is approved.
func TestPlanApprovalColumn(t *testing.T) {
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(
		"    - name: canary\n", "    - name: canary\n      approval: manual\n",
		"    - name: promote\n", "    - name: promote\n      approval: pullRequest\n",
	).Replace(string(data))
	file := filepath.Join(t.TempDir(), "catalog.yaml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := sluice(t.Context(), "plan", file)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "plan-approval.txt", out)
}

func TestValidate(t *testing.T) {
	ctx := t.Context()
	// Each example is a repository of its own: the two define the same
	// release, one routed with Istio, the other with the Gateway API.
	for _, ex := range []string{"../../examples/catalog", "../../examples/catalog-gateway-api"} {
		out, _, err := sluice(ctx, "validate", ex)
		if err != nil || out != "1 release(s) in 1 file(s) are valid\n" {
			t.Fatalf("validate %s: %v %q", ex, err, out)
		}
	}
	dir := t.TempDir()
	bad, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("maxWeight: 50", "maxWeight: 5", "port: 80", "prot: 80").Replace(string(bad))
	file := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := sluice(ctx, "validate", file)
	if err == nil {
		t.Fatal("validate accepted a bad spec")
	}
	for _, want := range []string{
		file + `:10: spec.service.port: must be a port number from 1 to 65535, got 0`,
		file + `:12: spec.service.prot: unknown field (did you mean "port"?)`,
		file + `:52: spec.stages[2].weighted.maxWeight: must be at least stepWeight (10), got 5`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("validate output lacks %q:\n%s", want, errOut)
		}
	}
}

// TestApply applies a step with --dry-run=server (nothing changes), then for
// real, then again (nothing to do), on the real API server.
func TestApply(t *testing.T) {
	env := testEnv.Env(t)
	ctx := t.Context()
	if err := env.CreateNamespace(ctx, "istioinaction"); err != nil {
		t.Fatal(err)
	}
	kc := env.KubeconfigPath()
	out, _, err := sluice(ctx, "apply", example, "--step", "dark-launch", "--kubeconfig", kc, "--dry-run=server")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "VirtualService istioinaction/catalog-mesh created (server dry run)") {
		t.Errorf("dry run output:\n%s", out)
	}
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())
	if list, err := kube.AppsV1().Deployments("istioinaction").List(ctx, metav1.ListOptions{}); err != nil || len(list.Items) != 0 {
		t.Fatalf("a dry run created Deployments: %v %d", err, len(list.Items))
	}
	out, _, err = sluice(ctx, "apply", example, "--step", "dark-launch", "--kubeconfig", kc, "--wait", "2m")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Deployment istioinaction/catalog-v2 created", "deployment istioinaction/catalog-v2 available"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = sluice(ctx, "apply", example, "--step", "dark-launch", "--kubeconfig", kc)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "created") || strings.Contains(out, "configured") {
		t.Errorf("a second apply changed something:\n%s", out)
	}
}

// TestStatusAndHistory reads the record Sluice keeps in Git, with no
// cluster: status files for `sluice status`, trailers for `sluice history`.
func TestStatusAndHistory(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	bare := filepath.Join(dir, "releases.git")
	work := filepath.Join(dir, "work")
	git := func(d string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = d
		cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_AUTHOR_NAME=p", "GIT_AUTHOR_EMAIL=p@x", "GIT_COMMITTER_NAME=p", "GIT_COMMITTER_EMAIL=p@x")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	git(dir, "init", "-q", "--bare", "--initial-branch=main", bare)
	git(work, "init", "-q", "--initial-branch=main")
	if err := os.WriteFile(filepath.Join(work, "README"), []byte("releases\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(work, "add", "-A")
	git(work, "commit", "-q", "-m", "start")
	git(work, "push", "-q", bare, "main")

	repo, err := gitsync.Open(ctx, gitsync.Config{URL: "file://" + bare, Author: gitsync.Signature{Name: "Sluice", Email: "sluice@x"}}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	rate := 99.5
	for _, tr := range []struct{ subject, action, step string }{
		{"catalog: start v1 -> v2 at deploy", "start", "deploy"},
		{"catalog: deploy -> dark-launch (available)", "advance", "dark-launch"},
	} {
		st := &record.Status{Release: "istioinaction/catalog", SpecFile: "releases/catalog.yaml", Phase: record.PhaseProgressing,
			Stable: "v1", Candidate: "v2", Step: tr.step, Weight: 100, Since: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC),
			Gates: []record.GateValue{{Metric: "request-success-rate", Value: &rate, Min: &rate, Passed: true},
				record.WebhookValue("smoke-test", "pre-step", 200, true, "")}}
		data, err := st.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		_, err = repo.Commit(ctx, gitsync.Change{Message: tr.subject,
			Trailers: []gitsync.Trailer{{Key: gitsync.TrailerRelease, Value: "istioinaction/catalog"}, {Key: gitsync.TrailerAction, Value: tr.action}, {Key: gitsync.TrailerStep, Value: tr.step}},
			Files:    map[string][]byte{record.StatusPath(record.DefaultStatusDir, "istioinaction", "catalog"): data}})
		if err != nil {
			t.Fatal(err)
		}
	}

	out, _, err := sluice(ctx, "status", bare)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"istioinaction/catalog", "Progressing", "v1 -> v2", "dark-launch", "success-rate 99.5 >= 99.5, webhook smoke-test 200", "2026-11-25T09:00:00Z"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out, _, err = sluice(ctx, "history", "catalog", bare)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "advance") || !strings.Contains(lines[1], "catalog: deploy -> dark-launch (available)") ||
		!strings.Contains(lines[2], "start") {
		t.Errorf("history, newest first:\n%s", out)
	}

	// A batched commit records several releases, one trailer group each.
	_, err = repo.Commit(ctx, gitsync.Change{Message: "sluice: 2 releases (1 advance, 1 steady)\n\n- catalog: dark-launch -> 10% (available)\n- web: steady at v3",
		Trailers: []gitsync.Trailer{
			{Key: gitsync.TrailerRelease, Value: "istioinaction/catalog"}, {Key: gitsync.TrailerAction, Value: "advance"}, {Key: gitsync.TrailerStep, Value: "canary-10"},
			{Key: gitsync.TrailerSubject, Value: "catalog: dark-launch -> 10% (available)"},
			{Key: gitsync.TrailerRelease, Value: "shop/web"}, {Key: gitsync.TrailerAction, Value: "steady"}, {Key: gitsync.TrailerStep, Value: "stable"},
			{Key: gitsync.TrailerSubject, Value: "web: steady at v3"},
		},
		Files: map[string][]byte{record.StatusPath(record.DefaultStatusDir, "shop", "web"): []byte("release: shop/web\n")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		release string
		want    [][]string // per line after the header: substrings
	}{
		{"catalog", [][]string{{"advance", "canary-10", "catalog: dark-launch -> 10% (available)"}, {"advance", "dark-launch"}, {"start", "deploy"}}},
		{"shop/web", [][]string{{"steady", "stable", "web: steady at v3"}}},
	} {
		out, _, err := sluice(ctx, "history", tt.release, bare)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")[1:]
		if len(lines) != len(tt.want) {
			t.Errorf("history %s after a batched commit: %d transitions, want %d:\n%s", tt.release, len(lines), len(tt.want), out)
			continue
		}
		for i, parts := range tt.want {
			for _, p := range parts {
				if !strings.Contains(lines[i], p) {
					t.Errorf("history %s line %d lacks %q:\n%s", tt.release, i+1, p, out)
				}
			}
		}
	}
	if out, _, err = sluice(ctx, "history", "other", bare); err != nil || !strings.Contains(out, "No transitions recorded for other.") {
		t.Errorf("history of an unknown release: %v %q", err, out)
	}
}
