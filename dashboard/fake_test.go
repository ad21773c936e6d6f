package dashboard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
)

// fakeRepo is a Git history in memory: each commit a full tree.
type fakeRepo struct {
	commits []*object.Commit // oldest first
	trees   map[plumbing.Hash]fstest.MapFS
	files   fstest.MapFS // the tree being built
	synced  bool
}

func newFakeRepo() *fakeRepo {
	return &fakeRepo{trees: map[plumbing.Hash]fstest.MapFS{}, files: fstest.MapFS{}, synced: true}
}

func (f *fakeRepo) Head() (plumbing.Hash, bool, error) {
	if !f.synced || len(f.commits) == 0 {
		return plumbing.ZeroHash, false, nil
	}
	return f.commits[len(f.commits)-1].Hash, true, nil
}

func (f *fakeRepo) Tree(_ context.Context, c plumbing.Hash) (fs.FS, error) {
	t, ok := f.trees[c]
	if !ok {
		return nil, fmt.Errorf("no commit %s", c)
	}
	return t, nil
}

func (f *fakeRepo) Log(ctx context.Context, fn func(*object.Commit) error) error {
	for i := len(f.commits) - 1; i >= 0; i-- {
		if err := fn(f.commits[i]); err != nil {
			if errors.Is(err, gitsync.ErrStopLog) {
				return nil
			}
			return err
		}
	}
	return nil
}

// commit records files (nil content deletes) with a message.
func (f *fakeRepo) commit(when time.Time, author, message string, files map[string]string) plumbing.Hash {
	for p, data := range files {
		f.files[p] = &fstest.MapFile{Data: []byte(data)}
	}
	tree := maps.Clone(f.files)
	h := plumbing.ComputeHash(plumbing.CommitObject, fmt.Appendf(nil, "%d %s %s", len(f.commits), when, message))
	c := &object.Commit{Hash: h, Message: message,
		Author:    object.Signature{Name: author, Email: strings.ToLower(author) + "@example.com", When: when},
		Committer: object.Signature{Name: author, When: when}}
	if n := len(f.commits); n > 0 {
		c.ParentHashes = []plumbing.Hash{f.commits[n-1].Hash}
	}
	f.commits = append(f.commits, c)
	f.trees[h] = tree
	return h
}

// record commits a Sluice transition of a release.
func (f *fakeRepo) record(t testing.TB, when time.Time, st *record.Status, action record.Action, subject string, files map[string]string) plumbing.Hash {
	t.Helper()
	ns, name, _ := strings.Cut(st.Release, "/")
	ch, err := record.Change(record.DefaultStatusDir, record.Entry{Release: st.Release, Namespace: ns, Name: name, Status: st, Action: action, Subject: subject})
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]string{}
	for p, data := range ch.Files {
		all[p] = string(data)
	}
	maps.Copy(all, files)
	msg := ch.Message + "\n"
	if len(ch.Trailers) > 0 {
		msg += "\n"
		for _, tr := range ch.Trailers {
			msg += tr.Key + ": " + tr.Value + "\n"
		}
	}
	return f.commit(when, "Sluice", msg, all)
}

func readSpec(t testing.TB, ns, name, stable, candidate string) string {
	t.Helper()
	data, err := os.ReadFile("testdata/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), "namespace: istioinaction", "namespace: "+ns, 1)
	s = strings.Replace(s, "name: catalog\n  namespace", "name: "+name+"\n  namespace", 1)
	s = strings.Replace(s, "  stable: v1", "    - name: v3\n      source: apps/catalog/overlays/v2\n    - name: v7\n      source: apps/catalog/overlays/v1\n  stable: "+stable, 1)
	if candidate == "" {
		s = strings.Replace(s, "  candidate: v2\n", "", 1)
	} else {
		s = strings.Replace(s, "candidate: v2", "candidate: "+candidate, 1)
	}
	return s
}

func fp(f float64) *float64 { return &f }

// t0 is when the fixtures' history starts.
var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

// catalogHistory is istioinaction/catalog: v2 rolled back at canary-10,
// then v3 in progress at canary-20, with a person's commits between.
// It also records shop/cart, steady, whose spec has a release window.
func catalogHistory(t testing.TB) *fakeRepo {
	f := newFakeRepo()
	id := "istioinaction/catalog"
	file := "releases/catalog.yaml"
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	f.commit(at(0), "Ada", "release catalog v1", map[string]string{file: readSpec(t, "istioinaction", "catalog", "v1", "")})
	steady := &record.Status{Release: id, SpecFile: file, Phase: record.PhaseSteady, Since: at(1), Stable: "v1", Step: "stable"}
	f.record(t, at(1), steady, record.ActionSteady, "catalog: steady at v1", nil)

	cartSpec := strings.Replace(readSpec(t, "shop", "cart", "v7", ""), "  stages:",
		"  window:\n    schedule: \"0 9 * * 1-5\"\n    duration: 8h\n    timeZone: UTC\n  stages:", 1)
	f.commit(at(2), "Ada", "release cart v7", map[string]string{"releases/cart.yaml": cartSpec})
	f.record(t, at(2), &record.Status{Release: "shop/cart", SpecFile: "releases/cart.yaml", Phase: record.PhaseSteady, Since: at(2), Stable: "v7", Step: "stable"},
		record.ActionSteady, "cart: steady at v7", nil)

	// v2: rolled back at canary-10.
	f.commit(at(10), "Ada", "catalog v2", map[string]string{file: readSpec(t, "istioinaction", "catalog", "v1", "v2")})
	st := &record.Status{Release: id, SpecFile: file, Phase: record.PhaseProgressing, Since: at(10), Stable: "v1", Candidate: "v2", Revision: "r2", Step: "deploy"}
	f.record(t, at(10), st, record.ActionStart, "catalog: start v1 -> v2 at deploy", nil)
	st.Step, st.StepIndex, st.Weight, st.Since = "dark-launch", 1, 100, at(11)
	f.record(t, at(11), st, record.ActionAdvance, "catalog: deploy -> dark-launch (available)", nil)
	st.Step, st.StepIndex, st.Weight, st.Since = "canary-10", 2, 10, at(12)
	st.Gates = []record.GateValue{{Metric: "request-success-rate", Value: fp(100), Min: fp(99), Passed: true}, {Metric: "request-duration", Value: fp(49), Max: fp(500), Passed: true}}
	f.record(t, at(12), st, record.ActionAdvance, "catalog: dark-launch -> 10% (success-rate 100 >= 99, p99 49ms <= 500ms)", nil)
	st.FailedChecks = 1
	st.Gates = []record.GateValue{{Metric: "request-success-rate", Value: fp(91.5), Min: fp(99)}, {Metric: "request-duration", Value: fp(52), Max: fp(500), Passed: true}}
	f.record(t, at(13), st, record.ActionCheck, "catalog: check failed at 10% (success-rate 91.5 < 99), 1/5", nil)
	st.Phase, st.Step, st.Weight, st.Since, st.FailedChecks = record.PhaseRolledBack, "rollback", 0, at(14), 5
	st.Message = "rolled back at canary-10: success-rate 90.2 < 99, 5/5 checks failed"
	st.Gates = []record.GateValue{{Metric: "request-success-rate", Value: fp(90.2), Min: fp(99)}, {Metric: "request-duration", Min: nil, Max: fp(500)}}
	f.record(t, at(14), st, record.ActionRollback, "catalog: rolled back at 10% (success-rate 90.2 < 99, 5/5 checks failed)", nil)

	f.commit(at(20), "Grace", "notes", map[string]string{"notes.txt": "hello"})

	// v3: in progress at canary-20, approved by a pull request.
	f.commit(at(30), "Grace", "catalog v3", map[string]string{file: readSpec(t, "istioinaction", "catalog", "v1", "v3")})
	st = &record.Status{Release: id, SpecFile: file, Phase: record.PhaseProgressing, Since: at(30), Stable: "v1", Candidate: "v3", Revision: "r3", Step: "deploy"}
	f.record(t, at(30), st, record.ActionStart, "catalog: start v1 -> v3 at deploy", nil)
	st.Step, st.StepIndex, st.Weight, st.Since = "dark-launch", 1, 100, at(31)
	f.record(t, at(31), st, record.ActionAdvance, "catalog: deploy -> dark-launch (available)", nil)
	st.Step, st.StepIndex, st.Weight, st.Since = "canary-10", 2, 10, at(32)
	st.Gates = []record.GateValue{{Metric: "request-success-rate", Value: fp(100), Min: fp(99), Passed: true}, {Metric: "request-duration", Value: fp(48.5), Max: fp(500), Passed: true}}
	f.record(t, at(32), st, record.ActionAdvance, "catalog: dark-launch -> 10% (success-rate 100 >= 99, p99 48.5ms <= 500ms)", nil)
	st.Step, st.StepIndex, st.Weight, st.Since = "canary-20", 3, 20, at(33)
	st.PullRequest = &record.PullRequestRef{Number: 7, URL: "https://token:secret@git.example.com/platform/releases/pulls/7", Branch: "sluice/istioinaction/catalog/canary-20", Step: "canary-20"}
	st.Gates = []record.GateValue{{Metric: "request-success-rate", Value: fp(99.7), Min: fp(99), Passed: true}, {Metric: "request-duration", Value: fp(51), Max: fp(500), Passed: true}}
	f.record(t, at(33), st, record.ActionAdvance, "catalog: 10% -> 20% (success-rate 99.7 >= 99, p99 51ms <= 500ms)", nil)
	return f
}

// fakeMetrics answers range queries with a series per version, or one
// series for a gate's query.
type fakeMetrics struct {
	queries   []string
	err       error
	candidate string // the candidate's version; default v3
}

func (m *fakeMetrics) QueryRange(_ context.Context, q string, r promv1.Range) (model.Matrix, error) {
	m.queries = append(m.queries, q)
	if m.err != nil {
		return nil, m.err
	}
	var ts []model.Time
	for t := r.Start; !t.After(r.End); t = t.Add(r.Step) {
		ts = append(ts, model.TimeFromUnix(t.Unix()))
	}
	series := func(labels model.Metric, f func(i int) float64) *model.SampleStream {
		s := &model.SampleStream{Metric: labels}
		for i, t := range ts {
			s.Values = append(s.Values, model.SamplePair{Timestamp: t, Value: model.SampleValue(f(i))})
		}
		return s
	}
	switch {
	case strings.Contains(q, "destination_version"):
		return model.Matrix{
			series(model.Metric{"destination_version": "v1"}, func(int) float64 { return 40 }),
			series(model.Metric{"destination_version": model.LabelValue(cmp.Or(m.candidate, "v3"))}, func(int) float64 { return 10 }),
		}, nil
	case strings.Contains(q, "histogram_quantile"):
		return model.Matrix{series(model.Metric{}, func(i int) float64 { return 40 + float64(i%10) })}, nil
	}
	return model.Matrix{series(model.Metric{}, func(int) float64 { return 99.9 })}, nil
}
