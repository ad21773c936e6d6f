package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"strings"
	"time"
	"unicode/utf8"
)

// Every payload is built from plain structs marshalled by encoding/json, so
// each field name below is the one the service documents.

// Content types of the requests.
const (
	contentJSON       = "application/json"
	contentChatJSON   = "application/json; charset=UTF-8" // as Google Chat's samples send it
	contentCloudEvent = "application/cloudevents+json; charset=utf-8"
)

// payload builds a channel type's request body and content type.
func payload(typ, source string, m *message) ([]byte, string, error) {
	var v any
	ct := contentJSON
	switch typ {
	case TypeSlack:
		v = slackPayload(m)
	case TypeTeams:
		v = teamsPayload(m)
	case TypeDiscord:
		v = discordPayload(m)
	case TypeGoogleChat:
		v, ct = googleChatPayload(m), contentChatJSON
	case TypeWebhook:
		v, ct = cloudEvent(source, m), contentCloudEvent
	default:
		return nil, "", fmt.Errorf("unknown channel type %q", typ)
	}
	// Not HTML-escaped: "<" stays "<", as the services' own examples read.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, "", fmt.Errorf("encode %s message: %w", typ, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), ct, nil
}

// --- Slack: incoming webhooks, https://api.slack.com/messaging/webhooks;
// text is the notification's fallback, blocks (Block Kit) the message.

type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"` // header, section, context
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type  string `json:"type"` // plain_text or mrkdwn
	Text  string `json:"text"`
	Emoji bool   `json:"emoji,omitempty"`
}

// Block Kit limits: a header's text, a section's text, a field's text.
const (
	slackHeaderMax  = 150
	slackSectionMax = 3000
	slackFieldMax   = 2000
)

func slackPayload(m *message) slackMessage {
	body := "`" + slackEscape(strings.ReplaceAll(m.Subject, "`", "'")) + "`"
	if m.Reason != "" {
		body += "\n" + slackEscape(m.Reason)
	}
	blocks := []slackBlock{
		{Type: "header", Text: &slackText{Type: "plain_text", Text: truncate(m.Title(), slackHeaderMax), Emoji: true}},
		{Type: "section", Text: &slackText{Type: "mrkdwn", Text: truncate(body, slackSectionMax)}},
	}
	if facts := m.Facts(); len(facts) > 0 {
		fields := make([]slackText, 0, len(facts))
		for _, f := range facts {
			fields = append(fields, slackText{Type: "mrkdwn", Text: truncate("*"+f.Title+"*\n"+slackEscape(f.Value), slackFieldMax)})
		}
		blocks = append(blocks, slackBlock{Type: "section", Fields: fields})
	}
	blocks = append(blocks, slackBlock{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: slackLinks(m)}}})
	return slackMessage{Text: slackEscape(m.Title() + ": " + m.Subject), Blocks: blocks}
}

// slackLinks are the commit's and the pull request's links, in mrkdwn.
func slackLinks(m *message) string {
	commit := "Commit `" + m.ShortCommit() + "`"
	if m.CommitURL != "" {
		commit = "Commit <" + m.CommitURL + "|" + m.ShortCommit() + ">"
	}
	parts := []string{commit}
	if m.PullRequestURL != "" {
		parts = append(parts, fmt.Sprintf("Pull request <%s|#%d>", m.PullRequestURL, m.PullRequestNumber))
	}
	return strings.Join(parts, " · ")
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning
// to: "<= 500ms" in a subject must not open a link.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// --- Microsoft Teams: a Workflows ("Post to a channel when a webhook
// request is received") or incoming webhook, with one Adaptive Card
// attachment, as https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using
// shows it.

type teamsMessage struct {
	Type        string            `json:"type"` // message
	Attachments []teamsAttachment `json:"attachments"`
}

type teamsAttachment struct {
	ContentType string       `json:"contentType"`
	ContentURL  *string      `json:"contentUrl"` // null, as documented
	Content     adaptiveCard `json:"content"`
}

type adaptiveCard struct {
	Schema  string         `json:"$schema"`
	Type    string         `json:"type"` // AdaptiveCard
	Version string         `json:"version"`
	Body    []adaptiveItem `json:"body"`
	Actions []adaptiveItem `json:"actions,omitempty"`
}

// adaptiveItem is a TextBlock, a FactSet or an Action.OpenUrl.
type adaptiveItem struct {
	Type     string         `json:"type"`
	Text     string         `json:"text,omitempty"`
	Weight   string         `json:"weight,omitempty"`
	Size     string         `json:"size,omitempty"`
	Color    string         `json:"color,omitempty"`
	IsSubtle bool           `json:"isSubtle,omitempty"`
	Wrap     bool           `json:"wrap,omitempty"`
	Facts    []adaptiveFact `json:"facts,omitempty"`
	Title    string         `json:"title,omitempty"`
	URL      string         `json:"url,omitempty"`
}

type adaptiveFact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

func teamsPayload(m *message) teamsMessage {
	color := "Default"
	switch m.severity() {
	case 1:
		color = "Good"
	case -1:
		color = "Attention"
	}
	body := []adaptiveItem{
		{Type: "TextBlock", Text: m.Title(), Weight: "Bolder", Size: "Medium", Color: color, Wrap: true},
		{Type: "TextBlock", Text: m.Subject, Wrap: true},
	}
	if m.Reason != "" {
		body = append(body, adaptiveItem{Type: "TextBlock", Text: m.Reason, IsSubtle: true, Wrap: true})
	}
	facts := []adaptiveFact{}
	for _, f := range m.Facts() {
		facts = append(facts, adaptiveFact(f))
	}
	if m.CommitURL == "" {
		facts = append(facts, adaptiveFact{Title: "Commit", Value: m.ShortCommit()})
	}
	body = append(body, adaptiveItem{Type: "FactSet", Facts: facts})
	var actions []adaptiveItem
	if m.CommitURL != "" {
		actions = append(actions, adaptiveItem{Type: "Action.OpenUrl", Title: "Commit " + m.ShortCommit(), URL: m.CommitURL})
	}
	if m.PullRequestURL != "" {
		actions = append(actions, adaptiveItem{Type: "Action.OpenUrl", Title: fmt.Sprintf("Pull request #%d", m.PullRequestNumber), URL: m.PullRequestURL})
	}
	return teamsMessage{Type: "message", Attachments: []teamsAttachment{{
		ContentType: "application/vnd.microsoft.card.adaptive",
		Content: adaptiveCard{
			Schema: "http://adaptivecards.io/schemas/adaptive-card.json",
			Type:   "AdaptiveCard", Version: "1.4",
			Body: body, Actions: actions,
		},
	}}}
}

// --- Discord: Execute Webhook, https://discord.com/developers/docs/resources/webhook#execute-webhook,
// with one embed.

type discordMessage struct {
	Content         string          `json:"content"`
	Embeds          []discordEmbed  `json:"embeds"`
	AllowedMentions discordMentions `json:"allowed_mentions"`
}

type discordEmbed struct {
	Title       string         `json:"title"`
	Description string         `json:"description,omitempty"`
	URL         string         `json:"url,omitempty"`
	Color       int            `json:"color"`
	Fields      []discordField `json:"fields,omitempty"`
	Timestamp   string         `json:"timestamp"`
	Footer      *discordFooter `json:"footer,omitempty"`
}

type discordField struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Inline bool   `json:"inline"`
}

type discordFooter struct {
	Text string `json:"text"`
}

// discordMentions with no parse types: a subject or reason that reads
// "@everyone" pings nobody.
type discordMentions struct {
	Parse []string `json:"parse"`
}

// Discord's limits: content, embed title, description, field value.
const (
	discordContentMax     = 2000
	discordTitleMax       = 256
	discordDescriptionMax = 4096
	discordFieldMax       = 1024
)

func discordPayload(m *message) discordMessage {
	color := 0x5865F2 // blurple
	switch m.severity() {
	case 1:
		color = 0x2EB67D
	case -1:
		color = 0xE01E5A
	}
	e := discordEmbed{
		Title:       truncate(m.Subject, discordTitleMax),
		Description: truncate(m.Reason, discordDescriptionMax),
		URL:         m.CommitURL,
		Color:       color,
		Timestamp:   m.Time.Format(time.RFC3339),
		Footer:      &discordFooter{Text: "sluice · " + m.ShortCommit()},
	}
	for _, f := range m.Facts() {
		e.Fields = append(e.Fields, discordField{Name: f.Title, Value: truncate(f.Value, discordFieldMax), Inline: true})
	}
	if m.PullRequestURL != "" {
		e.Fields = append(e.Fields, discordField{Name: "Pull request", Value: fmt.Sprintf("[#%d](%s)", m.PullRequestNumber, m.PullRequestURL)})
	}
	return discordMessage{
		Content:         truncate("**"+m.Title()+"**", discordContentMax),
		Embeds:          []discordEmbed{e},
		AllowedMentions: discordMentions{Parse: []string{}},
	}
}

// --- Google Chat: an incoming webhook,
// https://developers.google.com/workspace/chat/quickstart/webhooks, with
// text (what the notification shows) and a card (cardsV2).

type chatMessage struct {
	Text    string     `json:"text"`
	CardsV2 []chatCard `json:"cardsV2"`
}

type chatCard struct {
	CardID string   `json:"cardId"`
	Card   chatBody `json:"card"`
}

type chatBody struct {
	Header   chatHeader    `json:"header"`
	Sections []chatSection `json:"sections"`
}

type chatHeader struct {
	Title    string `json:"title"`
	Subtitle string `json:"subtitle,omitempty"`
}

type chatSection struct {
	Widgets []chatWidget `json:"widgets"`
}

type chatWidget struct {
	TextParagraph *chatTextParagraph `json:"textParagraph,omitempty"`
	DecoratedText *chatDecoratedText `json:"decoratedText,omitempty"`
	ButtonList    *chatButtonList    `json:"buttonList,omitempty"`
}

type chatTextParagraph struct {
	Text string `json:"text"`
}

type chatDecoratedText struct {
	TopLabel string `json:"topLabel"`
	Text     string `json:"text"`
}

type chatButtonList struct {
	Buttons []chatButton `json:"buttons"`
}

type chatButton struct {
	Text    string      `json:"text"`
	OnClick chatOnClick `json:"onClick"`
}

type chatOnClick struct {
	OpenLink chatOpenLink `json:"openLink"`
}

type chatOpenLink struct {
	URL string `json:"url"`
}

func googleChatPayload(m *message) chatMessage {
	// Card texts take Chat's HTML subset: "<= 500ms" must be escaped.
	widgets := []chatWidget{{TextParagraph: &chatTextParagraph{Text: html.EscapeString(m.Subject)}}}
	if m.Reason != "" {
		widgets = append(widgets, chatWidget{TextParagraph: &chatTextParagraph{Text: "<i>" + html.EscapeString(m.Reason) + "</i>"}})
	}
	for _, f := range m.Facts() {
		widgets = append(widgets, chatWidget{DecoratedText: &chatDecoratedText{TopLabel: f.Title, Text: html.EscapeString(f.Value)}})
	}
	var buttons []chatButton
	if m.CommitURL != "" {
		buttons = append(buttons, chatButton{Text: "Commit " + m.ShortCommit(), OnClick: chatOnClick{chatOpenLink{m.CommitURL}}})
	} else {
		widgets = append(widgets, chatWidget{DecoratedText: &chatDecoratedText{TopLabel: "Commit", Text: m.ShortCommit()}})
	}
	if m.PullRequestURL != "" {
		buttons = append(buttons, chatButton{Text: fmt.Sprintf("Pull request #%d", m.PullRequestNumber), OnClick: chatOnClick{chatOpenLink{m.PullRequestURL}}})
	}
	if len(buttons) > 0 {
		widgets = append(widgets, chatWidget{ButtonList: &chatButtonList{Buttons: buttons}})
	}
	return chatMessage{
		Text: "*" + m.Title() + "*",
		CardsV2: []chatCard{{
			CardID: "sluice-" + m.ShortCommit() + "-" + strings.ReplaceAll(m.Release, "/", "-"),
			Card: chatBody{
				Header:   chatHeader{Title: m.Title(), Subtitle: m.StepLabel()},
				Sections: []chatSection{{Widgets: widgets}},
			},
		}},
	}
}

// --- CloudEvents 1.0, JSON event format in structured content mode,
// https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md.

// CloudEventTypePrefix starts every event's type: the event name follows
// (dev.sluice.release.rolledback).
const CloudEventTypePrefix = "dev.sluice.release."

type cloudEventEnvelope struct {
	SpecVersion     string         `json:"specversion"`
	ID              string         `json:"id"`
	Source          string         `json:"source"`
	Type            string         `json:"type"`
	Subject         string         `json:"subject"`
	Time            string         `json:"time"`
	DataContentType string         `json:"datacontenttype"`
	Data            cloudEventData `json:"data"`
}

// cloudEventData is the event's data: the transition and the release's
// state after it, as recorded in Git.
type cloudEventData struct {
	Release     string         `json:"release"`
	Namespace   string         `json:"namespace"`
	Name        string         `json:"name"`
	Event       Event          `json:"event"`
	Action      string         `json:"action"`
	Subject     string         `json:"subject"`
	Commit      string         `json:"commit"`
	CommitURL   string         `json:"commitURL,omitempty"`
	PullRequest string         `json:"pullRequest,omitempty"`
	Phase       string         `json:"phase,omitempty"`
	Step        string         `json:"step,omitempty"`
	Weight      int32          `json:"weight"`
	Stable      string         `json:"stable,omitempty"`
	Candidate   string         `json:"candidate,omitempty"`
	Reason      string         `json:"reason,omitempty"`
	Gates       []gateDataItem `json:"gates,omitempty"`
}

type gateDataItem struct {
	Metric string   `json:"metric"`
	Value  *float64 `json:"value"` // null: no data (a webhook's: no answer)
	Min    *float64 `json:"min,omitempty"`
	Max    *float64 `json:"max,omitempty"`
	Passed bool     `json:"passed"`
	// Webhook is a webhook gate's type (Metric is its name, Value the
	// HTTP status it answered).
	Webhook string `json:"webhook,omitempty"`
}

func cloudEvent(source string, m *message) cloudEventEnvelope {
	d := cloudEventData{
		Release: m.Release, Namespace: m.Namespace, Name: m.Name,
		Event: m.Event, Action: string(m.Action), Subject: m.Subject,
		Commit: m.Commit, CommitURL: m.CommitURL, PullRequest: m.PullRequestURL,
		Phase: m.Phase, Step: m.Step, Weight: m.Weight, Stable: m.Stable, Candidate: m.Candidate,
		Reason: m.Reason,
	}
	for _, g := range m.Gates {
		d.Gates = append(d.Gates, gateDataItem{Metric: g.Metric, Value: g.Value, Min: g.Min, Max: g.Max, Passed: g.Passed, Webhook: g.Webhook})
	}
	return cloudEventEnvelope{
		SpecVersion: "1.0", ID: m.ID, Source: source,
		Type:    CloudEventTypePrefix + string(m.Event),
		Subject: m.Release, Time: m.Time.Format(time.RFC3339Nano),
		DataContentType: "application/json", Data: d,
	}
}

// truncate cuts s to at most n runes, marking the cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
