package cluster

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestSpecChanged covers which watched updates mark a release for a full
// render and compare: those that may have changed what Sluice applied.
func TestSpecChanged(t *testing.T) {
	obj := func(generation int64, labels, annotations map[string]string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		u.SetGeneration(generation)
		u.SetLabels(labels)
		u.SetAnnotations(annotations)
		return u
	}
	applied := map[string]string{"app": "shop"}
	tests := []struct {
		name     string
		old, cur *unstructured.Unstructured
		want     bool
	}{
		{"status only", obj(1, applied, applied), obj(1, applied, applied), false},
		{"generation moved", obj(1, applied, nil), obj(2, applied, nil), true},
		{"no generation (a Service)", obj(0, applied, nil), obj(0, applied, nil), true},
		{"annotation added by a controller", obj(1, applied, nil),
			obj(1, applied, map[string]string{"deployment.kubernetes.io/revision": "1"}), false},
		{"label added by someone", obj(1, applied, nil), obj(1, map[string]string{"app": "shop", "team": "a"}, nil), false},
		{"label changed", obj(1, applied, nil), obj(1, map[string]string{"app": "cart"}, nil), true},
		{"label removed", obj(1, applied, nil), obj(1, nil, nil), true},
		{"annotation changed", obj(1, nil, applied), obj(1, nil, map[string]string{"app": "cart"}), true},
		{"annotation removed", obj(1, nil, applied), obj(1, nil, map[string]string{}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := specChanged(tt.old, tt.cur); got != tt.want {
				t.Errorf("specChanged = %v, want %v", got, tt.want)
			}
		})
	}
}
