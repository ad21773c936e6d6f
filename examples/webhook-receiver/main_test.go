package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/webhook"
)

// TestReceiver posts what Sluice posts, signed as Sluice signs it.
func TestReceiver(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("k3y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loadOut := filepath.Join(dir, "load.out")
	r := &receiver{secretFile: keyFile, timeout: 10 * time.Second, log: slog.New(slog.DiscardHandler), ctx: context.Background(), running: map[string]bool{},
		hooks: hooks{
			"smoke": `test "$SLUICE_STEP" = canary-10 && test "$SLUICE_META_SUITE_NAME" = quick`,
			"bad":   "echo boom; exit 3",
			"load":  `echo "$SLUICE_CANDIDATE_WEIGHT $SLUICE_INTERVAL" > ` + loadOut,
		}}
	srv := httptest.NewServer(r)
	defer srv.Close()
	tests := []struct {
		name     string
		p        webhook.Payload
		key      string
		wantCode int
		wantBody string
	}{
		{"pre-step passes", webhook.Payload{Type: "pre-step", Webhook: "smoke", Step: "canary-10", Metadata: map[string]string{"suite-name": "quick"}}, "k3y", 200, ""},
		{"pre-step fails", webhook.Payload{Type: "pre-step", Webhook: "smoke", Step: "canary-20", Metadata: map[string]string{"suite-name": "quick"}}, "k3y", 500, "exit status 1"},
		{"check fails with its output", webhook.Payload{Type: "check", Webhook: "bad"}, "k3y", 500, "boom"},
		{"bad signature", webhook.Payload{Type: "check", Webhook: "smoke"}, "other", 401, "bad signature"},
		{"unknown webhook", webhook.Payload{Type: "check", Webhook: "nope"}, "k3y", 404, "no command"},
		{"load starts", webhook.Payload{Type: "load", Webhook: "load", Release: "ns/app", Weights: webhook.Weights{Candidate: 20}, Interval: "1m"}, "k3y", 202, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, err := tc.p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(string(body)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(webhook.SignatureHeader, webhook.Sign([]byte(tc.key), body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantCode || !strings.Contains(string(got), tc.wantBody) {
				t.Errorf("%d %q, want %d with %q", resp.StatusCode, got, tc.wantCode, tc.wantBody)
			}
		})
	}
	r.wg.Wait()
	if out, err := os.ReadFile(loadOut); err != nil || strings.TrimSpace(string(out)) != "20 1m" {
		t.Errorf("the load command wrote %q, %v", out, err)
	}
}
