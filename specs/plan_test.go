package specs

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExpandWeights(t *testing.T) {
	cases := []struct {
		name string
		w    WeightedStage
		want []int32
	}{
		{"flagger shorthand", WeightedStage{StepWeight: 10, MaxWeight: 50}, []int32{10, 20, 30, 40, 50}},
		{"uneven step ends at max", WeightedStage{StepWeight: 20, MaxWeight: 50}, []int32{20, 40, 50}},
		{"single step", WeightedStage{StepWeight: 100, MaxWeight: 100}, []int32{100}},
		{"explicit", WeightedStage{Weights: []int32{10, 25, 50}}, []int32{10, 25, 50}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.w.Expand(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Expand() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPlanCatalog(t *testing.T) {
	rels, err := LoadFile("../examples/catalog/releases/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	steps, err := Plan(rels[0])
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
	}
	want := "deploy dark-launch canary-10 canary-20 canary-30 canary-40 canary-50 promote"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("steps %q, want %q", got, want)
	}
	dl := steps[1]
	if dl.Kind != KindDarkLaunch || dl.Weight != 100 || dl.Match[0].Headers["x-istio-cohort"].Exact != "internal" {
		t.Errorf("dark launch step = %+v", dl)
	}
	g := steps[3].Gates
	if g.Interval != 45*time.Second || g.Threshold != 5 || g.Iterations != 1 || len(g.Metrics) != 2 ||
		g.Metrics[0].Interval.Duration != time.Minute || g.Metrics[1].Interval.Duration != 30*time.Second {
		t.Errorf("canary-20 gates = %+v", g)
	}
	if len(steps[0].Gates.Metrics) != 0 || len(steps[7].Gates.Metrics) != 0 {
		t.Error("deploy and promote should hold on availability alone")
	}
	// The promote step keeps the old version: it drains after the
	// promotion is recorded (issue 12: no pods removed with the traffic).
	if got := steps[7].Versions; !reflect.DeepEqual(got, []string{"v1", "v2"}) {
		t.Errorf("promote versions = %v, want [v1 v2]", got)
	}
}

func TestPlanOverridesAndApproval(t *testing.T) {
	doc := strings.Replace(validRelease, "    - name: canary\n      weighted:\n",
		"    - name: canary\n      approval: manual\n      analysis:\n        interval: 10s\n        iterations: 3\n      weighted:\n", 1)
	rels, err := Parse("r.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	steps, err := Plan(rels[0])
	if err != nil {
		t.Fatal(err)
	}
	c := steps[2]
	if c.Approval != ApprovalManual || c.Gates.Interval != 10*time.Second || c.Gates.Iterations != 3 || len(c.Gates.Metrics) != 1 {
		t.Errorf("canary-10 = %+v", c)
	}
	if steps[1].Gates.Interval != 45*time.Second {
		t.Errorf("override leaked into dark-launch: %v", steps[1].Gates.Interval)
	}
	// Only the stage's first step waits for its approval; every step of
	// the stage still names it, for the machine.
	for _, st := range steps {
		wantApproval, wantAwaits := "", false
		if st.Stage == "canary" {
			wantApproval, wantAwaits = ApprovalManual, st.Name == "canary-10"
		}
		if st.Approval != wantApproval || st.AwaitsApproval != wantAwaits {
			t.Errorf("%s: approval %q awaits %v, want %q %v", st.Name, st.Approval, st.AwaitsApproval, wantApproval, wantAwaits)
		}
	}
}

func TestStepTraffic(t *testing.T) {
	internal := []Match{{Headers: map[string]StringMatch{"x-istio-cohort": {Exact: "internal"}}}}
	cases := []struct {
		name string
		step Step
		want Traffic
		text string
	}{
		{"deploy", Step{Kind: KindDeploy}, Traffic{}, "0%"},
		{"dark launch takes the matching requests, no weighted share", Step{Kind: KindDarkLaunch, Weight: 100, Match: internal},
			Traffic{Match: "x-istio-cohort=internal", MatchWeight: 100}, "dark: x-istio-cohort=internal"},
		{"weighted", Step{Kind: KindWeighted, Weight: 20}, Traffic{Weight: 20}, "20%"},
		{"weighted share of matching requests", Step{Kind: KindWeighted, Weight: 10, Match: []Match{{SourceLabels: map[string]string{"app": "frontend", "tier": "web"}}}},
			Traffic{Match: "from app=frontend,tier=web", MatchWeight: 10}, "10% of from app=frontend,tier=web"},
		{"mirror", Step{Kind: KindMirror, MirrorPercent: 5}, Traffic{MirrorPercent: 5}, "0% (5% mirrored)"},
		{"promote", Step{Kind: KindPromote, Weight: 100}, Traffic{Weight: 100}, "100%"},
		{"rollback", Step{Kind: KindRollback}, Traffic{}, "0%"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.step.Traffic()
			if got != tc.want {
				t.Errorf("Traffic() = %+v, want %+v", got, tc.want)
			}
			if got.String() != tc.text {
				t.Errorf("String() = %q, want %q", got.String(), tc.text)
			}
		})
	}
}

func TestDescribeMatch(t *testing.T) {
	ms := []Match{
		{Headers: map[string]StringMatch{"x-user": {Prefix: "test"}, "x-b": {Regex: "a.*"}}, Cookie: &CookieMatch{Name: "canary", Value: "1"}},
		{Headers: map[string]StringMatch{"x-istio-cohort": {Exact: "internal"}}},
	}
	want := "x-b~a.* and x-user=test* and cookie canary=1 or x-istio-cohort=internal"
	if got := DescribeMatch(ms); got != want {
		t.Errorf("DescribeMatch = %q, want %q", got, want)
	}
}

func TestPlanWithoutCandidate(t *testing.T) {
	doc := strings.Replace(validRelease, "  candidate: v2\n", "", 1)
	rels, err := Parse("r.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	steps, err := Plan(rels[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 1 || steps[0].Kind != KindStable {
		t.Fatalf("plan without candidate = %+v, want one stable step", steps)
	}
}

func TestWindowOpen(t *testing.T) {
	w := &Window{Schedule: "0 9 * * 1-5", Duration: Duration{8 * time.Hour}, TimeZone: "Europe/Berlin"}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		at   time.Time
		open bool
	}{
		{time.Date(2026, 11, 25, 10, 0, 0, 0, berlin), true},  // Wednesday 10:00
		{time.Date(2026, 11, 25, 8, 59, 0, 0, berlin), false}, // before it opens
		{time.Date(2026, 11, 25, 17, 30, 0, 0, berlin), false},
		{time.Date(2026, 11, 28, 10, 0, 0, 0, berlin), false}, // Saturday
	}
	for _, tc := range cases {
		open, _, err := w.Open(tc.at)
		if err != nil {
			t.Fatal(err)
		}
		if open != tc.open {
			t.Errorf("Open(%v) = %v, want %v", tc.at, open, tc.open)
		}
	}
}

func TestPlanWebhooks(t *testing.T) {
	hooks := "    webhooks:\n" +
		"      - {name: smoke, type: pre-step, url: http://smoke.test/, timeout: 30s, retries: 0}\n" +
		"      - {name: health, type: check, url: http://health.test/}\n" +
		"      - {name: load, type: load, url: http://load.test/}\n"
	doc := strings.Replace(validRelease, "        interval: 1m\n", "        interval: 1m\n"+hooks, 1)
	doc = strings.Replace(doc, "    - name: promote\n      promote: {}\n",
		"    - name: promote\n      promote: {}\n      analysis:\n        webhooks:\n          - {name: confirm, type: pre-step, url: http://confirm.test/}\n", 1)
	doc = strings.Replace(doc, "    - name: canary\n      weighted:\n", "    - name: canary\n      analysis:\n        skipMetrics: true\n      weighted:\n", 1)
	rels, err := Parse("r.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	steps, err := Plan(rels[0])
	if err != nil {
		t.Fatal(err)
	}
	names := func(ws []Webhook) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.Name)
		}
		return out
	}
	for _, tc := range []struct {
		step      int
		want      []string
		hasChecks bool
	}{
		{0, nil, false}, // deploy: no traffic, no release-wide hooks
		{1, []string{"smoke", "health", "load"}, true}, // dark-launch
		{2, []string{"smoke", "load"}, false},          // canary-10: skipMetrics drops checks only
		{7, []string{"confirm"}, false},                // promote: its stage's own
	} {
		if got := names(steps[tc.step].Gates.Webhooks); !reflect.DeepEqual(got, tc.want) || steps[tc.step].Gates.HasChecks() != tc.hasChecks {
			t.Errorf("step %s: webhooks %v (checks %v), want %v (%v)", steps[tc.step].Name, got, steps[tc.step].Gates.HasChecks(), tc.want, tc.hasChecks)
		}
	}
	smoke := steps[1].Gates.Hooks(WebhookPreStep)[0]
	if smoke.Attempts() != 1 || smoke.TimeoutOrDefault() != 30*time.Second {
		t.Errorf("smoke: %d attempts, timeout %s", smoke.Attempts(), smoke.TimeoutOrDefault())
	}
	if h := steps[1].Gates.Hooks(WebhookCheck)[0]; h.Attempts() != 3 || h.TimeoutOrDefault() != 10*time.Second {
		t.Errorf("health: %d attempts, timeout %s", h.Attempts(), h.TimeoutOrDefault())
	}
}
