package cluster

import (
	"slices"
	"testing"
)

func TestCompareFields(t *testing.T) {
	ref := ObjectRef{Kind: "VirtualService", Namespace: "ns", Name: "vs"}
	tests := []struct {
		name          string
		desired, live map[string]any
		want          []Drift // Object is ref
	}{
		{
			name:    "server defaults are not drift",
			desired: map[string]any{"spec": map[string]any{"ports": []any{map[string]any{"port": int64(80)}}}},
			live:    map[string]any{"spec": map[string]any{"ports": []any{map[string]any{"port": int64(80), "protocol": "TCP"}}, "clusterIP": "10.0.0.1"}},
		},
		{
			name:    "numbers compare by value",
			desired: map[string]any{"weight": 90},
			live:    map[string]any{"weight": float64(90)},
		},
		{
			name:    "quantities compare by amount",
			desired: map[string]any{"cpu": "0.1", "memory": "1Gi"},
			live:    map[string]any{"cpu": "100m", "memory": "1024Mi"},
		},
		{
			name:    "zero values may be absent",
			desired: map[string]any{"a": map[string]any{}, "b": []any{}, "c": "", "d": false, "e": int64(0), "f": nil},
			live:    map[string]any{},
		},
		{
			name:    "changed scalar",
			desired: map[string]any{"spec": map[string]any{"weight": int64(90)}},
			live:    map[string]any{"spec": map[string]any{"weight": int64(50)}},
			want:    []Drift{{Field: "spec.weight", Live: "50", Desired: "90"}},
		},
		{
			name:    "missing field",
			desired: map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "shop"}}},
			live:    map[string]any{"metadata": map[string]any{}},
			want:    []Drift{{Field: "metadata.labels", Live: absent, Desired: `{"app":"shop"}`}},
		},
		{
			name:    "list length",
			desired: map[string]any{"hosts": []any{"a", "b"}},
			live:    map[string]any{"hosts": []any{"a"}},
			want:    []Drift{{Field: "hosts", Live: `["a"]`, Desired: `["a","b"]`}},
		},
		{
			name:    "list element",
			desired: map[string]any{"http": []any{map[string]any{"route": []any{map[string]any{"weight": int64(10)}}}}},
			live:    map[string]any{"http": []any{map[string]any{"route": []any{map[string]any{"weight": int64(20)}}}}},
			want:    []Drift{{Field: "http[0].route[0].weight", Live: "20", Desired: "10"}},
		},
		{
			name:    "type changed",
			desired: map[string]any{"port": int64(80)},
			live:    map[string]any{"port": "http"},
			want:    []Drift{{Field: "port", Live: `"http"`, Desired: "80"}},
		},
		{
			name:    "different quantities",
			desired: map[string]any{"cpu": "100m"},
			live:    map[string]any{"cpu": "200m"},
			want:    []Drift{{Field: "cpu", Live: `"200m"`, Desired: `"100m"`}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.want {
				tc.want[i].Object = ref
			}
			if got := compareFields(ref, tc.desired, tc.live); !slices.Equal(got, tc.want) {
				t.Errorf("compareFields = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestCompareFieldsRedactsSecrets(t *testing.T) {
	ref := ObjectRef{Kind: "Secret", Namespace: "ns", Name: "s"}
	got := compareFields(ref, map[string]any{"data": map[string]any{"token": "bmV3"}}, map[string]any{"data": map[string]any{"token": "b2xk"}})
	want := []Drift{{Object: ref, Field: "data.token", Live: "<redacted>", Desired: "<redacted>"}}
	if !slices.Equal(got, want) {
		t.Errorf("compareFields = %+v, want %+v", got, want)
	}
}
