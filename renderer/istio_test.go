package renderer

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	istionet "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/specs"
)

// TestIstioObjectsAreIstios: what istioObjects writes for every step of
// random releases (matches on headers, cookies and source labels, mirrors,
// weights) reads into Istio's own Go types and writes back unchanged, so
// the renderer's small types neither lose nor invent a field.
func TestIstioObjectsAreIstios(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 100 {
		rel := randomRelease(r)
		steps, err := specs.Plan(rel)
		if err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
		steps = append(steps, specs.SteadyStep(rel), specs.RollbackStep(rel))
		for _, step := range steps {
			docs, err := istioObjects(rel, step, step.Versions)
			if err != nil {
				t.Fatal(err)
			}
			for _, doc := range docs {
				if err := roundTrip(doc); err != nil {
					t.Fatalf("release %d step %s: %v\n%s", i, step.Name, err, doc)
				}
			}
		}
	}
}

func roundTrip(doc []byte) error {
	var ours map[string]any
	if err := yaml.Unmarshal(doc, &ours); err != nil {
		return err
	}
	var obj any = &istionet.VirtualService{}
	if ours["kind"] == "DestinationRule" {
		obj = &istionet.DestinationRule{}
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return fmt.Errorf("istio's types refuse it: %w", err)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	var theirs map[string]any
	if err := json.Unmarshal(b, &theirs); err != nil {
		return err
	}
	delete(theirs, "status")
	if meta, ok := theirs["metadata"].(map[string]any); ok {
		delete(meta, "creationTimestamp")
	}
	// Numbers as JSON gives them on both sides.
	ob, _ := json.Marshal(ours)
	ours = nil
	_ = json.Unmarshal(ob, &ours)
	if !reflect.DeepEqual(ours, theirs) {
		tb, _ := yaml.Marshal(theirs)
		return fmt.Errorf("istio's types write it back differently:\n%s", tb)
	}
	return nil
}
