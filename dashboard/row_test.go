package dashboard

import (
	"testing"
	"time"

	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

// TestRowSaysWhatSluiceStatusSays: a row's weight and reason read as
// sluice status's WEIGHT and REASON: a dark launch shows its match, not
// 100%, and a wait says what ends it.
func TestRowSaysWhatSluiceStatusSays(t *testing.T) {
	rels, err := specs.LoadFile("testdata/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		st          *record.Status
		weight      string
		reason      string
		matchWeight int32
	}{
		{"dark launch, waiting for an approval",
			&record.Status{Release: "istioinaction/catalog", Phase: record.PhaseWaiting, Stable: "v1", Candidate: "v2", Step: "dark-launch", StepIndex: 1, Weight: 100, Since: at,
				Message: "canary-10 waits for approval: add {stage: canary, candidate: v2} to spec.approvals in releases/catalog.yaml"},
			"dark: x-istio-cohort=internal", "approval needed for canary-10: sluice approve istioinaction/catalog, or add {stage: canary, candidate: v2} to spec.approvals in releases/catalog.yaml", 100},
		{"weighted", &record.Status{Release: "istioinaction/catalog", Phase: record.PhaseProgressing, Stable: "v1", Candidate: "v2", Step: "canary-20", StepIndex: 3, Weight: 20, Since: at},
			"20%", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			row := newRow(tc.st, rels[0], "", at)
			if row.TrafficText != tc.weight || row.Reason != tc.reason || row.Traffic.MatchWeight != tc.matchWeight {
				t.Errorf("weight %q reason %q match weight %d, want %q %q %d", row.TrafficText, row.Reason, row.Traffic.MatchWeight, tc.weight, tc.reason, tc.matchWeight)
			}
		})
	}
}
