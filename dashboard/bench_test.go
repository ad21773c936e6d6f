package dashboard

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"sluice.dev/sluice/record"
)

// manyReleases is a repository recording n releases across 10 namespaces,
// in every phase, each with its own spec file.
func manyReleases(tb testing.TB, n int) *fakeRepo {
	f := newFakeRepo()
	files := map[string]string{}
	phases := []record.Phase{record.PhaseProgressing, record.PhaseWaiting, record.PhaseSteady, record.PhasePromoted, record.PhaseRolledBack}
	for i := range n {
		ns, name := fmt.Sprintf("team-%02d", i%10), fmt.Sprintf("app-%04d", i)
		spec := fmt.Sprintf("releases/%s/%s.yaml", ns, name)
		files[spec] = readSpec(tb, ns, name, "v1", "v2")
		st := &record.Status{Release: ns + "/" + name, SpecFile: spec, Phase: phases[i%len(phases)], Since: t0.Add(time.Duration(i) * time.Second),
			Stable: "v1", Candidate: "v2", Step: "canary-20", StepIndex: 3, Weight: 20,
			Gates: []record.GateValue{{Metric: "request-success-rate", Value: fp(99.5), Min: fp(99), Passed: true}, {Metric: "request-duration", Value: fp(120), Max: fp(500), Passed: true}}}
		if st.Phase == record.PhaseWaiting {
			st.Message = "canary-30 waits for approval: merge pull request #12 https://git.example.com/org/releases/pulls/12"
		}
		data, err := st.Marshal()
		if err != nil {
			tb.Fatal(err)
		}
		files[record.StatusPath(record.DefaultStatusDir, ns, name)] = string(data)
	}
	f.commit(t0, "Ada", "many releases", files)
	return f
}

// BenchmarkReleasesPage renders the releases page of 1,000 releases: cold
// (the first request after a new head: status files and specs read and
// parsed) and warm (the same head: rendering alone).
func BenchmarkReleasesPage(b *testing.B) {
	f := manyReleases(b, 1000)
	b.Run("cold", func(b *testing.B) {
		var size int
		for b.Loop() {
			d := newTestDashboard(b, f, nil)
			rec := httptest.NewRecorder()
			d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui/", nil))
			size = rec.Body.Len()
		}
		b.ReportMetric(float64(size), "html-bytes")
	})
	b.Run("warm", func(b *testing.B) {
		d := newTestDashboard(b, f, nil)
		get(b, d, "/ui/")
		var size int
		for b.Loop() {
			rec := httptest.NewRecorder()
			d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui/", nil))
			size = rec.Body.Len()
		}
		b.ReportMetric(float64(size), "html-bytes")
	})
}

// TestPageWeight keeps the pages light: the bytes a browser loads for the
// releases page of 1,000 releases and for a release page, and the
// JavaScript under 300 KB.
func TestPageWeight(t *testing.T) {
	d := newTestDashboard(t, manyReleases(t, 1000), nil)
	gz := func(s string) int {
		w := &countWriter{}
		zw := gzip.NewWriter(w)
		_, _ = io.WriteString(zw, s)
		_ = zw.Close()
		return w.n
	}
	_, list := get(t, d, "/ui/")
	var js, css, jsGz, cssGz int
	for name, a := range d.assets {
		switch {
		case len(name) > 3 && name[len(name)-3:] == ".js":
			js, jsGz = js+len(a.body), jsGz+len(a.gz)
		case len(name) > 4 && name[len(name)-4:] == ".css":
			css, cssGz = css+len(a.body), cssGz+len(a.gz)
		}
	}
	_, rel := get(t, newTestDashboard(t, catalogHistory(t), nil), "/ui/releases/istioinaction/catalog")
	t.Logf("releases page, 1,000 releases: HTML %d bytes (%d gzip)", len(list), gz(list))
	t.Logf("release page: HTML %d bytes (%d gzip)", len(rel), gz(rel))
	t.Logf("JavaScript %d bytes (%d gzip), CSS %d bytes (%d gzip)", js, jsGz, css, cssGz)
	if js > 300<<10 {
		t.Errorf("JavaScript %d bytes, over 300 KB", js)
	}
}

type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
