package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"sluice.dev/sluice/reconciler"
	"sluice.dev/sluice/record"
)

// received is one request a receiver got.
type received struct {
	path   string
	header http.Header
	body   []byte
}

// receiver is a webhook endpoint: a real HTTP server that records what it
// is sent and answers with the statuses it is given, in turn (200 once
// they are used up).
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	answers []func(w http.ResponseWriter)
	arrived chan struct{}
}

func newReceiver(t *testing.T, answers ...func(w http.ResponseWriter)) *receiver {
	t.Helper()
	r := &receiver{answers: answers, arrived: make(chan struct{}, 100)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{path: req.URL.RequestURI(), header: req.Header.Clone(), body: body})
		var answer func(http.ResponseWriter)
		if len(r.answers) > 0 {
			answer, r.answers = r.answers[0], r.answers[1:]
		}
		r.mu.Unlock()
		select {
		case r.arrived <- struct{}{}:
		default:
		}
		if answer != nil {
			answer(w)
			return
		}
		// What Slack answers; the others answer 200 or 204 with JSON.
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// wait waits for n requests in all.
func (r *receiver) wait(t *testing.T, n int) []received {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if got := r.requests(); len(got) >= n {
			return got
		}
		select {
		case <-r.arrived:
		case <-deadline:
			t.Fatalf("got %d requests, want %d", len(r.requests()), n)
		}
	}
}

func status(code int, header ...string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, http.StatusText(code))
	}
}

// secretPath is the secret part of the test webhooks' URLs, as Slack's
// /services/T000/B000/XXXX.
const secretPath = "/services/T0SECRET/B0SECRET/xoxSECRETTOKENxyz"

// urlFile writes a receiver's URL, with the secret path, to a file.
func urlFile(t *testing.T, dir, name, url string) string {
	t.Helper()
	f := filepath.Join(dir, name)
	if err := os.WriteFile(f, []byte(url+secretPath+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// logBuffer collects log lines, safe for the workers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// sleeps records the waits between attempts instead of sleeping.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) get() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

type harness struct {
	n   *Notifier
	reg *prometheus.Registry
	log *logBuffer
	zz  *sleeps
}

func start(t *testing.T, cfg Config, opts Options) *harness {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry(), log: &logBuffer{}, zz: &sleeps{}}
	opts.Registerer = h.reg
	opts.Log = slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.now == nil {
		opts.now = func() time.Time { return testTime }
	}
	if opts.sleep == nil {
		opts.sleep = h.zz.sleep
	}
	n, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.n = n
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Close(ctx)
		if strings.Contains(h.log.String(), "SECRET") {
			t.Errorf("a secret was logged:\n%s", h.log.String())
		}
	})
	return h
}

// count is sluice_notifications_total of a channel and result.
func (h *harness) count(t *testing.T, channel, result string) float64 {
	t.Helper()
	var m dto.Metric
	if err := h.n.total.WithLabelValues(channel, result).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// waitCount waits until the counter reaches want.
func (h *harness) waitCount(t *testing.T, channel, result string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.count(t, channel, result) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: %v, want %v\nlog:\n%s", channel, result, h.count(t, channel, result), want, h.log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDelivery sends one rollback to a receiver of every type and checks
// what each receives: the documented format, byte for byte the golden
// payload, its content type, and the webhook's token and signature.
func TestDelivery(t *testing.T) {
	dir := t.TempDir()
	recv := map[string]*receiver{}
	var cfg Config
	for _, typ := range channelTypes {
		recv[typ] = newReceiver(t)
		cfg.Channels = append(cfg.Channels, ChannelConfig{Name: "team-" + typ, Type: typ, URLFile: urlFile(t, dir, typ, recv[typ].URL)})
	}
	token, key := filepath.Join(dir, "token"), filepath.Join(dir, "key")
	_ = os.WriteFile(token, []byte("SECRETtoken\n"), 0o600)
	_ = os.WriteFile(key, []byte("SECRETkey"), 0o600)
	cfg.Channels[4].TokenFile, cfg.Channels[4].SecretFile = token, key
	h := start(t, cfg, Options{CommitURL: testCommitURL, Source: "https://git.example.com/platform/releases.git"})

	tr := transitions()["rolledback"]
	start := time.Now()
	h.n.Transition(context.Background(), tr)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Transition took %s", d)
	}
	for _, typ := range channelTypes {
		t.Run(typ, func(t *testing.T) {
			got := recv[typ].wait(t, 1)
			if len(got) != 1 {
				t.Fatalf("%d requests, want 1", len(got))
			}
			r := got[0]
			if r.path != secretPath {
				t.Errorf("posted to %s, want %s", r.path, secretPath)
			}
			if ct := r.header.Get("Content-Type"); ct != wantContentType[typ] {
				t.Errorf("Content-Type %q, want %q", ct, wantContentType[typ])
			}
			if err := checkShape(typ, r.body); err != nil {
				t.Errorf("not the documented format: %v", err)
			}
			checkGolden(t, goldenName(typ, "rolledback"), r.body)
			if typ == TypeWebhook {
				if a := r.header.Get("Authorization"); a != "Bearer SECRETtoken" {
					t.Errorf("Authorization %q", a)
				}
				// sha256 HMAC of the body with "SECRETkey", as a receiver checks it.
				if s := r.header.Get(SignatureHeader); s != "sha256="+hmacHex("SECRETkey", r.body) {
					t.Errorf("%s %q", SignatureHeader, s)
				}
			} else if r.header.Get("Authorization") != "" || r.header.Get(SignatureHeader) != "" {
				t.Errorf("a %s webhook got credentials", typ)
			}
			h.waitCount(t, "team-"+typ, ResultSent, 1)
		})
	}
}

func TestRetries(t *testing.T) {
	httpDate := testTime.Add(7 * time.Second).Format(http.TimeFormat)
	tests := []struct {
		name       string
		answers    []func(http.ResponseWriter)
		requests   int
		result     string
		sleeps     []time.Duration
		logContain string
	}{
		{
			name:     "503 twice then 200",
			answers:  []func(http.ResponseWriter){status(503), status(503)},
			requests: 3, result: ResultSent,
			sleeps: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond},
		},
		{
			name:     "429 with Retry-After in seconds",
			answers:  []func(http.ResponseWriter){status(429, "Retry-After", "3")},
			requests: 2, result: ResultSent,
			sleeps: []time.Duration{3 * time.Second},
		},
		{
			name:     "429 with Retry-After as a date",
			answers:  []func(http.ResponseWriter){status(429, "Retry-After", httpDate)},
			requests: 2, result: ResultSent,
			sleeps: []time.Duration{7 * time.Second},
		},
		{
			name:     "Retry-After beyond the longest honoured",
			answers:  []func(http.ResponseWriter){status(429, "Retry-After", "3600")},
			requests: 1, result: ResultFailed,
			logContain: "asked to retry after 1h0m0s",
		},
		{
			name:     "5xx until the attempts run out",
			answers:  []func(http.ResponseWriter){status(500), status(502), status(503), status(504), status(500)},
			requests: 4, result: ResultFailed,
			sleeps: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond},
		},
		{
			name: "4xx is not retried",
			answers: []func(http.ResponseWriter){func(w http.ResponseWriter) {
				// Slack's answer to a revoked webhook, echoing its path.
				w.WriteHeader(404)
				_, _ = io.WriteString(w, "no_service "+secretPath)
			}},
			requests: 1, result: ResultFailed,
			logContain: "404 Not Found: no_service [redacted]",
		},
		{
			name:     "a redirect is not followed",
			answers:  []func(http.ResponseWriter){status(302, "Location", "https://elsewhere.example.com/")},
			requests: 1, result: ResultFailed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReceiver(t, tt.answers...)
			cfg := Config{Channels: []ChannelConfig{{Name: "ops", Type: TypeSlack, URLFile: urlFile(t, t.TempDir(), "url", r.URL)}}}
			h := start(t, cfg, Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, MaxRetryAfter: time.Minute})
			h.n.Transition(context.Background(), transitions()["promoted"])
			h.waitCount(t, "ops", tt.result, 1)
			if got := len(r.requests()); got != tt.requests {
				t.Errorf("%d requests, want %d", got, tt.requests)
			}
			for _, other := range []string{ResultSent, ResultFailed, ResultDropped} {
				if other != tt.result && h.count(t, "ops", other) != 0 {
					t.Errorf("counted %s", other)
				}
			}
			if got := h.zz.get(); !equalDurations(got, tt.sleeps) {
				t.Errorf("waited %v, want %v", got, tt.sleeps)
			}
			if !strings.Contains(h.log.String(), tt.logContain) {
				t.Errorf("log lacks %q:\n%s", tt.logContain, h.log.String())
			}
			// Every attempt sends the same message.
			reqs := r.requests()
			for _, req := range reqs[1:] {
				if !bytes.Equal(req.body, reqs[0].body) {
					t.Errorf("a retry sent another body")
				}
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRealRetryAfter waits for real: a 429 with Retry-After: 1 delays the
// second attempt by a second.
func TestRealRetryAfter(t *testing.T) {
	if testing.Short() {
		t.Skip("waits a second")
	}
	r := newReceiver(t, status(429, "Retry-After", "1"))
	cfg := Config{Channels: []ChannelConfig{{Name: "ops", Type: TypeDiscord, URLFile: urlFile(t, t.TempDir(), "url", r.URL)}}}
	h := start(t, cfg, Options{sleep: sleepCtx})
	h.n.Transition(context.Background(), transitions()["promoted"])
	h.waitCount(t, "ops", ResultSent, 1)
	if len(r.got) != 2 {
		t.Fatalf("%d requests", len(r.got))
	}
}

func TestTimeout(t *testing.T) {
	// The receiver answers after the request timed out.
	hang := make(chan struct{})
	r := newReceiver(t, func(w http.ResponseWriter) { <-hang }, func(w http.ResponseWriter) { <-hang })
	t.Cleanup(func() { close(hang) }) // before the server's Close, which waits for its handlers
	cfg := Config{Channels: []ChannelConfig{{Name: "ops", Type: TypeTeams, URLFile: urlFile(t, t.TempDir(), "url", r.URL)}}}
	h := start(t, cfg, Options{Timeout: 50 * time.Millisecond, MaxAttempts: 2})
	h.n.Transition(context.Background(), transitions()["rolledback"])
	h.waitCount(t, "ops", ResultFailed, 1)
	if got := len(r.requests()); got != 2 {
		t.Errorf("%d requests, want 2", got)
	}
	if !strings.Contains(h.log.String(), "deadline exceeded") {
		t.Errorf("the log does not say the request timed out:\n%s", h.log.String())
	}
}

// TestReceiverDown: a notifier that is down never holds a release.
// Transition returns at once however many transitions come; the queue
// keeps what fits and drops the rest, counted; what was queued fails
// after its attempts, counted; the URL is never logged.
func TestReceiverDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	_ = ln.Close() // connections are refused from now on
	cfg := Config{Channels: []ChannelConfig{{Name: "ops", Type: TypeSlack, URLFile: urlFile(t, t.TempDir(), "url", down), Events: []string{"all"}}}}
	// The first attempt's backoff holds the worker long enough for the
	// queue to fill.
	gate := make(chan struct{})
	h := start(t, cfg, Options{QueueSize: 2, MaxAttempts: 2, sleep: func(ctx context.Context, d time.Duration) error {
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}})
	const transitionsSent = 50
	begin := time.Now()
	for i := range transitionsSent {
		tr := transitions()["rolledback"]
		tr.Commit = strings.Repeat("0", 38) + string(rune('a'+i/26)) + string(rune('a'+i%26))
		h.n.Transition(context.Background(), tr)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("%d Transitions took %s", transitionsSent, d)
	}
	// One in flight (or about to be), two queued, the rest dropped.
	dropped := h.count(t, "ops", ResultDropped)
	if dropped < transitionsSent-3 {
		t.Errorf("dropped %v, want at least %d", dropped, transitionsSent-3)
	}
	close(gate)
	h.waitCount(t, "ops", ResultFailed, transitionsSent-dropped)
	if h.count(t, "ops", ResultSent) != 0 {
		t.Error("counted a message as sent")
	}
	log := h.log.String()
	if !strings.Contains(log, "notification dropped: queue full") || !strings.Contains(log, "connection refused") {
		t.Errorf("the log does not say what happened:\n%s", log)
	}
	if strings.Contains(log, down+"/services") || !strings.Contains(log, "/[redacted]") {
		t.Errorf("the URL was logged:\n%s", log)
	}
}

// TestStuckReceiver: a receiver that never answers does not hold
// Transition either, and Close gives up when its context ends.
func TestStuckReceiver(t *testing.T) {
	hang := make(chan struct{})
	var answers []func(http.ResponseWriter)
	for range 10 {
		answers = append(answers, func(http.ResponseWriter) { <-hang })
	}
	r := newReceiver(t, answers...)
	t.Cleanup(func() { close(hang) }) // before the server's Close, which waits for its handlers
	cfg := Config{Channels: []ChannelConfig{{Name: "ops", Type: TypeGoogleChat, URLFile: urlFile(t, t.TempDir(), "url", r.URL)}}}
	h := start(t, cfg, Options{QueueSize: 1, Timeout: time.Hour})
	begin := time.Now()
	for _, tr := range transitions() {
		h.n.Transition(context.Background(), tr)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("Transitions took %s", d)
	}
	r.wait(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.n.Close(ctx); err == nil {
		t.Error("Close reported every message sent")
	}
	// After Close, a transition is dropped, not queued.
	before := h.count(t, "ops", ResultDropped)
	h.n.Transition(context.Background(), transitions()["started"])
	if h.count(t, "ops", ResultDropped) != before+1 {
		t.Error("a transition after Close was not dropped")
	}
}

func TestCloseSendsWhatIsQueued(t *testing.T) {
	r := newReceiver(t)
	cfg := Config{Channels: []ChannelConfig{{Name: "ops", Type: TypeWebhook, URL: r.URL}}}
	h := start(t, cfg, Options{})
	for _, tr := range transitions() {
		h.n.Transition(context.Background(), tr)
	}
	if err := h.n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(r.requests()); got != len(transitions()) {
		t.Errorf("%d sent before Close returned, want %d", got, len(transitions()))
	}
}

// TestNoDuplicates: a message's identity is its commit and release.
func TestNoDuplicates(t *testing.T) {
	r := newReceiver(t)
	cfg := Config{Channels: []ChannelConfig{{Name: "ops", Type: TypeWebhook, URL: r.URL}}}
	h := start(t, cfg, Options{})
	tr := transitions()["rolledback"]
	h.n.Transition(context.Background(), tr)
	h.n.Transition(context.Background(), tr) // the same commit, again
	// One commit that records two releases (a batch) is two transitions.
	other := tr
	other.Release, other.Name = "istioinaction/reviews", "reviews"
	h.n.Transition(context.Background(), other)
	if err := h.n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := r.requests()
	if len(got) != 2 {
		t.Fatalf("%d messages, want 2", len(got))
	}
	ids := map[string]bool{}
	for _, req := range got {
		ids[jsonField(t, req.body, "id")] = true
	}
	if !ids[tr.Commit+"/istioinaction/catalog"] || !ids[tr.Commit+"/istioinaction/reviews"] {
		t.Errorf("ids %v", ids)
	}
}

// TestFlapping: a release whose checks keep failing or finding no data
// makes a commit at every check; none of those notify by default, and a
// channel that asks for them gets one message per commit.
func TestFlapping(t *testing.T) {
	quiet, loud := newReceiver(t), newReceiver(t)
	cfg := Config{Channels: []ChannelConfig{
		{Name: "default", Type: TypeWebhook, URL: quiet.URL},
		{Name: "nodata", Type: TypeWebhook, URL: loud.URL, Events: []string{"nodata"}},
	}}
	h := start(t, cfg, Options{})
	flaps := []record.Action{record.ActionNoData, record.ActionCheck, record.ActionNoData, record.ActionAdvance,
		record.ActionNoData, record.ActionCheck, record.ActionNoData, record.ActionRetire}
	for i, a := range flaps {
		tr := transitions()["started"]
		tr.Action, tr.Commit = a, strings.Repeat("ab", 19)+string(rune('a'+i))+"0"
		tr.Status.Phase = record.PhaseProgressing
		h.n.Transition(context.Background(), tr)
	}
	if err := h.n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(quiet.requests()); got != 0 {
		t.Errorf("the default events notified %d flaps", got)
	}
	if got := len(loud.requests()); got != 4 {
		t.Errorf("%d nodata messages, want 4", got)
	}
}

func jsonField(t *testing.T, body []byte, key string) string {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	s, _ := v[key].(string)
	return s
}

// TestSecretRotation: the URL is read at every send, so a rotated Secret
// takes effect without a restart.
func TestSecretRotation(t *testing.T) {
	old, rotated := newReceiver(t), newReceiver(t)
	dir := t.TempDir()
	file := urlFile(t, dir, "url", old.URL)
	cfg := Config{Channels: []ChannelConfig{{Name: "ops", Type: TypeSlack, URLFile: file}}}
	h := start(t, cfg, Options{})
	h.n.Transition(context.Background(), transitions()["started"])
	old.wait(t, 1)
	urlFile(t, dir, "url", rotated.URL)
	h.n.Transition(context.Background(), transitions()["promoted"])
	rotated.wait(t, 1)
	if len(old.requests()) != 1 {
		t.Errorf("the old URL got %d messages", len(old.requests()))
	}
}

func TestRouting(t *testing.T) {
	none := []string{}
	cfg := Config{Channels: []ChannelConfig{
		{Name: "all", Type: TypeWebhook, URL: "http://x.invalid"},
		{Name: "shop", Type: TypeWebhook, URL: "http://x.invalid", Releases: &[]string{"shop/*"}},
		{Name: "team-a-slack", Type: TypeSlack, URLFile: "/dev/null", Releases: &none},
		{Name: "audit", Type: TypeWebhook, URL: "http://x.invalid", Events: []string{"all"}},
	}}
	tests := []struct {
		name    string
		release string
		event   Event
		ann     map[string]string
		want    string
	}{
		{"default events everywhere", "istioinaction/catalog", EventRolledBack, nil, "all audit"},
		{"a glob", "shop/cart", EventPromoted, nil, "all shop audit"},
		{"an event outside the defaults", "shop/cart", EventNoData, nil, "audit"},
		{"a release names its channel", "shop/cart", EventStarted,
			map[string]string{AnnotationChannels: "team-a-slack"}, "all shop team-a-slack audit"},
		{"a release's events: its channels' instead, the others' only among theirs", "shop/cart", EventNoData,
			map[string]string{AnnotationChannels: "team-a-slack", AnnotationEvents: "nodata, rolledback"}, "team-a-slack audit"},
		{"a release narrows a shared channel", "shop/cart", EventStarted,
			map[string]string{AnnotationEvents: "rolledback,promoted"}, ""},
		{"blocked is invalid", "shop/cart", EventInvalid,
			map[string]string{AnnotationChannels: "team-a-slack", AnnotationEvents: "blocked"}, "all shop team-a-slack audit"},
		{"an unknown channel is ignored", "istioinaction/catalog", EventPromoted,
			map[string]string{AnnotationChannels: "nope"}, "all audit"},
		{"a typo in the events narrows nothing", "istioinaction/catalog", EventPromoted,
			map[string]string{AnnotationEvents: "promotd"}, "all audit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, cfg, Options{Annotations: func(release string) map[string]string {
				if release != tt.release {
					t.Errorf("annotations of %s asked", release)
				}
				return tt.ann
			}})
			var got []string
			for _, c := range h.n.route(tt.release, tt.event) {
				got = append(got, c.spec.Name)
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("channels %q, want %q", strings.Join(got, " "), tt.want)
			}
		})
	}
}

func TestRegistersMetric(t *testing.T) {
	r := newReceiver(t)
	h := start(t, Config{Channels: []ChannelConfig{{Name: "ops", Type: TypeWebhook, URL: r.URL}}}, Options{})
	h.n.Transition(context.Background(), transitions()["promoted"])
	h.waitCount(t, "ops", ResultSent, 1)
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			lines = append(lines, fmt.Sprintf("%s{%s} %g", mf.GetName(), strings.Join(labels, ","), m.GetCounter().GetValue()))
		}
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		"sluice_notifications_total{channel=ops,result=sent} 1",
		"sluice_notifications_total{channel=ops,result=failed} 0",
		"sluice_notifications_total{channel=ops,result=dropped} 0",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %s in:\n%s", want, got)
		}
	}
	// A second Notifier on the same registry shares the metric.
	n2, err := New(Config{Channels: []ChannelConfig{{Name: "b", Type: TypeWebhook, URL: r.URL}}}, Options{Registerer: h.reg})
	if err != nil {
		t.Fatal(err)
	}
	_ = n2.Close(context.Background())
}

func TestSource(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:SECRET@git.example.com/platform/releases.git?x=1": "https://git.example.com/platform/releases.git",
		"git@github.com:platform/releases.git":                          "ssh://github.com/platform/releases.git",
		"ssh://git@git.example.com:2222/platform/releases.git":          "ssh://git.example.com:2222/platform/releases.git",
		"file:///srv/git/releases.git":                                  DefaultSource,
		"":                                                              DefaultSource,
	} {
		if got := Source(in); got != want {
			t.Errorf("Source(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := testTime
	for in, want := range map[string]time.Duration{
		"":     0,
		"0":    0,
		"2":    2 * time.Second,
		"1.5":  1500 * time.Millisecond,
		"-3":   0,
		"soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestRedact(t *testing.T) {
	raw := "https://hooks.slack.com" + secretPath
	if got := redactURL(raw); got != "https://hooks.slack.com/[redacted]" {
		t.Errorf("redactURL: %s", got)
	}
	chat := "https://chat.googleapis.com/v1/spaces/AAAA/messages?key=SECRETkey&token=SECRETtoken"
	for _, s := range []string{
		"Post \"" + raw + "\": dial tcp: refused",
		"echo " + secretPath,
		"bad request for key=SECRETkey&token=SECRETtoken",
		"escaped " + url.QueryEscape(raw),
	} {
		if got := redact(s, []string{raw, chat}); strings.Contains(got, "SECRET") {
			t.Errorf("redact(%q) = %q", s, got)
		}
	}
}

// TestTransitionIgnoresUnknownActions: a newer Sluice's action notifies
// nobody rather than failing.
func TestTransitionIgnoresUnknownActions(t *testing.T) {
	r := newReceiver(t)
	h := start(t, Config{Channels: []ChannelConfig{{Name: "ops", Type: TypeWebhook, URL: r.URL, Events: []string{"all"}}}}, Options{})
	h.n.Transition(context.Background(), reconciler.Transition{Release: "a/b", Action: "teleport", Commit: "abc"})
	_ = h.n.Close(context.Background())
	if len(r.requests()) != 0 {
		t.Error("an unknown action was notified")
	}
}

func hmacHex(key string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}
