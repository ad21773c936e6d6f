package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/record"
)

// TestReleaseSelector: two Sluices on one cluster with disjoint release
// selectors (team=x, team=y). A release neither selects is left alone;
// labelled team=x, x records it; relabelled team=y with a candidate, y
// takes it over from x's status file and promotes it while x does
// nothing; its spec deleted, y deletes its objects and status file and x,
// to which it no longer belonged, deletes nothing.
func TestReleaseSelector(t *testing.T) {
	t.Parallel()
	s := startStack(t, stack.Options{Namespace: "e2e-selector", NoDarkLaunch: true})
	ctx := t.Context()
	env := testEnv.Env(t)
	for _, team := range []string{"x", "y"} {
		if err := s.StartReplicaOn(ctx, team, env, "--release-selector", "team="+team); err != nil {
			t.Fatal(err)
		}
	}
	for _, team := range []string{"x", "y"} {
		err := stack.WaitFor(ctx, time.Minute, 100*time.Millisecond, team+" ready", func(ctx context.Context) (bool, error) {
			code, _, err := get(ctx, s.AdminURL(team)+"/readyz")
			return code == http.StatusOK, err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	statusPath := record.StatusPath(record.DefaultStatusDir, s.Namespace, "catalog")
	if _, err := s.ReadRemote(ctx, statusPath); err == nil {
		t.Fatal("a release no selector selects was recorded")
	}
	if got := envDeployments(t, env, s.Namespace); len(got) != 0 {
		t.Fatalf("a release no selector selects was applied: %v", got)
	}

	// A replica logs a transition once it is pushed, so its log may lag
	// the remote by a moment.
	waitLog := func(team, want string) {
		t.Helper()
		err := stack.WaitFor(ctx, 30*time.Second, 100*time.Millisecond, team+" logs "+want, func(context.Context) (bool, error) {
			return strings.Contains(s.ReplicaLog(team), want), nil
		})
		if err != nil {
			t.Fatalf("%v:\n%s", err, tail(s.ReplicaLog(team), 30))
		}
	}
	relabel := func(msg, from, to, extra string) {
		t.Helper()
		_, err := s.EditAndPush(ctx, msg, func(read func(string) string) map[string]string {
			spec := strings.Replace(read(stack.ReleaseFile), from, to, 1)
			spec = strings.Replace(spec, "  stable: v1\n", "  stable: v1\n"+extra, 1)
			return map[string]string{stack.ReleaseFile: spec}
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, team := range []string{"x", "y"} {
			if err := s.TriggerSyncOn(ctx, team); err != nil {
				t.Fatal(err)
			}
		}
	}
	relabel("catalog is team x's", "metadata:\n", "metadata:\n  labels: {team: x}\n", "")
	st := waitPhase(t, s, record.PhaseSteady, time.Minute)
	if st.Labels["team"] != "x" {
		t.Errorf("status labels %v, want team x", st.Labels)
	}
	waitLog("x", "catalog: steady at v1")
	if strings.Contains(s.ReplicaLog("y"), "catalog: ") {
		t.Errorf("y recorded catalog, which is x's:\n%s", tail(s.ReplicaLog("y"), 30))
	}

	relabel("catalog moves to team y, with v2", "labels: {team: x}", "labels: {team: y}", "  candidate: v2\n")
	waitStatus(t, s, releaseTimeout, "v2 promoted", func(st *record.Status) bool {
		return st.Phase == record.PhasePromoted && st.Stable == "v2"
	})
	waitLog("y", "catalog: promoted v2")
	if log := s.ReplicaLog("x"); strings.Contains(log, "v2") {
		t.Errorf("x acted on the release after it moved to y:\n%s", tail(log, 30))
	}

	// The spec is deleted: y, whose release it was, deletes it.
	if _, err := s.EditAndPush(ctx, "catalog retired", func(func(string) string) map[string]string {
		if err := os.Remove(filepath.Join(s.Person, stack.ReleaseFile)); err != nil {
			t.Error(err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, team := range []string{"x", "y"} {
		if err := s.TriggerSyncOn(ctx, team); err != nil {
			t.Fatal(err)
		}
	}
	err := stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "status file removed", func(ctx context.Context) (bool, error) {
		_, err := s.ReadRemote(ctx, statusPath)
		return err != nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "Deployments removed", func(context.Context) (bool, error) {
		return len(envDeployments(t, env, s.Namespace)) == 0, nil
	})
	if err != nil {
		t.Fatalf("%v; have %v", err, envDeployments(t, env, s.Namespace))
	}
	waitLog("y", "release deleted")
	if log := s.ReplicaLog("x"); strings.Contains(log, "release deleted") || strings.Contains(log, "spec deleted") {
		t.Errorf("x deleted a release that was y's:\n%s", tail(log, 30))
	}
}
