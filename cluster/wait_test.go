package cluster

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"sluice.dev/sluice/internal/testenv"
)

// TestWaitAvailable waits for a Deployment kwok makes ready, and fails
// with the reasons for ones that never become available.
func TestWaitAvailable(t *testing.T) {
	ns := newNamespace(t)
	a, _ := newApplier(t)

	deployment := func(name string, neverReady bool, progressDeadline int64) *unstructured.Unstructured {
		u := readObjects(t, "shop/deployment-v1.yaml")[0]
		u.SetName(name)
		u.SetNamespace(ns)
		if neverReady {
			if err := unstructured.SetNestedField(u.Object, "true", "spec", "template", "metadata", "labels", testenv.NeverReadyLabel); err != nil {
				t.Fatal(err)
			}
		}
		if progressDeadline > 0 {
			if err := unstructured.SetNestedField(u.Object, progressDeadline, "spec", "progressDeadlineSeconds"); err != nil {
				t.Fatal(err)
			}
		}
		// Each Deployment selects only its own pods.
		for _, path := range [][]string{{"spec", "selector", "matchLabels"}, {"spec", "template", "metadata", "labels"}} {
			if err := unstructured.SetNestedField(u.Object, name, append(path, "version")...); err != nil {
				t.Fatal(err)
			}
		}
		return u
	}
	serviceAccount := readObjects(t, "shop/shared.yaml")[0] // the pods run as it
	serviceAccount.SetNamespace(ns)
	set := Set{Owner: owner(ns, "shop"), Objects: []*unstructured.Unstructured{
		serviceAccount,
		deployment("ready", false, 0),
		deployment("never-ready", true, 0),
		deployment("stalled", true, 1),
	}}
	if _, err := a.Apply(testContext(t), set, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		deadline time.Duration
		wantErr  []string // substrings; none means success
	}{
		{name: "ready", deadline: time.Minute},
		{name: "never-ready", deadline: 5 * time.Second, wantErr: []string{
			"deployment " + ns + "/never-ready not available within 5s",
			"1 of 1 replicas unavailable",
			"Available=False",
			"pod never-ready-",
			"not ready: Ready=False",
		}},
		// The Deployment's own progress deadline ends the wait long before
		// the caller's.
		{name: "stalled", deadline: time.Minute, wantErr: []string{
			"deployment " + ns + "/stalled failed to progress",
			"ProgressDeadlineExceeded",
			"1 of 1 replicas unavailable",
		}},
		{name: "missing", deadline: 2 * time.Second, wantErr: []string{"the Deployment does not exist"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := a.WaitAvailable(testContext(t), ns, tc.name, tc.deadline)
			t.Logf("took %s: %v", time.Since(start).Round(time.Millisecond), err)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("WaitAvailable succeeded")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}
