package dashboard

import (
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/gates"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// now is the tests' clock: a Wednesday, 3 minutes after the last commit.
var now = t0.Add(36 * time.Minute)

func newTestDashboard(t testing.TB, src Source, m Metrics) *Dashboard {
	t.Helper()
	link, err := CommitURLTemplate("https://git.example.com/platform/releases/commit/{commit}")
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Source: src, CommitURL: link, Now: func() time.Time { return now }}
	if m != nil {
		opts.Metrics = m
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func get(t testing.TB, h http.Handler, target string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update to accept):\n%s", name, got)
	}
}

// assetHashes hides the assets' content hashes, so the golden pages do not
// change with every edit of a script.
var assetHashes = regexp.MustCompile(`\?v=[0-9a-f]{16}`)

func TestPagesGolden(t *testing.T) {
	d := newTestDashboard(t, catalogHistory(t), nil)
	for _, tc := range []struct{ target, golden string }{
		{"/ui/", "releases.html"},
		{"/ui/?phase=Steady", "releases-steady.html"},
		{"/ui/releases/istioinaction/catalog", "release-catalog.html"},
		{"/ui/releases/shop/cart", "release-cart.html"},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			res, body := get(t, d, tc.target)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d\n%s", tc.target, res.StatusCode, body)
			}
			golden(t, tc.golden, assetHashes.ReplaceAllString(body, "?v=HASH"))
		})
	}
}

func TestReleasesFilter(t *testing.T) {
	d := newTestDashboard(t, catalogHistory(t), nil)
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"istioinaction/catalog", "shop/cart"}},
		{"namespace=shop", []string{"shop/cart"}},
		{"phase=Progressing", []string{"istioinaction/catalog"}},
		{"phase=RolledBack", nil},
		{"namespace=shop&phase=Progressing", nil},
	}
	for _, tc := range tests {
		res, body := get(t, d, "/ui/api/releases?"+tc.query)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.query, res.StatusCode, body)
		}
		var out struct {
			Head     string
			Releases []Row
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range out.Releases {
			ids = append(ids, r.ID)
		}
		if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
			t.Errorf("?%s: releases %v, want %v", tc.query, ids, tc.want)
		}
	}
}

func TestReleaseView(t *testing.T) {
	d := newTestDashboard(t, catalogHistory(t), nil)
	res, body := get(t, d, "/ui/api/releases/istioinaction/catalog")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	var out struct{ Release ReleaseView }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	v := out.Release
	var states []string
	for _, s := range v.Plan {
		states = append(states, s.Name+"="+s.State)
	}
	want := "deploy=done dark-launch=done canary-10=done canary-20=current canary-30=todo canary-40=todo canary-50=todo promote=todo"
	if got := strings.Join(states, " "); got != want {
		t.Errorf("plan:\n got %s\nwant %s", got, want)
	}
	if v.Current == nil || v.Current.Candidate != "v3" || v.Current.Outcome != OutcomeInProgress {
		t.Errorf("current run %+v, want v3 in progress", v.Current)
	}
	if len(v.Past) != 1 || v.Past[0].Candidate != "v2" || v.Past[0].Outcome != OutcomeRolledBack ||
		!strings.HasPrefix(v.Past[0].Why, "rolled back at 10% (success-rate 90.2 < 99") {
		t.Errorf("past runs %+v, want v2 rolled back with its reason", v.Past)
	}
	var subjects []string
	for _, e := range v.Timeline {
		subjects = append(subjects, strings.TrimPrefix(e.Subject, "catalog: "))
		if !strings.HasPrefix(e.URL, "https://git.example.com/platform/releases/commit/"+e.Commit) || len(e.ShortCommit) != 7 {
			t.Errorf("event %s: link %q, short %q", e.Subject, e.URL, e.ShortCommit)
		}
	}
	if len(subjects) != 4 || !strings.HasPrefix(subjects[0], "10% -> 20%") || !strings.HasPrefix(subjects[3], "start v1 -> v3") {
		t.Errorf("timeline, newest first: %q", subjects)
	}
	if pr := v.Timeline[0].PullRequest; pr == nil || pr.URL != "https://git.example.com/platform/releases/pulls/7" {
		t.Errorf("the newest event's pull request %+v: want its URL without the userinfo", pr)
	}
	if len(v.Gates) != 2 || v.Gates[0].Threshold() != "≥ 99 %" || v.Gates[1].Threshold() != "≤ 500 ms" {
		t.Errorf("gates %+v", v.Gates)
	}
}

func TestSeries(t *testing.T) {
	m := &fakeMetrics{}
	d := newTestDashboard(t, catalogHistory(t), m)
	res, body := get(t, d, "/ui/api/releases/istioinaction/catalog/series")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	var s Series
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	// The run: 09:30 to now (09:36), with 30s on either side up to now.
	if got, want := time.Unix(s.From, 0).UTC(), t0.Add(29*time.Minute+30*time.Second); !got.Equal(want) {
		t.Errorf("from %s, want %s", got, want)
	}
	if got := time.Unix(s.To, 0).UTC(); !got.Equal(now) {
		t.Errorf("to %s, want now %s", got, now)
	}
	wantQuery := `sum by (destination_version) (rate(istio_requests_total{reporter="destination",destination_service_namespace="istioinaction",destination_service_name="catalog"}[1m]))`
	if s.Traffic.Query != wantQuery {
		t.Errorf("traffic query\n got %s\nwant %s", s.Traffic.Query, wantQuery)
	}
	kinds := func(c Chart) string {
		var k []string
		for _, si := range c.Series {
			k = append(k, si.Kind)
		}
		return strings.Join(k, ",")
	}
	if got := kinds(s.Traffic); got != "set,stable,candidate" {
		t.Errorf("traffic series %s", got)
	}
	last := len(s.Traffic.Data[0]) - 1
	if set, v1, v3 := s.Traffic.Data[1][last], s.Traffic.Data[2][last], s.Traffic.Data[3][last]; set == nil || *set != 20 || *v1 != 80 || *v3 != 20 {
		t.Errorf("at the end: set %v, observed v1 %v v3 %v; want 20, 80, 20", deref(set), deref(v1), deref(v3))
	}
	// At dark launch only matching requests reach v3: no set weight.
	for i, x := range s.Traffic.Data[0] {
		if int64(*x) == t0.Add(31*time.Minute+30*time.Second).Unix() && s.Traffic.Data[1][i] != nil {
			t.Errorf("a set weight %v is drawn at dark launch", *s.Traffic.Data[1][i])
		}
	}
	if len(s.Gates) != 2 {
		t.Fatalf("%d gate charts, want 2", len(s.Gates))
	}
	sr := s.Gates[0]
	if got := kinds(sr); got != "value,min,pass,fail,nodata" {
		t.Errorf("success rate series %s", got)
	}
	q, _ := gates.Query(gates.Target{Namespace: "istioinaction", Service: "catalog", Workload: "catalog-v3", Version: "v3"}, v3Metric(t, d))
	if sr.Query != q {
		t.Errorf("gate query\n got %s\nwant %s (as the gates build it)", sr.Query, q)
	}
	count := func(col []*float64) int {
		n := 0
		for _, v := range col {
			if v != nil {
				n++
			}
		}
		return n
	}
	if p, f := count(sr.Data[3]), count(sr.Data[4]); p != 2 || f != 0 {
		t.Errorf("success rate dots: %d passed, %d failed; want the 2 recorded checks passed", p, f)
	}
	if n := count(sr.Data[1]); n < 100 {
		t.Errorf("success rate: %d points from Prometheus", n)
	}
	if s.Steps[len(s.Steps)-1].Step != "canary-20" {
		t.Errorf("step markers %+v", s.Steps)
	}
}

func v3Metric(t *testing.T, d *Dashboard) specs.Metric {
	t.Helper()
	ix, err := d.store.index(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return ix.specs["istioinaction/catalog"].Spec.Analysis.Metrics[0]
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

// A rolled-back release charts its failed checks; Prometheus' failure is
// told in the chart, without its address or credentials.
func TestSeriesRolledBackAndPrometheusDown(t *testing.T) {
	f := catalogHistory(t)
	f.commits = f.commits[:10] // up to v2's rollback
	m := &fakeMetrics{err: &gates.PrometheusError{Address: "http://prom:9090", Err: errors.New(`Post "http://admin:hunter2@prom:9090/api/v1/query_range": connection refused`)}}
	d := newTestDashboard(t, f, m)
	_, body := get(t, d, "/ui/api/releases/istioinaction/catalog/series")
	if strings.Contains(body, "hunter2") || strings.Contains(body, "admin") {
		t.Errorf("the series leak Prometheus' credentials:\n%s", body)
	}
	var s Series
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.Traffic.Error, "connection refused") {
		t.Errorf("traffic error %q", s.Traffic.Error)
	}
	failed, nodata := 0, 0
	for _, g := range s.Gates {
		for _, v := range g.Data[len(g.Data)-2] {
			if v != nil {
				failed++
			}
		}
		for _, v := range g.Data[len(g.Data)-1] {
			if v != nil {
				nodata++
			}
		}
	}
	if failed != 2 || nodata != 1 {
		t.Errorf("%d failed and %d no-data dots, want 2 and 1", failed, nodata)
	}
	_, page := get(t, d, "/ui/releases/istioinaction/catalog")
	if !strings.Contains(page, `data-step="canary-10" data-state="failed"`) {
		t.Errorf("the rolled-back step is not marked:\n%s", page)
	}
}

func TestSafe(t *testing.T) {
	d := newTestDashboard(t, catalogHistory(t), &fakeMetrics{})
	for _, target := range []string{"/ui/", "/ui/releases/istioinaction/catalog", "/ui/releases/shop/cart", "/ui/nope",
		"/ui/api/releases", "/ui/api/releases/istioinaction/catalog", "/ui/api/releases/istioinaction/catalog/series"} {
		res, body := get(t, d, target)
		csp := res.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: Content-Security-Policy %q", target, csp)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", target)
		}
		for _, bad := range []string{"secret", "token:", "hunter2", " style=", " on" + "click=", "javascript:"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: the response holds %q", target, bad)
			}
		}
		if strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(body, -1) {
				if !strings.Contains(m, ` src="/ui/assets/`) {
					t.Errorf("%s: inline script %s", target, m)
				}
			}
		}
	}
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, httptest.NewRequest(method, "/ui/releases/istioinaction/catalog", nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", method, rec.Code)
		}
	}
}

func TestAssets(t *testing.T) {
	d := newTestDashboard(t, catalogHistory(t), nil)
	total := 0
	for _, name := range []string{"live.js", "charts.js", "vendor/uplot.min.js", "dashboard.css", "vendor/uplot.min.css"} {
		res, body := get(t, d, d.assetURL(name))
		if res.StatusCode != http.StatusOK || len(body) == 0 || res.Header.Get("ETag") == "" {
			t.Errorf("%s: %d, %d bytes", name, res.StatusCode, len(body))
		}
		if strings.HasSuffix(name, ".js") {
			total += len(body)
		}
	}
	if total > 300<<10 {
		t.Errorf("JavaScript weighs %d bytes, over 300 KB", total)
	}
	req := httptest.NewRequest(http.MethodGet, d.assetURL("live.js"), nil)
	req.Header.Set("If-None-Match", d.assets["live.js"].etag)
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Errorf("conditional GET: %d, want 304", rec.Code)
	}
}

func TestNotSyncedAndMissing(t *testing.T) {
	f := catalogHistory(t)
	f.synced = false
	d := newTestDashboard(t, f, nil)
	if res, _ := get(t, d, "/ui/"); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("before the first sync: %d, want 503", res.StatusCode)
	}
	f.synced = true
	for _, target := range []string{"/ui/releases/istioinaction/nope", "/ui/api/releases/x/y", "/ui/elsewhere"} {
		if res, _ := get(t, d, target); res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", target, res.StatusCode)
		}
	}
}

func TestRuns(t *testing.T) {
	c := func(a record.Action, subject string) commitInfo { return commitInfo{Action: a, Subject: subject} }
	tests := []struct {
		name    string
		commits []commitInfo
		want    []string
	}{
		{"steady only", []commitInfo{c(record.ActionSteady, "")}, nil},
		{"promoted", []commitInfo{c(record.ActionSteady, ""), c(record.ActionStart, ""), c(record.ActionAdvance, ""), c(record.ActionPromote, "p")}, []string{"promoted:p"}},
		{"abandoned for a new candidate", []commitInfo{c(record.ActionStart, ""), c(record.ActionAbandon, "a"), c(record.ActionAdvance, "")}, []string{"abandoned:a", "in progress:"}},
		{"rolled back then retried", []commitInfo{c(record.ActionStart, ""), c(record.ActionCheck, ""), c(record.ActionRollback, "r"), c(record.ActionRetry, ""), c(record.ActionWait, "")}, []string{"rolled back:r", "in progress:"}},
	}
	for _, tc := range tests {
		var got []string
		for _, r := range runs(tc.commits) {
			got = append(got, r.Outcome+":"+r.Why)
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: runs %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestWindowState(t *testing.T) {
	d := newTestDashboard(t, catalogHistory(t), nil)
	ix, err := d.store.index(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	w := ix.specs["shop/cart"].Spec.Window
	tests := []struct {
		at       time.Time
		open     bool
		nextOpen time.Time
	}{
		// Wednesday 09:36: open since 09:00 until 17:00; next opens Thursday 09:00.
		{now, true, time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)},
		// Wednesday 18:00: closed; opens Thursday 09:00.
		{time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC), false, time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)},
		// Friday 20:00: closed; opens Monday 09:00.
		{time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC), false, time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)},
	}
	for _, tc := range tests {
		ws := windowState(w, tc.at)
		if ws.Open != tc.open || !ws.Next.Equal(tc.nextOpen) {
			t.Errorf("at %s: open %v next %s, want %v %s", tc.at, ws.Open, ws.Next, tc.open, tc.nextOpen)
		}
	}
}

func TestCommitURLs(t *testing.T) {
	tests := []struct {
		forge, url, repo, want string
	}{
		{"github", "", "org/releases", "https://github.com/org/releases/commit/abc"},
		{"github", "https://ghe.example.com/api/v3/", "org/releases", "https://ghe.example.com/org/releases/commit/abc"},
		{"gitea", "https://gitea.example.com/", "org/releases", "https://gitea.example.com/org/releases/commit/abc"},
		{"gitlab", "https://gitlab.example.com", "group/sub/releases", "https://gitlab.example.com/group/sub/releases/-/commit/abc"},
	}
	for _, tc := range tests {
		f, err := ForgeCommitURL(tc.forge, tc.url, tc.repo)
		if err != nil {
			t.Fatal(err)
		}
		if got := f("abc"); got != tc.want {
			t.Errorf("%s %s: %s, want %s", tc.forge, tc.url, got, tc.want)
		}
	}
	for _, bad := range []string{"https://example.com/commit/", "javascript:alert({commit})", "ftp://x/{commit}"} {
		if _, err := CommitURLTemplate(bad); err == nil {
			t.Errorf("template %q accepted", bad)
		}
	}
}
