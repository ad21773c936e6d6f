package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/observe"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/server"
)

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// deliver posts a push delivery to a replica's /hooks/git.
func deliver(ctx context.Context, base, body string, headers map[string]string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/hooks/git", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestSecretsNeverLeak runs a release from a Git remote that needs HTTPS
// basic auth, triggered by a signed push webhook, then searches everything
// Sluice wrote (its log, /metrics, every commit message and file in the
// Git history, the Events in the cluster) for the Git password and the
// webhook secret.
func TestSecretsNeverLeak(t *testing.T) {
	env := testEnv.Env(t)
	t.Parallel()
	password, webhookSecret := "pw-"+randomHex(t, 12), "wh-"+randomHex(t, 12)
	// Git is fetched only on request: the webhook is what starts the release.
	s := startStack(t, stack.Options{
		Namespace: "e2e-secrets",
		GitUser:   "sluice-bot", GitPassword: password,
		WebhookSecret: webhookSecret,
		SluiceArgs:    []string{"--interval", "1h", "--log-level", "debug"},
	})
	ctx := t.Context()
	if !strings.HasPrefix(s.Remote, "https://") {
		t.Fatalf("remote %s is not HTTPS", s.Remote)
	}
	// The remote does refuse a client without the credentials.
	if code := anonymousFetch(t, s); code != http.StatusUnauthorized {
		t.Fatalf("an anonymous fetch got %d, want 401", code)
	}
	if err := s.StartSluice(ctx); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhaseSteady, time.Minute)
	if _, err := s.PushCandidate(ctx, "v2"); err != nil {
		t.Fatal(err)
	}

	base := s.AdminURL(stack.DefaultReplica)
	body := `{"ref":"refs/heads/main","repository":{"full_name":"platform/releases"}}`
	mac := hmac.New(sha256.New, []byte(webhookSecret))
	mac.Write([]byte(body))
	signature := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	refused := []struct {
		name    string
		body    string
		headers map[string]string
	}{
		{"unsigned", body, map[string]string{"X-GitHub-Event": "push"}},
		{"tampered", strings.Replace(body, "main", "evil", 1), map[string]string{server.HeaderGitHubSignature: signature}},
		{"wrong GitLab token", body, map[string]string{server.HeaderGitLabToken: webhookSecret[:len(webhookSecret)-1]}},
	}
	for _, r := range refused {
		code, err := deliver(ctx, base, r.body, r.headers)
		if err != nil || code != http.StatusUnauthorized {
			t.Errorf("%s delivery: %d %v, want 401", r.name, code, err)
		}
	}
	code, err := deliver(ctx, base, body, map[string]string{server.HeaderGitHubSignature: signature, "X-GitHub-Event": "push", "X-GitHub-Delivery": "72d3162e"})
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("signed delivery: %d %v, want 202", code, err)
	}
	waitPhase(t, s, record.PhasePromoted, releaseTimeout)
	checkGoodRelease(t, transitions(sluiceSubjects(t, s)), "v1", "v2")

	// Everything Sluice wrote.
	_, metrics, err := get(ctx, base+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Git(ctx, "fetch", "-q", "origin"); err != nil {
		t.Fatal(err)
	}
	history, err := s.Git(ctx, "log", "--all", "-p", "--format=%H %an <%ae>%n%B")
	if err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())
	evs, err := kube.EventsV1().Events(s.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	coreEvs, err := kube.CoreV1().Events(s.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	events, err := json.Marshal([]any{evs, coreEvs})
	if err != nil {
		t.Fatal(err)
	}
	written := map[string]string{
		"sluice's log": s.SluiceLog(),
		"/metrics":     metrics,
		"Git history":  history,
		"Events":       string(events),
	}
	basicAuth := base64.StdEncoding.EncodeToString([]byte("sluice-bot:" + password))
	for what, text := range written {
		if len(text) < 100 {
			t.Errorf("%s is nearly empty: %q", what, text)
		}
		for name, secret := range map[string]string{"the Git password": password, "the webhook secret": webhookSecret, "the basic auth header": basicAuth, "the webhook signature": signature} {
			if strings.Contains(text, secret) {
				t.Errorf("%s reveals %s", what, name)
			}
		}
	}
	if !strings.Contains(s.SluiceLog(), "webhook delivery accepted") || strings.Count(s.SluiceLog(), "webhook delivery refused") != len(refused) {
		t.Errorf("the log does not show 1 accepted and %d refused deliveries", len(refused))
	}

	// The Events tell the release's story on the mesh route's VirtualService.
	var reasons []string
	for _, e := range evs.Items {
		if e.ReportingController != observe.ReportingController {
			continue
		}
		if e.Regarding.Kind != "VirtualService" || e.Regarding.Name != "catalog-mesh" {
			t.Errorf("Event %s %q is about %s %s", e.Reason, e.Note, e.Regarding.Kind, e.Regarding.Name)
		}
		reasons = append(reasons, e.Reason)
	}
	for _, want := range []string{"Steady", "Started", "Advanced", "Promoted"} {
		if !slices.Contains(reasons, want) {
			t.Errorf("no %s Event; have %v", want, reasons)
		}
	}
	if n := strings.Count(strings.Join(reasons, " "), "Advanced"); n != 7 {
		t.Errorf("%d Advanced Events, want 7 (one per advance commit)", n)
	}
}

// anonymousFetch asks the remote for its refs without credentials.
func anonymousFetch(t *testing.T, s *stack.Stack) int {
	t.Helper()
	pem, err := os.ReadFile(s.GitCAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	u, err := url.Parse(s.Remote + "/info/refs?service=git-upload-pack")
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
