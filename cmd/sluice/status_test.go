package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
)

// statusNow is when the status fixtures are looked at.
var statusNow = time.Date(2026, 11, 25, 10, 5, 0, 0, time.UTC)

// statusSpecs are the release specs of the status fixtures: the example's
// catalog with a manual approval on its canary, and a file with two more
// releases of the same shape.
func statusSpecs(t *testing.T) fstest.MapFS {
	t.Helper()
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	catalog := strings.Replace(string(data), "    - name: canary\n", "    - name: canary\n      approval: manual\n", 1)
	shop := func(name string) string {
		return strings.NewReplacer("name: catalog\n  namespace: istioinaction", "name: "+name+"\n  namespace: shop").Replace(string(data))
	}
	return fstest.MapFS{
		"releases/catalog.yaml": {Data: []byte(catalog)},
		"releases/shop.yaml":    {Data: []byte(shop("web") + "---\n" + shop("search") + "---\n" + shop("pay"))},
	}
}

// statusFixtures are one release in each situation REASON explains.
func statusFixtures() []*record.Status {
	f := func(x float64) *float64 { return &x }
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ok := []record.GateValue{
		{Metric: "request-success-rate", Value: f(99.9), Min: f(99), Passed: true},
		{Metric: "request-duration", Value: f(212), Max: f(500), Passed: true},
	}
	return []*record.Status{
		{Release: "istioinaction/catalog", SpecFile: "releases/catalog.yaml", Phase: record.PhaseWaiting, Since: at, Stable: "v1", Candidate: "v2",
			Step: "dark-launch", StepIndex: 1, Weight: 100, Gates: ok,
			Message: "canary-10 waits for approval: add {stage: canary, candidate: v2} to spec.approvals in releases/catalog.yaml"},
		{Release: "shop/cart", SpecFile: "releases/cart.yaml", Phase: record.Phase("Blocked"), Since: at.Add(-time.Hour), Stable: "v1", Candidate: "v2",
			Step: "canary-10", StepIndex: 2, Weight: 10,
			Message: `apply: namespaces "shop" not found` + "\nthe same error for 5 reconciles"},
		{Release: "shop/pay", SpecFile: "releases/shop.yaml", Phase: record.PhaseWaiting, Since: at, Stable: "v1", Candidate: "v2",
			Step: "canary-50", StepIndex: 6, Weight: 50, Gates: ok,
			Message: "promote waits for the release window (0 9 * * 1-5 for 8h0m0s), next open at 2026-11-26T09:00:00Z"},
		{Release: "shop/search", SpecFile: "releases/shop.yaml", Phase: record.PhaseProgressing, Since: at, Stable: "v1", Candidate: "v2",
			Step: "canary-10", StepIndex: 2, Weight: 10,
			Gates:  []record.GateValue{{Metric: "request-success-rate", Min: f(99)}, {Metric: "request-duration", Value: f(80), Max: f(500), Passed: true}},
			NoData: &record.NoDataHold{Since: at.Add(-90 * time.Second), Last: at, Checks: 2, Allowed: 5}},
		{Release: "shop/web", SpecFile: "releases/shop.yaml", Phase: record.PhaseRolledBack, Since: at, Stable: "v1", Candidate: "v2",
			Step: "rollback", StepIndex: 3, Weight: 0, FailedChecks: 5,
			Gates:    []record.GateValue{{Metric: "request-success-rate", Value: f(80), Min: f(99)}, {Metric: "request-duration", Value: f(90), Max: f(500), Passed: true}},
			Message:  "rolled back at canary-20: success-rate 80 < 99, 5/5 checks failed",
			Draining: []record.Drain{{Version: "v2", Until: at.Add(30 * time.Second)}}},
	}
}

// fakeLog is a Git log of Sluice's commits, newest first.
type fakeLog []*object.Commit

func (l fakeLog) Log(_ context.Context, fn func(*object.Commit) error) error {
	for _, c := range l {
		if err := fn(c); err != nil {
			if errors.Is(err, gitsync.ErrStopLog) {
				return nil
			}
			return err
		}
	}
	return nil
}

func sluiceCommit(t *testing.T, n int, when time.Time, release, action, step, subject string) *object.Commit {
	t.Helper()
	msg, err := gitsync.FormatMessage(subject, []gitsync.Trailer{
		{Key: record.TrailerRelease, Value: release}, {Key: record.TrailerAction, Value: action}, {Key: record.TrailerStep, Value: step},
	})
	if err != nil {
		t.Fatal(err)
	}
	sig := object.Signature{Name: "Sluice", Email: "sluice@localhost", When: when}
	return &object.Commit{Hash: plumbing.NewHash(fmt.Sprintf("%012x%028x", 0xc0ffee000000+n, 0)), Author: sig, Committer: sig, Message: msg}
}

func statusViews(t *testing.T) []*statusView {
	t.Helper()
	fsys := statusSpecs(t)
	var out []*statusView
	for _, st := range statusFixtures() {
		out = append(out, newStatusView(fsys, st))
	}
	return out
}

// TestStatusTable: one line per release, WEIGHT saying what the candidate
// gets (a dark launch its match, not 100%), REASON why it is there.
func TestStatusTable(t *testing.T) {
	var b bytes.Buffer
	if err := statusTable(&b, statusViews(t), statusNow); err != nil {
		t.Fatal(err)
	}
	golden(t, "status.txt", b.String())
}

// TestStatusDetail: one release, with its plan against the record, its
// gates against their thresholds and its last transitions, as text and
// as JSON.
func TestStatusDetail(t *testing.T) {
	at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	log := fakeLog{
		sluiceCommit(t, 5, at.Add(60*time.Minute), "shop/web", "rollback", "rollback", "web: rolled back at 20% (success-rate 80 < 99, 5/5 checks failed)"),
		sluiceCommit(t, 4, at.Add(50*time.Minute), "istioinaction/catalog", "wait", "dark-launch", "catalog: dark-launch passed; canary-10 waits for approval"),
		sluiceCommit(t, 3, at.Add(40*time.Minute), "shop/web", "advance", "canary-20", "web: 10% -> 20% (success-rate 99.9 >= 99)"),
		sluiceCommit(t, 2, at.Add(20*time.Minute), "istioinaction/catalog", "advance", "dark-launch", "catalog: deploy -> dark-launch (available)"),
		sluiceCommit(t, 1, at, "istioinaction/catalog", "start", "deploy", "catalog: start v1 -> v2 at deploy"),
	}
	views := statusViews(t)
	snap := &statusSnapshot{releases: views}
	for _, tc := range []struct {
		release, golden string
		json            bool
	}{
		{"catalog", "status-catalog.txt", false},
		{"istioinaction/catalog", "status-catalog.json", true},
		{"web", "status-web.txt", false},
		{"cart", "status-cart.txt", false},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			v, err := snap.find(tc.release)
			if err != nil {
				t.Fatal(err)
			}
			d, err := v.detail(t.Context(), log, 2)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if tc.json {
				err = writeJSON(&b, d)
			} else {
				err = detailText(&b, d, statusNow)
			}
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, b.String())
		})
	}
	if _, err := snap.find("nope"); err == nil || !strings.Contains(err.Error(), `no release "nope" is recorded`) {
		t.Errorf("unknown release: %v", err)
	}
}

// TestStatusJSONFields holds -o json to the field names README.md lists.
func TestStatusJSONFields(t *testing.T) {
	var b bytes.Buffer
	if err := writeJSON(&b, statusViews(t)); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	catalog := got[0]
	for _, k := range []string{"release", "specFile", "phase", "since", "stable", "candidate", "step", "stepIndex", "weight", "failedChecks", "gates", "message", "reason", "traffic", "trafficText"} {
		if _, ok := catalog[k]; !ok {
			t.Errorf("-o json lacks %q: %v", k, catalog)
		}
	}
	tr, _ := catalog["traffic"].(map[string]any)
	if tr["weight"] != 0.0 || tr["match"] != "x-istio-cohort=internal" || tr["matchWeight"] != 100.0 || catalog["trafficText"] != "dark: x-istio-cohort=internal" {
		t.Errorf("a dark launch's traffic: %v %v", tr, catalog["trafficText"])
	}
	if got[1]["specError"] == nil {
		t.Errorf("a release whose spec is missing says so: %v", got[1])
	}
}

func TestStatusArgs(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args          []string
		release, repo string
	}{
		{nil, "", ""},
		{[]string{dir}, "", dir},
		{[]string{"."}, "", "."},
		{[]string{"https://git.example.com/r.git"}, "", "https://git.example.com/r.git"},
		{[]string{"git@example.com:p/r.git"}, "", "git@example.com:p/r.git"},
		{[]string{"catalog"}, "catalog", ""},
		{[]string{"istioinaction/catalog"}, "istioinaction/catalog", ""},
		{[]string{"catalog", dir}, "catalog", dir},
	} {
		if rel, repo := statusArgs(tc.args); rel != tc.release || repo != tc.repo {
			t.Errorf("statusArgs(%q) = %q, %q; want %q, %q", tc.args, rel, repo, tc.release, tc.repo)
		}
	}
}
