package e2e

import (
	"context"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/internal/testenv"
	"sluice.dev/sluice/record"
)

// clusterStatus reads the release's status file of one cluster (sluice
// run --cluster) from the remote's main branch.
func clusterStatus(ctx context.Context, s *stack.Stack, cluster string) (*record.Status, error) {
	data, err := s.ReadRemote(ctx, record.StatusPath(path.Join(record.DefaultStatusDir, cluster), s.Namespace, "catalog"))
	if err != nil {
		return nil, err
	}
	return record.ParseStatus([]byte(data))
}

func waitClusterStatus(t testing.TB, s *stack.Stack, cluster string, timeout time.Duration, what string, cond func(*record.Status) bool) *record.Status {
	t.Helper()
	var last *record.Status
	err := stack.WaitFor(t.Context(), timeout, 250*time.Millisecond, cluster+": "+what, func(ctx context.Context) (bool, error) {
		st, err := clusterStatus(ctx, s, cluster)
		if err != nil {
			return false, nil // not recorded yet
		}
		last = st
		return cond(st), nil
	})
	if err != nil {
		t.Fatalf("%v; last status: %+v", err, last)
	}
	return last
}

// syncedHead finds the heads a Sluice's log says it synced.
var syncedHead = regexp.MustCompile(`msg="git sync" .*head=([0-9a-f]{40})`)

func envDeployments(t testing.TB, env *testenv.Env, ns string) []string {
	t.Helper()
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

// editSpecOnClusters has the person replace from with to in the release
// spec, push, and both clusters' Sluices sync; it returns the pushed commit.
func editSpecOnClusters(t *testing.T, s *stack.Stack, message, from, to string) string {
	t.Helper()
	pushed, err := s.EditAndPush(t.Context(), message, func(read func(string) string) map[string]string {
		spec := read(stack.ReleaseFile)
		if !strings.Contains(spec, from) {
			t.Errorf("the release spec has no %q:\n%s", from, spec)
		}
		return map[string]string{stack.ReleaseFile: strings.Replace(spec, from, to, 1)}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"staging", "prod"} {
		if err := s.TriggerSyncOn(t.Context(), name); err != nil {
			t.Fatal(err)
		}
	}
	return strings.TrimSpace(pushed)
}

// TestOneRepositoryTwoClusters: one Git repository feeds two test
// clusters, each with its own API server, Prometheus, mesh and Sluice
// (sluice run --cluster staging, --cluster prod). A release naming no
// cluster runs on both, with a status file per cluster; once its spec
// names staging alone, its candidate progresses and is promoted on
// staging while prod, whose release is now another cluster's, keeps v1
// running, records nothing and deletes nothing. A candidate for both then
// goes through the analysis on each, and the spec is promoted once, when
// both have promoted it.
func TestOneRepositoryTwoClusters(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	staging := testEnv.Env(t)
	prod, err := testenv.Start(ctx, testenv.Options{Prometheus: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			prod.MarkFailed()
		}
		_ = prod.Stop()
	})
	s := startStack(t, stack.Options{Namespace: "e2e-clusters", NoDarkLaunch: true})
	if err := s.AddCluster(ctx, prod); err != nil {
		t.Fatal(err)
	}
	if err := s.StartReplicaOn(ctx, "staging", staging, "--cluster", "staging"); err != nil {
		t.Fatal(err)
	}
	if err := s.StartReplicaOn(ctx, "prod", prod, "--cluster", "prod"); err != nil {
		t.Fatal(err)
	}

	// The release names no cluster: both run it, each with its own record.
	steady := func(st *record.Status) bool { return st.Phase == record.PhaseSteady && st.Stable == "v1" }
	waitClusterStatus(t, s, "staging", time.Minute, "steady on v1", steady)
	prodSteady := waitClusterStatus(t, s, "prod", time.Minute, "steady on v1", steady)
	if _, err := s.ReadRemote(ctx, record.StatusPath(record.DefaultStatusDir, s.Namespace, "catalog")); err == nil {
		t.Error("a Sluice with --cluster wrote the status file of no cluster")
	}
	for _, env := range []*testenv.Env{staging, prod} {
		err := stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "catalog-v1 on "+env.Dir(), func(context.Context) (bool, error) {
			return slices.Equal(envDeployments(t, env, s.Namespace), []string{"catalog-v1"}), nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// The candidate is for staging alone.
	pushed := editSpecOnClusters(t, s, "catalog v2 on staging only", "  stable: v1\n", "  clusters: [staging]\n  stable: v1\n  candidate: v2\n")
	waitClusterStatus(t, s, "staging", releaseTimeout, "v2 promoted", func(st *record.Status) bool {
		return st.Phase == record.PhasePromoted && st.Stable == "v2"
	})
	err = stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "catalog-v2 alone on staging", func(context.Context) (bool, error) {
		return slices.Equal(envDeployments(t, staging, s.Namespace), []string{"catalog-v2"}), nil
	})
	if err != nil {
		t.Fatalf("%v; have %v", err, envDeployments(t, staging, s.Namespace))
	}

	// Prod saw the push (its log says it synced it) and did nothing:
	// v1 runs, its status file is the one it wrote before, and it neither
	// deleted the release nor committed for it.
	err = stack.WaitFor(ctx, time.Minute, 250*time.Millisecond, "prod synced the push", func(ctx context.Context) (bool, error) {
		// The push, or a later commit of staging's, was synced.
		for _, m := range syncedHead.FindAllStringSubmatch(s.ReplicaLog("prod"), -1) {
			if _, err := s.GitRemote(ctx, "merge-base", "--is-ancestor", pushed, m[1]); err == nil {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := envDeployments(t, prod, s.Namespace); !slices.Equal(got, []string{"catalog-v1"}) {
		t.Errorf("prod runs %v, want catalog-v1 alone", got)
	}
	st, err := clusterStatus(ctx, s, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != prodSteady.Phase || st.Stable != "v1" || !st.Since.Equal(prodSteady.Since) || st.Candidate != "" {
		t.Errorf("prod's status changed: %+v, was %+v", st, prodSteady)
	}
	if log := s.ReplicaLog("prod"); strings.Contains(log, "release deleted") || strings.Contains(log, "spec deleted") {
		t.Errorf("prod deleted a release that is staging's:\n%s", tail(log, 50))
	}
	out, err := s.GitRemote(ctx, "log", "--format=%s", "main", "--", path.Join(record.DefaultStatusDir, "prod"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(strings.TrimSpace(out))); n == 0 {
		t.Error("prod's status file has no history")
	}
	if strings.Contains(out, "v2") {
		t.Errorf("prod recorded something of v2:\n%s", out)
	}
	t.Logf("prod's record:\n%s", out)

	// A candidate for both clusters: each walks it through its own
	// analysis, and the spec names it stable only once both promoted it.
	// Were the spec promoted by the first cluster to finish, the other
	// would switch to v3 at once, without its canary.
	// v3 is v2 with another environment, so a revision of its own.
	v3 := "    - name: v3\n      source: apps/catalog/overlays/v2\n      env:\n        RELEASE: v3\n"
	pushed = editSpecOnClusters(t, s, "catalog v3 on staging and prod", "  clusters: [staging]\n  stable: v2\n", v3+"  clusters: [staging, prod]\n  stable: v2\n  candidate: v3\n")
	for _, name := range []string{"staging", "prod"} {
		waitClusterStatus(t, s, name, releaseTimeout, "v3 promoted", func(st *record.Status) bool {
			return st.Phase == record.PhasePromoted && st.Stable == "v3" && st.Candidate == "v3"
		})
	}
	err = stack.WaitFor(ctx, releaseTimeout, 250*time.Millisecond, "the spec names v3 stable", func(ctx context.Context) (bool, error) {
		spec, err := s.ReadRemote(ctx, stack.ReleaseFile)
		return err == nil && strings.Contains(spec, "  stable: v3\n") && !strings.Contains(spec, "candidate:"), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"staging", "prod"} {
		log, err := s.GitRemote(ctx, "log", "--format=%s", pushed+"..main", "--", path.Join(record.DefaultStatusDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log, "-> 10%") || !strings.Contains(log, "promoted v3 on "+name) {
			t.Errorf("%s did not walk v3 through its own canary:\n%s", name, log)
		}
	}
	// Sluice edited the spec once, whichever cluster did.
	log, err := s.GitRemote(ctx, "log", "--format=%s", pushed+"..main", "--", stack.ReleaseFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Split(strings.TrimSpace(log), "\n")); n != 1 {
		t.Errorf("the spec was edited %d times after the push, want once:\n%s", n, log)
	}
	t.Logf("the spec's promotion: %s", log)
}
