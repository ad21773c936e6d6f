package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/record"
)

const person = "Jane Doe <jane@example.com>"

// act runs a person's command (sluice approve, abort, ...) against the
// stack's remote from the person's clone, then asks Sluice to sync.
func act(t *testing.T, s *stack.Stack, args ...string) string {
	t.Helper()
	if _, err := s.Git(t.Context(), "pull", "-q", "--rebase", "origin", "main"); err != nil {
		t.Fatal(err)
	}
	args = append(args, "--repo", s.Person, "--author", person)
	out, err := exec.CommandContext(t.Context(), sluiceBinary(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := s.TriggerSync(t.Context()); err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// authorOf is the author of the remote's commit with subject.
func authorOf(t *testing.T, s *stack.Stack, subject string) string {
	t.Helper()
	out, err := s.GitRemote(t.Context(), "log", "--format=%an <%ae>|%s", "main")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		if a, subj, _ := strings.Cut(l, "|"); subj == subject {
			return a
		}
	}
	t.Fatalf("no commit %q in:\n%s", subject, out)
	return ""
}

// TestActionsEndToEnd: a person pauses, resumes, approves, aborts, retries
// and promotes a release with Sluice's commands; each is their commit, and
// Sluice follows each within a sync.
func TestActionsEndToEnd(t *testing.T) {
	t.Parallel()
	s := startStack(t, stack.Options{Namespace: "e2e-act", Approvals: map[string]string{"canary": "manual"}})
	if err := s.StartSluice(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhaseSteady, time.Minute)
	pushCandidate(t, s, "v2")
	waitStatus(t, s, releaseTimeout, "waiting for approval of canary-10", func(st *record.Status) bool {
		return st.Phase == record.PhaseWaiting && strings.Contains(st.Message, "canary-10 waits for approval")
	})

	act(t, s, "pause", "catalog")
	paused := waitPhase(t, s, record.PhasePaused, time.Minute)
	if paused.Step != "dark-launch" || paused.Resume == nil || paused.Resume.Phase != record.PhaseWaiting {
		t.Errorf("paused record %+v", paused)
	}
	authorOf(t, s, "catalog: pause at dark-launch (by Jane Doe)")

	act(t, s, "resume", "catalog")
	waitPhase(t, s, record.PhaseWaiting, time.Minute)

	out := act(t, s, "approve", "catalog")
	if !strings.Contains(out, "catalog: approved dark-launch -> canary-10 (by Jane Doe)") {
		t.Errorf("approve said %q", out)
	}
	if a := authorOf(t, s, "catalog: approved dark-launch -> canary-10 (by Jane Doe)"); a != person {
		t.Errorf("approval authored by %q", a)
	}
	waitStatus(t, s, time.Minute, "step canary-10", func(st *record.Status) bool { return st.Step == "canary-10" })

	act(t, s, "abort", "catalog")
	rb := waitPhase(t, s, record.PhaseRolledBack, time.Minute)
	if !strings.Contains(rb.Message, "aborted: spec.abort names v2") {
		t.Errorf("rollback message %q", rb.Message)
	}

	act(t, s, "retry", "catalog")
	waitStatus(t, s, time.Minute, "v2 retried", func(st *record.Status) bool {
		return st.Phase == record.PhaseProgressing || st.Phase == record.PhaseWaiting
	})

	act(t, s, "promote", "catalog", "--skip-analysis")
	waitPhase(t, s, record.PhasePromoted, releaseTimeout)
	subjects := sluiceSubjects(t, s)
	for _, want := range []string{"catalog: paused at dark-launch", "catalog: resumed at dark-launch", "catalog: dark-launch -> 10% (",
		"catalog: rolled back at 10% (aborted: spec.abort names v2)", "catalog: retry v2 at deploy", "-> promote (analysis skipped: spec.skipAnalysis names v2)",
		"catalog: promoted v2, analysis skipped by spec.skipAnalysis (v1 retired)"} {
		found := false
		for _, subj := range subjects {
			if strings.Contains(subj, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("no Sluice commit %q", want)
		}
	}
	if t.Failed() {
		t.Logf("Sluice's commits:\n%s", strings.Join(subjects, "\n"))
	}
}

// TestBlockedRelease: a release whose apply the API server keeps refusing
// (a quota leaves no room for the candidate's Deployment) is recorded
// Blocked once, with the refusal, an Event and the phase metric; when the
// quota goes, it leaves Blocked by itself and goes on.
func TestBlockedRelease(t *testing.T) {
	t.Parallel()
	s := newStack(t, "e2e-blocked")
	ctx := t.Context()
	// The steady record comes before its apply: wait for v1 to run, so
	// the quota counts it.
	waitDeployments(t, s.Namespace, "catalog-v1")
	kc := kubernetes.NewForConfigOrDie(testEnv.Env(t).RESTConfig())
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "one-deployment", Namespace: s.Namespace},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"count/deployments.apps": resource.MustParse("1")}},
	}
	if _, err := kc.CoreV1().ResourceQuotas(s.Namespace).Create(ctx, quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Quota admission counts only once the quota controller has: wait
	// until it counts v1, so that the quota is full.
	err := stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "the quota full", func(ctx context.Context) (bool, error) {
		q, err := kc.CoreV1().ResourceQuotas(s.Namespace).Get(ctx, quota.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		used, ok := q.Status.Used["count/deployments.apps"]
		return ok && used.Value() == 1, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pushCandidate(t, s, "v2")
	blocked := waitPhase(t, s, record.PhaseBlocked, 2*time.Minute)
	if !strings.Contains(blocked.Message, "exceeded quota") || blocked.Resume == nil || blocked.Resume.Phase != record.PhaseProgressing {
		t.Errorf("blocked record %+v", blocked)
	}
	if r := blocked.Reason(); !strings.Contains(r, "exceeded quota") {
		t.Errorf("reason %q", r)
	}
	// The record reaches Git when its push returns; the metrics are
	// told right after, so they may lag the remote by a moment.
	var m string
	err = stack.WaitFor(ctx, 30*time.Second, 100*time.Millisecond, "the Blocked release in the metrics", func(context.Context) (bool, error) {
		m = metricsOf(t, s)
		return strings.Contains(m, `sluice_releases{phase="Blocked"} 1`), nil
	})
	if err != nil {
		t.Errorf("metrics lack the Blocked release:\n%s", grep(m, "sluice_releases{"))
	}
	waitEvent(t, s.Namespace, "Blocked")

	// More failed attempts record nothing more.
	n := strings.Count(strings.Join(sluiceSubjects(t, s), "\n"), ": blocked at ")
	attempts := strings.Count(s.SluiceLog(), "exceeded quota")
	err = stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "two more failed attempts", func(context.Context) (bool, error) {
		return strings.Count(s.SluiceLog(), "exceeded quota") >= attempts+2, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if again := strings.Count(strings.Join(sluiceSubjects(t, s), "\n"), ": blocked at "); again != n || n != 1 {
		t.Errorf("blocked recorded %d times, then %d", n, again)
	}

	if err := kc.CoreV1().ResourceQuotas(s.Namespace).Delete(ctx, quota.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, 3*time.Minute, "unblocked", func(st *record.Status) bool {
		return st.Phase == record.PhaseProgressing && st.Resume == nil
	})
	subjects := strings.Join(sluiceSubjects(t, s), "\n")
	if !strings.Contains(subjects, "catalog: unblocked; Progressing at deploy") {
		t.Errorf("no unblocked record in:\n%s", subjects)
	}
	waitPhase(t, s, record.PhasePromoted, releaseTimeout)
}

// TestDriftRevertedFromWatch: a hand edit of the VirtualService is put
// back from the watch event, long before the periodic re-apply (5m here),
// and reported with the field, the live and the desired value in the log,
// an Event and a counter.
func TestDriftRevertedFromWatch(t *testing.T) {
	t.Parallel()
	s := startStack(t, stack.Options{Namespace: "e2e-drift", SluiceArgs: []string{"--reapply-interval", "5m"}})
	if err := s.StartSluice(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhaseSteady, time.Minute)
	ctx := t.Context()
	dyn := dynamic.NewForConfigOrDie(testEnv.Env(t).RESTConfig())
	vs := dyn.Resource(vsGVR).Namespace(s.Namespace)
	var have []string
	waitRoutes := func(want string, timeout time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		err := stack.WaitFor(ctx, timeout, 50*time.Millisecond, "routes "+want, func(ctx context.Context) (bool, error) {
			r, err := readRoutes(ctx, dyn, s.Namespace, "catalog-mesh")
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			have = r
			return strings.Join(have, ",") == want, nil
		})
		if err != nil {
			t.Fatalf("%v; have %v", err, have)
		}
		return time.Since(start)
	}
	waitRoutes("v1=100", time.Minute)
	// A person sets the route's weight by hand, as kubectl edit would.
	patch := `[{"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 50}]`
	if _, err := vs.Patch(ctx, "catalog-mesh", types.JSONPatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	took := waitRoutes("v1=100", time.Minute)
	t.Logf("hand edit reverted in %s", took.Round(time.Millisecond))
	if took > 30*time.Second {
		t.Errorf("reverted after %s: not from the watch", took)
	}
	log := s.SluiceLog()
	if !strings.Contains(log, `field=spec.http[0].route[0].weight live=50 desired=100`) {
		t.Errorf("no drift log line with field, live and desired:\n%s", grep(log, "drift"))
	}
	ev := waitEvent(t, s.Namespace, "Drift")
	if !strings.Contains(ev, "spec.http[0].route[0].weight is 50, want 100") {
		t.Errorf("drift Event %q", ev)
	}
	if m := metricsOf(t, s); !strings.Contains(m, `sluice_drift_reverted_total{kind="VirtualService",namespace="e2e-drift",release="catalog"} 1`) {
		t.Errorf("metrics lack the drift counter:\n%s", grep(m, "sluice_drift"))
	}
}

// TestDeleteRelease: a spec that stops parsing holds its release Invalid,
// across a restart too, and removes nothing; a deleted spec removes what
// Sluice applied for the release (and nothing else, another release's
// objects included) and its status file, in a commit that says so; with
// sluice.dev/on-delete: orphan the objects stay.
func TestDeleteRelease(t *testing.T) {
	t.Parallel()
	s := newStack(t, "e2e-delete")
	ctx := t.Context()
	kc := kubernetes.NewForConfigOrDie(testEnv.Env(t).RESTConfig())
	waitDeployments(t, s.Namespace, "catalog-v1")
	// Another release's object, in the same namespace.
	other := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other-settings", Namespace: s.Namespace, Labels: map[string]string{
		"app.kubernetes.io/managed-by": "sluice", "sluice.dev/release": "other", "sluice.dev/release-namespace": s.Namespace}}}
	if _, err := kc.CoreV1().ConfigMaps(s.Namespace).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// A YAML syntax error: Invalid, counted, nothing removed.
	if _, err := s.EditAndPush(ctx, "break the spec", func(read func(string) string) map[string]string {
		return map[string]string{stack.ReleaseFile: read(stack.ReleaseFile) + "\n  : [unclosed\n"}
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.TriggerSync(ctx); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhaseInvalid, time.Minute)
	err := stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "the invalid file counted", func(context.Context) (bool, error) {
		return strings.Contains(metricsOf(t, s), "sluice_spec_files_invalid 1"), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.KillSluice(); err != nil {
		t.Fatal(err)
	}
	if err := s.StartSluice(ctx); err != nil {
		t.Fatal(err)
	}
	err = stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "a pass after the restart", func(context.Context) (bool, error) {
		return strings.Contains(s.SluiceLog(), "invalid_files=1"), nil
	})
	if err != nil {
		t.Fatalf("%v:\n%s", err, grep(s.SluiceLog(), "pass done"))
	}
	if st, err := status(ctx, s); err != nil || st.Phase != record.PhaseInvalid {
		t.Fatalf("after a restart with a broken spec: %+v, %v", st, err)
	}
	waitDeployments(t, s.Namespace, "catalog-v1")

	// Deleted: everything of the release goes, and its status file.
	deleteSpec(t, s)
	err = stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "the status file removed", func(ctx context.Context) (bool, error) {
		_, err := status(ctx, s)
		return err != nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitDeployments(t, s.Namespace)
	subjects := strings.Join(sluiceSubjects(t, s), "\n")
	if !strings.Contains(subjects, "catalog: release spec deleted from releases/catalog.yaml; removed ") {
		t.Errorf("no deletion record in:\n%s", subjects)
	}
	if _, err := dynamic.NewForConfigOrDie(testEnv.Env(t).RESTConfig()).Resource(vsGVR).Namespace(s.Namespace).Get(ctx, "catalog-mesh", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the VirtualService is still there: %v", err)
	}
	if _, err := kc.CoreV1().ConfigMaps(s.Namespace).Get(ctx, other.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("another release's object was touched: %v", err)
	}
}

// TestDeleteReleaseOrphan: with sluice.dev/on-delete: orphan, deleting the
// spec leaves the objects running and removes only the status file.
func TestDeleteReleaseOrphan(t *testing.T) {
	t.Parallel()
	s := newStack(t, "e2e-orphan")
	ctx := t.Context()
	if _, err := s.EditAndPush(ctx, "keep the catalog's objects if it goes", func(read func(string) string) map[string]string {
		spec := read(stack.ReleaseFile)
		return map[string]string{stack.ReleaseFile: strings.Replace(spec, "  namespace: "+s.Namespace+"\n",
			"  namespace: "+s.Namespace+"\n  annotations:\n    sluice.dev/on-delete: orphan\n", 1)}
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.TriggerSync(ctx); err != nil {
		t.Fatal(err)
	}
	kc := kubernetes.NewForConfigOrDie(testEnv.Env(t).RESTConfig())
	err := stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "the annotation on the Deployment", func(ctx context.Context) (bool, error) {
		d, err := kc.AppsV1().Deployments(s.Namespace).Get(ctx, "catalog-v1", metav1.GetOptions{})
		return err == nil && d.Annotations["sluice.dev/on-delete"] == "orphan", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	deleteSpec(t, s)
	err = stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "the status file removed", func(ctx context.Context) (bool, error) {
		_, err := status(ctx, s)
		return err != nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	subjects := strings.Join(sluiceSubjects(t, s), "\n")
	if !strings.Contains(subjects, "; removed 0 objects, left ") || !strings.Contains(subjects, "(sluice.dev/on-delete: orphan)") {
		t.Errorf("no orphaning record in:\n%s", subjects)
	}
	if got := deployments(t, s.Namespace); len(got) != 1 || got[0] != "catalog-v1" {
		t.Errorf("Deployments %v, want catalog-v1 left running", got)
	}
}

// deleteSpec has the person delete the release spec (git rm), retrying
// when Sluice pushed first, and Sluice sync.
func deleteSpec(t *testing.T, s *stack.Stack) {
	t.Helper()
	ctx := t.Context()
	for try := 0; ; try++ {
		for _, args := range [][]string{{"pull", "-q", "--rebase", "origin", "main"}, {"rm", "-q", stack.ReleaseFile}, {"commit", "-qm", "delete the catalog release"}} {
			if _, err := s.Git(ctx, args...); err != nil {
				t.Fatal(err)
			}
		}
		_, err := s.Git(ctx, "push", "-q", "origin", "main")
		if err == nil {
			break
		}
		if try >= 20 {
			t.Fatal(err)
		}
		if _, err := s.Git(ctx, "reset", "-q", "--hard", "HEAD~1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.TriggerSync(ctx); err != nil {
		t.Fatal(err)
	}
}

func metricsOf(t *testing.T, s *stack.Stack) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.AdminURL(stack.DefaultReplica)+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitEvent waits for an Event with reason in namespace and returns its note.
func waitEvent(t *testing.T, namespace, reason string) string {
	t.Helper()
	dyn := dynamic.NewForConfigOrDie(testEnv.Env(t).RESTConfig())
	eventsGVR := schema.GroupVersionResource{Group: "events.k8s.io", Version: "v1", Resource: "events"}
	var note string
	err := stack.WaitFor(t.Context(), time.Minute, 250*time.Millisecond, "an Event "+reason, func(ctx context.Context) (bool, error) {
		list, err := dyn.Resource(eventsGVR).Namespace(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, it := range list.Items {
			if r, _, _ := unstructured.NestedString(it.Object, "reason"); r == reason {
				note, _, _ = unstructured.NestedString(it.Object, "note")
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return note
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return fmt.Sprint(strings.Join(out, "\n"))
}
