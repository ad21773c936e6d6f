package specs

import (
	"reflect"
	"testing"
)

func TestPlacementTargets(t *testing.T) {
	cases := []struct {
		name     string
		clusters []string
		cluster  string
		want     bool
	}{
		{"no clusters, no name", nil, "", true},
		{"no clusters, any name", nil, "prod", true},
		{"named, same", []string{"staging", "prod"}, "prod", true},
		{"named, other", []string{"staging"}, "prod", false},
		{"named, Sluice without a name", []string{"staging"}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := (Placement{Clusters: c.clusters}).Targets(c.cluster); got != c.want {
				t.Errorf("Targets(%q) = %v, want %v", c.cluster, got, c.want)
			}
		})
	}
}

// TestPlacements: the placement of an invalid release is still read, so
// that it is reported by the Sluice it belongs to.
func TestPlacements(t *testing.T) {
	data := []byte(`apiVersion: sluice.dev/v1alpha1
kind: Release
metadata: {name: a, namespace: ns, labels: {team: x}}
spec:
  clusters: [staging]
  stable: [not, a, string]
---
apiVersion: sluice.dev/v1alpha1
kind: Release
metadata: {name: b, namespace: ns, labels: [wrong]}
spec: {clusters: prod}
---
not: a release
`)
	got := Placements(data)
	want := map[string]Placement{
		"ns/a": {Labels: map[string]string{"team": "x"}, Clusters: []string{"staging"}},
		"ns/b": {},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Placements = %#v, want %#v", got, want)
	}
}
