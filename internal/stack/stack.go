// Package stack runs the catalog release end to end on real parts: the
// local test cluster with Prometheus, a Git remote served over smart HTTP,
// a person's clone (the git CLI), the mesh simulator and the sluice binary.
// The end-to-end tests and `make demo` both use it.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"sluice.dev/sluice/internal/gitserve"
	"sluice.dev/sluice/meshsim"
	"sluice.dev/sluice/testenv"
)

// Options tune a Stack.
type Options struct {
	// Env is the test cluster to use; it must run Prometheus.
	Env *testenv.Env
	// Sluice is the sluice binary to run.
	Sluice string
	// Example is the directory of the catalog example (examples/catalog).
	Example string
	// Namespace replaces the example's namespace, so several stacks share
	// one cluster; default istioinaction.
	Namespace string
	// Interval replaces the example's analysis interval (45s) and Window
	// its metric windows (1m, 30s), so a release takes seconds.
	Interval, Window time.Duration
	// Threshold replaces the example's threshold (5) when set.
	Threshold int
	// CohortShare of simulated requests carry x-istio-cohort: internal.
	CohortShare float64
	// SluiceArgs are added to `sluice run`.
	SluiceArgs []string
	// Log receives the stack's own progress lines; default discard.
	Log *slog.Logger
}

// Stack is one catalog release environment.
type Stack struct {
	opts      Options
	Env       *testenv.Env
	Dir       string
	Namespace string
	// Bare is the Git remote's directory, Remote its smart HTTP URL.
	Bare, Remote string
	// Person is a clone where a person edits and pushes.
	Person string
	Mesh   *meshsim.Simulator
	git    *gitserve.Server

	closeOnce sync.Once
	mu        sync.Mutex
	sluice    *exec.Cmd
	sluiceLog *os.File
	adminAddr string
	waitErr   chan error
}

// ReleaseFile is the release spec inside the repository.
const ReleaseFile = "releases/catalog.yaml"

// Start seeds a Git remote with the example at v1 (no candidate), serves
// it, starts the mesh simulator and scrapes it. Sluice is started apart,
// with StartSluice.
func Start(ctx context.Context, dir string, opts Options) (*Stack, error) {
	if opts.Namespace == "" {
		opts.Namespace = "istioinaction"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &Stack{opts: opts, Env: opts.Env, Dir: dir, Namespace: opts.Namespace}
	if err := s.Env.CreateNamespace(ctx, opts.Namespace); err != nil {
		return nil, err
	}
	if err := s.seed(ctx); err != nil {
		return nil, fmt.Errorf("seed the Git remote: %w", err)
	}
	srv, err := gitserve.Start(filepath.Join(dir, "remote"))
	if err != nil {
		return nil, err
	}
	s.git = srv
	s.Remote = srv.URL + "/releases.git"

	mesh, err := meshsim.Start(ctx, meshsim.Config{
		RESTConfig:  s.Env.RESTConfig(),
		Namespace:   opts.Namespace,
		Service:     "catalog",
		RPS:         50,
		CohortShare: opts.CohortShare,
		Jitter:      0.2,
		Seed:        1,
		Logger:      opts.Log.With("component", "meshsim"),
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	s.Mesh = mesh
	if err := s.Env.AddScrapeTarget(ctx, "meshsim-"+opts.Namespace, mesh.Addr()); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// seed writes the example, at v1 with no candidate and with the stack's
// intervals, into a person's clone and pushes it to a new bare remote.
func (s *Stack) seed(ctx context.Context) error {
	s.Bare = filepath.Join(s.Dir, "remote", "releases.git")
	s.Person = filepath.Join(s.Dir, "person")
	if err := os.MkdirAll(s.Bare, 0o755); err != nil {
		return err
	}
	if _, err := s.git1(ctx, s.Bare, "init", "--bare", "--initial-branch=main"); err != nil {
		return err
	}
	if err := copyDir(s.opts.Example, s.Person); err != nil {
		return err
	}
	spec, err := os.ReadFile(filepath.Join(s.Person, ReleaseFile))
	if err != nil {
		return err
	}
	text := strings.Replace(string(spec), "  candidate: v2\n", "", 1)
	text = strings.Replace(text, "namespace: istioinaction", "namespace: "+s.Namespace, 1)
	if s.opts.Interval > 0 {
		text = strings.Replace(text, "interval: 45s", "interval: "+s.opts.Interval.String(), 1)
	}
	if s.opts.Window > 0 {
		text = strings.ReplaceAll(text, "interval: 1m", "interval: "+s.opts.Window.String())
		text = strings.ReplaceAll(text, "interval: 30s", "interval: "+s.opts.Window.String())
	}
	if s.opts.Threshold > 0 {
		text = strings.Replace(text, "threshold: 5", fmt.Sprintf("threshold: %d", s.opts.Threshold), 1)
	}
	if err := os.WriteFile(filepath.Join(s.Person, ReleaseFile), []byte(text), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"init", "--initial-branch=main"},
		{"add", "-A"},
		{"commit", "-q", "-m", "catalog at v1"},
		{"remote", "add", "origin", s.Bare},
		{"push", "-q", "origin", "main"},
	} {
		if _, err := s.git1(ctx, s.Person, args...); err != nil {
			return err
		}
	}
	return nil
}

// git1 runs the git CLI as the person.
func (s *Stack) git1(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HOME="+s.Dir, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=A Person", "GIT_AUTHOR_EMAIL=person@example.com",
		"GIT_COMMITTER_NAME=A Person", "GIT_COMMITTER_EMAIL=person@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Git runs the git CLI in the person's clone.
func (s *Stack) Git(ctx context.Context, args ...string) (string, error) {
	return s.git1(ctx, s.Person, args...)
}

// EditAndPush has the person pull, change files and push, retrying when
// Sluice pushed first.
func (s *Stack) EditAndPush(ctx context.Context, msg string, edit func(read func(string) string) map[string]string) (string, error) {
	for try := 0; ; try++ {
		if _, err := s.Git(ctx, "pull", "-q", "--rebase", "origin", "main"); err != nil {
			return "", err
		}
		files := edit(func(name string) string {
			b, _ := os.ReadFile(filepath.Join(s.Person, name))
			return string(b)
		})
		for name, content := range files {
			p := filepath.Join(s.Person, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return "", err
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				return "", err
			}
		}
		if _, err := s.Git(ctx, "add", "-A"); err != nil {
			return "", err
		}
		if _, err := s.Git(ctx, "commit", "-q", "-m", msg); err != nil {
			return "", err
		}
		if _, err := s.Git(ctx, "push", "-q", "origin", "main"); err == nil {
			return s.Git(ctx, "rev-parse", "HEAD")
		} else if try >= 20 {
			return "", err
		}
		if _, err := s.Git(ctx, "reset", "-q", "--hard", "HEAD~1"); err != nil {
			return "", err
		}
	}
}

// PushCandidate has the person name a candidate in the release spec.
func (s *Stack) PushCandidate(ctx context.Context, version string) (string, error) {
	return s.EditAndPush(ctx, "release catalog "+version, func(read func(string) string) map[string]string {
		spec := read(ReleaseFile)
		lines := strings.Split(spec, "\n")
		out := make([]string, 0, len(lines)+1)
		for _, l := range lines {
			if strings.HasPrefix(l, "  candidate: ") {
				continue
			}
			out = append(out, l)
			if strings.HasPrefix(l, "  stable: ") {
				out = append(out, "  candidate: "+version)
			}
		}
		return map[string]string{ReleaseFile: strings.Join(out, "\n")}
	})
}

// AddVersion adds a version built from the v2 overlay plus an env
// variable, so its content (and revision) differs from v2's.
func (s *Stack) AddVersion(ctx context.Context, version string) (string, error) {
	return s.EditAndPush(ctx, "add catalog "+version, func(read func(string) string) map[string]string {
		spec := read(ReleaseFile)
		entry := fmt.Sprintf("    - name: %s\n      source: apps/catalog/overlays/v2\n      env:\n        RELEASE: %s\n", version, version)
		spec = strings.Replace(spec, "  stable: ", entry+"  stable: ", 1)
		return map[string]string{ReleaseFile: spec}
	})
}

// StartSluice runs `sluice run` against the stack.
func (s *Stack) StartSluice(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sluice != nil {
		return errors.New("sluice is already running")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	logFile, err := os.OpenFile(filepath.Join(s.Dir, "sluice.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	args := append([]string{"run",
		"--git-url", s.Remote,
		"--kubeconfig", s.Env.KubeconfigPath(),
		"--prometheus-url", s.Env.PrometheusURL(),
		"--listen", addr,
		"--interval", "2s",
		"--progress-deadline", "2m",
		"--reapply-interval", "10s",
		"--git-author-name", "Sluice", "--git-author-email", "sluice@example.com",
	}, s.opts.SluiceArgs...)
	cmd := exec.CommandContext(ctx, s.opts.Sluice, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start sluice: %w", err)
	}
	s.sluice, s.sluiceLog, s.adminAddr = cmd, logFile, addr
	s.waitErr = make(chan error, 1)
	go func() { s.waitErr <- cmd.Wait() }()
	return nil
}

// KillSluice stops sluice with SIGKILL, as a crash would.
func (s *Stack) KillSluice() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sluice == nil {
		return nil
	}
	_ = s.sluice.Process.Signal(syscall.SIGKILL)
	<-s.waitErr
	s.sluiceLog.Close()
	s.sluice = nil
	return nil
}

// TriggerSync asks the running sluice to sync Git now.
func (s *Stack) TriggerSync(ctx context.Context) error {
	s.mu.Lock()
	addr := s.adminAddr
	s.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/sync", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// SluiceLog is what sluice printed so far.
func (s *Stack) SluiceLog() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "sluice.log"))
	return string(b)
}

// Log returns the remote's history, oldest first, one line per commit:
// "<hash> <author name>: <subject>".
func (s *Stack) Log(ctx context.Context) ([]string, error) {
	out, err := s.git1(ctx, s.Bare, "log", "--reverse", "--format=%H %an: %s", "main")
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimSpace(out), "\n"), nil
}

// ReadRemote returns a file of the remote's main branch.
func (s *Stack) ReadRemote(ctx context.Context, name string) (string, error) {
	return s.git1(ctx, s.Bare, "show", "main:"+name)
}

// Close stops sluice, the simulator and the Git server; it may be called again.
func (s *Stack) Close() {
	s.closeOnce.Do(func() {
		_ = s.KillSluice()
		if s.Mesh != nil {
			_ = s.Mesh.Close()
		}
		if s.git != nil {
			_ = s.git.Close()
		}
	})
}

func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// WaitFor polls cond every interval until it holds, ctx ends or timeout passes.
func WaitFor(ctx context.Context, timeout, interval time.Duration, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting %s for %s: %w (last error: %v)", timeout, what, ctx.Err(), last)
			}
			return fmt.Errorf("waiting %s for %s: %w", timeout, what, ctx.Err())
		case <-t.C:
		}
	}
}
