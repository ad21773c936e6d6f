package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"code.gitea.io/sdk/gitea"
)

// GiteaVersion is the Gitea release hack/build-gitea.sh builds; the script
// reads it from this line. Later releases declare the module path gitea.dev,
// which the Go module proxy does not serve.
const GiteaVersion = "v1.26.0"

// GiteaAdmin is the administrator StartGitea creates; Gitea.Token is its
// API token.
const GiteaAdmin = "sluice-admin"

// Gitea is a real Gitea server on loopback, with SQLite and no outside
// access, for the forge tests and the end-to-end stack.
type Gitea struct {
	// URL is the server's root, http://127.0.0.1:PORT.
	URL string
	// Token is GiteaAdmin's API token, with every scope.
	Token string
	// Password is GiteaAdmin's password, for Git over HTTP.
	Password string
	// StartupDuration is how long StartGitea took (migrate, admin, web up).
	StartupDuration time.Duration

	bin, dir, conf string
	proc           *process
}

// GiteaBinary returns the cached Gitea binary and its static files, or an
// error that says how to build them.
func GiteaBinary() (bin, static string, err error) {
	cache, err := CacheDir()
	if err != nil {
		return "", "", err
	}
	dir := filepath.Join(cache, "gitea", GiteaVersion)
	bin, static = filepath.Join(dir, "gitea"), filepath.Join(dir, "static")
	st, err := os.Stat(bin)
	if err != nil || st.Mode().Perm()&0o111 == 0 {
		return "", "", fmt.Errorf("testenv: gitea %s not found in %s: %s", GiteaVersion, dir, installHint)
	}
	if _, err := os.Stat(filepath.Join(static, "templates")); err != nil {
		return "", "", fmt.Errorf("testenv: gitea %s static files not found in %s: %s", GiteaVersion, static, installHint)
	}
	return bin, static, nil
}

// StartGitea runs a fresh Gitea in dir (its config, database, repositories
// and log, gitea.log), with an administrator and an API token, and waits
// until its API answers. Stop it with Stop.
func StartGitea(ctx context.Context, dir string) (*Gitea, error) {
	start := time.Now()
	bin, static, err := GiteaBinary()
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("gitea: %w", err)
	}
	port, err := freePort(mathrand.IntN)
	if err != nil {
		return nil, fmt.Errorf("gitea: %w", err)
	}
	g := &Gitea{URL: fmt.Sprintf("http://127.0.0.1:%d", port), bin: bin, dir: dir, conf: filepath.Join(dir, "app.ini")}
	ini, err := giteaINI(dir, static, port)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, fmt.Errorf("gitea: %w", err)
	}
	if err := os.WriteFile(g.conf, ini, 0o600); err != nil {
		return nil, fmt.Errorf("gitea: write app.ini: %w", err)
	}
	if _, err := g.run(ctx, "migrate"); err != nil {
		return nil, err
	}
	g.Password = randomHex(12)
	if _, err := g.run(ctx, "admin", "user", "create", "--username", GiteaAdmin, "--password", g.Password,
		"--email", GiteaAdmin+"@example.com", "--admin", "--must-change-password=false"); err != nil {
		return nil, err
	}
	if g.Token, err = g.token(ctx, GiteaAdmin); err != nil {
		return nil, err
	}
	g.proc, err = startProcess("gitea", filepath.Join(dir, "gitea.log"), bin, []string{"web", "--config", g.conf, "--work-path", dir}, giteaEnv())
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := g.proc.waitReady(waitCtx, "its API", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, hc, g.URL+"/api/v1/version")
	}); err != nil {
		_ = g.Stop()
		return nil, err
	}
	g.StartupDuration = time.Since(start)
	return g, nil
}

// Stop ends the server; its directory stays for the logs.
func (g *Gitea) Stop() error {
	if g.proc == nil {
		return nil
	}
	return g.proc.stop(10 * time.Second)
}

// Dir is the server's directory (app.ini, gitea.log, data).
func (g *Gitea) Dir() string { return g.dir }

// Client is an API client as GiteaAdmin.
func (g *Gitea) Client(ctx context.Context) (*gitea.Client, error) {
	return g.ClientAs(ctx, g.Token)
}

// ClientAs is an API client with token.
func (g *Gitea) ClientAs(ctx context.Context, token string) (*gitea.Client, error) {
	c, err := gitea.NewClient(g.URL, gitea.SetToken(token), gitea.SetContext(ctx), gitea.SetGiteaVersion(""))
	if err != nil {
		return nil, fmt.Errorf("gitea client: %w", err)
	}
	return c, nil
}

// CreateUser adds a person who may write to the admin's repositories they
// are added to (AddCollaborator), and returns their API token.
func (g *Gitea) CreateUser(ctx context.Context, name string) (token string, err error) {
	if _, err := g.run(ctx, "admin", "user", "create", "--username", name, "--password", randomHex(12),
		"--email", name+"@example.com", "--must-change-password=false"); err != nil {
		return "", err
	}
	return g.token(ctx, name)
}

// CreateRepo creates an empty repository owned by GiteaAdmin whose default
// branch is main, and returns its clone URL.
func (g *Gitea) CreateRepo(ctx context.Context, name string) (string, error) {
	c, err := g.Client(ctx)
	if err != nil {
		return "", err
	}
	r, _, err := c.CreateRepo(gitea.CreateRepoOption{Name: name, DefaultBranch: "main"})
	if err != nil {
		return "", fmt.Errorf("gitea: create repository %s: %w", name, err)
	}
	return r.CloneURL, nil
}

// AddCollaborator gives user write access to GiteaAdmin's repository.
func (g *Gitea) AddCollaborator(ctx context.Context, repo, user string) error {
	c, err := g.Client(ctx)
	if err != nil {
		return err
	}
	perm := gitea.AccessModeWrite
	if _, err := c.AddCollaborator(GiteaAdmin, repo, user, gitea.AddCollaboratorOption{Permission: &perm}); err != nil {
		return fmt.Errorf("gitea: add %s to %s: %w", user, repo, err)
	}
	return nil
}

// AddPushWebhook makes Gitea POST push events for repo to url, signed with
// secret (X-Gitea-Signature).
func (g *Gitea) AddPushWebhook(ctx context.Context, repo, url, secret string) error {
	c, err := g.Client(ctx)
	if err != nil {
		return err
	}
	_, _, err = c.CreateRepoHook(GiteaAdmin, repo, gitea.CreateHookOption{
		Type:   gitea.HookTypeGitea,
		Config: map[string]string{"url": url, "content_type": "json", "secret": secret},
		Events: []string{"push"},
		Active: true,
	})
	if err != nil {
		return fmt.Errorf("gitea: add webhook to %s: %w", repo, err)
	}
	return nil
}

func (g *Gitea) token(ctx context.Context, user string) (string, error) {
	out, err := g.run(ctx, "admin", "user", "generate-access-token", "--username", user,
		"--token-name", "sluice-test-"+randomHex(4), "--scopes", "all", "--raw")
	if err != nil {
		return "", err
	}
	// Gitea may log warnings (running as root) on the same stream: the
	// token is the line of 40 hex digits.
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); len(line) == 40 && strings.Trim(line, "0123456789abcdef") == "" {
			return line, nil
		}
	}
	return "", fmt.Errorf("gitea: generate-access-token for %s printed no token", user)
}

// run runs a gitea subcommand against the server's config.
func (g *Gitea) run(ctx context.Context, args ...string) (string, error) {
	args = append(args, "--config", g.conf, "--work-path", g.dir)
	cmd := exec.CommandContext(ctx, g.bin, args...)
	cmd.Env = append(os.Environ(), giteaEnv()...)
	cmd.Dir = g.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		// A password is among the args of user create; name the command only.
		return "", fmt.Errorf("gitea %s: %w: %s", strings.Join(args[:min(3, len(args))], " "), err, lastLine(stderr.String()+stdout.String()))
	}
	return stdout.String(), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// giteaEnv lets Gitea run as root (CI runs as root) and keeps the
// environment's own Gitea settings out.
func giteaEnv() []string {
	env := []string{"GITEA_WORK_DIR=", "GITEA_CUSTOM="}
	if os.Geteuid() == 0 {
		env = append(env, "GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT=true")
	}
	return env
}

// giteaINI is the server's app.ini: loopback only, SQLite, offline, no
// mail, no SSH, and webhooks allowed to loopback (where Sluice listens).
func giteaINI(dir, static string, port int) ([]byte, error) {
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("gitea: current user: %w", err)
	}
	p := strconv.Itoa(port)
	ini := `APP_NAME = Sluice test forge
RUN_USER = ` + u.Username + `
RUN_MODE = prod
WORK_PATH = ` + dir + `

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = ` + p + `
DOMAIN = 127.0.0.1
ROOT_URL = http://127.0.0.1:` + p + `/
LOCAL_ROOT_URL = http://127.0.0.1:` + p + `/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
STATIC_ROOT_PATH = ` + static + `
APP_DATA_PATH = ` + filepath.Join(dir, "data") + `

[database]
DB_TYPE = sqlite3
PATH = ` + filepath.Join(dir, "data", "gitea.db") + `
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = ` + filepath.Join(dir, "repos") + `
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = ` + randomHex(32) + `
INTERNAL_TOKEN = ` + internalToken() + `
PASSWORD_HASH_ALGO = pbkdf2_hi

[oauth2]
ENABLED = false

[service]
DISABLE_REGISTRATION = true
DEFAULT_ALLOW_CREATE_ORGANIZATION = false

[webhook]
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 10

[mailer]
ENABLED = false

[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[queue]
TYPE = channel

[actions]
ENABLED = false

[cron]
ENABLED = false

[cron.update_checker]
ENABLED = false

[log]
MODE = console
LEVEL = Warn
ROOT_PATH = ` + filepath.Join(dir, "log") + `
`
	return []byte(ini), nil
}

// internalToken is what Gitea's git hooks present to its internal API: any
// long random string.
func internalToken() string { return randomHex(40) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return hex.EncodeToString(b)
}
