package reconciler_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/internal/testenv"
	"sluice.dev/sluice/observe"
	"sluice.dev/sluice/reconciler"
	"sluice.dev/sluice/record"
)

// testEnv is started by the first test that needs a cluster; the state
// machine's tests need none.
var testEnv = testenv.NewShared(testenv.Options{})

func TestMain(m *testing.M) { os.Exit(testEnv.Main(m)) }

// remote is a bare Git repository seeded with the catalog example.
type remote struct {
	bare string
}

// newRemote seeds a bare repository with examples/catalog, after edit
// has changed its files (path -> content; the content of the example is
// given to edit).
func newRemote(t *testing.T, edit func(read func(string) string) map[string]string) *remote {
	t.Helper()
	dir := t.TempDir()
	work, bare := filepath.Join(dir, "work"), filepath.Join(dir, "remote.git")
	if err := os.CopyFS(work, os.DirFS("../examples/catalog")); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(work, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for name, content := range edit(read) {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(t, dir, "init", "-q", "--bare", "--initial-branch=main", bare)
	git(t, work, "init", "-q", "--initial-branch=main")
	git(t, work, "add", "-A")
	git(t, work, "commit", "-q", "-m", "releases")
	git(t, work, "push", "-q", bare, "main")
	return &remote{bare: bare}
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir,
		"GIT_AUTHOR_NAME=A Person", "GIT_AUTHOR_EMAIL=person@example.com",
		"GIT_COMMITTER_NAME=A Person", "GIT_COMMITTER_EMAIL=person@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// recorder keeps the transitions the reconciler reports.
type recorder struct {
	reconciler.NopObserver
	mu   sync.Mutex
	list []reconciler.Transition
}

func (r *recorder) Transition(_ context.Context, t reconciler.Transition) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, t)
}

var (
	deploymentsGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	vsGVR          = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
)

// TestRefusedReleases: a release that targets a namespace outside the
// allow-list, or reads files from outside the repository, is recorded as
// Invalid with a message that says why, and nothing of it is applied; a
// valid one beside it is applied.
func TestRefusedReleases(t *testing.T) {
	env := testEnv.Env(t)
	noCandidate := func(spec string) string { return strings.Replace(spec, "  candidate: v2\n", "", 1) }
	tests := []struct {
		name string
		// specNS is the release's namespace; allowed are Sluice's allowed namespaces.
		specNS, allowed string
		edit            func(read func(string) string) map[string]string
		wantPhase       record.Phase
		wantMessage     string
		wantEvent       string // the Event's reason on the mesh VirtualService, "" for none
	}{
		{
			name: "allowed namespace", specNS: "refuse-ok", allowed: "refuse-ok",
			edit: func(read func(string) string) map[string]string {
				return map[string]string{"releases/catalog.yaml": noCandidate(read("releases/catalog.yaml"))}
			},
			wantPhase: record.PhaseSteady, wantEvent: "Steady",
		},
		{
			name: "namespace outside the allow-list", specNS: "refuse-denied", allowed: "refuse-other",
			edit: func(read func(string) string) map[string]string {
				return map[string]string{"releases/catalog.yaml": noCandidate(read("releases/catalog.yaml"))}
			},
			wantPhase:   record.PhaseInvalid,
			wantMessage: `releases/catalog.yaml: metadata.namespace: "refuse-denied" is not in Sluice's allowed namespaces [refuse-other]`,
		},
		{
			name: "source leaves the repository", specNS: "refuse-dotdot", allowed: "refuse-dotdot",
			edit: func(read func(string) string) map[string]string {
				return map[string]string{"releases/catalog.yaml": strings.Replace(read("releases/catalog.yaml"), "source: apps/catalog/overlays/v2", "source: ../outside", 1)}
			},
			wantPhase:   record.PhaseInvalid,
			wantMessage: `releases/catalog.yaml:17: spec.versions[1].source: "../outside" leaves the repository`,
		},
		{
			name: "absolute source", specNS: "refuse-absolute", allowed: "refuse-absolute",
			edit: func(read func(string) string) map[string]string {
				return map[string]string{"releases/catalog.yaml": strings.Replace(read("releases/catalog.yaml"), "source: apps/catalog/overlays/v2", "source: /etc", 1)}
			},
			wantPhase:   record.PhaseInvalid,
			wantMessage: `releases/catalog.yaml:17: spec.versions[1].source: "/etc" is absolute; give a path relative to the repository root`,
		},
		{
			name: "remote base in the candidate's kustomization", specNS: "refuse-remote", allowed: "refuse-remote",
			edit: func(read func(string) string) map[string]string {
				k := "apps/catalog/overlays/v2/kustomization.yaml"
				return map[string]string{k: strings.Replace(read(k), "  - ../../base\n", "  - ../../base\n  - https://github.com/evil/repo//manifests\n", 1)}
			},
			wantPhase:   record.PhaseInvalid,
			wantMessage: `apps/catalog/overlays/v2/kustomization.yaml: resource "https://github.com/evil/repo//manifests" is a remote base; Sluice renders only from the repository`,
			wantEvent:   "Invalid",
		},
	}
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())
	dyn := dynamic.NewForConfigOrDie(env.RESTConfig())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			for _, ns := range []string{tc.specNS, tc.allowed} {
				if _, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
					if err := env.CreateNamespace(ctx, ns); err != nil {
						t.Fatal(err)
					}
				}
			}
			r := newRemote(t, func(read func(string) string) map[string]string {
				files := tc.edit(read)
				spec, ok := files["releases/catalog.yaml"]
				if !ok {
					spec = read("releases/catalog.yaml")
				}
				files["releases/catalog.yaml"] = strings.Replace(spec, "namespace: istioinaction", "namespace: "+tc.specNS, 1)
				return files
			})
			log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
			repo, err := gitsync.Open(ctx, gitsync.Config{URL: "file://" + r.bare, Author: gitsync.Signature{Name: "Sluice", Email: "sluice@example.com"}}, log)
			if err != nil {
				t.Fatal(err)
			}
			defer repo.Close()
			applier, err := cluster.New(env.RESTConfig(), cluster.Options{})
			if err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			events := observe.NewEvents(dynamic.NewForConfigOrDie(env.RESTConfig()), "test", log)
			rc, err := reconciler.New(reconciler.Config{
				Repo: repo, Cluster: applier, AllowedNamespaces: []string{tc.allowed},
				Observer: reconciler.Observers{rec, events}, Log: log,
			})
			if err != nil {
				t.Fatal(err)
			}
			// A failed apply would be an error; a refused release is not.
			if err := rc.ReconcileAll(ctx); err != nil {
				t.Fatal(err)
			}

			data := git(t, r.bare, "show", "main:"+record.StatusPath(record.DefaultStatusDir, tc.specNS, "catalog"))
			st, err := record.ParseStatus([]byte(data))
			if err != nil {
				t.Fatal(err)
			}
			if st.Phase != tc.wantPhase {
				t.Fatalf("phase %s, want %s (message %q)", st.Phase, tc.wantPhase, st.Message)
			}
			if !strings.Contains(st.Message, tc.wantMessage) {
				t.Errorf("message %q, want it to contain %q", st.Message, tc.wantMessage)
			}
			subjects := git(t, r.bare, "log", "--format=%s", "main")
			if tc.wantPhase == record.PhaseInvalid && !strings.HasPrefix(subjects, "catalog: invalid release spec, skipped\n") {
				t.Errorf("last commit is not the Invalid record:\n%s", subjects)
			}

			deps, err := dyn.Resource(deploymentsGVR).Namespace(tc.specNS).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			vss, err := dyn.Resource(vsGVR).Namespace(tc.specNS).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			applied := len(deps.Items) + len(vss.Items)
			switch {
			case tc.wantPhase == record.PhaseInvalid && applied > 0:
				t.Errorf("an Invalid release applied %d Deployments and VirtualServices", applied)
			case tc.wantPhase != record.PhaseInvalid && (len(deps.Items) != 1 || len(vss.Items) != 2):
				t.Errorf("the valid release applied %d Deployments and %d VirtualServices, want 1 and 2", len(deps.Items), len(vss.Items))
			}

			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.list) != 1 {
				t.Fatalf("%d transitions reported, want 1: %+v", len(rec.list), rec.list)
			}
			wantTarget := ""
			if tc.wantEvent != "" {
				wantTarget = "catalog-mesh"
			}
			if got := rec.list[0].VirtualService; got != wantTarget {
				t.Errorf("Events go to %q, want %q", got, wantTarget)
			}
			evs, err := kube.EventsV1().Events(tc.specNS).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var reasons []string
			for _, e := range evs.Items {
				if e.ReportingController == observe.ReportingController {
					reasons = append(reasons, e.Reason)
				}
			}
			if tc.wantEvent == "" && len(reasons) > 0 || tc.wantEvent != "" && (len(reasons) != 1 || reasons[0] != tc.wantEvent) {
				t.Errorf("Events %v in %s, want %q", reasons, tc.specNS, tc.wantEvent)
			}
		})
	}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
