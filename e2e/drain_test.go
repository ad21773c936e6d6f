package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/record"
)

// drainStack starts a stack whose release drains for d.
func drainStack(t *testing.T, namespace string, d time.Duration, threshold int) *stack.Stack {
	t.Helper()
	s := startStack(t, stack.Options{Namespace: namespace, Threshold: threshold, Drain: &d})
	if err := s.StartSluice(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhaseSteady, time.Minute)
	return s
}

// retiredAfterDrain waits for the drained version's retirement and checks
// that it was recorded once, no earlier than the drain's end, and that the
// version is gone.
func retiredAfterDrain(t *testing.T, s *stack.Stack, until time.Time, version string, left ...string) {
	t.Helper()
	waitStatus(t, s, time.Minute, version+" retired", func(st *record.Status) bool { return len(st.Draining) == 0 })
	waitDeployments(t, s.Namespace, left...)
	var retires []record.Transition
	history := historyOf(t, s)
	for _, tr := range history {
		if tr.Action == record.ActionRetire {
			retires = append(retires, tr)
		}
	}
	if len(retires) != 1 {
		t.Fatalf("%d retire commits, want 1: %+v", len(retires), retires)
	}
	if want := "catalog: " + version + " retired after draining"; retires[0].Subject != want {
		t.Errorf("retire commit %q, want %q", retires[0].Subject, want)
	}
	// Commit times have whole seconds; the drain's end too.
	if retires[0].When.Before(until) {
		t.Errorf("%s retired at %s, before its drain ended at %s", version, retires[0].When, until)
	}
}

// historyOf reads the release's transitions from the remote, oldest first.
func historyOf(t *testing.T, s *stack.Stack) []record.Transition {
	t.Helper()
	out, err := s.GitRemote(t.Context(), "log", "--format=%H%x00%cI%x00%(trailers:key=Sluice-Action,valueonly,separator=)%x00%s", "main")
	if err != nil {
		t.Fatal(err)
	}
	var list []record.Transition
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.SplitN(line, "\x00", 4)
		if len(f) != 4 || f[2] == "" {
			continue
		}
		when, _ := time.Parse(time.RFC3339, f[1])
		list = append(list, record.Transition{Commit: f[0], When: when, Action: record.Action(f[2]), Subject: strings.TrimPrefix(f[3], "Sluice: ")})
	}
	slices.Reverse(list)
	return list
}

// TestDrainAfterPromotion: the promotion is recorded when all traffic is
// on v2, and v1 keeps running for the drain delay; then it is retired with
// a record of its own.
func TestDrainAfterPromotion(t *testing.T) {
	t.Parallel()
	const d = 10 * time.Second
	s := drainStack(t, "e2e-drain-promote", d, 0)
	pushCandidate(t, s, "v2")
	st := waitPhase(t, s, record.PhasePromoted, releaseTimeout)
	if len(st.Draining) != 1 || st.Draining[0].Version != "v1" || !st.Draining[0].Until.Equal(st.Since.Add(d)) {
		t.Fatalf("promoted with draining %+v, want v1 until %s", st.Draining, st.Since.Add(d))
	}
	// Within the drain: all traffic on v2, v1 still up.
	if got := routes(t, s.Namespace, "catalog-mesh"); !slices.Equal(got, []string{"v2=100"}) {
		t.Errorf("mesh route during the drain: %v, want all on v2", got)
	}
	if time.Now().Before(st.Draining[0].Until) {
		if got := deployments(t, s.Namespace); !slices.Equal(got, []string{"catalog-v1", "catalog-v2"}) {
			t.Errorf("Deployments during the drain: %v, want v1 still running beside v2", got)
		}
	}
	retiredAfterDrain(t, s, st.Draining[0].Until, "v1", "catalog-v2")
}

// TestDrainAfterRollback: a bad v2 is rolled back at once (recorded when
// the traffic moves) and drained before it is removed.
func TestDrainAfterRollback(t *testing.T) {
	t.Parallel()
	const d = 10 * time.Second
	s := drainStack(t, "e2e-drain-rollback", d, 2)
	if err := s.Mesh.SetVersion("v2", 0.10, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	pushCandidate(t, s, "v2")
	st := waitPhase(t, s, record.PhaseRolledBack, releaseTimeout)
	if len(st.Draining) != 1 || st.Draining[0].Version != "v2" {
		t.Fatalf("rolled back with draining %+v, want v2", st.Draining)
	}
	err := stack.WaitFor(t.Context(), time.Minute, 250*time.Millisecond, "mesh route all on v1", func(context.Context) (bool, error) {
		return slices.Equal(routes(t, s.Namespace, "catalog-mesh"), []string{"v1=100"}), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if time.Now().Before(st.Draining[0].Until) {
		if got := deployments(t, s.Namespace); !slices.Equal(got, []string{"catalog-v1", "catalog-v2"}) {
			t.Errorf("Deployments during the drain: %v, want v2 still running beside v1", got)
		}
	}
	retiredAfterDrain(t, s, st.Draining[0].Until, "v2", "catalog-v1")
	if got := historyOf(t, s); got[len(got)-1].Action != record.ActionRetire {
		t.Errorf("last transition %+v, want the retirement", got[len(got)-1])
	}
}

// TestKilledMidDrain: Sluice is SIGKILLed right after the promotion; the
// restarted one retires v1 on time (never early), once.
func TestKilledMidDrain(t *testing.T) {
	t.Parallel()
	const d = 15 * time.Second
	s := drainStack(t, "e2e-drain-kill", d, 0)
	pushCandidate(t, s, "v2")
	st := waitPhase(t, s, record.PhasePromoted, releaseTimeout)
	if err := s.KillSluice(); err != nil {
		t.Fatal(err)
	}
	if err := s.StartSluice(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(st.Draining) != 1 {
		t.Fatalf("promoted with draining %+v", st.Draining)
	}
	retiredAfterDrain(t, s, st.Draining[0].Until, "v1", "catalog-v2")
}

// TestNoTrafficRolledBackWithinBound: no request reaches the candidate
// (nobody sends the dark launch's header). Each check without data is
// recorded while it holds; after threshold of them each counts as failed,
// so the release is decided within 2 x threshold checks.
func TestNoTrafficRolledBackWithinBound(t *testing.T) {
	t.Parallel()
	const threshold = 2
	s := startStack(t, stack.Options{Namespace: "e2e-no-traffic", Threshold: threshold, CohortShare: -1})
	if err := s.StartSluice(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhaseSteady, time.Minute)
	pushCandidate(t, s, "v2")
	held := waitStatus(t, s, releaseTimeout, "a check held without data", func(st *record.Status) bool { return st.NoData != nil })
	if held.Step != "dark-launch" || held.NoData.Allowed != threshold || held.NoData.Checks < 1 {
		t.Errorf("no data record %+v at %s", held.NoData, held.Step)
	}
	if reason := held.Reason(); !strings.Contains(reason, "no data: held ") {
		t.Errorf("reason %q does not say the step holds without data", reason)
	}
	final := waitPhase(t, s, record.PhaseRolledBack, releaseTimeout)
	var noData, failed int
	for _, tr := range historyOf(t, s) {
		switch tr.Action {
		case record.ActionNoData:
			noData++
		case record.ActionCheck:
			failed++
		}
	}
	// threshold checks held, then threshold failed ones: the last of them
	// is the rollback's own record.
	if noData != threshold || failed != threshold-1 || final.FailedChecks != threshold {
		t.Errorf("%d checks held and %d failed before the rollback (%d counted), want %d held then %d failed, the last one the rollback", noData, failed, final.FailedChecks, threshold, threshold)
	}
	if !strings.Contains(final.Message, "no data") {
		t.Errorf("rollback message %q does not say there was no data", final.Message)
	}
}
