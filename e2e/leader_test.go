package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/record"
)

// Short Lease settings keep the test quick; Sluice's defaults are 15s/10s/2s.
var testLeaderElection = stack.LeaderElection{LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second}

// get fetches url and returns its status and body.
func get(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func waitLeader(t testing.TB, s *stack.Stack, want string) {
	t.Helper()
	err := stack.WaitFor(t.Context(), time.Minute, 50*time.Millisecond, want+" to lead", func(ctx context.Context) (bool, error) {
		l, err := s.Leader(ctx)
		return l == want, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLeaderKilledMidRelease: two sluice replicas elect a leader with a
// Lease; only the leader reconciles. The standby is ready, passes a sync
// request on to the leader, and applies and commits nothing. The leader is
// killed with SIGKILL in the middle of a release: the standby takes over
// once the Lease expires and finishes the release from Git's record, with
// every transition committed once, in plan order.
func TestLeaderKilledMidRelease(t *testing.T) {
	t.Parallel()
	le := testLeaderElection
	// Git is fetched only on request: the candidate reaches the leader
	// only through the standby's relay.
	s := startStack(t, stack.Options{Namespace: "e2e-leader", LeaderElection: &le, SluiceArgs: []string{"--interval", "1h"}})
	ctx := t.Context()
	if err := s.StartReplica(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, s, "a")
	if err := s.StartReplica(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhaseSteady, time.Minute)
	// The standby is ready once it has synced Git.
	err := stack.WaitFor(ctx, time.Minute, 100*time.Millisecond, "b ready", func(ctx context.Context) (bool, error) {
		code, _, err := get(ctx, s.AdminURL("b")+"/readyz")
		return code == http.StatusOK, err
	})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := s.PushCandidate(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	if err := s.TriggerSyncOn(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, releaseTimeout, "step canary-20", func(st *record.Status) bool { return st.Step == "canary-20" })

	if err := s.KillReplica("a"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitLeader(t, s, "b")
	t.Logf("b took over %s after a was killed (lease duration %s, retry period %s)", time.Since(killed).Round(10*time.Millisecond), le.LeaseDuration, le.RetryPeriod)

	waitPhase(t, s, record.PhasePromoted, releaseTimeout)
	checkGoodRelease(t, transitions(sluiceSubjects(t, s)), "v1", "v2")
	waitDeployments(t, s.Namespace, "catalog-v2")

	// Before it led, b wrote nothing anywhere.
	logB := s.ReplicaLog("b")
	before, _, ok := strings.Cut(logB, "leading: this replica reconciles")
	if !ok {
		t.Fatalf("b's log never says it leads:\n%s", logB)
	}
	for _, write := range []string{"msg=applied", `msg="git commit pushed"`, `msg="reconciling releases"`} {
		if strings.Contains(before, write) {
			t.Errorf("b's log has %s before it led:\n%s", write, before)
		}
	}
	if !strings.Contains(before, "standing by") {
		t.Errorf("b's log does not say it stood by:\n%s", before)
	}
	if !strings.Contains(s.ReplicaLog("a"), "leading: this replica reconciles") {
		t.Errorf("a's log never says it led")
	}

	// The promotion's commit is in Git before b records it in its metrics:
	// wait for them to catch up.
	wants := []string{"sluice_leader 1", `sluice_git_commits_total{action="promote"} 1`, `namespace="e2e-leader",phase="Promoted",release="catalog",stable="v2"`}
	var metrics string
	err = stack.WaitFor(ctx, 30*time.Second, 100*time.Millisecond, "b's metrics of the promotion", func(ctx context.Context) (bool, error) {
		_, m, err := get(ctx, s.AdminURL("b")+"/metrics")
		if err != nil {
			return false, err
		}
		metrics = m
		for _, want := range wants {
			if !strings.Contains(m, want) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		for _, want := range wants {
			if !strings.Contains(metrics, want) {
				t.Errorf("b's /metrics lacks %s", want)
			}
		}
	}
}

// BenchmarkLeaderTakeover measures the time from the leader's SIGKILL to
// the standby holding the Lease, with the test's Lease settings.
func BenchmarkLeaderTakeover(b *testing.B) {
	le := testLeaderElection
	s := startStack(b, stack.Options{Namespace: "bench-leader", LeaderElection: &le})
	ctx := b.Context()
	for _, name := range []string{"a", "b"} {
		if err := s.StartReplica(ctx, name); err != nil {
			b.Fatal(err)
		}
	}
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		var cur string
		err := stack.WaitFor(ctx, time.Minute, 20*time.Millisecond, "a leader", func(ctx context.Context) (bool, error) {
			l, err := s.Leader(ctx)
			cur = l
			return l != "", err
		})
		if err != nil {
			b.Fatal(err)
		}
		other := map[string]string{"a": "b", "b": "a"}[cur]
		// Let the standby see the leader's renewals, as it would in a
		// long-running deployment.
		if err := stack.WaitFor(ctx, time.Minute, 20*time.Millisecond, other+" standing by", func(context.Context) (bool, error) {
			return strings.Contains(s.ReplicaLog(other), "another replica leads"), nil
		}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.KillReplica(cur); err != nil {
			b.Fatal(err)
		}
		killed := time.Now()
		waitLeader(b, s, other)
		total += time.Since(killed)
		b.StopTimer()
		if err := s.StartReplica(ctx, cur); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/takeover")
	b.ReportMetric(float64(le.LeaseDuration.Milliseconds()), "ms-lease")
}
