package forge

import (
	"context"
	"fmt"
	"net/http"

	"code.gitea.io/sdk/gitea"
)

// giteaProvider speaks Gitea's API (Forgejo's too) with its SDK.
type giteaProvider struct {
	url, owner, repo string
	token            tokenFile
	hc               *http.Client
}

// client makes a client for one call: the SDK takes its context per client,
// and the token is read afresh. The SDK's version probe is skipped: every
// call used here exists since Gitea 1.12.
func (g *giteaProvider) client(ctx context.Context) (*gitea.Client, string, error) {
	tok, err := g.token.read()
	if err != nil {
		return nil, "", err
	}
	c, err := gitea.NewClient(g.url,
		gitea.SetGiteaVersion(""),
		gitea.SetToken(tok),
		gitea.SetHTTPClient(g.hc),
		gitea.SetContext(ctx),
		gitea.SetUserAgent("sluice"))
	if err != nil {
		return nil, "", scrub("gitea client", err, tok)
	}
	return c, tok, nil
}

func (g *giteaProvider) EnsurePullRequest(ctx context.Context, n NewPullRequest) (*PullRequest, bool, error) {
	c, tok, err := g.client(ctx)
	if err != nil {
		return nil, false, err
	}
	// Gitea cannot filter the list by head branch: page through the open ones.
	for page := 1; ; page++ {
		prs, resp, err := c.ListRepoPullRequests(g.owner, g.repo, gitea.ListPullRequestsOptions{
			ListOptions: gitea.ListOptions{Page: page, PageSize: 50},
			State:       gitea.StateOpen,
		})
		if err != nil {
			return nil, false, scrub(fmt.Sprintf("gitea: list open pull requests of %s/%s", g.owner, g.repo), err, tok)
		}
		for _, pr := range prs {
			if pr.Head != nil && pr.Base != nil && pr.Head.Ref == n.Head && pr.Base.Ref == n.Base && sameRepo(pr) {
				return g.convert(pr, ""), false, nil
			}
		}
		if len(prs) == 0 || resp == nil || resp.NextPage == 0 {
			break
		}
	}
	pr, _, err := c.CreatePullRequest(g.owner, g.repo, gitea.CreatePullRequestOption{
		Head: n.Head, Base: n.Base, Title: n.Title, Body: n.Body,
	})
	if err != nil {
		return nil, false, scrub(fmt.Sprintf("gitea: open pull request %s -> %s", n.Head, n.Base), err, tok)
	}
	return g.convert(pr, ""), true, nil
}

// sameRepo leaves out pull requests from forks that happen to use the
// branch name.
func sameRepo(pr *gitea.PullRequest) bool {
	if pr.Head.RepoID == 0 || pr.Base.RepoID == 0 {
		return true
	}
	return pr.Head.RepoID == pr.Base.RepoID
}

func (g *giteaProvider) PullRequest(ctx context.Context, number int64) (*PullRequest, error) {
	c, tok, err := g.client(ctx)
	if err != nil {
		return nil, err
	}
	pr, _, err := c.GetPullRequest(g.owner, g.repo, number)
	if err != nil {
		return nil, scrub(fmt.Sprintf("gitea: get pull request #%d", number), err, tok)
	}
	by := ""
	if !pr.HasMerged && pr.State == gitea.StateClosed {
		// The pull request does not say who closed it; its timeline does.
		events, _, err := c.ListIssueTimeline(g.owner, g.repo, number, gitea.ListIssueCommentOptions{
			ListOptions: gitea.ListOptions{PageSize: 50},
		})
		if err != nil {
			return nil, scrub(fmt.Sprintf("gitea: timeline of pull request #%d", number), err, tok)
		}
		for _, e := range events {
			if e.Type == "close" && e.Poster != nil {
				by = e.Poster.UserName
			}
		}
	}
	return g.convert(pr, by), nil
}

func (g *giteaProvider) convert(pr *gitea.PullRequest, closedBy string) *PullRequest {
	out := &PullRequest{Number: pr.Index, URL: pr.HTMLURL, Title: pr.Title, Body: pr.Body, State: StateOpen}
	if pr.Head != nil {
		out.Head = pr.Head.Ref
	}
	if pr.Base != nil {
		out.Base = pr.Base.Ref
	}
	switch {
	case pr.HasMerged:
		out.State = StateMerged
		if pr.MergedBy != nil {
			out.By = pr.MergedBy.UserName
		}
	case pr.State == gitea.StateClosed:
		out.State, out.By = StateClosed, closedBy
	}
	return out
}

func (g *giteaProvider) UpdatePullRequest(ctx context.Context, number int64, title, body string) error {
	c, tok, err := g.client(ctx)
	if err != nil {
		return err
	}
	_, _, err = c.EditPullRequest(g.owner, g.repo, number, gitea.EditPullRequestOption{Title: title, Body: &body})
	return scrub(fmt.Sprintf("gitea: update pull request #%d", number), err, tok)
}

func (g *giteaProvider) Comment(ctx context.Context, number int64, body string) error {
	c, tok, err := g.client(ctx)
	if err != nil {
		return err
	}
	_, _, err = c.CreateIssueComment(g.owner, g.repo, number, gitea.CreateIssueCommentOption{Body: body})
	return scrub(fmt.Sprintf("gitea: comment on pull request #%d", number), err, tok)
}

func (g *giteaProvider) ClosePullRequest(ctx context.Context, number int64) error {
	c, tok, err := g.client(ctx)
	if err != nil {
		return err
	}
	closed := gitea.StateClosed
	_, _, err = c.EditPullRequest(g.owner, g.repo, number, gitea.EditPullRequestOption{State: &closed})
	return scrub(fmt.Sprintf("gitea: close pull request #%d", number), err, tok)
}

func (g *giteaProvider) SetStatus(ctx context.Context, sha string, st CommitStatus) error {
	c, tok, err := g.client(ctx)
	if err != nil {
		return err
	}
	_, _, err = c.CreateStatus(g.owner, g.repo, sha, gitea.CreateStatusOption{
		State: gitea.StatusState(st.State), TargetURL: st.TargetURL, Description: st.Description, Context: st.Context,
	})
	return scrub(fmt.Sprintf("gitea: set status %s on %s", st.Context, sha), err, tok)
}
