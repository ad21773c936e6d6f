package forge_test

// GitHub and GitLab are not run here: their adapters are tested against
// responses written from their documented REST APIs (GitHub: pulls, issues,
// issue comments, commit statuses; GitLab: merge requests, notes, commit
// statuses), served by httptest. These prove the requests the adapters send
// and how they read the answers, not that the live services agree.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"sluice.dev/sluice/forge"
)

// recorded serves canned JSON by "METHOD escaped-path" and records calls.
type recorded struct {
	t       *testing.T
	mu      sync.Mutex
	replies map[string]reply
	calls   []call
}

type reply struct {
	status int
	body   string
}

type call struct {
	method, path, query, auth string
	body                      map[string]any
}

func newRecorded(t *testing.T, replies map[string]reply) (*recorded, *httptest.Server) {
	rec := &recorded{t: t, replies: replies}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return rec, srv
}

func (rec *recorded) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	c := call{method: r.Method, path: r.URL.EscapedPath(), query: r.URL.RawQuery,
		auth: r.Header.Get("Authorization") + r.Header.Get("PRIVATE-TOKEN")}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c.body); err != nil {
			rec.t.Errorf("%s %s: body is not JSON: %s", r.Method, c.path, raw)
		}
	}
	rec.mu.Lock()
	rec.calls = append(rec.calls, c)
	rp, ok := rec.replies[r.Method+" "+c.path]
	rec.mu.Unlock()
	if !ok {
		rec.t.Errorf("unexpected request %s %s?%s", r.Method, c.path, c.query)
		http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rp.status)
	_, _ = io.WriteString(w, rp.body)
}

func (rec *recorded) last(t *testing.T, method, path string) call {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i := len(rec.calls) - 1; i >= 0; i-- {
		if c := rec.calls[i]; c.method == method && c.path == path {
			return c
		}
	}
	t.Fatalf("no %s %s among %d calls", method, path, len(rec.calls))
	return call{}
}

func tokenFile(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const ghPR = `{"number": 7, "state": "%s", "title": "catalog: approve canary-10", "body": "b",
 "html_url": "https://ghe.example.com/platform/releases/pull/7", "merged": %s, %s
 "head": {"ref": "sluice/shop/catalog/canary-10", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"},
 "base": {"ref": "main", "sha": "9fceb02d0ae598e95dc970b74767f19372d61af8"}}`

func ghPRJSON(state, merged, extra string) string {
	return fmt.Sprintf(ghPR, state, merged, extra)
}

func TestGitHubRecorded(t *testing.T) {
	const base = "/api/v3/repos/platform/releases"
	rec, srv := newRecorded(t, map[string]reply{
		"GET " + base + "/pulls":              {200, `[]`},
		"POST " + base + "/pulls":             {201, ghPRJSON("open", "false", "")},
		"GET " + base + "/pulls/7":            {200, ghPRJSON("closed", "false", "")},
		"GET " + base + "/issues/7":           {200, `{"number": 7, "state": "closed", "closed_by": {"login": "alice"}}`},
		"PATCH " + base + "/pulls/7":          {200, ghPRJSON("open", "false", "")},
		"POST " + base + "/issues/7/comments": {201, `{"id": 1, "body": "gates failed"}`},
		"POST " + base + "/statuses/6dcb09b5": {201, `{"id": 1, "state": "pending", "context": "sluice/shop/catalog"}`},
	})
	ctx := context.Background()
	// An Enterprise Server's address: /api/v3/ is added.
	p, err := forge.New(forge.Config{Provider: forge.GitHub, URL: srv.URL, Repo: "platform/releases", TokenFile: tokenFile(t, "ghp_secret")})
	if err != nil {
		t.Fatal(err)
	}
	pr, created, err := p.EnsurePullRequest(ctx, forge.NewPullRequest{Head: "sluice/shop/catalog/canary-10", Base: "main", Title: "t", Body: "b"})
	if err != nil || !created || pr.Number != 7 || pr.State != forge.StateOpen || pr.Head != "sluice/shop/catalog/canary-10" {
		t.Fatalf("EnsurePullRequest = %+v, %v, %v", pr, created, err)
	}
	list := rec.last(t, "GET", base+"/pulls")
	if !strings.Contains(list.query, "head=platform%3Asluice%2Fshop%2Fcatalog%2Fcanary-10") || !strings.Contains(list.query, "state=open") || !strings.Contains(list.query, "base=main") {
		t.Errorf("list query = %s, want head=owner:branch, base and state=open", list.query)
	}
	if list.auth != "Bearer ghp_secret" {
		t.Errorf("Authorization = %q", list.auth)
	}
	if b := rec.last(t, "POST", base+"/pulls").body; b["head"] != "sluice/shop/catalog/canary-10" || b["base"] != "main" || b["title"] != "t" || b["body"] != "b" {
		t.Errorf("create body = %v", b)
	}

	got, err := p.PullRequest(ctx, 7)
	if err != nil || got.State != forge.StateClosed || got.By != "alice" {
		t.Errorf("closed pull request = %+v, %v; want closed by alice (from the issue's closed_by)", got, err)
	}
	if err := p.UpdatePullRequest(ctx, 7, "new title", "new body"); err != nil {
		t.Fatal(err)
	}
	if b := rec.last(t, "PATCH", base+"/pulls/7").body; b["title"] != "new title" || b["body"] != "new body" {
		t.Errorf("update body = %v", b)
	}
	if err := p.ClosePullRequest(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if b := rec.last(t, "PATCH", base+"/pulls/7").body; b["state"] != "closed" {
		t.Errorf("close body = %v", b)
	}
	if err := p.Comment(ctx, 7, "gates failed"); err != nil {
		t.Fatal(err)
	}
	if b := rec.last(t, "POST", base+"/issues/7/comments").body; b["body"] != "gates failed" {
		t.Errorf("comment body = %v", b)
	}
	long := strings.Repeat("x", 200)
	if err := p.SetStatus(ctx, "6dcb09b5", forge.CommitStatus{Context: "sluice/shop/catalog", State: forge.StatusPending, Description: long}); err != nil {
		t.Fatal(err)
	}
	b := rec.last(t, "POST", base+"/statuses/6dcb09b5").body
	if b["state"] != "pending" || b["context"] != "sluice/shop/catalog" || len([]rune(b["description"].(string))) != 140 {
		t.Errorf("status body = %v (description cut to GitHub's 140)", b)
	}
	if _, ok := b["target_url"]; ok {
		t.Errorf("empty target_url sent: %v", b)
	}
}

func TestGitHubMergedAndFound(t *testing.T) {
	const base = "/api/v3/repos/platform/releases"
	rec, srv := newRecorded(t, map[string]reply{
		"GET " + base + "/pulls":   {200, "[" + ghPRJSON("open", "false", "") + "]"},
		"GET " + base + "/pulls/7": {200, ghPRJSON("closed", "true", `"merged_by": {"login": "bob"},`)},
	})
	ctx := context.Background()
	p, err := forge.New(forge.Config{Provider: forge.GitHub, URL: srv.URL + "/api/v3/", Repo: "platform/releases", TokenFile: tokenFile(t, "tok")})
	if err != nil {
		t.Fatal(err)
	}
	pr, created, err := p.EnsurePullRequest(ctx, forge.NewPullRequest{Head: "sluice/shop/catalog/canary-10", Base: "main"})
	if err != nil || created || pr.Number != 7 {
		t.Fatalf("found = %+v, created %v, %v; want the open #7", pr, created, err)
	}
	got, err := p.PullRequest(ctx, 7)
	if err != nil || got.State != forge.StateMerged || got.By != "bob" {
		t.Errorf("merged = %+v, %v", got, err)
	}
	for _, c := range rec.calls {
		if c.method == "POST" {
			t.Errorf("created a pull request although one is open: %+v", c)
		}
	}
}

const glMR = `{"id": 99, "iid": 12, "project_id": 3, "title": "catalog: approve canary-10", "description": "b",
 "state": "%s", "source_branch": "sluice/shop/catalog/canary-10", "target_branch": "main",
 "web_url": "https://gitlab.example.com/group/sub/releases/-/merge_requests/12", %s "sha": "6dcb09b5"}`

func glMRJSON(state, extra string) string {
	return fmt.Sprintf(glMR, state, extra)
}

func TestGitLabRecorded(t *testing.T) {
	const base = "/api/v4/projects/group%2Fsub%2Freleases"
	rec, srv := newRecorded(t, map[string]reply{
		"GET " + base + "/merge_requests":           {200, `[]`},
		"POST " + base + "/merge_requests":          {201, glMRJSON("opened", "")},
		"GET " + base + "/merge_requests/12":        {200, glMRJSON("closed", `"closed_by": {"id": 5, "username": "alice"},`)},
		"PUT " + base + "/merge_requests/12":        {200, glMRJSON("opened", "")},
		"POST " + base + "/merge_requests/12/notes": {201, `{"id": 1, "body": "gates failed"}`},
		"POST " + base + "/statuses/6dcb09b5":       {201, `{"id": 1, "status": "failed", "name": "sluice/shop/catalog"}`},
	})
	ctx := context.Background()
	p, err := forge.New(forge.Config{Provider: forge.GitLab, URL: srv.URL, Repo: "group/sub/releases", TokenFile: tokenFile(t, "glpat-secret")})
	if err != nil {
		t.Fatal(err)
	}
	pr, created, err := p.EnsurePullRequest(ctx, forge.NewPullRequest{Head: "sluice/shop/catalog/canary-10", Base: "main", Title: "t", Body: "b"})
	if err != nil || !created || pr.Number != 12 || pr.State != forge.StateOpen {
		t.Fatalf("EnsurePullRequest = %+v, %v, %v", pr, created, err)
	}
	list := rec.last(t, "GET", base+"/merge_requests")
	for _, q := range []string{"source_branch=sluice%2Fshop%2Fcatalog%2Fcanary-10", "target_branch=main", "state=opened"} {
		if !strings.Contains(list.query, q) {
			t.Errorf("list query %s lacks %s", list.query, q)
		}
	}
	if list.auth != "glpat-secret" {
		t.Errorf("PRIVATE-TOKEN = %q", list.auth)
	}
	if b := rec.last(t, "POST", base+"/merge_requests").body; b["source_branch"] != "sluice/shop/catalog/canary-10" || b["target_branch"] != "main" || b["description"] != "b" {
		t.Errorf("create body = %v", b)
	}
	got, err := p.PullRequest(ctx, 12)
	if err != nil || got.State != forge.StateClosed || got.By != "alice" {
		t.Errorf("closed merge request = %+v, %v", got, err)
	}
	if err := p.UpdatePullRequest(ctx, 12, "t2", "b2"); err != nil {
		t.Fatal(err)
	}
	if b := rec.last(t, "PUT", base+"/merge_requests/12").body; b["title"] != "t2" || b["description"] != "b2" {
		t.Errorf("update body = %v", b)
	}
	if err := p.ClosePullRequest(ctx, 12); err != nil {
		t.Fatal(err)
	}
	if b := rec.last(t, "PUT", base+"/merge_requests/12").body; b["state_event"] != "close" {
		t.Errorf("close body = %v", b)
	}
	if err := p.Comment(ctx, 12, "gates failed"); err != nil {
		t.Fatal(err)
	}
	if b := rec.last(t, "POST", base+"/merge_requests/12/notes").body; b["body"] != "gates failed" {
		t.Errorf("note body = %v", b)
	}
	if err := p.SetStatus(ctx, "6dcb09b5", forge.CommitStatus{Context: "sluice/shop/catalog", State: forge.StatusFailure, Description: "rolled back"}); err != nil {
		t.Fatal(err)
	}
	if b := rec.last(t, "POST", base+"/statuses/6dcb09b5").body; b["state"] != "failed" || b["name"] != "sluice/shop/catalog" {
		t.Errorf("status body = %v (GitLab names failure \"failed\")", b)
	}
}

func TestGitLabMerged(t *testing.T) {
	const base = "/api/v4/projects/group%2Freleases"
	_, srv := newRecorded(t, map[string]reply{
		"GET " + base + "/merge_requests/12": {200, glMRJSON("merged", `"merge_user": {"id": 6, "username": "bob"},`)},
	})
	p, err := forge.New(forge.Config{Provider: forge.GitLab, URL: srv.URL + "/", Repo: "group/releases", TokenFile: tokenFile(t, "tok")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.PullRequest(context.Background(), 12)
	if err != nil || got.State != forge.StateMerged || got.By != "bob" {
		t.Errorf("merged = %+v, %v", got, err)
	}
}

// A refused token never reaches the error, with any provider.
func TestTokenNotInErrors(t *testing.T) {
	const secret = "s3cr3t-t0ken-value"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A hostile or buggy server echoes the credentials back.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"message":"bad credentials: `+r.Header.Get("Authorization")+r.Header.Get("PRIVATE-TOKEN")+`"}`)
	}))
	defer srv.Close()
	for _, prov := range []string{forge.Gitea, forge.GitHub, forge.GitLab} {
		t.Run(prov, func(t *testing.T) {
			p, err := forge.New(forge.Config{Provider: prov, URL: srv.URL, Repo: "o/r", TokenFile: tokenFile(t, secret)})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			errs := []error{}
			_, _, err = p.EnsurePullRequest(ctx, forge.NewPullRequest{Head: "h", Base: "main"})
			errs = append(errs, err)
			_, err = p.PullRequest(ctx, 1)
			errs = append(errs, err, p.SetStatus(ctx, "abc", forge.CommitStatus{Context: "c", State: forge.StatusPending}),
				p.Comment(ctx, 1, "x"), p.ClosePullRequest(ctx, 1), p.UpdatePullRequest(ctx, 1, "t", "b"))
			for i, err := range errs {
				if err == nil {
					t.Errorf("call %d succeeded against a 401", i)
					continue
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("call %d: error shows the token: %v", i, err)
				}
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	tok := tokenFile(t, "x")
	cases := []struct {
		name string
		cfg  forge.Config
		want string
	}{
		{"unknown provider", forge.Config{Provider: "bitbucket", URL: "https://x", Repo: "o/r", TokenFile: tok}, `unknown provider "bitbucket"`},
		{"no token file", forge.Config{Provider: forge.Gitea, URL: "https://x", Repo: "o/r"}, "token file is required"},
		{"no URL", forge.Config{Provider: forge.Gitea, Repo: "o/r", TokenFile: tok}, "API URL is required"},
		{"credentials in URL", forge.Config{Provider: forge.Gitea, URL: "https://me:hunter2@git.example.com", Repo: "o/r", TokenFile: tok}, "must not carry credentials"},
		{"ftp URL", forge.Config{Provider: forge.GitLab, URL: "ftp://git.example.com", Repo: "o/r", TokenFile: tok}, "want http(s)"},
		{"bad repo", forge.Config{Provider: forge.GitHub, Repo: "just-a-name", TokenFile: tok}, `repository "just-a-name": want owner/name`},
		{"nested repo on github", forge.Config{Provider: forge.GitHub, Repo: "a/b/c", TokenFile: tok}, "want owner/name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := forge.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
	// GitHub needs no URL: github.com.
	if _, err := forge.New(forge.Config{Provider: forge.GitHub, Repo: "o/r", TokenFile: tok}); err != nil {
		t.Errorf("github.com: %v", err)
	}
}

func TestTokenFileProblems(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{filepath.Join(dir, "missing"), "read forge token file"},
		{empty, "is empty"},
	} {
		p, err := forge.New(forge.Config{Provider: forge.GitHub, Repo: "o/r", TokenFile: tc.file})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Comment(context.Background(), 1, "x"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.file, err, tc.want)
		}
	}
}

func TestRepoFromGitURL(t *testing.T) {
	cases := []struct{ in, want, err string }{
		{"https://git.example.com/platform/releases.git", "platform/releases", ""},
		{"http://127.0.0.1:3000/sluice-admin/releases.git", "sluice-admin/releases", ""},
		{"https://gitlab.example.com/group/sub/releases", "group/sub/releases", ""},
		{"ssh://git@git.example.com:2222/platform/releases.git", "platform/releases", ""},
		{"git@github.com:platform/releases.git", "platform/releases", ""},
		{"https://git.example.com/releases.git", "", "no owner/name"},
		{"file:///srv/git/releases.git", "srv/git/releases", ""},
		{"releases", "", "cannot find the repository"},
	}
	for _, tc := range cases {
		got, err := forge.RepoFromGitURL(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %q, %v; want error %q", tc.in, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%s: %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
