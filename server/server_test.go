package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeSyncer counts triggers; the reconciler itself is exercised by the
// end-to-end tests.
type fakeSyncer struct {
	ready    atomic.Bool
	triggers atomic.Int64
}

func (f *fakeSyncer) Ready() bool { return f.ready.Load() }
func (f *fakeSyncer) Trigger()    { f.triggers.Add(1) }

const secret = "s3cr3t-webhook-token"

func writeSecret(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func sign(key, body string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

// pushBody is a trimmed GitHub push delivery.
const pushBody = `{"ref":"refs/heads/main","after":"5d1c2f1","repository":{"full_name":"platform/releases"}}`

func TestWebhookSignatures(t *testing.T) {
	var logs bytes.Buffer
	sy := &fakeSyncer{}
	h, err := Handler(Options{Syncer: sy, WebhookSecretFile: writeSecret(t, secret+"\n"), MaxBodyBytes: 4096,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 4097)
	tests := []struct {
		name    string
		body    string
		headers map[string]string
		want    int
	}{
		{"github signed", pushBody, map[string]string{HeaderGitHubSignature: "sha256=" + sign(secret, pushBody), "X-GitHub-Event": "push"}, http.StatusAccepted},
		{"github signature in capitals", pushBody, map[string]string{HeaderGitHubSignature: "sha256=" + strings.ToUpper(sign(secret, pushBody))}, http.StatusAccepted},
		{"gitea signed", pushBody, map[string]string{HeaderGiteaSignature: sign(secret, pushBody), "X-Gitea-Event": "push"}, http.StatusAccepted},
		{"gitea with both headers", pushBody, map[string]string{HeaderGiteaSignature: sign(secret, pushBody), HeaderGitHubSignature: "sha256=" + sign(secret, pushBody)}, http.StatusAccepted},
		{"gogs signed", pushBody, map[string]string{HeaderGogsSignature: sign(secret, pushBody)}, http.StatusAccepted},
		{"gitlab token", pushBody, map[string]string{HeaderGitLabToken: secret, "X-Gitlab-Event": "Push Hook"}, http.StatusAccepted},
		{"empty body signed", "", map[string]string{HeaderGitHubSignature: "sha256=" + sign(secret, "")}, http.StatusAccepted},

		{"no signature", pushBody, nil, http.StatusUnauthorized},
		{"github tampered body", strings.Replace(pushBody, "main", "evil", 1), map[string]string{HeaderGitHubSignature: "sha256=" + sign(secret, pushBody)}, http.StatusUnauthorized},
		{"github wrong key", pushBody, map[string]string{HeaderGitHubSignature: "sha256=" + sign("other", pushBody)}, http.StatusUnauthorized},
		{"github without sha256= prefix", pushBody, map[string]string{HeaderGitHubSignature: sign(secret, pushBody)}, http.StatusUnauthorized},
		{"github sha1 signature", pushBody, map[string]string{HeaderGitHubSignature: "sha1=" + sign(secret, pushBody)}, http.StatusUnauthorized},
		{"github not hex", pushBody, map[string]string{HeaderGitHubSignature: "sha256=zz" + sign(secret, pushBody)[2:]}, http.StatusUnauthorized},
		{"github truncated", pushBody, map[string]string{HeaderGitHubSignature: "sha256=" + sign(secret, pushBody)[:32]}, http.StatusUnauthorized},
		{"github empty", pushBody, map[string]string{HeaderGitHubSignature: ""}, http.StatusUnauthorized},
		{"gitea tampered body", pushBody + " ", map[string]string{HeaderGiteaSignature: sign(secret, pushBody)}, http.StatusUnauthorized},
		{"gitea good, github bad", pushBody, map[string]string{HeaderGiteaSignature: sign(secret, pushBody), HeaderGitHubSignature: "sha256=" + sign("other", pushBody)}, http.StatusUnauthorized},
		{"gitlab wrong token", pushBody, map[string]string{HeaderGitLabToken: "s3cr3t-webhook-toke"}, http.StatusUnauthorized},
		{"gitlab token one character longer", pushBody, map[string]string{HeaderGitLabToken: secret + "x"}, http.StatusUnauthorized},
		{"gitlab good, github bad", pushBody, map[string]string{HeaderGitLabToken: secret, HeaderGitHubSignature: "sha256=00"}, http.StatusUnauthorized},
		{"body too large", big, map[string]string{HeaderGitHubSignature: "sha256=" + sign(secret, big)}, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := sy.triggers.Load()
			req := httptest.NewRequest(http.MethodPost, "/hooks/git", strings.NewReader(tc.body))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			triggered := sy.triggers.Load() - before
			if want := int64(0); tc.want == http.StatusAccepted {
				want = 1
				if triggered != want {
					t.Errorf("triggered %d syncs, want %d", triggered, want)
				}
			} else if triggered != 0 {
				t.Errorf("a refused delivery triggered %d syncs", triggered)
			}
		})
	}
	if strings.Contains(logs.String(), secret) || strings.Contains(logs.String(), sign(secret, pushBody)) {
		t.Errorf("the log reveals the secret or a signature:\n%s", logs.String())
	}
}

func TestWebhookRepeatedHeaderRefused(t *testing.T) {
	sy := &fakeSyncer{}
	h, err := Handler(Options{Syncer: sy, WebhookSecretFile: writeSecret(t, secret)})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/hooks/git", strings.NewReader(pushBody))
	req.Header.Add(HeaderGitHubSignature, "sha256=00")
	req.Header.Add(HeaderGitHubSignature, "sha256="+sign(secret, pushBody))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized || sy.triggers.Load() != 0 {
		t.Errorf("status %d, triggers %d; want 401 and none", rec.Code, sy.triggers.Load())
	}
}

// TestWebhookSecretRotation: the secret file is read at each delivery.
func TestWebhookSecretRotation(t *testing.T) {
	sy := &fakeSyncer{}
	file := writeSecret(t, "old")
	h, err := Handler(Options{Syncer: sy, WebhookSecretFile: file})
	if err != nil {
		t.Fatal(err)
	}
	deliver := func(key string) int {
		req := httptest.NewRequest(http.MethodPost, "/hooks/git", strings.NewReader(pushBody))
		req.Header.Set(HeaderGiteaSignature, sign(key, pushBody))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := deliver("old"); code != http.StatusAccepted {
		t.Fatalf("old secret: %d", code)
	}
	if err := os.WriteFile(file, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := deliver("old"); code != http.StatusUnauthorized {
		t.Errorf("old secret after rotation: %d, want 401", code)
	}
	if code := deliver("new"); code != http.StatusAccepted {
		t.Errorf("new secret: %d", code)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if code := deliver("new"); code != http.StatusServiceUnavailable {
		t.Errorf("secret file gone: %d, want 503", code)
	}
}

func TestHandlerOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no syncer", Options{}, "Syncer is required"},
		{"missing secret file", Options{Syncer: &fakeSyncer{}, WebhookSecretFile: "/nonexistent/secret"}, "read webhook secret file"},
		{"empty secret file", Options{Syncer: &fakeSyncer{}, WebhookSecretFile: writeSecret(t, "\n")}, "is empty"},
		{"no webhooks", Options{Syncer: &fakeSyncer{}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Handler(tc.opts)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestEndpoints(t *testing.T) {
	sy := &fakeSyncer{}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	var (
		mu      sync.Mutex
		relayed int
		relayCh = make(chan struct{}, 10)
	)
	srv, err := Start(t.Context(), Options{Addr: "127.0.0.1:0", Syncer: sy, Metrics: reg, Relay: func(context.Context) {
		mu.Lock()
		relayed++
		mu.Unlock()
		relayCh <- struct{}{}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	base := "http://" + srv.Addr()
	do := func(method, path string, hdr map[string]string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := do("GET", "/healthz", nil); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	if code, _ := do("GET", "/readyz", nil); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the first sync: %d", code)
	}
	sy.ready.Store(true)
	if code, _ := do("GET", "/readyz", nil); code != http.StatusOK {
		t.Errorf("/readyz after the first sync: %d", code)
	}
	if code, body := do("GET", "/metrics", nil); code != http.StatusOK || !strings.Contains(body, "sluice_test_total 3") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	if code, _ := do("POST", "/sync", nil); code != http.StatusAccepted || sy.triggers.Load() != 1 {
		t.Errorf("POST /sync: %d, triggers %d", code, sy.triggers.Load())
	}
	select {
	case <-relayCh:
	case <-time.After(time.Minute):
		t.Fatal("POST /sync was not relayed")
	}
	// A relayed request is not relayed again: no loop between replicas.
	if code, _ := do("POST", "/sync", map[string]string{RelayedHeader: "other"}); code != http.StatusAccepted || sy.triggers.Load() != 2 {
		t.Errorf("relayed POST /sync: %d, triggers %d", code, sy.triggers.Load())
	}
	if code, _ := do("GET", "/sync", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /sync: %d", code)
	}
	if code, _ := do("POST", "/hooks/git", nil); code != http.StatusNotFound {
		t.Errorf("/hooks/git without a secret file: %d, want 404", code)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if relayed != 1 {
		t.Errorf("relayed %d requests, want 1", relayed)
	}
}

func BenchmarkWebhookVerify(b *testing.B) {
	body := []byte(strings.Repeat(pushBody, 100))
	hdr := http.Header{}
	hdr.Set(HeaderGitHubSignature, "sha256="+sign(secret, string(body)))
	for b.Loop() {
		if _, err := verify(hdr, body, []byte(secret)); err != nil {
			b.Fatal(err)
		}
	}
}
