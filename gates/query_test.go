package gates

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/specs"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func ptr(f float64) *float64 { return &f }

func dur(d time.Duration) specs.Duration { return specs.Duration{Duration: d} }

var catalogV2 = Target{Namespace: "istioinaction", Service: "catalog", Workload: "catalog-v2", Version: "v2"}

// TestBuiltinQueriesGolden pins the PromQL of the builtin metrics, which must
// stay what Istio's metric names and Flagger's queries are.
func TestBuiltinQueriesGolden(t *testing.T) {
	var b strings.Builder
	for _, m := range []specs.Metric{
		{Name: specs.MetricRequestSuccessRate},
		{Name: specs.MetricRequestSuccessRate, Interval: dur(30 * time.Second)},
		{Name: specs.MetricRequestDuration},
		{Name: specs.MetricRequestDuration, Interval: dur(90 * time.Second)},
	} {
		q, err := buildQuery(catalogV2, m)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		b.WriteString("# " + m.Name + " interval " + m.Interval.String() + "\n" + q + "\n")
	}
	golden := filepath.Join("testdata", "builtin-queries.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./gates -run Golden -update)", err)
	}
	if b.String() != string(want) {
		t.Errorf("builtin queries differ from %s:\n got:\n%s\nwant:\n%s", golden, b.String(), want)
	}
}

func TestCustomQueryTemplate(t *testing.T) {
	tests := []struct {
		name    string
		target  Target
		metric  specs.Metric
		want    string
		wantErr string
	}{
		{
			name:   "every variable",
			target: catalogV2,
			metric: specs.Metric{Name: "errors", Query: `sum(rate(x{ns="{{ .Namespace }}",svc="{{ .Service }}",wl="{{ .Workload }}",v="{{ .Version }}"}[{{ .Window }}]))`, Interval: dur(30 * time.Second)},
			want:   `sum(rate(x{ns="istioinaction",svc="catalog",wl="catalog-v2",v="v2"}[30s]))`,
		},
		{
			name:   "default window is a minute",
			target: catalogV2,
			metric: specs.Metric{Name: "w", Query: `{{ .Window }}`},
			want:   `1m`,
		},
		{
			name:   "mixed window",
			target: catalogV2,
			metric: specs.Metric{Name: "w", Query: `{{ .Window }}`, Interval: dur(90 * time.Second)},
			want:   `1m30s`,
		},
		{
			name:   "a custom query replaces a builtin's",
			target: catalogV2,
			metric: specs.Metric{Name: specs.MetricRequestSuccessRate, Query: `vector(100)`},
			want:   `vector(100)`,
		},
		{
			name:    "unknown variable",
			target:  catalogV2,
			metric:  specs.Metric{Name: "bad", Query: `x{a="{{ .Cluster }}"}`},
			wantErr: `map has no entry for key "Cluster"`,
		},
		{
			name:    "empty variable",
			target:  Target{Namespace: "ns", Workload: "w"},
			metric:  specs.Metric{Name: "bad", Query: `x{v="{{ .Version }}"}`},
			wantErr: `set for this target: .Namespace .Workload .Window`,
		},
		{
			name:    "template syntax",
			target:  catalogV2,
			metric:  specs.Metric{Name: "bad", Query: `x{{ .Namespace `},
			wantErr: "query template",
		},
		{
			name:    "no query for a metric that is not builtin",
			target:  catalogV2,
			metric:  specs.Metric{Name: "latency"},
			wantErr: `"latency" is not a builtin metric`,
		},
		{
			name:    "builtin needs a workload",
			target:  Target{Namespace: "ns"},
			metric:  specs.Metric{Name: specs.MetricRequestDuration},
			wantErr: "needs the target's namespace and workload",
		},
		{
			name:    "negative interval",
			target:  catalogV2,
			metric:  specs.Metric{Name: specs.MetricRequestDuration, Interval: dur(-time.Second)},
			wantErr: "negative",
		},
		{
			name:    "sub-millisecond interval",
			target:  catalogV2,
			metric:  specs.Metric{Name: specs.MetricRequestDuration, Interval: dur(1500 * time.Microsecond)},
			wantErr: "finer than",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := buildQuery(tt.target, tt.metric)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("buildQuery() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("buildQuery() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestTargetValidation(t *testing.T) {
	for _, tt := range []struct {
		target Target
		ok     bool
	}{
		{catalogV2, true},
		{Target{Namespace: "ns", Workload: "w"}, true},
		{Target{Namespace: "ns", Workload: `w"} or vector(1) #`}, false},
		{Target{Namespace: "ns", Version: "v 2"}, false},
		{Target{Namespace: "-ns"}, false},
	} {
		err := tt.target.validate()
		if (err == nil) != tt.ok {
			t.Errorf("validate(%+v) = %v, want ok=%v", tt.target, err, tt.ok)
		}
	}
}

func TestResultString(t *testing.T) {
	for _, tt := range []struct {
		r    Result
		want string
	}{
		{Result{Metric: specs.MetricRequestSuccessRate, Value: 99.83, Min: ptr(99), Passed: true}, "success-rate 99.8 >= 99"},
		{Result{Metric: specs.MetricRequestSuccessRate, Value: 90, Min: ptr(99)}, "success-rate 90 < 99"},
		{Result{Metric: specs.MetricRequestSuccessRate, Value: 98.96, Min: ptr(99)}, "success-rate 98.96 < 99"},
		{Result{Metric: specs.MetricRequestSuccessRate, NoData: true, Min: ptr(99)}, "success-rate no data"},
		{Result{Metric: specs.MetricRequestDuration, Value: 212.4, Max: ptr(500), Passed: true}, "p99 212.4ms <= 500ms"},
		{Result{Metric: specs.MetricRequestDuration, Value: 212, Max: ptr(500), Passed: true}, "p99 212ms <= 500ms"},
		{Result{Metric: specs.MetricRequestDuration, Value: 612, Max: ptr(500)}, "p99 612ms > 500ms"},
		{Result{Metric: "error-ratio", Value: 0.0123, Min: ptr(0), Max: ptr(0.05), Passed: true}, "error-ratio 0 <= 0.0123 <= 0.05"},
		{Result{Metric: "error-ratio", Value: 0.050004, Min: ptr(0), Max: ptr(0.05)}, "error-ratio 0.050004 > 0.05"},
		{Result{Metric: "x", Value: 3}, "x 3"},
	} {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
