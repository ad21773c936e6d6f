package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// dumpLimit caps each component's share of DumpLogs; the full files stay in
// the env's dir when a run fails.
const dumpLimit = 256 << 10

func (e *Env) addProc(p *process) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.procs[p.name] = p
}

// PIDs are the process IDs of the env's running components by name
// (etcd, kube-apiserver, ...), for a benchmark that counts their CPU.
func (e *Env) PIDs() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for name, p := range e.procs {
		if p.cmd != nil && p.cmd.Process != nil {
			out[name] = p.pid()
		}
	}
	return out
}

func (e *Env) proc(name string) *process {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.procs[name]
}

// RESTConfig returns a copy of the admin's client configuration (user
// sluice-admin, group system:masters).
func (e *Env) RESTConfig() *rest.Config { return rest.CopyConfig(e.admin) }

// KubeconfigPath is a kubeconfig file with the admin identity.
func (e *Env) KubeconfigPath() string { return e.kubeconfig }

// Dir holds the env's logs, certificates, kubeconfigs and Prometheus data.
func (e *Env) Dir() string { return e.dir }

// StartupDuration is how long Start took.
func (e *Env) StartupDuration() time.Duration { return e.startTook }

// MarkFailed makes Stop keep the env's dir (logs) for a post-mortem. Main
// calls it when tests fail.
func (e *Env) MarkFailed() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failed = true
}

// ServiceAccountConfig returns a client configuration that authenticates as
// the ServiceAccount namespace/name with a token minted through the
// TokenRequest API, so a test runs with only the permissions RBAC grants that
// account. The ServiceAccount is created if it does not exist; the namespace
// must exist. The token is valid for an hour.
func (e *Env) ServiceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, error) {
	if namespace == "" || name == "" {
		return nil, fmt.Errorf("service account config: namespace %q and name %q must both be set", namespace, name)
	}
	sas := e.clients.CoreV1().ServiceAccounts(namespace)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := sas.Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("service account %s/%s: create: %w", namespace, name, err)
	}
	expiry := int64(time.Hour / time.Second)
	tr, err := sas.CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("service account %s/%s: request token: %w", namespace, name, err)
	}
	return &rest.Config{
		Host:            e.admin.Host,
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: slices.Clone(e.caPEM)},
		QPS:             e.admin.QPS,
		Burst:           e.admin.Burst,
	}, nil
}

// CreateNamespace creates a namespace and waits until its "default"
// ServiceAccount exists, so pods (and the ReplicaSets that make them) can be
// created there without a first round of rejections and back-off.
func (e *Env) CreateNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := e.clients.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return e.waitDefaultServiceAccount(ctx, name)
}

// InstallCRDs creates the CustomResourceDefinitions of multi-document
// YAML files (a controller's own, such as Flagger's) and waits until the
// API server serves them.
func (e *Env) InstallCRDs(ctx context.Context, paths ...string) error {
	return e.installCRDs(ctx, paths)
}

// PrometheusURL is Prometheus' base URL, "" without Prometheus. It stays the
// same across StopPrometheus/StartPrometheus.
func (e *Env) PrometheusURL() string {
	if e.prom == nil {
		return ""
	}
	return e.prom.url()
}

var errNoPrometheus = errors.New("testenv: started without Options.Prometheus")

// AddScrapeTarget makes Prometheus scrape http://hostPort/metrics as part of
// job, every ScrapeInterval, and returns once the target's first scrape
// succeeded. Adding a target twice is a no-op.
func (e *Env) AddScrapeTarget(ctx context.Context, job, hostPort string) error {
	if e.prom == nil {
		return errNoPrometheus
	}
	return e.prom.addTarget(ctx, job, hostPort)
}

// StopPrometheus stops Prometheus, keeping its data and configuration, to
// simulate the metrics source going away.
func (e *Env) StopPrometheus(ctx context.Context) error {
	if e.prom == nil {
		return errNoPrometheus
	}
	_ = ctx // stopping is bounded by stopGrace
	e.prom.mu.Lock()
	defer e.prom.mu.Unlock()
	if err := e.prom.stop(); err != nil {
		return fmt.Errorf("stop prometheus: %w", err)
	}
	return nil
}

// StartPrometheus starts Prometheus again after StopPrometheus, on the same
// port with the same data and scrape targets, and waits until it has scraped
// every target once, so queries see fresh samples from then on.
func (e *Env) StartPrometheus(ctx context.Context) error {
	if e.prom == nil {
		return errNoPrometheus
	}
	e.prom.mu.Lock()
	defer e.prom.mu.Unlock()
	if err := e.prom.start(ctx); err != nil {
		return fmt.Errorf("start prometheus: %w", err)
	}
	if err := e.prom.waitScraped(ctx); err != nil {
		return fmt.Errorf("start prometheus: %w", err)
	}
	return nil
}

// MemoryRSS reports the resident memory of each running component, in bytes.
func (e *Env) MemoryRSS() (map[string]uint64, error) {
	e.mu.Lock()
	procs := make([]*process, 0, len(e.procs))
	for _, p := range e.procs {
		procs = append(procs, p)
	}
	e.mu.Unlock()
	out := map[string]uint64{}
	for _, p := range procs {
		if gone, _ := p.exited(); gone {
			continue
		}
		rss, err := p.rssBytes()
		if err != nil {
			return nil, err
		}
		out[p.name] = rss
	}
	return out, nil
}

// DumpLogs writes every component's log (the last 256 KiB of each) to w.
func (e *Env) DumpLogs(w io.Writer) { e.dumpLogs(w, false) }

// DumpExitedLogs is DumpLogs for components that died on their own; of the
// others it prints only where their logs are. After failed tests, the
// failures are the tests' more often than the components', and megabytes
// of healthy components' logs would bury the test output.
func (e *Env) DumpExitedLogs(w io.Writer) { e.dumpLogs(w, true) }

func (e *Env) dumpLogs(w io.Writer, exitedOnly bool) {
	for _, name := range componentOrder() {
		p := e.proc(name)
		if p == nil {
			continue
		}
		state := "running"
		gone, err := p.exited()
		if gone {
			state = "exited: " + err.Error()
		}
		fmt.Fprintf(w, "===== %s (pid %d, %s) %s =====\n", name, p.pid(), state, p.logPath)
		if exitedOnly && !gone {
			continue
		}
		tail, err := readTail(p.logPath, dumpLimit)
		if err != nil {
			fmt.Fprintf(w, "(cannot read log: %v)\n", err)
			continue
		}
		if fileSize(p.logPath) > dumpLimit {
			fmt.Fprintf(w, "(showing the last %d KiB)\n", dumpLimit>>10)
		}
		_, _ = w.Write(tail)
		if len(tail) > 0 && tail[len(tail)-1] != '\n' {
			fmt.Fprintln(w)
		}
	}
}

// Stop stops every process the env started, controllers first and etcd last,
// and removes its temporary files unless the run failed (MarkFailed was
// called or a component died on its own), in which case the logs stay. It
// is safe to call more than once.
func (e *Env) Stop() error {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return nil
	}
	e.stopped = true
	failed := e.failed
	e.mu.Unlock()

	began := time.Now()
	var errs []error
	crashed := []string{}
	stopAll := func(names ...string) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, name := range names {
			p := e.proc(name)
			if p == nil {
				continue
			}
			if p.unexpectedExit() {
				crashed = append(crashed, name)
			}
			wg.Go(func() {
				if err := p.stop(stopGrace); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	// Clients of the API server first, so they do not log a storm of
	// connection errors while it goes away; etcd last.
	stopAll(compKwok, compScheduler, compControllerManager, compPrometheus)
	stopAll(compAPIServer)
	stopAll(compEtcd)

	if len(crashed) > 0 {
		failed = true
		errs = append(errs, fmt.Errorf("testenv: components exited on their own: %v (logs in %s)", crashed, e.dir))
	}
	// etcd's data may sit on tmpfs, i.e. in memory: never keep it.
	if e.etcdDataDir != "" {
		if err := os.RemoveAll(e.etcdDataDir); err != nil {
			errs = append(errs, fmt.Errorf("testenv: remove etcd data: %w", err))
		}
	}
	e.log.Debug("testenv: stopped", "took", time.Since(began).Round(time.Millisecond))
	if failed {
		e.log.Info("testenv: run failed, keeping logs", "dir", e.dir)
	} else if err := os.RemoveAll(e.dir); err != nil {
		errs = append(errs, fmt.Errorf("testenv: remove %s: %w", e.dir, err))
	}
	return errors.Join(errs...)
}
