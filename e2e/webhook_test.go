package e2e

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice.dev/sluice/internal/meshsim"
	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/webhook"
)

// signingKey signs the webhook gates' requests in these tests.
const signingKey = "e2e-gate-signing-key-3f9c1d"

// hookReceiver is a webhook gate's receiver: it checks each request's
// signature, keeps its payload and answers with code.
type hookReceiver struct {
	t    testing.TB
	srv  *httptest.Server
	code atomic.Int32
	mu   sync.Mutex
	// on, when set, is called with each payload before the answer.
	on       func(webhook.Payload)
	payloads []webhook.Payload
}

func newHookReceiver(t testing.TB, code int) *hookReceiver {
	t.Helper()
	h := &hookReceiver{t: t}
	h.code.Store(int32(code))
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if !webhook.Verify([]byte(signingKey), body, r.Header.Get(webhook.SignatureHeader)) {
		h.t.Errorf("a webhook request without a valid signature: %q", r.Header.Get(webhook.SignatureHeader))
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p webhook.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		h.t.Errorf("webhook payload %s: %v", body, err)
	}
	if r.Header.Get(webhook.TypeHeader) != p.Type {
		h.t.Errorf("type header %q, payload type %q", r.Header.Get(webhook.TypeHeader), p.Type)
	}
	h.mu.Lock()
	h.payloads = append(h.payloads, p)
	on := h.on
	h.mu.Unlock()
	if on != nil {
		on(p)
	}
	w.WriteHeader(int(h.code.Load()))
}

func (h *hookReceiver) setOn(f func(webhook.Payload)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.on = f
}

func (h *hookReceiver) got() []webhook.Payload {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.payloads)
}

// hookStack starts a stack whose sluice signs webhook gates with
// signingKey, and has the person add webhooks (YAML list items, indented
// for spec.analysis.webhooks) to the release spec.
func hookStack(t *testing.T, namespace string, threshold int, webhooks string) *stack.Stack {
	t.Helper()
	key := filepath.Join(t.TempDir(), "gate-webhook-key")
	if err := os.WriteFile(key, []byte(signingKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, stack.Options{Namespace: namespace, Threshold: threshold, SluiceArgs: []string{"--gate-webhook-secret-file", key}})
	if _, err := s.EditAndPush(t.Context(), "catalog: webhook gates", func(read func(string) string) map[string]string {
		spec := read(stack.ReleaseFile)
		return map[string]string{stack.ReleaseFile: strings.Replace(spec, "  analysis:\n", "  analysis:\n    webhooks:\n"+webhooks, 1)}
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.StartSluice(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhaseSteady, time.Minute)
	return s
}

// served is how many requests version answered, as the mesh counts them.
func served(t testing.TB, s *stack.Stack, version string) float64 {
	t.Helper()
	n, err := meshsim.CountRequests(s.Mesh.Gatherer(), "destination_version")
	if err != nil {
		t.Fatal(err)
	}
	return n[version]
}

// noSecretAnywhere checks that the signing key is in no log and no commit.
func noSecretAnywhere(t *testing.T, s *stack.Stack) {
	t.Helper()
	if strings.Contains(s.Logs(), signingKey) {
		t.Error("the signing key is in sluice's log")
	}
	out, err := s.GitRemote(t.Context(), "log", "-p", "main")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, signingKey) {
		t.Error("the signing key is in Git")
	}
}

// TestWebhookPreStepFailsBeforeTraffic: the smoke test that runs before the
// dark launch answers 500; Sluice retries it once, then rolls the release
// back at once: the candidate never served a request.
func TestWebhookPreStepFailsBeforeTraffic(t *testing.T) {
	t.Parallel()
	smoke := newHookReceiver(t, http.StatusInternalServerError)
	s := hookStack(t, "e2e-hook-prestep", 0,
		"      - name: smoke-test\n        type: pre-step\n        url: "+smoke.srv.URL+"/smoke\n        retries: 1\n        metadata: {suite: catalog-smoke}\n")
	pushCandidate(t, s, "v2")
	final := waitPhase(t, s, record.PhaseRolledBack, releaseTimeout)

	subjects := transitions(sluiceSubjects(t, s))
	want := []string{
		"catalog: start v1 -> v2 at deploy",
		"catalog: rolled back at dark-launch (webhook smoke-test 500, pre-step failed, dark-launch took no traffic)",
	}
	if !slices.Equal(subjects, want) {
		t.Fatalf("Sluice's commits:\n%s\nwant:\n%s", strings.Join(subjects, "\n"), strings.Join(want, "\n"))
	}
	if len(final.Gates) != 1 || final.Gates[0].String() != "webhook smoke-test 500" || final.Gates[0].Webhook != "pre-step" || final.Gates[0].Passed {
		t.Errorf("status gates %+v, want the smoke test's 500", final.Gates)
	}
	if !strings.Contains(final.Reason(), "webhook smoke-test 500") {
		t.Errorf("status reason %q does not name the webhook", final.Reason())
	}
	got := smoke.got()
	if len(got) != 2 {
		t.Fatalf("the smoke test was called %d times, want 2 (one retry)", len(got))
	}
	p := got[0]
	if p.Type != "pre-step" || p.Webhook != "smoke-test" || p.Release != s.Namespace+"/catalog" || p.Namespace != s.Namespace || p.Name != "catalog" ||
		p.Step != "dark-launch" || p.StepIndex != 1 || p.Stable != "v1" || p.Candidate != "v2" || p.Revision != final.Revision ||
		p.Weights != (webhook.Weights{Stable: 0, Candidate: 100}) || p.Service != "catalog" || p.Workload != "catalog-v2" ||
		p.Metadata["suite"] != "catalog-smoke" || p.Interval != interval.String() {
		t.Errorf("payload %+v", p)
	}
	if n := served(t, s, "v2"); n != 0 {
		t.Errorf("v2 served %g requests; the smoke test failed before it took any", n)
	}
	waitDeployments(t, s.Namespace, "catalog-v1")
	noSecretAnywhere(t, s)
}

// TestWebhookCheckFailsAfterThreshold: a check webhook runs at every
// analysis interval beside the metric gates; once it answers 503 each
// check fails, and the release rolls back at the threshold.
func TestWebhookCheckFailsAfterThreshold(t *testing.T) {
	t.Parallel()
	const threshold = 2
	health := newHookReceiver(t, http.StatusOK)
	s := hookStack(t, "e2e-hook-check", threshold,
		"      - name: health\n        type: check\n        url: "+health.srv.URL+"/health\n        retries: 0\n")
	pushCandidate(t, s, "v2")
	st := waitStatus(t, s, releaseTimeout, "step canary-10", func(st *record.Status) bool { return st.Step == "canary-10" })
	if st.FailedChecks != 0 {
		t.Fatalf("failed checks before the webhook fails: %+v", st)
	}
	health.code.Store(http.StatusServiceUnavailable)
	final := waitPhase(t, s, record.PhaseRolledBack, releaseTimeout)
	if final.FailedChecks != threshold {
		t.Errorf("rolled back after %d failed checks, want %d", final.FailedChecks, threshold)
	}
	subjects := transitions(sluiceSubjects(t, s))
	var failed []string
	for _, subj := range subjects {
		if strings.Contains(subj, ": check failed at ") {
			failed = append(failed, subj)
		}
	}
	if len(failed) != threshold-1 || !strings.Contains(failed[0], "webhook health 503, 1/2 checks failed") {
		t.Errorf("check-failed commits %q, want one naming the webhook", failed)
	}
	last := subjects[len(subjects)-1]
	if !strings.HasPrefix(last, "catalog: rolled back at ") || !strings.Contains(last, "webhook health 503, 2/2 checks failed") {
		t.Errorf("rollback commit %q does not name the webhook and the count", last)
	}
	// The advances before it show the webhook's passes beside the metrics.
	if i := slices.IndexFunc(subjects, func(s string) bool { return strings.HasPrefix(s, "catalog: dark-launch -> 10% (") }); i < 0 ||
		!strings.Contains(subjects[i], "success-rate ") || !strings.Contains(subjects[i], "webhook health 200") {
		t.Errorf("no advance to 10%% shows the webhook beside the metrics:\n%s", strings.Join(subjects, "\n"))
	}
	// Called at every check of every checked step, never for deploy.
	steps := map[string]int{}
	for _, p := range health.got() {
		if p.Type != "check" {
			t.Errorf("payload type %q", p.Type)
		}
		steps[p.Step]++
	}
	if steps["deploy"] != 0 || steps["dark-launch"] < 1 || steps["canary-10"] < 1 {
		t.Errorf("check calls by step %v", steps)
	}
	waitDeployments(t, s.Namespace, "catalog-v1")
	noSecretAnywhere(t, s)
}

// TestWebhookLoadFeedsQuietService: nobody calls the service, so its gates
// would have no data and the release would roll back; a load webhook's
// receiver drives traffic (the mesh simulator, as hey or vegeta would in a
// cluster) for a few intervals after each call, and the release is
// promoted.
func TestWebhookLoadFeedsQuietService(t *testing.T) {
	t.Parallel()
	load := newHookReceiver(t, http.StatusAccepted)
	s := hookStack(t, "e2e-hook-load", 0, "      - name: load\n        type: load\n        url: "+load.srv.URL+"/load\n")
	if err := s.Mesh.SetRate(0); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var (
		mu      sync.Mutex
		until   time.Time
		running bool
	)
	// Each call runs 50 requests/s until three intervals after the last.
	load.setOn(func(webhook.Payload) {
		mu.Lock()
		defer mu.Unlock()
		until = time.Now().Add(3 * interval)
		if running {
			return
		}
		running = true
		if err := s.Mesh.SetRate(50); err != nil {
			t.Error(err)
		}
		go func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-tick.C:
					mu.Lock()
					if now.After(until) {
						running = false
						_ = s.Mesh.SetRate(0)
						mu.Unlock()
						return
					}
					mu.Unlock()
				}
			}
		}()
	})
	if n := served(t, s, "v2"); n != 0 {
		t.Fatalf("v2 served %g requests before its release", n)
	}
	pushCandidate(t, s, "v2")
	final := waitPhase(t, s, record.PhasePromoted, releaseTimeout)
	if final.Stable != "v2" {
		t.Fatalf("final status %+v", final)
	}
	all := sluiceSubjects(t, s)
	checkGoodRelease(t, transitions(all), "v1", "v2")
	held := 0
	for _, subj := range all {
		if strings.HasPrefix(subj, "catalog: no data at ") {
			held++
		}
	}
	t.Logf("%d checks held without data (a series appearing as the load starts)", held)
	byStep := map[string]webhook.Payload{}
	for _, p := range load.got() {
		if p.Type != "load" || p.Webhook != "load" {
			t.Errorf("payload %+v", p)
		}
		byStep[p.Step] = p
	}
	for step, weight := range map[string]int32{"dark-launch": 100, "canary-10": 10, "canary-20": 20, "canary-30": 30, "canary-40": 40, "canary-50": 50} {
		p, ok := byStep[step]
		if !ok {
			t.Errorf("no load call at %s (calls at %v)", step, slices.Sorted(maps.Keys(byStep)))
			continue
		}
		if p.Weights.Candidate != weight || p.Weights.Stable != 100-weight || p.Interval != interval.String() {
			t.Errorf("load call at %s: weights %+v, interval %s", step, p.Weights, p.Interval)
		}
	}
	if _, ok := byStep["deploy"]; ok {
		t.Error("a load call at deploy, which has no gates")
	}
	if n := served(t, s, "v2"); n == 0 {
		t.Error("v2 served no request")
	}
	noSecretAnywhere(t, s)
}

// TestExampleReceiver runs the README's receiver (examples/webhook-receiver)
// against sluice: it checks Sluice's signatures and runs a shell command
// per webhook with the payload in its environment. The smoke test passes
// before each step; the check fails at 30%, so the release rolls back
// there at the threshold.
func TestExampleReceiver(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	bin := filepath.Join(dir, "webhook-receiver")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../examples/webhook-receiver").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte(signingKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out strings.Builder
	cmd := exec.CommandContext(ctx, bin, "--listen", addr, "--secret-file", key,
		"--hook", `smoke-test=test "$SLUICE_CANDIDATE" = v2 && test "$SLUICE_META_SUITE" = catalog`,
		"--hook", `health=test "$SLUICE_STEP" != canary-30 && test "$SLUICE_CANDIDATE_WEIGHT" -gt 0`)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("webhook-receiver:\n%s", out.String())
		}
	})
	url := "http://" + addr + "/"
	// Up once it refuses an unsigned request.
	err = stack.WaitFor(ctx, 30*time.Second, 100*time.Millisecond, "the receiver", func(ctx context.Context) (bool, error) {
		resp, err := http.Post(url, "application/json", strings.NewReader("{}"))
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusUnauthorized, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s := hookStack(t, "e2e-hook-example", 2,
		"      - {name: smoke-test, type: pre-step, url: \""+url+"\", metadata: {suite: catalog}}\n"+
			"      - {name: health, type: check, url: \""+url+"\", retries: 0}\n")
	pushCandidate(t, s, "v2")
	final := waitPhase(t, s, record.PhaseRolledBack, releaseTimeout)
	subjects := transitions(sluiceSubjects(t, s))
	want := []string{
		"catalog: start v1 -> v2 at deploy",
		"catalog: deploy -> dark-launch (webhook smoke-test 200)",
		"catalog: dark-launch -> 10% (",
		"catalog: 10% -> 20% (",
		"catalog: 20% -> 30% (",
		"catalog: check failed at 30% (webhook health 500, 1/2 checks failed)",
		"catalog: rolled back at 30% (webhook health 500, 2/2 checks failed)",
	}
	if len(subjects) != len(want) {
		t.Fatalf("Sluice's commits:\n%s\nwant:\n%s", strings.Join(subjects, "\n"), strings.Join(want, "\n"))
	}
	for i, w := range want {
		if !strings.HasPrefix(subjects[i], w) {
			t.Errorf("commit %d is %q, want it to start with %q", i, subjects[i], w)
		}
		if i >= 2 && i <= 4 && (!strings.Contains(subjects[i], "webhook health 200") || !strings.Contains(subjects[i], "webhook smoke-test 200")) {
			t.Errorf("commit %q does not show both webhooks' 200", subjects[i])
		}
	}
	if final.FailedChecks != 2 {
		t.Errorf("rolled back after %d failed checks, want 2", final.FailedChecks)
	}
}
