// Package stack runs the catalog release end to end on real parts: the
// local test cluster with Prometheus, a Git remote served over smart HTTP,
// a person's clone (the git CLI), the mesh simulator and the sluice binary.
// The end-to-end tests and `make demo` both use it.
package stack

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	sigsyaml "sigs.k8s.io/yaml"

	"sluice.dev/sluice/internal/gitserver"
	"sluice.dev/sluice/internal/meshsim"
	"sluice.dev/sluice/internal/testenv"
)

// Options tune a Stack.
type Options struct {
	// Env is the test cluster to use; it must run Prometheus.
	Env *testenv.Env
	// Sluice is the sluice binary to run.
	Sluice string
	// Example is the directory of the catalog example (examples/catalog,
	// or examples/catalog-gateway-api, whose Gateways the stack creates).
	Example string
	// Namespace replaces the example's namespace, so several stacks share
	// one cluster; default istioinaction.
	Namespace string
	// Interval replaces the example's analysis interval (45s) and Window
	// its metric windows (1m, 30s), so a release takes seconds.
	Interval, Window time.Duration
	// Threshold replaces the example's threshold (5) when set.
	Threshold int
	// NoDarkLaunch removes the example's dark-launch stage.
	NoDarkLaunch bool
	// RPS is the simulated request rate; default 50.
	RPS float64
	// Drain, when set, is the release's drain delay (spec.analysis.drain;
	// the default is 30s).
	Drain *time.Duration
	// CohortShare of simulated requests carry x-istio-cohort: internal.
	CohortShare float64
	// SluiceArgs are added to `sluice run`.
	SluiceArgs []string
	// SluiceEnv (KEY=VALUE) is added to sluice's environment only.
	SluiceEnv []string
	// GitUser and GitPassword, when set, make the Git remote require HTTP
	// basic auth, over HTTPS with a certificate of its own; sluice reads
	// them (and the CA) from files.
	GitUser, GitPassword string
	// WebhookSecret, when set, is the push webhooks' shared secret, given
	// to sluice as --webhook-secret-file.
	WebhookSecret string
	// LeaderElection, when set, runs every sluice replica with
	// --leader-elect on this Lease.
	LeaderElection *LeaderElection
	// Gitea, when set, is the Git remote and the forge: the stack creates
	// a repository on it, the person pushes there as GiteaAdmin, and sluice
	// runs with --forge gitea and GiteaAdmin's token (also its Git
	// password). With WebhookSecret, each replica gets Gitea's push webhook.
	Gitea *testenv.Gitea
	// Approvals set stages' approval (stage name: manual or pullRequest)
	// in the seeded release spec.
	Approvals map[string]string
	// Log receives the stack's own progress lines; default discard.
	Log *slog.Logger
}

// LeaderElection configures the replicas' Lease.
type LeaderElection struct {
	// Namespace of the Lease; default the stack's namespace.
	Namespace string
	// Name of the Lease; default "sluice".
	Name                                      string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// DefaultReplica is the replica StartSluice, KillSluice, TriggerSync and
// SluiceLog work on.
const DefaultReplica = "sluice"

// Stack is one catalog release environment.
type Stack struct {
	opts      Options
	Env       *testenv.Env
	Dir       string
	Namespace string
	// Bare is the Git remote's directory, Remote its smart HTTP(S) URL.
	Bare, Remote string
	// GitCAFile verifies the remote's certificate when it is served over
	// HTTPS (Options.GitUser set).
	GitCAFile string
	// Person is a clone where a person edits and pushes.
	Person string
	// Gitea is Options.Gitea; GiteaRepo the repository's name on it.
	Gitea     *testenv.Gitea
	GiteaRepo string
	Mesh      *meshsim.Simulator
	// GitRefused counts requests the remote turned away for bad or
	// missing credentials.
	GitRefused atomic.Int64
	gitClose   func() error

	closeOnce sync.Once
	mu        sync.Mutex
	replicas  map[string]*replica
	// meshes are the simulators of other clusters (AddCluster).
	meshes []*meshsim.Simulator
}

// replica is one running `sluice run`.
type replica struct {
	cmd       *exec.Cmd
	log       *os.File
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
	s := &Stack{opts: opts, Env: opts.Env, Dir: dir, Namespace: opts.Namespace, replicas: map[string]*replica{}, Gitea: opts.Gitea}
	if err := s.Env.CreateNamespace(ctx, opts.Namespace); err != nil {
		return nil, err
	}
	if err := s.seed(ctx); err != nil {
		return nil, fmt.Errorf("seed the Git remote: %w", err)
	}
	if err := s.serveGit(); err != nil {
		return nil, err
	}
	if err := s.applyGateways(ctx); err != nil {
		return nil, err
	}

	mesh, err := meshsim.Start(ctx, meshsim.Config{
		RESTConfig:  s.Env.RESTConfig(),
		Namespace:   opts.Namespace,
		Service:     "catalog",
		RPS:         cmp.Or(opts.RPS, 50),
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

// applyGateways creates the Gateway API Gateways of the example's
// gateway/ directory (examples/catalog-gateway-api has one) in the
// stack's namespace, as a person applies them once with kubectl; Sluice
// does not own them. An example without the directory has none.
func (s *Stack) applyGateways(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(s.opts.Example, "gateway", "*.yaml"))
	if err != nil || len(files) == 0 {
		return err
	}
	dyn, err := dynamic.NewForConfig(s.Env.RESTConfig())
	if err != nil {
		return err
	}
	gateways := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var u unstructured.Unstructured
		if err := sigsyaml.Unmarshal(data, &u.Object); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if u.GetKind() != "Gateway" {
			return fmt.Errorf("%s: a %s, want a Gateway", f, u.GetKind())
		}
		u.SetNamespace(s.Namespace)
		if _, err := dyn.Resource(gateways).Namespace(s.Namespace).Create(ctx, &u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create Gateway %s: %w", u.GetName(), err)
		}
	}
	return nil
}

// seed writes the example, at v1 with no candidate and with the stack's
// intervals, into a person's clone and pushes it to a new bare remote.
func (s *Stack) seed(ctx context.Context) error {
	s.Person = filepath.Join(s.Dir, "person")
	origin := ""
	if g := s.Gitea; g != nil {
		// One repository per stack, so stacks can share a Gitea.
		s.GiteaRepo = "releases-" + s.Namespace
		clone, err := g.CreateRepo(ctx, s.GiteaRepo)
		if err != nil {
			return err
		}
		s.Remote = clone
		// Gitea keeps the repository as a bare one on disk: the stack's
		// reads (Log, ReadRemote) go there directly.
		s.Bare = filepath.Join(g.Dir(), "repos", strings.ToLower(testenv.GiteaAdmin), strings.ToLower(s.GiteaRepo)+".git")
		u, err := url.Parse(clone)
		if err != nil {
			return err
		}
		u.User = url.UserPassword(testenv.GiteaAdmin, g.Password)
		origin = u.String()
	} else {
		s.Bare = filepath.Join(s.Dir, "remote", "releases.git")
		if err := os.MkdirAll(s.Bare, 0o755); err != nil {
			return err
		}
		if _, err := s.git1(ctx, s.Bare, "init", "--bare", "--initial-branch=main"); err != nil {
			return err
		}
		origin = s.Bare
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
	if s.opts.NoDarkLaunch {
		i := strings.Index(text, "    - name: dark-launch\n")
		j := strings.Index(text, "    - name: canary\n")
		if i < 0 || j < i {
			return errors.New("the example's dark-launch stage is not where the stack expects it")
		}
		text = text[:i] + text[j:]
	}
	if d := s.opts.Drain; d != nil {
		text = strings.Replace(text, "  analysis:\n", "  analysis:\n    drain: "+d.String()+"\n", 1)
	}
	for _, stage := range slices.Sorted(maps.Keys(s.opts.Approvals)) {
		item := "    - name: " + stage + "\n"
		if !strings.Contains(text, item) {
			return fmt.Errorf("approval for stage %q: the example has no such stage", stage)
		}
		text = strings.Replace(text, item, item+"      approval: "+s.opts.Approvals[stage]+"\n", 1)
	}
	if err := os.WriteFile(filepath.Join(s.Person, ReleaseFile), []byte(text), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"init", "--initial-branch=main"},
		{"add", "-A"},
		{"commit", "-q", "-m", "catalog at v1"},
		{"remote", "add", "origin", origin},
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

// serveGit serves the bare remote over smart HTTP, or over HTTPS with
// basic auth when the options name a user.
func (s *Stack) serveGit() error {
	if s.Gitea != nil {
		return nil // Gitea serves it
	}
	root := filepath.Join(s.Dir, "remote")
	if s.opts.GitUser == "" {
		srv, err := gitserver.Start(root)
		if err != nil {
			return err
		}
		s.gitClose, s.Remote = srv.Close, srv.URL+"/releases.git"
		return nil
	}
	cert, caPEM, err := selfSignedCert()
	if err != nil {
		return err
	}
	s.GitCAFile = filepath.Join(s.Dir, "secrets", "git-ca.pem")
	if err := writeSecretFile(s.GitCAFile, caPEM); err != nil {
		return err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: gitserver.Handler(root, s.opts.GitUser, s.opts.GitPassword, &s.GitRefused), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	s.gitClose = srv.Close
	s.Remote = "https://" + ln.Addr().String() + "/releases.git"
	return nil
}

// selfSignedCert makes a certificate for 127.0.0.1, and its PEM for
// clients to trust.
func selfSignedCert() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "stack git server"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func writeSecretFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// StartSluice runs `sluice run` against the stack as DefaultReplica.
func (s *Stack) StartSluice(ctx context.Context) error { return s.StartReplica(ctx, DefaultReplica) }

// StartReplica runs one `sluice run` named name against the stack; its log
// is <name>.log in the stack's directory.
func (s *Stack) StartReplica(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replicas[name] != nil {
		return fmt.Errorf("sluice %s is already running", name)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	args, err := s.sluiceArgs(addr)
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(s.logPath(name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, s.opts.Sluice, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(append(os.Environ(), s.opts.SluiceEnv...), "POD_NAME="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start sluice: %w", err)
	}
	r := &replica{cmd: cmd, log: logFile, adminAddr: addr, waitErr: make(chan error, 1)}
	go func() { r.waitErr <- cmd.Wait() }()
	s.replicas[name] = r
	if s.Gitea != nil && s.opts.WebhookSecret != "" {
		// Each replica listens on a new port; hooks to stopped ones fail
		// harmlessly.
		if err := s.Gitea.AddPushWebhook(ctx, s.GiteaRepo, "http://"+addr+"/hooks/git", s.opts.WebhookSecret); err != nil {
			return err
		}
	}
	return nil
}

// sluiceArgs are the arguments of `sluice run` for a replica serving on addr.
func (s *Stack) sluiceArgs(addr string) ([]string, error) {
	args := []string{"run",
		"--git-url", s.Remote,
		"--kubeconfig", s.Env.KubeconfigPath(),
		"--prometheus-url", s.Env.PrometheusURL(),
		"--listen", addr,
		"--interval", "2s",
		"--progress-deadline", "2m",
		"--reapply-interval", "10s",
		"--git-author-name", "Sluice", "--git-author-email", "sluice@example.com",
	}
	secrets := filepath.Join(s.Dir, "secrets")
	if s.opts.GitUser != "" {
		user, pass := filepath.Join(secrets, "git-username"), filepath.Join(secrets, "git-password")
		if err := writeSecretFile(user, []byte(s.opts.GitUser+"\n")); err != nil {
			return nil, err
		}
		if err := writeSecretFile(pass, []byte(s.opts.GitPassword+"\n")); err != nil {
			return nil, err
		}
		args = append(args, "--git-username-file", user, "--git-password-file", pass, "--git-ca-file", s.GitCAFile)
	}
	if g := s.Gitea; g != nil {
		user, tok := filepath.Join(secrets, "gitea-username"), filepath.Join(secrets, "gitea-token")
		if err := writeSecretFile(user, []byte(testenv.GiteaAdmin+"\n")); err != nil {
			return nil, err
		}
		if err := writeSecretFile(tok, []byte(g.Token+"\n")); err != nil {
			return nil, err
		}
		args = append(args, "--git-username-file", user, "--git-password-file", tok,
			"--forge", "gitea", "--forge-url", g.URL, "--forge-token-file", tok)
	}
	if s.opts.WebhookSecret != "" {
		file := filepath.Join(secrets, "webhook-secret")
		if err := writeSecretFile(file, []byte(s.opts.WebhookSecret+"\n")); err != nil {
			return nil, err
		}
		args = append(args, "--webhook-secret-file", file)
	}
	if le := s.opts.LeaderElection; le != nil {
		args = append(args, "--leader-elect",
			"--leader-election-namespace", cmp.Or(le.Namespace, s.Namespace),
			"--leader-election-id", cmp.Or(le.Name, "sluice"),
			"--advertise-address", addr)
		for flag, d := range map[string]time.Duration{
			"--leader-election-lease-duration": le.LeaseDuration,
			"--leader-election-renew-deadline": le.RenewDeadline,
			"--leader-election-retry-period":   le.RetryPeriod,
		} {
			if d > 0 {
				args = append(args, flag, d.String())
			}
		}
	} else {
		args = append(args, "--leader-elect=false")
	}
	return append(args, s.opts.SluiceArgs...), nil
}

func (s *Stack) logPath(name string) string { return filepath.Join(s.Dir, name+".log") }

// KillSluice stops DefaultReplica with SIGKILL, as a crash would.
func (s *Stack) KillSluice() error { return s.KillReplica(DefaultReplica) }

// KillReplica stops a replica with SIGKILL, as a crash would.
func (s *Stack) KillReplica(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.replicas[name]
	if r == nil {
		return nil
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.waitErr
	r.log.Close()
	delete(s.replicas, name)
	return nil
}

// PID is a running replica's process ID, 0 when it does not run.
func (s *Stack) PID(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.replicas[name]; r != nil {
		return r.cmd.Process.Pid
	}
	return 0
}

// AdminURL is a running replica's base URL ("http://127.0.0.1:port"), ""
// when it does not run.
func (s *Stack) AdminURL(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.replicas[name]; r != nil {
		return "http://" + r.adminAddr
	}
	return ""
}

// Replicas lists the running replicas' names.
func (s *Stack) Replicas() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.replicas))
	for n := range s.replicas {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// TriggerSync asks DefaultReplica to sync Git now.
func (s *Stack) TriggerSync(ctx context.Context) error { return s.TriggerSyncOn(ctx, DefaultReplica) }

// TriggerSyncOn asks a replica to sync Git now (POST /sync).
func (s *Stack) TriggerSyncOn(ctx context.Context, name string) error {
	base := s.AdminURL(name)
	if base == "" {
		return fmt.Errorf("sluice %s is not running", name)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/sync", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST /sync: %s", resp.Status)
	}
	return nil
}

// Leader is the name of the replica that holds the Lease, "" when none
// does (or the holder is not one of the stack's running replicas).
func (s *Stack) Leader(ctx context.Context) (string, error) {
	le := s.opts.LeaderElection
	if le == nil {
		return "", errors.New("the stack runs without leader election")
	}
	kube, err := kubernetes.NewForConfig(s.Env.RESTConfig())
	if err != nil {
		return "", err
	}
	lease, err := kube.CoordinationV1().Leases(cmp.Or(le.Namespace, s.Namespace)).Get(ctx, cmp.Or(le.Name, "sluice"), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if lease.Spec.HolderIdentity == nil {
		return "", nil
	}
	_, addr, _ := strings.Cut(*lease.Spec.HolderIdentity, "@")
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, r := range s.replicas {
		if r.adminAddr == addr {
			return name, nil
		}
	}
	return "", nil
}

// ShardHolders names the replica holding each of n shards' Leases
// (<Lease name>-<i>): "" for none, expired or not one of the stack's
// running replicas.
func (s *Stack) ShardHolders(ctx context.Context, n int) ([]string, error) {
	le := s.opts.LeaderElection
	if le == nil {
		return nil, errors.New("the stack runs without leader election")
	}
	kube, err := kubernetes.NewForConfig(s.Env.RESTConfig())
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	for i := range n {
		lease, err := kube.CoordinationV1().Leases(cmp.Or(le.Namespace, s.Namespace)).Get(ctx, fmt.Sprintf("%s-%d", cmp.Or(le.Name, "sluice"), i), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if lease.Spec.HolderIdentity == nil || lease.Spec.RenewTime == nil || lease.Spec.LeaseDurationSeconds == nil ||
			time.Since(lease.Spec.RenewTime.Time) > time.Duration(*lease.Spec.LeaseDurationSeconds)*time.Second {
			continue
		}
		_, addr, _ := strings.Cut(*lease.Spec.HolderIdentity, "@")
		s.mu.Lock()
		for name, r := range s.replicas {
			if r.adminAddr == addr {
				out[i] = name
			}
		}
		s.mu.Unlock()
	}
	return out, nil
}

// SluiceLog is what DefaultReplica printed so far.
func (s *Stack) SluiceLog() string { return s.ReplicaLog(DefaultReplica) }

// ReplicaLog is what a replica printed so far, across its restarts.
func (s *Stack) ReplicaLog(name string) string {
	b, _ := os.ReadFile(s.logPath(name))
	return string(b)
}

// Logs is what every replica printed so far, each under a header.
func (s *Stack) Logs() string {
	matches, _ := filepath.Glob(filepath.Join(s.Dir, "*.log"))
	var b strings.Builder
	for _, m := range matches {
		data, _ := os.ReadFile(m)
		fmt.Fprintf(&b, "===== %s =====\n%s", filepath.Base(m), data)
	}
	return b.String()
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

// GitRemote runs the git CLI in the remote's bare repository.
func (s *Stack) GitRemote(ctx context.Context, args ...string) (string, error) {
	return s.git1(ctx, s.Bare, args...)
}

// ReadRemote returns a file of the remote's main branch.
func (s *Stack) ReadRemote(ctx context.Context, name string) (string, error) {
	return s.git1(ctx, s.Bare, "show", "main:"+name)
}

// Close stops sluice, the simulator and the Git server; it may be called again.
func (s *Stack) Close() {
	s.closeOnce.Do(func() {
		for _, name := range s.Replicas() {
			_ = s.KillReplica(name)
		}
		if s.Mesh != nil {
			_ = s.Mesh.Close()
		}
		s.mu.Lock()
		meshes := s.meshes
		s.mu.Unlock()
		for _, m := range meshes {
			_ = m.Close()
		}
		if s.gitClose != nil {
			_ = s.gitClose()
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
