package dashboard

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"sluice.dev/sluice/record"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

// DefaultPollInterval is how often open pages refresh themselves.
const DefaultPollInterval = 3 * time.Second

// DefaultMaxCommits bounds the history walked for release pages.
const DefaultMaxCommits = 50000

// ContentSecurityPolicy is sent with every response: everything from the
// dashboard itself, no inline script or style, no frames, no plugins.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Options configure a Dashboard.
type Options struct {
	// Source is the Git record; required.
	Source Source
	// StatusDir is where the status files are; default record.DefaultStatusDir.
	StatusDir string
	// Metrics answers the charts' range queries; nil draws the recorded
	// checks alone.
	Metrics Metrics
	// CommitURL links a commit to its page on the forge; nil (or "")
	// links nothing. See CommitURLTemplate and ForgeCommitURL.
	CommitURL func(hash string) string
	// PollInterval is how often open pages refresh; default DefaultPollInterval.
	PollInterval time.Duration
	// MaxCommits bounds the history read; default DefaultMaxCommits.
	MaxCommits int
	// Now is the clock; default time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Dashboard serves the pages and their JSON under Prefix.
type Dashboard struct {
	opts    Options
	store   *store
	metrics Metrics
	pages   map[string]*template.Template
	assets  map[string]asset
	mux     *http.ServeMux
	log     *slog.Logger

	mu        sync.Mutex
	workloads map[string]string
}

type asset struct {
	body, gz    []byte
	contentType string
	etag        string
}

// New checks opts and builds the dashboard.
func New(opts Options) (*Dashboard, error) {
	if opts.Source == nil {
		return nil, errors.New("dashboard: Source is required")
	}
	if opts.StatusDir == "" {
		opts.StatusDir = record.DefaultStatusDir
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.MaxCommits == 0 {
		opts.MaxCommits = DefaultMaxCommits
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{
		opts: opts, store: newStore(opts.Source, opts.StatusDir, opts.MaxCommits), metrics: opts.Metrics,
		log: opts.Log, workloads: map[string]string{},
	}
	var err error
	if d.assets, err = loadAssets(); err != nil {
		return nil, err
	}
	if d.pages, err = d.parseTemplates(); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/{$}", d.releasesPage)
	mux.HandleFunc("GET /ui/releases/{namespace}/{name}", d.releasePage)
	mux.HandleFunc("GET /ui/api/releases", d.releasesJSON)
	mux.HandleFunc("GET /ui/api/releases/{namespace}/{name}", d.releaseJSON)
	mux.HandleFunc("GET /ui/api/releases/{namespace}/{name}/series", d.seriesJSON)
	mux.HandleFunc("GET /ui/assets/{file...}", d.asset)
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the dashboard is read-only", http.StatusMethodNotAllowed)
			return
		}
		d.notFound(w, r, "No such page.")
	})
	mux.Handle("GET /ui", http.RedirectHandler(Prefix, http.StatusMovedPermanently))
	d.mux = mux
	return d, nil
}

// ServeHTTP serves Prefix (and /ui, redirected), with security headers on
// every response.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// Links leave for the forge and pull requests: say nothing of where from.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	d.mux.ServeHTTP(w, r)
}

func loadAssets() (map[string]asset, error) {
	out := map[string]asset{}
	err := fs.WalkDir(assetFS, "assets", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		body, err := assetFS.ReadFile(p)
		if err != nil {
			return err
		}
		var ct string
		switch path.Ext(p) {
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		default:
			ct = "text/plain; charset=utf-8"
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		if _, err := zw.Write(body); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		out[strings.TrimPrefix(p, "assets/")] = asset{body: body, gz: gz.Bytes(), contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard: load assets: %w", err)
	}
	return out, nil
}

// asset serves an embedded file. Pages name assets with their hash
// (?v=...), so a browser may keep them a day and still never run an old
// script against a new page.
func (d *Dashboard) asset(w http.ResponseWriter, r *http.Request) {
	a, ok := d.assets[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "public, max-age=86400")
	h.Set("Vary", "Accept-Encoding")
	if r.Header.Get("If-None-Match") == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		h.Set("Content-Encoding", "gzip")
		body = a.gz
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// assetURL names an asset with its content hash.
func (d *Dashboard) assetURL(name string) string {
	a := d.assets[name]
	return Prefix + "assets/" + name + "?v=" + strings.Trim(a.etag, `"`)
}

// page is what every template gets.
type page struct {
	Title        string
	Head         string
	Now          time.Time
	PollInterval int // milliseconds
	Data         any
}

func (d *Dashboard) parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"asset":   d.assetURL,
		"ago":     func(t time.Time) string { return ago(t, d.opts.Now()) },
		"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"clock":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"lower":   strings.ToLower,
		"phaseClass": func(p record.Phase) string {
			return "phase-" + strings.ToLower(string(p))
		},
		"gate":   func(g record.GateValue) string { return g.String() },
		"prefix": func() string { return Prefix },
	}
	out := map[string]*template.Template{}
	for _, name := range []string{"releases", "release", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// render writes a page; with ?fragment=live, only its live part, which
// the page's script swaps in when it refreshes.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Now = d.opts.Now()
	p.PollInterval = int(d.opts.PollInterval / time.Millisecond)
	tmpl := "layout.html"
	if r.URL.Query().Get("fragment") == "live" {
		tmpl = "live"
	}
	var buf bytes.Buffer
	if err := d.pages[name].ExecuteTemplate(&buf, tmpl, p); err != nil {
		d.log.Error("render dashboard page", "page", name, "err", err)
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (d *Dashboard) notFound(w http.ResponseWriter, r *http.Request, msg string) {
	d.render(w, r, http.StatusNotFound, "error", page{Title: "Not found", Data: msg})
}

// fail answers an error reading Git: 503 while the first sync is under
// way, else 500 (logged; the page says little, since errors may name
// internals).
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, err error, asJSON bool) {
	status, msg := http.StatusInternalServerError, "Cannot read the Git record; see Sluice's log."
	if errors.Is(err, errNotSynced) {
		status, msg = http.StatusServiceUnavailable, "Waiting for the first Git sync."
	} else {
		d.log.Error("dashboard", "path", r.URL.Path, "err", err)
	}
	if asJSON {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	d.render(w, r, status, "error", page{Title: "Unavailable", Data: msg})
}

// releasesData is the releases page.
type releasesData struct {
	Rows       []Row
	Total      int
	Namespace  string
	Phase      string
	Namespaces []string
	Phases     []record.Phase
	Counts     map[record.Phase]int
}

func (d *Dashboard) releasesPage(w http.ResponseWriter, r *http.Request) {
	ix, err := d.store.index(r.Context())
	if err != nil {
		d.fail(w, r, err, false)
		return
	}
	q := r.URL.Query()
	ns, phase := q.Get("namespace"), q.Get("phase")
	data := releasesData{
		Rows: rows(ix, ns, phase, d.opts.Now()), Total: len(ix.statuses), Namespace: ns, Phase: phase,
		Namespaces: namespaces(ix), Phases: phases(), Counts: map[record.Phase]int{},
	}
	for _, st := range ix.statuses {
		data.Counts[st.Phase]++
	}
	d.render(w, r, http.StatusOK, "releases", page{Title: "Releases", Head: ix.head.String(), Data: data})
}

func (d *Dashboard) releasesJSON(w http.ResponseWriter, r *http.Request) {
	ix, err := d.store.index(r.Context())
	if err != nil {
		d.fail(w, r, err, true)
		return
	}
	q := r.URL.Query()
	writeJSON(w, http.StatusOK, map[string]any{
		"head": ix.head.String(), "releases": rows(ix, q.Get("namespace"), q.Get("phase"), d.opts.Now()),
	})
}

// releaseView reads the release of the request's path; nil (and a 404
// written) when there is none.
func (d *Dashboard) releaseView(w http.ResponseWriter, r *http.Request, asJSON bool) (*index, *ReleaseView) {
	ix, err := d.store.index(r.Context())
	if err != nil {
		d.fail(w, r, err, asJSON)
		return nil, nil
	}
	id := r.PathValue("namespace") + "/" + r.PathValue("name")
	v, err := d.view(r.Context(), ix, id, d.opts.Now())
	if err != nil {
		d.fail(w, r, err, asJSON)
		return nil, nil
	}
	if v == nil {
		if asJSON {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no release " + id})
		} else {
			d.notFound(w, r, "No release "+id+" is recorded.")
		}
		return nil, nil
	}
	return ix, v
}

func (d *Dashboard) releasePage(w http.ResponseWriter, r *http.Request) {
	ix, v := d.releaseView(w, r, false)
	if v == nil {
		return
	}
	d.render(w, r, http.StatusOK, "release", page{Title: v.ID, Head: ix.head.String(), Data: v})
}

func (d *Dashboard) releaseJSON(w http.ResponseWriter, r *http.Request) {
	ix, v := d.releaseView(w, r, true)
	if v == nil {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"head": ix.head.String(), "release": v})
}

func (d *Dashboard) seriesJSON(w http.ResponseWriter, r *http.Request) {
	ix, v := d.releaseView(w, r, true)
	if v == nil {
		return
	}
	s, err := d.series(r.Context(), ix, v, d.opts.Now())
	if err != nil {
		d.fail(w, r, err, true)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func (d *Dashboard) commitURL(hash string) string {
	if d.opts.CommitURL == nil {
		return ""
	}
	return safeURL(d.opts.CommitURL(hash))
}

// safeURL keeps http(s) links only, without userinfo.
func safeURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	u.User = nil
	return u.String()
}

// CommitURLTemplate links commits by a template in which {commit} is the
// full hash, such as https://github.com/org/releases/commit/{commit}.
func CommitURLTemplate(tmpl string) (func(string) string, error) {
	if tmpl == "" {
		return nil, nil
	}
	if !strings.Contains(tmpl, "{commit}") {
		return nil, fmt.Errorf("commit URL template %q has no {commit}", tmpl)
	}
	if safeURL(strings.ReplaceAll(tmpl, "{commit}", "0")) == "" {
		return nil, fmt.Errorf("commit URL template %q is not an http(s) URL", tmpl)
	}
	return func(h string) string { return strings.ReplaceAll(tmpl, "{commit}", h) }, nil
}

// ForgeCommitURL links commits to their page on a forge, as --forge,
// --forge-url and --forge-repo name it: Gitea's or GitLab's root URL,
// GitHub's API URL (empty for github.com).
func ForgeCommitURL(provider, forgeURL, repo string) (func(string) string, error) {
	if repo == "" {
		return nil, errors.New("no repository on the forge")
	}
	base := strings.TrimSuffix(forgeURL, "/")
	var tmpl string
	switch provider {
	case "gitea":
		tmpl = base + "/" + repo + "/commit/{commit}"
	case "gitlab":
		tmpl = base + "/" + repo + "/-/commit/{commit}"
	case "github":
		switch {
		case base == "" || strings.Contains(base, "api.github.com"):
			base = "https://github.com"
		default:
			base = strings.TrimSuffix(strings.TrimSuffix(base, "/api/v3"), "/api")
		}
		tmpl = base + "/" + repo + "/commit/{commit}"
	default:
		return nil, fmt.Errorf("unknown forge %q", provider)
	}
	return CommitURLTemplate(tmpl)
}

var urlInText = regexp.MustCompile(`[a-z][a-z0-9+.-]*://[^\s"']+`)

// ago reads "3m ago".
func ago(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in " + short(-d)
	case d < time.Second:
		return "just now"
	}
	return short(d) + " ago"
}

func short(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
