// Package forge speaks to Git forges (Gitea, GitHub, GitLab) so people can
// follow and steer releases where they review code: Sluice opens a pull
// request whose merge approves a step, and marks the commit that started a
// release with its outcome.
//
// One small interface, Provider, hides the three APIs. Tokens are read from
// a file at every call, so a rotated Secret takes effect at once, and never
// appear in logs or errors.
package forge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"sluice.dev/sluice/internal/secret"
)

// State is where a pull request stands.
type State string

// Pull request states. A merged pull request is also closed; Merged wins.
const (
	StateOpen   State = "open"
	StateMerged State = "merged"
	StateClosed State = "closed"
)

// PullRequest is a pull request (GitLab: merge request) as Sluice sees it.
type PullRequest struct {
	// Number is what people call it: #12 (GitLab: the IID, !12).
	Number int64
	// URL is its web page.
	URL   string
	Head  string // source branch
	Base  string // target branch
	Title string
	Body  string
	State State
	// By is who merged or closed it, when the forge says; "" while open.
	By string
}

// NewPullRequest is what EnsurePullRequest opens.
type NewPullRequest struct {
	Head, Base  string
	Title, Body string
}

// StatusState is a commit status's state.
type StatusState string

// Commit status states, as GitHub and Gitea name them (GitLab's "failed"
// is mapped from StatusFailure).
const (
	StatusPending StatusState = "pending"
	StatusSuccess StatusState = "success"
	StatusFailure StatusState = "failure"
)

// CommitStatus is one status on a commit; Context names it (sluice/ns/name)
// so a later status with the same context replaces it.
type CommitStatus struct {
	Context     string
	State       StatusState
	Description string
	TargetURL   string
}

// Provider is one forge repository.
type Provider interface {
	// EnsurePullRequest returns the open pull request from Head into Base,
	// opening it when there is none; created says which. Looking it up by
	// its branch first is what keeps a restarted Sluice from opening a
	// second one.
	EnsurePullRequest(ctx context.Context, pr NewPullRequest) (p *PullRequest, created bool, err error)
	// PullRequest reads a pull request by number.
	PullRequest(ctx context.Context, number int64) (*PullRequest, error)
	// UpdatePullRequest replaces a pull request's title and body.
	UpdatePullRequest(ctx context.Context, number int64, title, body string) error
	// Comment adds a comment to a pull request.
	Comment(ctx context.Context, number int64, body string) error
	// ClosePullRequest closes a pull request without merging it.
	ClosePullRequest(ctx context.Context, number int64) error
	// SetStatus sets a commit status on sha.
	SetStatus(ctx context.Context, sha string, st CommitStatus) error
}

// defaultTimeout bounds one API call when Config.HTTPClient is not set.
const defaultTimeout = 30 * time.Second

// Provider names.
const (
	Gitea  = "gitea"
	GitHub = "github"
	GitLab = "gitlab"
)

// Config says which forge and repository to speak to.
type Config struct {
	// Provider is gitea, github or gitlab.
	Provider string
	// URL is the forge's address: Gitea's and GitLab's root URL
	// (https://git.example.com), GitHub's API URL; "" means
	// https://api.github.com/ for GitHub, and a GitHub Enterprise Server's
	// https://ghe.example.com (its /api/v3/ is added) works too.
	URL string
	// Repo is owner/name (GitLab: the project's full path, group/sub/name).
	Repo string
	// TokenFile holds the API token; it is read at every call.
	TokenFile string
	// HTTPClient, when set, makes the calls (proxies, CAs); default a client
	// with a 30s timeout.
	HTTPClient *http.Client
}

// New returns the Provider cfg names, checking cfg without network I/O.
func New(cfg Config) (Provider, error) {
	if cfg.TokenFile == "" {
		return nil, errors.New("forge: a token file is required (--forge-token-file)")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: defaultTimeout}
	}
	if cfg.Provider != GitHub || cfg.URL != "" {
		if err := checkURL(cfg.URL); err != nil {
			return nil, fmt.Errorf("forge %s: %w", cfg.Provider, err)
		}
	}
	owner, name, err := splitRepo(cfg.Provider, cfg.Repo)
	if err != nil {
		return nil, err
	}
	tok := tokenFile(cfg.TokenFile)
	switch cfg.Provider {
	case Gitea:
		return &giteaProvider{url: strings.TrimSuffix(cfg.URL, "/"), owner: owner, repo: name, token: tok, hc: cfg.HTTPClient}, nil
	case GitHub:
		return &githubProvider{url: cfg.URL, owner: owner, repo: name, token: tok, hc: cfg.HTTPClient}, nil
	case GitLab:
		return &gitlabProvider{url: strings.TrimSuffix(cfg.URL, "/"), project: cfg.Repo, token: tok, hc: cfg.HTTPClient}, nil
	}
	return nil, fmt.Errorf("forge: unknown provider %q: want %s, %s or %s", cfg.Provider, Gitea, GitHub, GitLab)
}

func checkURL(raw string) error {
	if raw == "" {
		return errors.New("an API URL is required (--forge-url)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("URL %q does not parse", redactURL(raw))
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("URL %q: want http(s)://host[/path]", redactURL(raw))
	}
	if u.User != nil {
		return fmt.Errorf("URL %q: must not carry credentials; use the token file", redactURL(raw))
	}
	return nil
}

// redactURL drops userinfo so a mistaken URL with a password never reaches
// an error message.
func redactURL(raw string) string { return secret.URL(raw) }

// RepoFromGitURL derives a forge repository path (owner/name) from the
// Git URL Sluice follows: https://git.example.com/platform/releases.git,
// ssh://git@host/platform/releases.git or git@host:platform/releases.git
// all give platform/releases.
func RepoFromGitURL(gitURL string) (string, error) {
	var p string
	if u, err := url.Parse(gitURL); err == nil && u.Scheme != "" && u.Host != "" {
		p = u.Path
	} else if i := strings.Index(gitURL, ":"); i > 0 && !strings.Contains(gitURL[:i], "/") {
		p = gitURL[i+1:] // scp-like user@host:path
	} else {
		return "", fmt.Errorf("forge: cannot find the repository in Git URL %q: set --forge-repo", redactURL(gitURL))
	}
	p = strings.TrimSuffix(strings.Trim(p, "/"), ".git")
	if strings.Count(p, "/") < 1 {
		return "", fmt.Errorf("forge: Git URL %q has no owner/name path: set --forge-repo", redactURL(gitURL))
	}
	return p, nil
}

func splitRepo(provider, repo string) (owner, name string, err error) {
	parts := strings.Split(repo, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return "", "", fmt.Errorf("forge %s: repository %q: want owner/name", provider, repo)
		}
	}
	switch {
	case len(parts) == 2:
		return parts[0], parts[1], nil
	case len(parts) > 2 && provider == GitLab:
		// GitLab projects live in nested groups.
		return strings.Join(parts[:len(parts)-1], "/"), parts[len(parts)-1], nil
	}
	return "", "", fmt.Errorf("forge %s: repository %q: want owner/name", provider, repo)
}

// tokenFile is a path to a token, read at each use.
type tokenFile string

func (f tokenFile) read() (string, error) { return secret.ReadFile("forge token", string(f)) }

// scrub keeps the token out of an error, whatever a client library put in
// it (a response body echoing the request, a request with its headers): by
// the policy gitsync and gates share, the result does not unwrap, since the
// chain would still hold the token.
func scrub(op string, err error, token string) error {
	return secret.Error(op, err, []string{token})
}
