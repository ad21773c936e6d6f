package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// gitlabProvider speaks GitLab's REST API (v4): pull requests are merge
// requests and their numbers are the project-scoped IIDs (!12).
//
// It makes its seven calls with net/http rather than GitLab's Go SDK,
// whose client constructs every one of its services: that linked 4.4 MB of
// code into sluice (a bigger binary is a bigger resident set; see
// BENCHMARKS.md) for these few calls.
type gitlabProvider struct {
	url, project string
	token        tokenFile
	hc           *http.Client
}

// gitlabMergeRequest is what Sluice reads of a merge request.
type gitlabMergeRequest struct {
	IID          int64       `json:"iid"`
	WebURL       string      `json:"web_url"`
	Title        string      `json:"title"`
	Description  string      `json:"description"`
	State        string      `json:"state"`
	SourceBranch string      `json:"source_branch"`
	TargetBranch string      `json:"target_branch"`
	MergeUser    *gitlabUser `json:"merge_user"`
	MergedBy     *gitlabUser `json:"merged_by"` // older GitLab servers fill only this
	ClosedBy     *gitlabUser `json:"closed_by"`
}

type gitlabUser struct {
	Username string `json:"username"`
}

// call sends one request to the project's API, path relative to it
// ("/merge_requests"), with the token read afresh; body, when set, is
// sent as JSON and out, when set, decoded from the answer. The token is
// returned for scrubbing errors.
func (g *gitlabProvider) call(ctx context.Context, method, path string, query url.Values, body, out any) (string, error) {
	tok, err := g.token.read()
	if err != nil {
		return "", err
	}
	base := g.url
	if !strings.HasSuffix(base, "/api/v4") {
		base += "/api/v4"
	}
	u := base + "/projects/" + url.PathEscape(g.project) + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return tok, err
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return tok, err
	}
	req.Header.Set("PRIVATE-TOKEN", tok)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "sluice")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		return tok, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return tok, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return tok, fmt.Errorf("%s %s: %s: %s", method, redactURL(u), resp.Status, gitlabMessage(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return tok, fmt.Errorf("%s %s: %w", method, redactURL(u), err)
		}
	}
	return tok, nil
}

// gitlabMessage is the message of an error answer ({"message": ...} or
// {"error": ...}), else its start.
func gitlabMessage(data []byte) string {
	var e struct {
		Message any    `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil {
		switch {
		case e.Message != nil:
			return fmt.Sprint(e.Message)
		case e.Error != "":
			return e.Error
		}
	}
	return truncate(strings.TrimSpace(string(data)), 200)
}

func (g *gitlabProvider) EnsurePullRequest(ctx context.Context, n NewPullRequest) (*PullRequest, bool, error) {
	var mrs []gitlabMergeRequest
	q := url.Values{"state": {"opened"}, "source_branch": {n.Head}, "target_branch": {n.Base}}
	tok, err := g.call(ctx, http.MethodGet, "/merge_requests", q, nil, &mrs)
	if err != nil {
		return nil, false, scrub(fmt.Sprintf("gitlab: list open merge requests of %s", g.project), err, tok)
	}
	for i := range mrs {
		if mrs[i].SourceBranch == n.Head && mrs[i].TargetBranch == n.Base {
			return gitlabMR(&mrs[i]), false, nil
		}
	}
	var mr gitlabMergeRequest
	create := map[string]string{"title": n.Title, "description": n.Body, "source_branch": n.Head, "target_branch": n.Base}
	if tok, err = g.call(ctx, http.MethodPost, "/merge_requests", nil, create, &mr); err != nil {
		return nil, false, scrub(fmt.Sprintf("gitlab: open merge request %s -> %s", n.Head, n.Base), err, tok)
	}
	return gitlabMR(&mr), true, nil
}

func (g *gitlabProvider) PullRequest(ctx context.Context, number int64) (*PullRequest, error) {
	var mr gitlabMergeRequest
	if tok, err := g.call(ctx, http.MethodGet, mergeRequestPath(number), nil, nil, &mr); err != nil {
		return nil, scrub(fmt.Sprintf("gitlab: get merge request !%d", number), err, tok)
	}
	return gitlabMR(&mr), nil
}

func mergeRequestPath(number int64) string {
	return "/merge_requests/" + strconv.FormatInt(number, 10)
}

func gitlabMR(mr *gitlabMergeRequest) *PullRequest {
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
		case mr.MergedBy != nil:
			out.By = mr.MergedBy.Username
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
	tok, err := g.call(ctx, http.MethodPut, mergeRequestPath(number), nil, map[string]string{"title": title, "description": body}, nil)
	return scrub(fmt.Sprintf("gitlab: update merge request !%d", number), err, tok)
}

func (g *gitlabProvider) Comment(ctx context.Context, number int64, body string) error {
	tok, err := g.call(ctx, http.MethodPost, mergeRequestPath(number)+"/notes", nil, map[string]string{"body": body}, nil)
	return scrub(fmt.Sprintf("gitlab: comment on merge request !%d", number), err, tok)
}

func (g *gitlabProvider) ClosePullRequest(ctx context.Context, number int64) error {
	tok, err := g.call(ctx, http.MethodPut, mergeRequestPath(number), nil, map[string]string{"state_event": "close"}, nil)
	return scrub(fmt.Sprintf("gitlab: close merge request !%d", number), err, tok)
}

func (g *gitlabProvider) SetStatus(ctx context.Context, sha string, st CommitStatus) error {
	state := string(st.State)
	if st.State == StatusFailure {
		state = "failed" // GitLab's name for it
	}
	status := map[string]string{"state": state, "name": st.Context, "description": truncate(st.Description, 255)}
	if st.TargetURL != "" {
		status["target_url"] = st.TargetURL
	}
	tok, err := g.call(ctx, http.MethodPost, "/statuses/"+url.PathEscape(sha), nil, status, nil)
	return scrub(fmt.Sprintf("gitlab: set status %s on %s", st.Context, sha), err, tok)
}
