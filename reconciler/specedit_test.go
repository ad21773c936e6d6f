package reconciler

import (
	"os"
	"strings"
	"testing"
)

func TestPromoteEditChangesOnlyTheVersionLines(t *testing.T) {
	old, err := os.ReadFile("../examples/catalog/releases/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := promoteEdit("istioinaction", "catalog", "v2")(old)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(strings.Replace(string(old), "  stable: v1\n", "  stable: v2\n", 1), "  candidate: v2\n", "", 1)
	if string(got) != want {
		t.Errorf("promoted spec:\n%s\nwant:\n%s", got, want)
	}
	// Applying it again (a retried push on top of itself) changes nothing.
	again, err := promoteEdit("istioinaction", "catalog", "v2")(got)
	if err != nil || string(again) != string(got) {
		t.Errorf("second edit: %v, changed=%v", err, string(again) != string(got))
	}
}

func TestPromoteEditKeepsAPersonsNewCandidate(t *testing.T) {
	doc := "apiVersion: sluice.dev/v1alpha1\nkind: Release\nmetadata:\n  name: a\n  namespace: n\nspec:\n  stable: v1 # serving\n  candidate: v3\n"
	got, err := promoteEdit("n", "a", "v2")([]byte(doc))
	if err != nil || string(got) != doc {
		t.Errorf("got %q, %v; want the file unchanged", got, err)
	}
}

func TestPromoteEditMultiDocument(t *testing.T) {
	doc := "kind: Release\nmetadata: {name: a, namespace: n}\nspec:\n  stable: v1\n  candidate: v2\n---\nkind: Release\nmetadata: {name: b, namespace: n}\nspec:\n  stable: 'v1' # keep me\n  candidate: v2\n  stages: []\n"
	got, err := promoteEdit("n", "b", "v2")([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := "kind: Release\nmetadata: {name: a, namespace: n}\nspec:\n  stable: v1\n  candidate: v2\n---\nkind: Release\nmetadata: {name: b, namespace: n}\nspec:\n  stable: v2 # keep me\n  stages: []\n"
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestStatusRoundTrip(t *testing.T) {
	v := 99.5
	s := &Status{Release: "n/a", SpecFile: "a.yaml", Phase: PhaseProgressing, Stable: "v1", Candidate: "v2", Step: "canary-20", StepIndex: 3, Weight: 20,
		Gates: []GateValue{{Metric: "request-success-rate", Value: &v, Min: &v, Passed: true}}}
	data, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseStatus(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.Step != "canary-20" || back.Weight != 20 || *back.Gates[0].Value != 99.5 || !strings.HasPrefix(string(data), "# Written by Sluice") {
		t.Errorf("round trip: %+v\n%s", back, data)
	}
}

func TestGateValueString(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	cases := []struct {
		g    GateValue
		want string
	}{
		{GateValue{Metric: "request-success-rate", Value: f(99.84), Min: f(99)}, "success-rate 99.8 >= 99"},
		{GateValue{Metric: "request-success-rate", Value: f(93.1), Min: f(99)}, "success-rate 93.1 < 99"},
		{GateValue{Metric: "request-duration", Value: f(212), Max: f(500)}, "p99 212ms <= 500ms"},
		{GateValue{Metric: "request-duration", Value: f(612.26), Max: f(500)}, "p99 612.3ms > 500ms"},
		{GateValue{Metric: "error-budget", Max: f(1)}, "error-budget no data"},
	}
	for _, tc := range cases {
		if got := tc.g.String(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.g, got, tc.want)
		}
	}
}
