// Package e2e runs whole releases on real parts: the local test cluster
// (kube-apiserver, controller-manager, scheduler, kwok), a real Prometheus
// scraping the mesh simulator, a Git remote over smart HTTP with a person
// pushing to it, and the sluice binary.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/internal/testenv"
	"sluice.dev/sluice/record"
)

// testEnv is the cluster and Prometheus the stacks run on, started by the
// first test.
var testEnv = testenv.NewShared(testenv.Options{Prometheus: true})

func TestMain(m *testing.M) { os.Exit(testEnv.Main(m)) }

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// sluiceBinary builds cmd/sluice once for the package.
func sluiceBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "sluice")
		out, err := exec.Command("go", "build", "-o", binary, "../cmd/sluice").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

const (
	interval = 2 * time.Second
	window   = 10 * time.Second
	// drain is the tests' drain delay, short so that a retired version
	// is gone soon after the promotion or the rollback.
	drain = 2 * time.Second
	// A release of the example takes about 8 steps of a few intervals.
	releaseTimeout = 4 * time.Minute
)

func newStack(t testing.TB, namespace string) *stack.Stack {
	return newStackThreshold(t, namespace, 0)
}

// newStackThreshold starts a stack whose release rolls back after
// threshold failed checks (0: the example's 5).
func newStackThreshold(t testing.TB, namespace string, threshold int) *stack.Stack {
	t.Helper()
	s := startStack(t, stack.Options{Namespace: namespace, Threshold: threshold})
	if err := s.StartSluice(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhaseSteady, time.Minute)
	return s
}

// startStack starts a stack with the tests' intervals, without sluice; the
// stack's Git log and every replica's log are printed when the test fails.
func startStack(t testing.TB, opts stack.Options) *stack.Stack {
	t.Helper()
	env := testEnv.Env(t)
	opts.Env, opts.Sluice = env, sluiceBinary(t)
	if opts.Example == "" {
		opts.Example = "../examples/catalog"
	}
	opts.Interval, opts.Window = interval, window
	if opts.CohortShare == 0 {
		opts.CohortShare = 0.2
	} else if opts.CohortShare < 0 {
		opts.CohortShare = 0 // no request carries the cohort header
	}
	if opts.Drain == nil {
		d := drain
		opts.Drain = &d
	}
	s, err := stack.Start(t.Context(), t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := s.Log(context.Background())
			t.Logf("git log of the remote:\n%s", strings.Join(log, "\n"))
			t.Logf("sluice logs:\n%s", tail(s.Logs(), 300))
			env.MarkFailed()
		}
		s.Close()
	})
	return s
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// status reads the release's status file from the remote's main branch.
func status(ctx context.Context, s *stack.Stack) (*record.Status, error) {
	data, err := s.ReadRemote(ctx, record.StatusPath(record.DefaultStatusDir, s.Namespace, "catalog"))
	if err != nil {
		return nil, err
	}
	return record.ParseStatus([]byte(data))
}

func waitStatus(t testing.TB, s *stack.Stack, timeout time.Duration, what string, cond func(*record.Status) bool) *record.Status {
	t.Helper()
	var last *record.Status
	err := stack.WaitFor(t.Context(), timeout, 250*time.Millisecond, what, func(ctx context.Context) (bool, error) {
		st, err := status(ctx, s)
		if err != nil {
			return false, err
		}
		last = st
		return cond(st), nil
	})
	if err != nil {
		t.Fatalf("%v; last status: %+v", err, last)
	}
	return last
}

func waitPhase(t testing.TB, s *stack.Stack, phase record.Phase, timeout time.Duration) *record.Status {
	t.Helper()
	return waitStatus(t, s, timeout, "phase "+string(phase), func(st *record.Status) bool { return st.Phase == phase })
}

func pushCandidate(t testing.TB, s *stack.Stack, version string) {
	t.Helper()
	if _, err := s.PushCandidate(t.Context(), version); err != nil {
		t.Fatal(err)
	}
	if err := s.TriggerSync(t.Context()); err != nil {
		t.Fatal(err)
	}
}

var (
	vsGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
)

// routes reads a VirtualService's first-route destinations as "subset=weight".
func routes(t testing.TB, ns, name string) []string {
	t.Helper()
	out, err := readRoutes(t.Context(), dynamic.NewForConfigOrDie(testEnv.Env(t).RESTConfig()), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readRoutes is routes without the test: its error says why it could not
// read them (a VirtualService not there yet, say).
func readRoutes(ctx context.Context, dyn dynamic.Interface, ns, name string) ([]string, error) {
	vs, err := dyn.Resource(vsGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	httpRoutes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	for _, hr := range httpRoutes {
		dests, _, _ := unstructured.NestedSlice(hr.(map[string]any), "route")
		for _, d := range dests {
			subset, _, _ := unstructured.NestedString(d.(map[string]any), "destination", "subset")
			w, _, _ := unstructured.NestedInt64(d.(map[string]any), "weight")
			out = append(out, fmt.Sprintf("%s=%d", subset, w))
		}
	}
	return out, nil
}

func deployments(t testing.TB, ns string) []string {
	t.Helper()
	env := testEnv.Env(t)
	list, err := kubernetes.NewForConfigOrDie(env.RESTConfig()).AppsV1().Deployments(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range list.Items {
		if d.DeletionTimestamp == nil {
			names = append(names, d.Name)
		}
	}
	slices.Sort(names)
	return names
}

func waitDeployments(t testing.TB, ns string, want ...string) {
	t.Helper()
	err := stack.WaitFor(t.Context(), time.Minute, 250*time.Millisecond, fmt.Sprintf("Deployments %v", want), func(context.Context) (bool, error) {
		return slices.Equal(deployments(t, ns), want), nil
	})
	if err != nil {
		t.Fatalf("%v; have %v", err, deployments(t, ns))
	}
}

// sluiceSubjects lists the subjects of Sluice's commits, oldest first.
func sluiceSubjects(t testing.TB, s *stack.Stack) []string {
	t.Helper()
	log, err := s.Log(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range log {
		_, rest, _ := strings.Cut(l, " ")
		if subj, ok := strings.CutPrefix(rest, "Sluice: "); ok {
			out = append(out, subj)
		}
	}
	return out
}

// transitions keeps the subjects that move the release's traffic: not
// the initial steady record, the checks held for want of data, nor the
// retirement of a drained version (TestDrain* look at those).
func transitions(subjects []string) []string {
	var out []string
	for _, s := range subjects {
		if strings.HasPrefix(s, "catalog: steady at") || strings.HasPrefix(s, "catalog: no data at ") || strings.Contains(s, " retired after draining") {
			continue
		}
		out = append(out, s)
	}
	return out
}

// checkGoodRelease asserts the commit sequence of a release from deploy
// to promotion, one commit per transition.
func checkGoodRelease(t *testing.T, subjects []string, from, to string) {
	t.Helper()
	want := []string{
		"catalog: start " + from + " -> " + to + " at deploy",
		"catalog: deploy -> dark-launch (available)",
		"catalog: dark-launch -> 10% (",
		"catalog: 10% -> 20% (",
		"catalog: 20% -> 30% (",
		"catalog: 30% -> 40% (",
		"catalog: 40% -> 50% (",
		"catalog: 50% -> promote (",
		"catalog: promoted " + to + " (" + from + " retired)",
	}
	if len(subjects) != len(want) {
		t.Fatalf("Sluice's commits:\n%s\nwant %d transitions:\n%s", strings.Join(subjects, "\n"), len(want), strings.Join(want, "\n"))
	}
	for i, w := range want {
		if !strings.HasPrefix(subjects[i], w) {
			t.Errorf("commit %d is %q, want it to start with %q", i, subjects[i], w)
		}
	}
}

// TestPrometheusStoppedMidStep (d): while Prometheus is gone no step
// advances and no check counts as failed; when it is back the release
// goes on to promotion. It runs alone: the other tests share Prometheus.
func TestPrometheusStoppedMidStep(t *testing.T) {
	env := testEnv.Env(t)
	s := newStack(t, "e2e-prometheus")
	pushCandidate(t, s, "v2")
	waitStatus(t, s, releaseTimeout, "step canary-10", func(st *record.Status) bool { return st.Step == "canary-10" })
	ctx := t.Context()
	const failed = "Prometheus failed; holding the step"
	if err := env.StopPrometheus(ctx); err != nil {
		t.Fatal(err)
	}
	// Compare with the record once Prometheus is gone: a check may have
	// passed just before.
	before, err := status(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	seen := strings.Count(s.SluiceLog(), failed)
	// Several intervals pass in which Sluice sees Prometheus fail.
	err = stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "three failed gate evaluations", func(context.Context) (bool, error) {
		return strings.Count(s.SluiceLog(), failed) >= seen+3, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	held, err := status(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if held.Step != before.Step || held.Phase != record.PhaseProgressing || held.FailedChecks != before.FailedChecks {
		t.Fatalf("without Prometheus the release moved:\nbefore %+v\nafter  %+v", before, held)
	}
	if err := env.StartPrometheus(ctx); err != nil {
		t.Fatal(err)
	}
	final := waitPhase(t, s, record.PhasePromoted, releaseTimeout)
	if final.FailedChecks >= 5 {
		t.Errorf("failed checks %d reached the threshold", final.FailedChecks)
	}
	waitDeployments(t, s.Namespace, "catalog-v2")
}

// TestGoodReleaseWithPersonPushing (a) and (f): a good v2 walks every step
// to promotion, one commit per transition, while a person keeps pushing
// commits to the same branch; none of theirs is lost.
func TestGoodReleaseWithPersonPushing(t *testing.T) {
	t.Parallel()
	s := newStack(t, "e2e-good")
	ctx := t.Context()
	pushCandidate(t, s, "v2")

	var (
		mu     sync.Mutex
		pushed []string
		stop   = make(chan struct{})
		done   = make(chan error, 1)
	)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			case <-time.After(300 * time.Millisecond):
			}
			h, err := s.EditAndPush(ctx, fmt.Sprintf("notes %d", i), func(func(string) string) map[string]string {
				return map[string]string{"notes/log.txt": fmt.Sprintf("note %d\n", i)}
			})
			if err != nil {
				done <- err
				return
			}
			mu.Lock()
			pushed = append(pushed, strings.TrimSpace(h))
			mu.Unlock()
		}
	}()
	final := waitPhase(t, s, record.PhasePromoted, releaseTimeout)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if final.Stable != "v2" || final.Weight != 100 {
		t.Errorf("final status %+v", final)
	}
	checkGoodRelease(t, transitions(sluiceSubjects(t, s)), "v1", "v2")

	spec, err := s.ReadRemote(ctx, stack.ReleaseFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(spec, "\n  stable: v2\n") || strings.Contains(spec, "candidate:") {
		t.Errorf("the spec in Git does not name v2 stable alone:\n%s", spec)
	}
	waitDeployments(t, s.Namespace, "catalog-v2")
	err = stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "mesh route all on v2", func(context.Context) (bool, error) {
		return slices.Equal(routes(t, s.Namespace, "catalog-mesh"), []string{"v2=100"}), nil
	})
	if err != nil {
		t.Fatalf("%v: %v", err, routes(t, s.Namespace, "catalog-mesh"))
	}

	// Every commit the person pushed is in the history, unchanged.
	mu.Lock()
	defer mu.Unlock()
	if len(pushed) < 5 {
		t.Fatalf("the person pushed only %d commits", len(pushed))
	}
	for _, h := range pushed {
		if _, err := s.Git(ctx, "fetch", "-q", "origin"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Git(ctx, "merge-base", "--is-ancestor", h, "origin/main"); err != nil {
			t.Errorf("the person's commit %s is not in main: %v", h, err)
		}
	}
}

// TestBadReleaseRolledBack (b): a v2 failing 10% of requests is rolled
// back after threshold failed checks; the commit names the gate and value.
func TestBadReleaseRolledBack(t *testing.T) {
	t.Parallel()
	s := newStack(t, "e2e-bad")
	if err := s.Mesh.SetVersion("v2", 0.10, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	pushCandidate(t, s, "v2")
	final := waitPhase(t, s, record.PhaseRolledBack, releaseTimeout)
	if final.FailedChecks != 5 {
		t.Errorf("rolled back after %d failed checks, want 5", final.FailedChecks)
	}
	subjects := transitions(sluiceSubjects(t, s))
	last := subjects[len(subjects)-1]
	if !strings.HasPrefix(last, "catalog: rolled back at ") || !strings.Contains(last, "success-rate ") || !strings.Contains(last, " < 99") || !strings.Contains(last, "5/5 checks failed") {
		t.Errorf("rollback commit %q does not name the gate, its value and the count", last)
	}
	failedChecks := 0
	for _, subj := range subjects {
		if strings.Contains(subj, ": check failed at ") {
			failedChecks++
		}
	}
	if failedChecks != 4 {
		t.Errorf("%d check-failed commits before the rollback, want 4:\n%s", failedChecks, strings.Join(subjects, "\n"))
	}
	waitDeployments(t, s.Namespace, "catalog-v1")
	err := stack.WaitFor(t.Context(), time.Minute, 250*time.Millisecond, "mesh route all on v1", func(context.Context) (bool, error) {
		return slices.Equal(routes(t, s.Namespace, "catalog-mesh"), []string{"v1=100"}) &&
			slices.Equal(routes(t, s.Namespace, "catalog-ingress"), []string{"v1=100"}), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestKilledMidRelease (c): sluice is killed with SIGKILL in the middle of
// a release; restarted, it resumes at the recorded step: no step is
// repeated or skipped.
func TestKilledMidRelease(t *testing.T) {
	t.Parallel()
	s := newStack(t, "e2e-kill")
	pushCandidate(t, s, "v2")
	waitStatus(t, s, releaseTimeout, "step canary-20", func(st *record.Status) bool { return st.Step == "canary-20" })
	if err := s.KillSluice(); err != nil {
		t.Fatal(err)
	}
	if err := s.StartSluice(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhasePromoted, releaseTimeout)
	checkGoodRelease(t, transitions(sluiceSubjects(t, s)), "v1", "v2")
	waitDeployments(t, s.Namespace, "catalog-v2")
}

// TestNewCandidateAbandonsTheOld (e): v3 pushed while v2 is at 30%: v2 is
// abandoned and v3 starts from deploy, then goes all the way.
func TestNewCandidateAbandonsTheOld(t *testing.T) {
	t.Parallel()
	s := newStack(t, "e2e-v3")
	pushCandidate(t, s, "v2")
	waitStatus(t, s, releaseTimeout, "step canary-30", func(st *record.Status) bool { return st.Step == "canary-30" })
	// A step takes just its interval (2s here), less than the person's two
	// pushes may: Sluice is stopped while they push, so v3 is seen with v2
	// at canary-30 whatever the timing, and the restarted one abandons it.
	if err := s.KillSluice(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddVersion(t.Context(), "v3"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PushCandidate(t.Context(), "v3"); err != nil {
		t.Fatal(err)
	}
	if err := s.StartSluice(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := waitStatus(t, s, releaseTimeout, "candidate v3", func(st *record.Status) bool { return st.Candidate == "v3" })
	if st.Step != "deploy" && st.StepIndex > 1 {
		t.Errorf("v3 did not start from deploy: %+v", st)
	}
	final := waitPhase(t, s, record.PhasePromoted, releaseTimeout)
	if final.Stable != "v3" {
		t.Errorf("promoted %q, want v3", final.Stable)
	}
	subjects := transitions(sluiceSubjects(t, s))
	abandoned := slices.IndexFunc(subjects, func(s string) bool {
		return strings.HasPrefix(s, "catalog: v2 abandoned at canary-30; start v3 at deploy")
	})
	if abandoned < 0 {
		t.Fatalf("no commit abandons v2 at canary-30 for v3:\n%s", strings.Join(subjects, "\n"))
	}
	checkGoodRelease(t, append([]string{"catalog: start v1 -> v3 at deploy"}, subjects[abandoned+1:]...), "v1", "v3")
	waitDeployments(t, s.Namespace, "catalog-v3")
}
