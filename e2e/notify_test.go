package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/record"
)

// chatReceiver stands for Slack, Teams, Discord, Google Chat and a
// CloudEvents endpoint at once: each channel posts to its own path, whose
// last segment is its secret (a chat webhook's URL is its credential).
type chatReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got map[string][]chatPost // by channel type
}

type chatPost struct {
	contentType string
	body        map[string]any
	raw         string
}

const chatSecret = "chat-url-secret-5d1e0a"

func newChatReceiver(t *testing.T) *chatReceiver {
	t.Helper()
	c := &chatReceiver{got: map[string][]chatPost{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		typ, secret, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if secret != chatSecret {
			http.Error(w, "unknown hook", http.StatusNotFound)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("%s: a body that is not a JSON object: %s", typ, raw)
		}
		c.mu.Lock()
		c.got[typ] = append(c.got[typ], chatPost{contentType: r.Header.Get("Content-Type"), body: body, raw: string(raw)})
		c.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *chatReceiver) posts(typ string) []chatPost {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got[typ])
}

var chatTypes = []string{"slack", "teams", "discord", "googlechat", "webhook"}

// notificationsConfig writes one channel of each type, with the default
// events, to the receiver; the chat URLs are in secret files.
func (c *chatReceiver) notificationsConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("channels:\n")
	for _, typ := range chatTypes {
		file := filepath.Join(dir, typ+"-url")
		if err := os.WriteFile(file, []byte(c.srv.URL+"/"+typ+"/"+chatSecret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  - name: %s-channel\n    type: %s\n    urlFile: %s\n", typ, typ, file)
	}
	cfg := filepath.Join(dir, "notifications.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// event is what a post announces: the CloudEvent's type, or the chat
// message's title.
func (p chatPost) event(release string) string {
	if typ, ok := p.body["type"].(string); ok && strings.HasPrefix(typ, "dev.sluice.release.") {
		return strings.TrimPrefix(typ, "dev.sluice.release.")
	}
	for _, e := range []struct{ title, event string }{{" rolled back v2", "rolledback"}, {" started v2", "started"}, {" promoted v2", "promoted"}} {
		if strings.Contains(p.raw, release+e.title) {
			return e.event
		}
	}
	return "other: " + p.raw
}

// checkFormat checks the shape each service documents.
func checkFormat(t *testing.T, typ string, p chatPost) {
	t.Helper()
	has := func(key string) bool { _, ok := p.body[key]; return ok }
	switch typ {
	case "slack":
		if !has("text") || !has("blocks") {
			t.Errorf("slack message without text and blocks: %s", p.raw)
		}
	case "teams":
		att, _ := p.body["attachments"].([]any)
		if p.body["type"] != "message" || len(att) != 1 || att[0].(map[string]any)["contentType"] != "application/vnd.microsoft.card.adaptive" {
			t.Errorf("teams message is not an Adaptive Card message: %s", p.raw)
		}
	case "discord":
		embeds, _ := p.body["embeds"].([]any)
		if !has("content") || len(embeds) != 1 || !has("allowed_mentions") {
			t.Errorf("discord message without content, one embed and allowed_mentions: %s", p.raw)
		}
	case "googlechat":
		if !has("text") || !has("cardsV2") {
			t.Errorf("google chat message without text and cardsV2: %s", p.raw)
		}
	case "webhook":
		if mt, _, err := mime.ParseMediaType(p.contentType); err != nil || mt != "application/cloudevents+json" || p.body["specversion"] != "1.0" || !has("id") || !has("source") || !has("data") {
			t.Errorf("not a structured CloudEvent (%s): %s", p.contentType, p.raw)
		}
	}
}

// TestNotificationsOncePerNotifier: a release with a channel of every type
// is stopped and restarted in the middle, then rolled back. Every channel
// gets exactly one "started" and one "rolled back" message, each linking
// to its commit: the restart sends no duplicate.
func TestNotificationsOncePerNotifier(t *testing.T) {
	t.Parallel()
	chat := newChatReceiver(t)
	const commitURL = "https://git.example.test/platform/releases/commit/{commit}"
	s := startStack(t, stack.Options{Namespace: "e2e-notify", Threshold: 2,
		SluiceArgs: []string{"--notifications-config", chat.notificationsConfig(t), "--commit-url", commitURL}})
	if err := s.StartSluice(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhaseSteady, time.Minute)
	pushCandidate(t, s, "v2")
	waitStatus(t, s, releaseTimeout, "step canary-10", func(st *record.Status) bool { return st.Step == "canary-10" })
	// The start was announced before the restart.
	waitPosts(t, chat, "started", 1)
	if err := s.KillSluice(); err != nil {
		t.Fatal(err)
	}
	if err := s.Mesh.SetVersion("v2", 0.10, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := s.StartSluice(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhaseRolledBack, releaseTimeout)
	waitPosts(t, chat, "rolledback", 1)
	// v2's retirement after its drain is recorded and applied: any repeat
	// of the transitions before it would have been posted by then.
	waitDeployments(t, s.Namespace, "catalog-v1")

	var start, rollback string
	for _, tr := range historyOf(t, s) {
		switch tr.Action {
		case record.ActionStart:
			start = tr.Commit
		case record.ActionRollback:
			rollback = tr.Commit
		}
	}
	if start == "" || rollback == "" {
		t.Fatalf("no start or rollback commit in %v", historyOf(t, s))
	}
	release := s.Namespace + "/catalog"
	link := func(hash string) string { return strings.ReplaceAll(commitURL, "{commit}", hash) }
	for _, typ := range chatTypes {
		posts := chat.posts(typ)
		var events []string
		for _, p := range posts {
			events = append(events, p.event(release))
			checkFormat(t, typ, p)
		}
		if !slices.Equal(events, []string{"started", "rolledback"}) {
			t.Errorf("%s got %q, want one started and one rolledback", typ, events)
			continue
		}
		if !strings.Contains(posts[0].raw, link(start)) {
			t.Errorf("%s: the start message does not link to %s: %s", typ, link(start), posts[0].raw)
		}
		if typ == "webhook" && (posts[0].body["id"] != start+"/"+release || posts[1].body["id"] != rollback+"/"+release) {
			t.Errorf("CloudEvent ids %v, %v; want <commit>/%s", posts[0].body["id"], posts[1].body["id"], release)
		}
		if !strings.Contains(posts[1].raw, link(rollback)) || !strings.Contains(posts[1].raw, "success-rate") {
			t.Errorf("%s: the rollback message does not link to %s or name the gate: %s", typ, link(rollback), posts[1].raw)
		}
	}
	if strings.Contains(s.Logs(), chatSecret) {
		t.Error("a chat webhook's URL secret is in sluice's log")
	}
}

// waitPosts waits until every channel has n posts announcing event.
func waitPosts(t *testing.T, chat *chatReceiver, event string, n int) {
	t.Helper()
	err := stack.WaitFor(t.Context(), time.Minute, 100*time.Millisecond, fmt.Sprintf("%d %s message(s) on every channel", n, event), func(context.Context) (bool, error) {
		for _, typ := range chatTypes {
			count := 0
			for _, p := range chat.posts(typ) {
				if typ == "webhook" && p.body["type"] == "dev.sluice.release."+event ||
					typ != "webhook" && strings.Contains(p.raw, map[string]string{"started": " started v2", "rolledback": " rolled back v2"}[event]) {
					count++
				}
			}
			if count < n {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
