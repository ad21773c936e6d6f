package notify

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"sluice.dev/sluice/reconciler"
	"sluice.dev/sluice/record"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testTime is every message's time in the tests.
var testTime = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

const testCommitURL = "https://git.example.com/platform/releases/commit/{commit}"

func f64(v float64) *float64 { return &v }

// transitions are one of each kind of notification, as the reconciler
// reports them (subjects and messages as reconciler/machine.go writes
// them).
func transitions() map[string]reconciler.Transition {
	base := func(action record.Action, commit, subject string, st *record.Status) reconciler.Transition {
		st.Release = "istioinaction/catalog"
		return reconciler.Transition{
			Release: "istioinaction/catalog", Namespace: "istioinaction", Name: "catalog",
			Action: action, Subject: subject, Commit: commit, Status: st, VirtualService: "catalog-mesh",
		}
	}
	gates := []record.GateValue{
		{Metric: "request-success-rate", Value: f64(91.5), Min: f64(99), Passed: false},
		{Metric: "request-duration", Value: f64(49.4), Max: f64(500), Passed: true},
	}
	return map[string]reconciler.Transition{
		"started": base(record.ActionStart, "786b5620c4d1e2f3a4b5c6d7e8f90a1b2c3d4e5f", "catalog: start v1 -> v2 at deploy",
			&record.Status{Phase: record.PhaseProgressing, Stable: "v1", Candidate: "v2", Step: "deploy", StepIndex: 0}),
		"waiting-pr": base(record.ActionWait, "9a1b2c3d4e5f60718293a4b5c6d7e8f901234567", "catalog: canary-40 passed; wide-50 waits for approval in pull request #7",
			&record.Status{Phase: record.PhaseWaiting, Stable: "v1", Candidate: "v2", Step: "canary-40", StepIndex: 5, Weight: 40,
				PullRequest: &record.PullRequestRef{Number: 7, URL: "https://git.example.com/platform/releases/pulls/7", Branch: "sluice/istioinaction/catalog/wide-50", Step: "wide-50"},
				Message:     "wide-50 waits for approval: merge pull request #7 https://git.example.com/platform/releases/pulls/7"}),
		"waiting-manual": base(record.ActionWait, "1b2c3d4e5f60718293a4b5c6d7e8f90123456789", "catalog: canary-10 (10%) passed; wide-50 waits for approval",
			&record.Status{Phase: record.PhaseWaiting, Stable: "v1", Candidate: "v2", Step: "canary-10", StepIndex: 2, Weight: 10,
				Message: "wide-50 waits for approval: add {stage: wide, candidate: v2} to spec.approvals in releases/catalog.yaml"}),
		"rolledback": base(record.ActionRollback, "c0ffee0123456789abcdef0123456789abcdef01", "catalog: rolled back at canary-20 (20%) (request-success-rate 91.5 < 99, 5/5 checks failed)",
			&record.Status{Phase: record.PhaseRolledBack, Stable: "v1", Candidate: "v2", Step: "rollback", StepIndex: 3, Weight: 0, Gates: gates,
				Message: "rolled back at canary-20: request-success-rate 91.5 < 99, 5/5 checks failed"}),
		"promoted": base(record.ActionPromote, "693217e0a1b2c3d4e5f60718293a4b5c6d7e8f90", "catalog: promoted v2 (v1 retired)",
			&record.Status{Phase: record.PhasePromoted, Stable: "v2", Candidate: "v2", Step: "promote", StepIndex: 7, Weight: 100,
				Draining: []record.Drain{{Version: "v1", Until: testTime.Add(30 * time.Second)}}}),
		"invalid": base(record.ActionInvalid, "deadbeef00112233445566778899aabbccddeeff", "catalog: invalid release spec, skipped",
			&record.Status{Phase: record.PhaseInvalid, Stable: "v1",
				Message: "releases/catalog.yaml:12: spec.candidate: version \"v3\" is not in spec.versions\nreleases/catalog.yaml:20: spec.stages[1].weight: must be 1..99"}),
	}
}

var channelTypes = []string{TypeSlack, TypeTeams, TypeDiscord, TypeGoogleChat, TypeWebhook}

// goldenName is the golden file of a type and case.
func goldenName(typ, name string) string {
	return filepath.Join("testdata", typ+"-"+name+".json")
}

// checkGolden compares a payload, indented, with its golden file.
func checkGolden(t *testing.T, file string, body []byte) {
	t.Helper()
	var got bytes.Buffer
	if err := json.Indent(&got, body, "", "  "); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	got.WriteByte('\n')
	if *update {
		if err := os.WriteFile(file, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (go test ./notify -run TestPayloads -update writes it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("payload differs from %s:\n%s", file, got.Bytes())
	}
}

func TestPayloads(t *testing.T) {
	for name, tr := range transitions() {
		e, _ := EventOf(tr.Action)
		m := newMessage(tr, e, testCommitURL, testTime)
		for _, typ := range channelTypes {
			t.Run(typ+"/"+name, func(t *testing.T) {
				body, ctype, err := payload(typ, "https://git.example.com/platform/releases.git", m)
				if err != nil {
					t.Fatal(err)
				}
				if want := wantContentType[typ]; ctype != want {
					t.Errorf("content type %q, want %q", ctype, want)
				}
				if err := checkShape(typ, body); err != nil {
					t.Errorf("not the documented format: %v\n%s", err, body)
				}
				checkGolden(t, goldenName(typ, name), body)
			})
		}
	}
}

func TestPayloadWithoutCommitURL(t *testing.T) {
	tr := transitions()["rolledback"]
	m := newMessage(tr, EventRolledBack, "", testTime)
	for _, typ := range channelTypes {
		t.Run(typ, func(t *testing.T) {
			body, _, err := payload(typ, DefaultSource, m)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkShape(typ, body); err != nil {
				t.Errorf("not the documented format: %v\n%s", err, body)
			}
			// The commit is named even without a link.
			if !strings.Contains(string(body), "c0ffee0") {
				t.Errorf("the commit is not named:\n%s", body)
			}
			if strings.Contains(string(body), "/commit/") {
				t.Errorf("a commit link without --commit-url:\n%s", body)
			}
		})
	}
}

func TestPayloadLimits(t *testing.T) {
	long := strings.Repeat("é<@everyone>", 1000)
	tr := transitions()["invalid"]
	tr.Subject = long
	tr.Status.Message = long
	m := newMessage(tr, EventInvalid, testCommitURL, testTime)
	for _, typ := range channelTypes {
		t.Run(typ, func(t *testing.T) {
			body, _, err := payload(typ, DefaultSource, m)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkShape(typ, body); err != nil {
				t.Errorf("not the documented format: %v", err)
			}
		})
	}
}

var wantContentType = map[string]string{
	TypeSlack:      "application/json",
	TypeTeams:      "application/json",
	TypeDiscord:    "application/json",
	TypeGoogleChat: "application/json; charset=UTF-8",
	TypeWebhook:    "application/cloudevents+json; charset=utf-8",
}

// checkShape checks a payload against what each service documents: the
// fields it requires, their types and its limits. The payload is decoded
// into generic JSON so the check does not share the encoder's structs.
func checkShape(typ string, body []byte) error {
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	switch typ {
	case TypeSlack:
		return checkSlack(v)
	case TypeTeams:
		return checkTeams(v)
	case TypeDiscord:
		return checkDiscord(v)
	case TypeGoogleChat:
		return checkGoogleChat(v)
	case TypeWebhook:
		return checkCloudEvent(v)
	}
	return fmt.Errorf("unknown type %s", typ)
}

func onlyKeys(v map[string]any, allowed ...string) error {
	for k := range v {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return fmt.Errorf("unexpected field %q", k)
		}
	}
	return nil
}

func str(v any, max int) (string, error) {
	s, ok := v.(string)
	if !ok || s == "" {
		return "", fmt.Errorf("want a non-empty string, got %v", v)
	}
	if max > 0 && utf8.RuneCountInString(s) > max {
		return "", fmt.Errorf("%d characters, more than %d", utf8.RuneCountInString(s), max)
	}
	return s, nil
}

// Slack Block Kit: https://api.slack.com/reference/block-kit/blocks.
func checkSlack(v map[string]any) error {
	if err := onlyKeys(v, "text", "blocks"); err != nil {
		return err
	}
	if _, err := str(v["text"], 0); err != nil {
		return fmt.Errorf("text: %w", err)
	}
	blocks, ok := v["blocks"].([]any)
	if !ok || len(blocks) == 0 || len(blocks) > 50 {
		return fmt.Errorf("blocks: want 1 to 50, got %v", v["blocks"])
	}
	textObj := func(o any, types ...string) (map[string]any, error) {
		t, ok := o.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("want a text object, got %v", o)
		}
		ty, _ := t["type"].(string)
		if ty != "plain_text" && ty != "mrkdwn" {
			return nil, fmt.Errorf("text type %q", ty)
		}
		if len(types) > 0 && ty != types[0] {
			return nil, fmt.Errorf("text type %q, want %s", ty, types[0])
		}
		return t, onlyKeys(t, "type", "text", "emoji", "verbatim")
	}
	for i, b := range blocks {
		blk := b.(map[string]any)
		switch blk["type"] {
		case "header":
			t, err := textObj(blk["text"], "plain_text")
			if err != nil {
				return fmt.Errorf("blocks[%d]: %w", i, err)
			}
			if _, err := str(t["text"], slackHeaderMax); err != nil {
				return fmt.Errorf("blocks[%d].text: %w", i, err)
			}
		case "section":
			if blk["text"] == nil && blk["fields"] == nil {
				return fmt.Errorf("blocks[%d]: a section needs text or fields", i)
			}
			if blk["text"] != nil {
				t, err := textObj(blk["text"])
				if err != nil {
					return fmt.Errorf("blocks[%d]: %w", i, err)
				}
				if _, err := str(t["text"], slackSectionMax); err != nil {
					return fmt.Errorf("blocks[%d].text: %w", i, err)
				}
			}
			if fs, ok := blk["fields"].([]any); ok {
				if len(fs) > 10 {
					return fmt.Errorf("blocks[%d]: %d fields, more than 10", i, len(fs))
				}
				for _, f := range fs {
					t, err := textObj(f)
					if err != nil {
						return fmt.Errorf("blocks[%d].fields: %w", i, err)
					}
					if _, err := str(t["text"], slackFieldMax); err != nil {
						return fmt.Errorf("blocks[%d].fields: %w", i, err)
					}
				}
			}
		case "context":
			els, ok := blk["elements"].([]any)
			if !ok || len(els) == 0 || len(els) > 10 {
				return fmt.Errorf("blocks[%d]: a context needs 1 to 10 elements", i)
			}
			for _, e := range els {
				if _, err := textObj(e); err != nil {
					return fmt.Errorf("blocks[%d].elements: %w", i, err)
				}
			}
		default:
			return fmt.Errorf("blocks[%d]: type %v", i, blk["type"])
		}
	}
	return nil
}

// Teams: a message with one Adaptive Card attachment.
func checkTeams(v map[string]any) error {
	if err := onlyKeys(v, "type", "attachments"); err != nil {
		return err
	}
	if v["type"] != "message" {
		return fmt.Errorf("type %v, want message", v["type"])
	}
	atts, ok := v["attachments"].([]any)
	if !ok || len(atts) != 1 {
		return fmt.Errorf("attachments: want one, got %v", v["attachments"])
	}
	att := atts[0].(map[string]any)
	if att["contentType"] != "application/vnd.microsoft.card.adaptive" {
		return fmt.Errorf("contentType %v", att["contentType"])
	}
	card, ok := att["content"].(map[string]any)
	if !ok {
		return fmt.Errorf("content: want an object")
	}
	if card["type"] != "AdaptiveCard" || card["$schema"] != "http://adaptivecards.io/schemas/adaptive-card.json" {
		return fmt.Errorf("content: type %v, $schema %v", card["type"], card["$schema"])
	}
	if ver, _ := card["version"].(string); ver == "" || ver > "1.5" {
		return fmt.Errorf("version %v: Teams renders up to 1.5", card["version"])
	}
	body, ok := card["body"].([]any)
	if !ok || len(body) == 0 {
		return fmt.Errorf("body: want elements")
	}
	for i, e := range body {
		el := e.(map[string]any)
		switch el["type"] {
		case "TextBlock":
			if _, err := str(el["text"], 0); err != nil {
				return fmt.Errorf("body[%d].text: %w", i, err)
			}
		case "FactSet":
			facts, ok := el["facts"].([]any)
			if !ok {
				return fmt.Errorf("body[%d]: a FactSet needs facts", i)
			}
			for _, f := range facts {
				fo := f.(map[string]any)
				if _, err := str(fo["title"], 0); err != nil {
					return fmt.Errorf("body[%d].facts: %w", i, err)
				}
				if _, err := str(fo["value"], 0); err != nil {
					return fmt.Errorf("body[%d].facts: %w", i, err)
				}
			}
		default:
			return fmt.Errorf("body[%d]: type %v", i, el["type"])
		}
	}
	if acts, ok := card["actions"].([]any); ok {
		for i, a := range acts {
			ao := a.(map[string]any)
			if ao["type"] != "Action.OpenUrl" {
				return fmt.Errorf("actions[%d]: type %v", i, ao["type"])
			}
			if _, err := str(ao["url"], 0); err != nil {
				return fmt.Errorf("actions[%d].url: %w", i, err)
			}
		}
	}
	return nil
}

// Discord: Execute Webhook with embeds, and their limits.
func checkDiscord(v map[string]any) error {
	if err := onlyKeys(v, "content", "embeds", "allowed_mentions", "username", "avatar_url"); err != nil {
		return err
	}
	if _, err := str(v["content"], discordContentMax); err != nil {
		return fmt.Errorf("content: %w", err)
	}
	if am, ok := v["allowed_mentions"].(map[string]any); !ok || am["parse"] == nil || len(am["parse"].([]any)) != 0 {
		return fmt.Errorf("allowed_mentions: want {parse: []}, got %v", v["allowed_mentions"])
	}
	embeds, ok := v["embeds"].([]any)
	if !ok || len(embeds) == 0 || len(embeds) > 10 {
		return fmt.Errorf("embeds: want 1 to 10")
	}
	total := 0
	for i, e := range embeds {
		em := e.(map[string]any)
		if err := onlyKeys(em, "title", "description", "url", "color", "fields", "timestamp", "footer"); err != nil {
			return fmt.Errorf("embeds[%d]: %w", i, err)
		}
		title, err := str(em["title"], discordTitleMax)
		if err != nil {
			return fmt.Errorf("embeds[%d].title: %w", i, err)
		}
		total += utf8.RuneCountInString(title)
		if d, ok := em["description"].(string); ok {
			if utf8.RuneCountInString(d) > discordDescriptionMax {
				return fmt.Errorf("embeds[%d].description too long", i)
			}
			total += utf8.RuneCountInString(d)
		}
		if _, ok := em["color"].(float64); !ok {
			return fmt.Errorf("embeds[%d].color: want an integer", i)
		}
		if ts, _ := em["timestamp"].(string); ts != "" {
			if _, err := time.Parse(time.RFC3339, ts); err != nil {
				return fmt.Errorf("embeds[%d].timestamp: %w", i, err)
			}
		}
		fields, _ := em["fields"].([]any)
		if len(fields) > 25 {
			return fmt.Errorf("embeds[%d]: more than 25 fields", i)
		}
		for _, f := range fields {
			fo := f.(map[string]any)
			name, err := str(fo["name"], 256)
			if err != nil {
				return fmt.Errorf("embeds[%d].fields.name: %w", i, err)
			}
			value, err := str(fo["value"], discordFieldMax)
			if err != nil {
				return fmt.Errorf("embeds[%d].fields.value: %w", i, err)
			}
			total += utf8.RuneCountInString(name) + utf8.RuneCountInString(value)
		}
		if ft, ok := em["footer"].(map[string]any); ok {
			footer, err := str(ft["text"], 2048)
			if err != nil {
				return fmt.Errorf("embeds[%d].footer.text: %w", i, err)
			}
			total += utf8.RuneCountInString(footer)
		}
	}
	if total > 6000 {
		return fmt.Errorf("embeds hold %d characters, more than 6000", total)
	}
	return nil
}

// Google Chat: text and cardsV2 (cardId, card.header, card.sections).
func checkGoogleChat(v map[string]any) error {
	if err := onlyKeys(v, "text", "cardsV2"); err != nil {
		return err
	}
	if _, err := str(v["text"], 4096); err != nil {
		return fmt.Errorf("text: %w", err)
	}
	cards, ok := v["cardsV2"].([]any)
	if !ok || len(cards) == 0 {
		return fmt.Errorf("cardsV2: want a card")
	}
	for i, c := range cards {
		co := c.(map[string]any)
		if err := onlyKeys(co, "cardId", "card"); err != nil {
			return fmt.Errorf("cardsV2[%d]: %w", i, err)
		}
		if _, err := str(co["cardId"], 0); err != nil {
			return fmt.Errorf("cardsV2[%d].cardId: %w", i, err)
		}
		card := co["card"].(map[string]any)
		hdr, ok := card["header"].(map[string]any)
		if !ok {
			return fmt.Errorf("cardsV2[%d].card.header missing", i)
		}
		if _, err := str(hdr["title"], 0); err != nil {
			return fmt.Errorf("cardsV2[%d].card.header.title: %w", i, err)
		}
		sections, _ := card["sections"].([]any)
		widgets := 0
		for _, s := range sections {
			ws, _ := s.(map[string]any)["widgets"].([]any)
			for j, w := range ws {
				wo := w.(map[string]any)
				if len(wo) != 1 {
					return fmt.Errorf("widget %d: want one kind, got %v", j, wo)
				}
				switch {
				case wo["textParagraph"] != nil:
					if _, err := str(wo["textParagraph"].(map[string]any)["text"], 0); err != nil {
						return fmt.Errorf("textParagraph: %w", err)
					}
				case wo["decoratedText"] != nil:
					if _, err := str(wo["decoratedText"].(map[string]any)["text"], 0); err != nil {
						return fmt.Errorf("decoratedText: %w", err)
					}
				case wo["buttonList"] != nil:
					for _, b := range wo["buttonList"].(map[string]any)["buttons"].([]any) {
						bo := b.(map[string]any)
						link, _ := bo["onClick"].(map[string]any)["openLink"].(map[string]any)
						if _, err := str(link["url"], 0); err != nil {
							return fmt.Errorf("button: onClick.openLink.url: %w", err)
						}
					}
				default:
					return fmt.Errorf("widget %d: unknown kind %v", j, wo)
				}
				widgets++
			}
		}
		if widgets == 0 || widgets > 100 {
			return fmt.Errorf("cardsV2[%d]: %d widgets", i, widgets)
		}
	}
	return nil
}

// CloudEvents 1.0 JSON format: required context attributes and their types.
func checkCloudEvent(v map[string]any) error {
	if v["specversion"] != "1.0" {
		return fmt.Errorf("specversion %v", v["specversion"])
	}
	for _, k := range []string{"id", "source", "type", "subject", "time", "datacontenttype"} {
		if _, err := str(v[k], 0); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	if !strings.HasPrefix(v["type"].(string), CloudEventTypePrefix) {
		return fmt.Errorf("type %v", v["type"])
	}
	if _, err := time.Parse(time.RFC3339Nano, v["time"].(string)); err != nil {
		return fmt.Errorf("time: %w", err)
	}
	for k := range v {
		// Attribute names: lower-case letters and digits only.
		for _, r := range k {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
				return fmt.Errorf("attribute %q: only a-z and 0-9", k)
			}
		}
	}
	data, ok := v["data"].(map[string]any)
	if !ok {
		return fmt.Errorf("data: want an object")
	}
	for _, k := range []string{"release", "action", "subject", "commit", "event"} {
		if _, err := str(data[k], 0); err != nil {
			return fmt.Errorf("data.%s: %w", k, err)
		}
	}
	return nil
}

func TestTitles(t *testing.T) {
	want := map[string]string{
		"started":        "istioinaction/catalog started v2",
		"waiting-pr":     "istioinaction/catalog is waiting for approval",
		"waiting-manual": "istioinaction/catalog is waiting for approval",
		"rolledback":     "istioinaction/catalog rolled back v2",
		"promoted":       "istioinaction/catalog promoted v2",
		"invalid":        "istioinaction/catalog is blocked: invalid release spec",
	}
	for name, tr := range transitions() {
		e, _ := EventOf(tr.Action)
		if got := newMessage(tr, e, "", testTime).Title(); got != want[name] {
			t.Errorf("%s: title %q, want %q", name, got, want[name])
		}
	}
}

func TestEventOfEveryAction(t *testing.T) {
	for _, a := range record.Actions() {
		if _, ok := EventOf(a); !ok {
			t.Errorf("action %s has no event", a)
		}
	}
}
