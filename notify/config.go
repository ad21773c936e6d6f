package notify

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"sigs.k8s.io/yaml"
)

// Annotations a release spec may carry in metadata.annotations.
const (
	// AnnotationChannels names channels, comma-separated, that get this
	// release's notifications whatever their releases say.
	AnnotationChannels = "notify.sluice.dev/channels"
	// AnnotationEvents lists the events, comma-separated, this release
	// notifies: on the channels it names, instead of theirs; on the others,
	// only those among theirs (a release cannot make a shared channel
	// noisier).
	AnnotationEvents = "notify.sluice.dev/events"
)

// Channel types.
const (
	TypeSlack      = "slack"
	TypeTeams      = "teams"
	TypeDiscord    = "discord"
	TypeGoogleChat = "googlechat"
	TypeWebhook    = "webhook"
)

// Config is the notifications configuration file (--notifications-config).
type Config struct {
	Channels []ChannelConfig `json:"channels"`
}

// ChannelConfig is one place messages go.
type ChannelConfig struct {
	// Name identifies the channel in annotations, logs and metrics.
	Name string `json:"name"`
	// Type is slack, teams, discord, googlechat or webhook.
	Type string `json:"type"`
	// URLFile holds the webhook's URL, read at every send. For the chat
	// services the URL is the secret, so it is only taken from a file.
	URLFile string `json:"urlFile,omitempty"`
	// URL is a webhook's URL (type webhook only), when it is not secret.
	URL string `json:"url,omitempty"`
	// TokenFile holds a bearer token sent in Authorization (type webhook).
	TokenFile string `json:"tokenFile,omitempty"`
	// SecretFile holds a key to sign the body with: X-Sluice-Signature-256
	// is "sha256=" and the hex HMAC-SHA256 of the body (type webhook).
	SecretFile string `json:"secretFile,omitempty"`
	// Events the channel gets (DefaultEvents when empty); "all" is every
	// event and "blocked" is another name for "invalid".
	Events []string `json:"events,omitempty"`
	// Releases are globs on namespace/name ("shop/*", "*/catalog") of the
	// releases the channel gets. Left out: every release. An empty list:
	// only the releases that name the channel in their annotation.
	Releases *[]string `json:"releases,omitempty"`
}

// LoadConfig reads and checks a configuration file. Unknown fields are
// errors, so a misspelt key is not silently ignored.
func LoadConfig(file string) (Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return Config{}, fmt.Errorf("notifications config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("notifications config %s: %w", file, err)
	}
	return cfg, nil
}

// ParseConfig reads and checks a configuration.
func ParseConfig(b []byte) (Config, error) {
	var cfg Config
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return Config{}, err
	}
	if _, err := compile(cfg); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// channelSpec is a checked ChannelConfig.
type channelSpec struct {
	ChannelConfig
	events map[Event]bool
	// releases nil: every release.
	releases []string
}

func compile(cfg Config) ([]*channelSpec, error) {
	var errs []error
	seen := map[string]bool{}
	var out []*channelSpec
	for i, c := range cfg.Channels {
		where := fmt.Sprintf("channels[%d]", i)
		if c.Name != "" {
			where = fmt.Sprintf("channels[%d] (%s)", i, c.Name)
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
		}
		switch {
		case c.Name == "":
			bad("name is required")
		case strings.ContainsAny(c.Name, ", \t\n"):
			bad("name %q: no commas or spaces (annotations list names with commas)", c.Name)
		case seen[c.Name]:
			bad("name %q is used twice", c.Name)
		}
		seen[c.Name] = true
		switch c.Type {
		case TypeSlack, TypeTeams, TypeDiscord, TypeGoogleChat:
			if c.URL != "" {
				bad("url: a %s webhook's URL is a secret; put it in a Secret and name the file in urlFile", c.Type)
			}
			if c.TokenFile != "" || c.SecretFile != "" {
				bad("tokenFile and secretFile are for type webhook only")
			}
			if c.URLFile == "" {
				bad("urlFile is required")
			}
		case TypeWebhook:
			if (c.URL == "") == (c.URLFile == "") {
				bad("one of url and urlFile is required")
			}
			if c.URL != "" {
				if err := checkURL(c.URL); err != nil {
					bad("url: %v", err)
				}
			}
		case "":
			bad("type is required (%s, %s, %s, %s or %s)", TypeSlack, TypeTeams, TypeDiscord, TypeGoogleChat, TypeWebhook)
		default:
			bad("type %q: want %s, %s, %s, %s or %s", c.Type, TypeSlack, TypeTeams, TypeDiscord, TypeGoogleChat, TypeWebhook)
		}
		events, err := parseEvents(c.Events)
		if err != nil {
			bad("events: %v", err)
		}
		if len(events) == 0 {
			events, _ = parseEvents(eventNames(defaultEvents))
		}
		spec := &channelSpec{ChannelConfig: c, events: events}
		if c.Releases != nil {
			spec.releases = []string{}
			for _, g := range *c.Releases {
				if _, err := path.Match(g, "x/y"); err != nil {
					bad("releases: %q: %v", g, err)
				}
				spec.releases = append(spec.releases, g)
			}
		}
		out = append(out, spec)
	}
	if len(cfg.Channels) == 0 {
		errs = append(errs, errors.New("no channels"))
	}
	return out, errors.Join(errs...)
}

func eventNames(es []Event) []string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = string(e)
	}
	return s
}

// selects reports whether the channel's releases take release by default.
func (c *channelSpec) selects(release string) bool {
	if c.releases == nil {
		return true
	}
	for _, g := range c.releases {
		if ok, _ := path.Match(g, release); ok {
			return true
		}
	}
	return false
}

// splitList splits a comma-separated annotation value.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
