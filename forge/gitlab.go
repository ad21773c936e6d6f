package forge

import (
	"context"
	"fmt"
	"net/http"

	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// gitlabProvider speaks GitLab's REST API: pull requests are merge requests
// and their numbers are the project-scoped IIDs (!12).
type gitlabProvider struct {
	url, project string
	token        tokenFile
	hc           *http.Client
}

// client makes a client with the token read afresh. Retries are left to
// Sluice's own loop, which comes back at the next reconcile.
func (g *gitlabProvider) client() (*gitlab.Client, string, error) {
	tok, err := g.token.read()
	if err != nil {
		return nil, "", err
	}
	c, err := gitlab.NewClient(tok,
		gitlab.WithBaseURL(g.url),
		gitlab.WithHTTPClient(g.hc),
		gitlab.WithoutRetries())
	if err != nil {
		return nil, "", scrub("gitlab client", err, tok)
	}
	c.UserAgent = "sluice"
	return c, tok, nil
}

func (g *gitlabProvider) EnsurePullRequest(ctx context.Context, n NewPullRequest) (*PullRequest, bool, error) {
	c, tok, err := g.client()
	if err != nil {
		return nil, false, err
	}
	mrs, _, err := c.MergeRequests.ListProjectMergeRequests(g.project, &gitlab.ListProjectMergeRequestsOptions{
		State: gitlab.Ptr("opened"), SourceBranch: &n.Head, TargetBranch: &n.Base,
	}, gitlab.WithContext(ctx))
	if err != nil {
		return nil, false, scrub(fmt.Sprintf("gitlab: list open merge requests of %s", g.project), err, tok)
	}
	for _, mr := range mrs {
		if mr.SourceBranch == n.Head && mr.TargetBranch == n.Base {
			return gitlabMR(mr), false, nil
		}
	}
	mr, _, err := c.MergeRequests.CreateMergeRequest(g.project, &gitlab.CreateMergeRequestOptions{
		Title: &n.Title, Description: &n.Body, SourceBranch: &n.Head, TargetBranch: &n.Base,
	}, gitlab.WithContext(ctx))
	if err != nil {
		return nil, false, scrub(fmt.Sprintf("gitlab: open merge request %s -> %s", n.Head, n.Base), err, tok)
	}
	return gitlabMR(&mr.BasicMergeRequest), true, nil
}

func (g *gitlabProvider) PullRequest(ctx context.Context, number int64) (*PullRequest, error) {
	c, tok, err := g.client()
	if err != nil {
		return nil, err
	}
	mr, _, err := c.MergeRequests.GetMergeRequest(g.project, number, nil, gitlab.WithContext(ctx))
	if err != nil {
		return nil, scrub(fmt.Sprintf("gitlab: get merge request !%d", number), err, tok)
	}
	return gitlabMR(&mr.BasicMergeRequest), nil
}

func gitlabMR(mr *gitlab.BasicMergeRequest) *PullRequest {
	out := &PullRequest{
		Number: mr.IID, URL: mr.WebURL, Title: mr.Title, Body: mr.Description,
		Head: mr.SourceBranch, Base: mr.TargetBranch, State: StateOpen,
	}
	switch mr.State {
	case "merged":
		out.State = StateMerged
		switch {
		case mr.MergeUser != nil:
			out.By = mr.MergeUser.Username
		case mr.MergedBy != nil: //nolint:staticcheck // older GitLab servers fill only merged_by
			out.By = mr.MergedBy.Username //nolint:staticcheck // as above
		}
	case "closed", "locked":
		out.State = StateClosed
		if mr.ClosedBy != nil {
			out.By = mr.ClosedBy.Username
		}
	}
	return out
}

func (g *gitlabProvider) UpdatePullRequest(ctx context.Context, number int64, title, body string) error {
	c, tok, err := g.client()
	if err != nil {
		return err
	}
	_, _, err = c.MergeRequests.UpdateMergeRequest(g.project, number, &gitlab.UpdateMergeRequestOptions{
		Title: &title, Description: &body,
	}, gitlab.WithContext(ctx))
	return scrub(fmt.Sprintf("gitlab: update merge request !%d", number), err, tok)
}

func (g *gitlabProvider) Comment(ctx context.Context, number int64, body string) error {
	c, tok, err := g.client()
	if err != nil {
		return err
	}
	_, _, err = c.Notes.CreateMergeRequestNote(g.project, number, &gitlab.CreateMergeRequestNoteOptions{Body: &body}, gitlab.WithContext(ctx))
	return scrub(fmt.Sprintf("gitlab: comment on merge request !%d", number), err, tok)
}

func (g *gitlabProvider) ClosePullRequest(ctx context.Context, number int64) error {
	c, tok, err := g.client()
	if err != nil {
		return err
	}
	_, _, err = c.MergeRequests.UpdateMergeRequest(g.project, number, &gitlab.UpdateMergeRequestOptions{
		StateEvent: gitlab.Ptr("close"),
	}, gitlab.WithContext(ctx))
	return scrub(fmt.Sprintf("gitlab: close merge request !%d", number), err, tok)
}

func (g *gitlabProvider) SetStatus(ctx context.Context, sha string, st CommitStatus) error {
	c, tok, err := g.client()
	if err != nil {
		return err
	}
	state := gitlab.BuildStateValue(st.State)
	if st.State == StatusFailure {
		state = gitlab.Failed
	}
	opt := &gitlab.SetCommitStatusOptions{
		State: state, Name: &st.Context, Description: gitlab.Ptr(truncate(st.Description, 255)),
	}
	if st.TargetURL != "" {
		opt.TargetURL = &st.TargetURL
	}
	_, _, err = c.Commits.SetCommitStatus(g.project, sha, opt, gitlab.WithContext(ctx))
	return scrub(fmt.Sprintf("gitlab: set status %s on %s", st.Context, sha), err, tok)
}
