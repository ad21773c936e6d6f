package forge

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-github/v84/github"
)

// githubProvider speaks GitHub's REST API, on github.com or on a GitHub
// Enterprise Server.
type githubProvider struct {
	url, owner, repo string
	token            tokenFile
	hc               *http.Client
}

// client makes a client with the token read afresh; the library's clients
// are cheap copies.
func (g *githubProvider) client() (*github.Client, string, error) {
	tok, err := g.token.read()
	if err != nil {
		return nil, "", err
	}
	c := github.NewClient(g.hc).WithAuthToken(tok)
	c.UserAgent = "sluice"
	if g.url != "" {
		// Enterprise: https://ghe.example.com gets /api/v3/ added.
		if c, err = c.WithEnterpriseURLs(g.url, g.url); err != nil {
			return nil, "", fmt.Errorf("github: base URL %q: %w", redactURL(g.url), err)
		}
	}
	return c, tok, nil
}

func (g *githubProvider) EnsurePullRequest(ctx context.Context, n NewPullRequest) (*PullRequest, bool, error) {
	c, tok, err := g.client()
	if err != nil {
		return nil, false, err
	}
	// GitHub filters by head as owner:branch, so one page is enough.
	prs, _, err := c.PullRequests.List(ctx, g.owner, g.repo, &github.PullRequestListOptions{
		State: "open", Head: g.owner + ":" + n.Head, Base: n.Base,
	})
	if err != nil {
		return nil, false, scrub(fmt.Sprintf("github: list open pull requests of %s/%s", g.owner, g.repo), err, tok)
	}
	for _, pr := range prs {
		if pr.GetHead().GetRef() == n.Head && pr.GetBase().GetRef() == n.Base {
			return githubPR(pr, ""), false, nil
		}
	}
	pr, _, err := c.PullRequests.Create(ctx, g.owner, g.repo, &github.NewPullRequest{
		Title: &n.Title, Head: &n.Head, Base: &n.Base, Body: &n.Body,
	})
	if err != nil {
		return nil, false, scrub(fmt.Sprintf("github: open pull request %s -> %s", n.Head, n.Base), err, tok)
	}
	return githubPR(pr, ""), true, nil
}

func (g *githubProvider) PullRequest(ctx context.Context, number int64) (*PullRequest, error) {
	c, tok, err := g.client()
	if err != nil {
		return nil, err
	}
	pr, _, err := c.PullRequests.Get(ctx, g.owner, g.repo, int(number))
	if err != nil {
		return nil, scrub(fmt.Sprintf("github: get pull request #%d", number), err, tok)
	}
	by := ""
	if !pr.GetMerged() && pr.GetState() == "closed" {
		// Only the issue side of a pull request says who closed it.
		is, _, err := c.Issues.Get(ctx, g.owner, g.repo, int(number))
		if err != nil {
			return nil, scrub(fmt.Sprintf("github: get issue #%d", number), err, tok)
		}
		by = is.GetClosedBy().GetLogin()
	}
	return githubPR(pr, by), nil
}

func githubPR(pr *github.PullRequest, closedBy string) *PullRequest {
	out := &PullRequest{
		Number: int64(pr.GetNumber()), URL: pr.GetHTMLURL(), Title: pr.GetTitle(), Body: pr.GetBody(),
		Head: pr.GetHead().GetRef(), Base: pr.GetBase().GetRef(), State: StateOpen,
	}
	switch {
	case pr.GetMerged():
		out.State, out.By = StateMerged, pr.GetMergedBy().GetLogin()
	case pr.GetState() == "closed":
		out.State, out.By = StateClosed, closedBy
	}
	return out
}

func (g *githubProvider) UpdatePullRequest(ctx context.Context, number int64, title, body string) error {
	c, tok, err := g.client()
	if err != nil {
		return err
	}
	_, _, err = c.PullRequests.Edit(ctx, g.owner, g.repo, int(number), &github.PullRequest{Title: &title, Body: &body})
	return scrub(fmt.Sprintf("github: update pull request #%d", number), err, tok)
}

func (g *githubProvider) Comment(ctx context.Context, number int64, body string) error {
	c, tok, err := g.client()
	if err != nil {
		return err
	}
	_, _, err = c.Issues.CreateComment(ctx, g.owner, g.repo, int(number), &github.IssueComment{Body: &body})
	return scrub(fmt.Sprintf("github: comment on pull request #%d", number), err, tok)
}

func (g *githubProvider) ClosePullRequest(ctx context.Context, number int64) error {
	c, tok, err := g.client()
	if err != nil {
		return err
	}
	closed := "closed"
	_, _, err = c.PullRequests.Edit(ctx, g.owner, g.repo, int(number), &github.PullRequest{State: &closed})
	return scrub(fmt.Sprintf("github: close pull request #%d", number), err, tok)
}

func (g *githubProvider) SetStatus(ctx context.Context, sha string, st CommitStatus) error {
	c, tok, err := g.client()
	if err != nil {
		return err
	}
	state, desc := string(st.State), truncate(st.Description, maxDescription)
	rs := github.RepoStatus{State: &state, Context: &st.Context, Description: &desc}
	if st.TargetURL != "" {
		rs.TargetURL = &st.TargetURL
	}
	_, _, err = c.Repositories.CreateStatus(ctx, g.owner, g.repo, sha, rs)
	return scrub(fmt.Sprintf("github: set status %s on %s", st.Context, sha), err, tok)
}

// maxDescription is GitHub's limit on a status description.
const maxDescription = 140

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
