package renderer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/fstest"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"sluice.dev/sluice/specs"
)

const appKustomization = "resources: [deployment.yaml, service.yaml]\n"

const appDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec: {containers: [{name: app, image: app:1}]}
`

const appService = `apiVersion: v1
kind: Service
metadata: {name: app}
spec: {selector: {app: app}, ports: [{port: 80}]}
`

// randomRelease builds a valid release with random routes, matches and stages.
func randomRelease(r *rand.Rand) *specs.Release {
	rel := &specs.Release{
		APIVersion: specs.APIVersion, Kind: specs.Kind,
		Metadata: specs.ObjectMeta{Name: "app", Namespace: "ns"},
		Spec: specs.ReleaseSpec{
			Service:   specs.Service{Port: 80},
			Source:    "app",
			Versions:  []specs.Version{{Name: "v1"}, {Name: "v2", Env: map[string]string{"X": "1"}}},
			Stable:    "v1",
			Candidate: "v2",
		},
	}
	for i := range 1 + r.IntN(4) {
		gw := []string{specs.MeshGateway}
		if i > 0 || r.IntN(2) == 0 {
			gw = []string{fmt.Sprintf("gw-%d", i)}
		}
		rel.Spec.Routes = append(rel.Spec.Routes, specs.Route{Name: fmt.Sprintf("r%d", i), Gateways: gw, Hosts: []string{fmt.Sprintf("h%d.example.com", i)}})
	}
	match := func() []specs.Match {
		var ms []specs.Match
		for range 1 + r.IntN(2) {
			var m specs.Match
			switch r.IntN(3) {
			case 0:
				m.Headers = map[string]specs.StringMatch{"x-cohort": {Exact: "internal"}}
			case 1:
				m.Cookie = &specs.CookieMatch{Name: "beta", Value: "yes"}
			case 2:
				m.SourceLabels = map[string]string{"app": "web"}
			}
			ms = append(ms, m)
		}
		return ms
	}
	stages := &rel.Spec.Stages
	if r.IntN(2) == 0 {
		*stages = append(*stages, specs.Stage{Name: "deploy", Deploy: &specs.DeployStage{}})
	}
	if r.IntN(2) == 0 {
		*stages = append(*stages, specs.Stage{Name: "dark", DarkLaunch: &specs.DarkLaunchStage{Match: match()}})
	}
	if r.IntN(3) == 0 {
		*stages = append(*stages, specs.Stage{Name: "shadow", Mirror: &specs.MirrorStage{Percent: float64(1 + r.IntN(100))}})
	}
	for i := range 1 + r.IntN(2) {
		w := &specs.WeightedStage{}
		if r.IntN(2) == 0 {
			w.StepWeight = int32(1 + r.IntN(50))
			w.MaxWeight = w.StepWeight + int32(r.IntN(int(101-w.StepWeight)))
		} else {
			last := int32(0)
			for last < 100 && len(w.Weights) < 5 {
				last += int32(1 + r.IntN(40))
				if last > 100 {
					last = 100
				}
				w.Weights = append(w.Weights, last)
			}
		}
		if r.IntN(3) == 0 {
			w.Match = match()
		}
		*stages = append(*stages, specs.Stage{Name: fmt.Sprintf("canary%d", i), Weighted: w})
	}
	*stages = append(*stages, specs.Stage{Name: "promote", Promote: &specs.PromoteStage{}})
	return rel
}

// TestRandomReleasesRouteConsistently: for every step of random valid
// releases, every HTTP route's weights sum to 100 and every subset a route
// or mirror names exists in the DestinationRule.
func TestRandomReleasesRouteConsistently(t *testing.T) {
	repo := fstest.MapFS{
		"app/kustomization.yaml": {Data: []byte(appKustomization)},
		"app/deployment.yaml":    {Data: []byte(appDeployment)},
		"app/service.yaml":       {Data: []byte(appService)},
	}
	r := rand.New(rand.NewPCG(1, 2))
	rd := New()
	// Rendering is the slow part; the inner loop samples fewer releases.
	n := 100
	if testing.Short() {
		n = 10
	}
	for i := range n {
		gen := randomRelease(r)
		// Through YAML and the strict parser, as people's specs come.
		doc, err := yaml.Marshal(gen)
		if err != nil {
			t.Fatal(err)
		}
		rels, err := specs.Parse(fmt.Sprintf("random-%d.yaml", i), doc)
		if err != nil {
			t.Fatalf("generated release %d is invalid: %v\n%s", i, err, doc)
		}
		rel := rels[0]
		steps, err := specs.Plan(rel)
		if err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
		steps = append(steps, specs.SteadyStep(rel), specs.RollbackStep(rel))
		for _, step := range steps {
			out, err := rd.Render(context.Background(), repo, rel, step)
			if err != nil {
				t.Fatalf("release %d step %s: %v", i, step.Name, err)
			}
			if err := checkRouting(out.Objects, len(rel.Spec.Routes)); err != nil {
				t.Fatalf("release %d step %s: %v\n%s", i, step.Name, err, doc)
			}
		}
	}
}

func checkRouting(objs []*unstructured.Unstructured, routes int) error {
	subsets := map[string]bool{}
	var vss []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "DestinationRule":
			list, _, _ := unstructured.NestedSlice(o.Object, "spec", "subsets")
			for _, s := range list {
				subsets[s.(map[string]any)["name"].(string)] = true
			}
		case "VirtualService":
			vss = append(vss, o)
		}
	}
	if len(vss) != routes {
		return fmt.Errorf("%d VirtualServices for %d routes", len(vss), routes)
	}
	for _, vs := range vss {
		httpRoutes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
		if len(httpRoutes) == 0 {
			return fmt.Errorf("%s has no HTTP route", vs.GetName())
		}
		for j, hr := range httpRoutes {
			hrm := hr.(map[string]any)
			var sum int64
			dests, _ := hrm["route"].([]any)
			for _, d := range dests {
				dm := d.(map[string]any)
				w, _ := dm["weight"].(int64)
				sum += w
				subset, _, _ := unstructured.NestedString(dm, "destination", "subset")
				if !subsets[subset] {
					return fmt.Errorf("%s http[%d] routes to subset %q, not in the DestinationRule %v", vs.GetName(), j, subset, subsets)
				}
			}
			if sum != 100 {
				return fmt.Errorf("%s http[%d] weights sum to %d", vs.GetName(), j, sum)
			}
			if subset, found, _ := unstructured.NestedString(hrm, "mirror", "subset"); found && !subsets[subset] {
				return fmt.Errorf("%s http[%d] mirrors to subset %q, not in the DestinationRule", vs.GetName(), j, subset)
			}
		}
	}
	return nil
}
