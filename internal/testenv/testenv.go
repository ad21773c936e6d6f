// Package testenv runs a real, local Kubernetes control plane for Sluice's
// tests and demo: etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler as child processes on loopback, kwok simulating nodes and
// the kubelet, Istio's CRDs installed, and optionally Prometheus.
//
// Prerequisites come from hack/testenv-tools.sh. Typical use, one cluster per
// test binary, started by the first test that needs it (see Shared):
//
//	var testEnv = testenv.NewShared(testenv.Options{})
//
//	func TestMain(m *testing.M) { os.Exit(testEnv.Main(m)) }
//
//	func TestApply(t *testing.T) { env := testEnv.Env(t); ... }
package testenv

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// NeverReadyLabel on a pod (a Deployment's pod template) makes kwok run the
// pod without it ever becoming ready: phase Running, condition Ready=False.
// Its value must be "true".
const NeverReadyLabel = "sluice.dev/test-never-ready"

// NodeAnnotation marks the nodes kwok manages; the env creates its nodes with
// it. A test may create more nodes carrying it.
const NodeAnnotation = "kwok.x-k8s.io/node"

//go:embed kwok-stages.yaml
var kwokStages []byte

// Options select what Start runs.
type Options struct {
	Prometheus bool // start Prometheus too
	Nodes      int  // kwok fake nodes, default (0) 1

	// Logger receives the env's own progress messages (not the components'
	// output, which goes to their log files). Nil means slog.Default().
	Logger *slog.Logger
}

// Component names, also the base names of their log files.
const (
	compEtcd              = "etcd"
	compAPIServer         = "kube-apiserver"
	compControllerManager = "kube-controller-manager"
	compScheduler         = "kube-scheduler"
	compKwok              = "kwok"
	compPrometheus        = "prometheus"
)

// componentOrder is the order in which DumpLogs prints the components.
func componentOrder() []string {
	return []string{compEtcd, compAPIServer, compControllerManager, compScheduler, compKwok, compPrometheus}
}

// Env is a running test environment. Its methods are safe for concurrent use.
type Env struct {
	log          *slog.Logger
	opts         Options
	tools        tools
	dir          string // logs, certificates, kubeconfigs, Prometheus data
	etcdDataDir  string // may live on tmpfs, outside dir
	kubeconfig   string
	apiserverURL string
	caPEM        []byte
	admin        *rest.Config
	clients      *kubernetes.Clientset
	prom         *prometheusServer
	startTook    time.Duration

	mu      sync.Mutex
	procs   map[string]*process
	failed  bool
	stopped bool
}

// Start provisions and starts the environment and returns once it is fully
// usable: API server ready, CRDs established, nodes Ready and untainted, the
// default ServiceAccount present, Prometheus (if asked for) ready. On failure
// everything started is stopped again and the logs are kept on disk.
func Start(ctx context.Context, opts Options) (*Env, error) {
	e, err := start(ctx, opts)
	if err != nil {
		if e != nil {
			e.MarkFailed()
			if stopErr := e.Stop(); stopErr != nil {
				e.log.Warn("testenv: stop after failed start", "err", stopErr)
			}
			return nil, fmt.Errorf("%w (component logs kept in %s)", err, filepath.Join(e.dir, "logs"))
		}
		return nil, err
	}
	return e, nil
}

// start is Start without the clean-up, so Main can print the logs of a
// failed start before stopping. It returns a non-nil Env whenever anything
// was started.
func start(ctx context.Context, opts Options) (*Env, error) {
	began := time.Now()
	if opts.Nodes < 0 || opts.Nodes > 100 {
		return nil, fmt.Errorf("testenv: Options.Nodes = %d, want 0 (meaning 1) to 100", opts.Nodes)
	}
	if opts.Nodes == 0 {
		opts.Nodes = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	version, err := K8sVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	cacheDir, err := CacheDir()
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	t, err := findTools(cacheDir, version, opts.Prometheus, exec.LookPath)
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp("", "sluice-testenv-")
	if err != nil {
		return nil, fmt.Errorf("testenv: create temp dir: %w", err)
	}
	e := &Env{
		log:   opts.Logger,
		opts:  opts,
		tools: t,
		dir:   dir,
		procs: map[string]*process{},
	}
	if err := e.run(ctx); err != nil {
		return e, fmt.Errorf("testenv: %w", err)
	}
	e.startTook = time.Since(began)
	e.log.Info("testenv started", "took", e.startTook.Round(time.Millisecond), "kubeconfig", e.kubeconfig,
		"prometheus", e.PrometheusURL(), "dir", e.dir)
	return e, nil
}

func (e *Env) run(ctx context.Context) error {
	for _, sub := range []string{"logs", "pki", "kwok"} {
		if err := os.MkdirAll(filepath.Join(e.dir, sub), 0o700); err != nil {
			return fmt.Errorf("create %s dir: %w", sub, err)
		}
	}

	// Locating the CRD file may run `go mod download`; overlap it with the
	// rest of the start.
	type crdResult struct {
		paths []string
		err   error
	}
	crdCh := make(chan crdResult, 1)
	go func() {
		p, err := crdPaths(ctx)
		crdCh <- crdResult{p, err}
	}()

	certs, err := e.writePKI()
	if err != nil {
		return err
	}

	// Prometheus needs nothing from the cluster, so it starts alongside.
	var promErr chan error
	if e.opts.Prometheus {
		port, err := freePort(rand.IntN)
		if err != nil {
			return err
		}
		e.prom, err = newPrometheusServer(e.tools.prometheus, e.dir, port, e.addProc)
		if err != nil {
			return err
		}
		promErr = make(chan error, 1)
		promCtx, cancelProm := context.WithCancel(ctx)
		defer func() {
			// On an early return, do not leave the start running behind
			// Stop's back.
			cancelProm()
			if promErr != nil {
				<-promErr
			}
		}()
		go func() {
			e.prom.mu.Lock()
			defer e.prom.mu.Unlock()
			promErr <- e.prom.start(promCtx)
		}()
	}

	etcdURL, err := e.startEtcd(ctx)
	if err != nil {
		return err
	}
	if err := e.startAPIServer(ctx, etcdURL, certs); err != nil {
		return err
	}

	crd := <-crdCh
	if crd.err != nil {
		return crd.err
	}
	steps := []func(context.Context) error{
		func(ctx context.Context) error {
			if err := e.startControllerManager(ctx, certs); err != nil {
				return err
			}
			return e.waitDefaultServiceAccount(ctx, metav1.NamespaceDefault)
		},
		func(ctx context.Context) error { return e.startScheduler(ctx, certs) },
		func(ctx context.Context) error { return e.startKwok(ctx, certs) },
		func(ctx context.Context) error { return e.installCRDs(ctx, crd.paths) },
		func(ctx context.Context) error { return e.createNodes(ctx) },
	}
	if err := parallel(ctx, steps...); err != nil {
		return err
	}
	if err := e.waitNodesReady(ctx); err != nil {
		return err
	}
	if promErr != nil {
		err := <-promErr
		promErr = nil // consumed
		if err != nil {
			return err
		}
	}
	return nil
}

// parallel runs the steps concurrently and returns the first error,
// cancelling the others' context so they stop waiting.
func parallel(ctx context.Context, steps ...func(context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for _, step := range steps {
		wg.Go(func() {
			if err := step(ctx); err != nil {
				once.Do(func() {
					firstErr = err
					cancel(err)
				})
			}
		})
	}
	wg.Wait()
	return firstErr
}
