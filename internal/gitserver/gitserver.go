// Package gitserver runs real Git servers for gitsync's tests: bare
// repositories served over file://, smart HTTP through Debian's
// git-http-backend, and SSH through OpenSSH's sshd, plus the git CLI acting
// as a person who pushes commits.
package gitserver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Paths of the Debian binaries the servers need.
const (
	HTTPBackend = Backend
	SSHD        = "/usr/sbin/sshd"
)

// RequireGit skips the test when the git CLI is absent.
func RequireGit(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git CLI not installed (apt-get install git)")
	}
	return p
}

// gitEnv isolates the git CLI from the machine's user and system config so
// tests behave the same everywhere.
func gitEnv(home string) []string {
	env := []string{
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + filepath.Join(home, "gitconfig"),
		"HOME=" + home,
		"GIT_AUTHOR_NAME=Pat Person",
		"GIT_AUTHOR_EMAIL=pat@example.com",
		"GIT_COMMITTER_NAME=Pat Person",
		"GIT_COMMITTER_EMAIL=pat@example.com",
		"GIT_TERMINAL_PROMPT=0",
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GIT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Git runs the git CLI in dir and returns its trimmed stdout.
func Git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv(dir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// MustGit is Git that fails the test on error.
func MustGit(t testing.TB, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := Git(ctx, dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// NewBare creates root/name.git, a bare repository whose branch holds one
// commit with files, and returns its path.
func NewBare(t testing.TB, root, name, branch string, files map[string]string) string {
	t.Helper()
	RequireGit(t)
	bare := filepath.Join(root, name+".git")
	MustGit(t, root, "init", "-q", "--bare", "-b", branch, bare)
	// Let pushes over smart HTTP in without a REMOTE_USER check.
	MustGit(t, bare, "config", "http.receivepack", "true")
	work := filepath.Join(root, name+"-seed")
	MustGit(t, root, "init", "-q", "-b", branch, work)
	WriteFiles(t, work, files)
	MustGit(t, work, "add", "-A")
	MustGit(t, work, "commit", "-q", "-m", "seed "+name)
	MustGit(t, work, "push", "-q", bare, branch)
	return bare
}

// WriteFiles writes files (slash paths) under dir.
func WriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(files[n]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Human is a person's working clone, driven through the git CLI.
type Human struct {
	Dir    string
	Branch string
}

// NewHuman clones url (file path or URL the git CLI can reach) into a
// fresh directory.
func NewHuman(t testing.TB, url, branch string) *Human {
	t.Helper()
	RequireGit(t)
	dir := filepath.Join(t.TempDir(), "human")
	MustGit(t, filepath.Dir(dir), "clone", "-q", "-b", branch, url, dir)
	return &Human{Dir: dir, Branch: branch}
}

// Commit writes files and commits them, returning the new commit's hash.
func (h *Human) Commit(ctx context.Context, files map[string]string, msg string) (string, error) {
	for n, c := range files {
		p := filepath.Join(h.Dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			return "", err
		}
	}
	if _, err := Git(ctx, h.Dir, "add", "-A"); err != nil {
		return "", err
	}
	if _, err := Git(ctx, h.Dir, "commit", "-q", "-m", msg); err != nil {
		return "", err
	}
	return Git(ctx, h.Dir, "rev-parse", "HEAD")
}

// Push pushes the branch; a person whose push is rejected pulls with rebase
// (rewriting only their own unpushed commits) and tries again, up to
// tries times. It returns the pushed head.
func (h *Human) Push(ctx context.Context, tries int) (string, error) {
	var last error
	for range tries {
		if _, err := Git(ctx, h.Dir, "push", "-q", "origin", h.Branch); err != nil {
			last = err
			if _, err := Git(ctx, h.Dir, "pull", "-q", "--rebase", "origin", h.Branch); err != nil {
				return "", err
			}
			continue
		}
		return Git(ctx, h.Dir, "rev-parse", "HEAD")
	}
	return "", fmt.Errorf("push gave up after %d tries: %w", tries, last)
}

// Pull fast-forwards the clone to the remote branch.
func (h *Human) Pull(ctx context.Context) error {
	_, err := Git(ctx, h.Dir, "pull", "-q", "--rebase", "origin", h.Branch)
	return err
}

// ReadFile returns a file of the working clone.
func (h *Human) ReadFile(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(h.Dir, filepath.FromSlash(name)))
	return string(b), err
}

// Read returns a file of the working clone, failing the test on error.
func (h *Human) Read(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.Dir, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
