package reconciler

import (
	"context"
	"slices"
	"testing"

	"sluice.dev/sluice/renderer"
	"sluice.dev/sluice/specs"
)

// routeCluster is a Cluster whose workloads are up and whose routes are
// ready or not, recording what it was asked.
type routeCluster struct {
	nopCluster
	ready  bool
	reason string
	asked  []string
}

func (routeCluster) Available(context.Context, string, string) (bool, string, error) {
	return true, "", nil
}

func (c *routeCluster) RoutesReady(_ context.Context, namespace string, routes []string) (bool, string, error) {
	c.asked = append(c.asked, namespace)
	c.asked = append(c.asked, routes...)
	return c.ready, c.reason, nil
}

// TestAvailableWaitsForRoutes: a step with Gateway API routes is
// available only once the cluster says its routes were accepted, and the
// reason it gives is the step's; a step without routes does not ask.
func TestAvailableWaitsForRoutes(t *testing.T) {
	tests := []struct {
		name   string
		routes []string
		ready  bool
		want   Availability
		asked  []string
	}{
		{"routes not accepted", []string{"catalog-mesh"}, false, Availability{Workload: "routes", Reason: "HTTPRoute catalog-mesh: parent Service ns/catalog: Accepted=False (NoMatchingParent: x)"}, []string{"ns", "catalog-mesh"}},
		{"routes accepted", []string{"catalog-mesh", "catalog-ingress"}, true, Availability{OK: true}, []string{"ns", "catalog-mesh", "catalog-ingress"}},
		{"no routes (Istio routing)", nil, false, Availability{OK: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &routeCluster{ready: tt.ready, reason: tt.want.Reason}
			rc := &run{
				r:    &Reconciler{cfg: Config{Cluster: c}},
				e:    &entry{namespace: "ns"},
				step: &specs.Step{Versions: []string{"v1"}},
				out:  &renderer.Output{Workloads: map[string]string{"v1": "catalog-v1"}, Routes: tt.routes},
			}
			got, err := rc.available(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if *got != tt.want {
				t.Errorf("available = %+v, want %+v", *got, tt.want)
			}
			if !slices.Equal(c.asked, tt.asked) {
				t.Errorf("asked %v, want %v", c.asked, tt.asked)
			}
		})
	}
}
