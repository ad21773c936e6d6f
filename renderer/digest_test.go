package renderer

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestDigest(t *testing.T) {
	obj := func(kind, name string, spec map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": kind,
			"metadata": map[string]any{"name": name, "labels": map[string]any{"a": "1", "b": "2"}},
			"spec":     spec,
		}}
	}
	cm := func() *unstructured.Unstructured { return obj("ConfigMap", "cfg", map[string]any{"x": int64(1)}) }
	svc := func() *unstructured.Unstructured { return obj("Service", "svc", map[string]any{"port": int64(80)}) }
	base := &Output{Objects: []*unstructured.Unstructured{cm(), svc()}}
	want, err := base.Digest()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		objects []*unstructured.Unstructured
		same    bool
	}{
		{name: "equal objects", objects: []*unstructured.Unstructured{cm(), svc()}, same: true},
		{name: "a value changed", objects: []*unstructured.Unstructured{cm(), obj("Service", "svc", map[string]any{"port": int64(81)})}},
		{name: "a value's type changed", objects: []*unstructured.Unstructured{cm(), obj("Service", "svc", map[string]any{"port": "80"})}},
		{name: "a field added", objects: []*unstructured.Unstructured{cm(), obj("Service", "svc", map[string]any{"port": int64(80), "type": "ClusterIP"})}},
		{name: "other order", objects: []*unstructured.Unstructured{svc(), cm()}},
		{name: "an object fewer", objects: []*unstructured.Unstructured{cm()}},
		{name: "no objects", objects: nil},
		{name: "HTML characters", objects: []*unstructured.Unstructured{cm(), obj("Service", "svc", map[string]any{"port": int64(80), "note": "<&>"})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &Output{Objects: tt.objects, digest: &digestMemo{}}
			got, err := out.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if again, _ := out.Digest(); again != got {
				t.Errorf("second Digest %s, first %s", again, got)
			}
			if (got == want) != tt.same {
				t.Errorf("digest %s, base %s: same = %v, want %v", got, want, got == want, tt.same)
			}
		})
	}
}
