package notify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // every line must be in the error; empty: valid
	}{
		{name: "the README's example", yaml: `
channels:
  - name: releases-slack
    type: slack
    urlFile: /etc/sluice/notify/slack-url
  - name: shop-teams
    type: teams
    urlFile: /etc/sluice/notify/teams-url
    releases: ["shop/*"]
    events: [rolledback, promoted, waiting]
  - name: team-a-discord
    type: discord
    urlFile: /etc/sluice/notify/discord-url
    releases: []
  - name: oncall-chat
    type: googlechat
    urlFile: /etc/sluice/notify/chat-url
    events: [rolledback, blocked]
  - name: audit
    type: webhook
    url: https://audit.example.com/sluice
    tokenFile: /etc/sluice/notify/audit-token
    secretFile: /etc/sluice/notify/audit-hmac
    events: [all]
`},
		{name: "no channels", yaml: "channels: []\n", wantErr: "no channels"},
		{name: "a misspelt key", yaml: "channels:\n- name: a\n  type: slack\n  urlFle: /x\n", wantErr: `unknown field "urlFle"`},
		{name: "a chat URL in the config", yaml: "channels:\n- name: a\n  type: slack\n  url: https://hooks.slack.com/services/T/B/X\n",
			wantErr: "url: a slack webhook's URL is a secret\nurlFile is required"},
		{name: "an unknown type", yaml: "channels:\n- name: a\n  type: email\n  urlFile: /x\n", wantErr: `type "email"`},
		{name: "no type", yaml: "channels:\n- name: a\n  urlFile: /x\n", wantErr: "type is required"},
		{name: "a webhook without a URL", yaml: "channels:\n- name: a\n  type: webhook\n", wantErr: "one of url and urlFile"},
		{name: "a webhook with a bad URL", yaml: "channels:\n- name: a\n  type: webhook\n  url: ftp://x/y\n", wantErr: "not an http:// or https:// URL"},
		{name: "a token for slack", yaml: "channels:\n- name: a\n  type: slack\n  urlFile: /x\n  tokenFile: /t\n", wantErr: "for type webhook only"},
		{name: "the same name twice", yaml: "channels:\n- {name: a, type: slack, urlFile: /x}\n- {name: a, type: teams, urlFile: /y}\n", wantErr: `name "a" is used twice`},
		{name: "a comma in a name", yaml: "channels:\n- {name: 'a,b', type: slack, urlFile: /x}\n", wantErr: "no commas"},
		{name: "no name", yaml: "channels:\n- {type: slack, urlFile: /x}\n", wantErr: "channels[0]: name is required"},
		{name: "an unknown event", yaml: "channels:\n- {name: a, type: slack, urlFile: /x, events: [rolledbak]}\n", wantErr: `unknown event "rolledbak"`},
		{name: "a bad glob", yaml: "channels:\n- {name: a, type: slack, urlFile: /x, releases: ['shop/[']}\n", wantErr: "syntax error in pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range strings.Split(tt.wantErr, "\n") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "hooks.slack.com") {
				t.Errorf("the error quotes the secret URL: %v", err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	specs, err := compile(Config{Channels: []ChannelConfig{
		{Name: "a", Type: TypeSlack, URLFile: "/x"},
		{Name: "b", Type: TypeSlack, URLFile: "/x", Releases: &[]string{}},
		{Name: "c", Type: TypeSlack, URLFile: "/x", Events: []string{"blocked", "nodata"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range DefaultEvents() {
		if !specs[0].events[e] {
			t.Errorf("default events lack %s", e)
		}
	}
	if specs[0].events[EventNoData] || specs[0].events[EventCheck] || specs[0].events[EventAdvanced] {
		t.Error("the default events include a repeating one")
	}
	if !specs[0].selects("any/release") {
		t.Error("a channel without releases does not take every release")
	}
	if specs[1].selects("any/release") {
		t.Error("a channel with releases: [] takes a release that did not name it")
	}
	if !specs[2].events[EventInvalid] || !specs[2].events[EventNoData] || specs[2].events[EventRolledBack] {
		t.Errorf("events %v, want invalid and nodata", specs[2].events)
	}
}

func TestLoadConfig(t *testing.T) {
	f := filepath.Join(t.TempDir(), "n.yaml")
	if err := os.WriteFile(f, []byte("channels:\n- {name: a, type: email, urlFile: /x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(f); err == nil || !strings.Contains(err.Error(), f) {
		t.Errorf("error %v does not name the file", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.yaml"), Options{}); err == nil {
		t.Error("no error for a missing file")
	}
	if _, err := New(Config{Channels: []ChannelConfig{{Name: "a", Type: TypeSlack, URLFile: "/x"}}}, Options{CommitURL: "https://x/commit/"}); err == nil {
		t.Error("no error for a commit URL without {commit}")
	}
}
