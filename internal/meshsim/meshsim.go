// Package meshsim simulates an Istio mesh's request traffic to one service
// for Sluice's tests and demo, where no real data plane runs. It reads the
// VirtualService, DestinationRules, Service and Deployments from the API
// server, routes a steady stream of simulated requests exactly as Envoy
// would (HTTP routes in order, header and source matches, weights, mirrors),
// and exposes Istio's standard destination metrics for a real Prometheus to
// scrape.
package meshsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// Defaults of Config.
const (
	DefaultRPS          = 50.0
	DefaultTick         = 100 * time.Millisecond
	DefaultPollInterval = 500 * time.Millisecond
	DefaultCohortHeader = "x-istio-cohort"
	DefaultCohortValue  = "internal"
	DefaultSource       = "webapp"
	DefaultLatency      = 20 * time.Millisecond
	DefaultListen       = "127.0.0.1:0"
	DefaultPath         = "/"
	MaxRPS              = 100000.0
)

// Config describes the simulated traffic.
type Config struct {
	// RESTConfig reaches the API server the routing objects are read from.
	RESTConfig *rest.Config
	// Namespace and Service name the Kubernetes Service requests go to.
	Namespace string
	Service   string
	// VirtualService to follow; default "<Service>-mesh", Sluice's mesh route.
	VirtualService string

	// RPS is the request rate; default DefaultRPS.
	RPS float64
	// CohortShare of requests (0 to 1) carry CohortHeader: CohortValue, the
	// dark-launch header; default none.
	CohortShare  float64
	CohortHeader string // default DefaultCohortHeader
	CohortValue  string // default DefaultCohortValue
	// Path of the simulated requests, for uri matches; default "/".
	Path string

	// Source is the simulated client. Defaults: workload "webapp" in
	// Namespace, labels {app: webapp}, gateway "mesh".
	Source Source

	// Versions sets the behaviour of versions by their version label;
	// others get Default (no errors, DefaultLatency when unset).
	Versions map[string]Behavior
	Default  Behavior
	// Jitter varies each request's latency uniformly by up to this share of
	// it either way (0.1: ±10%); 0 means none.
	Jitter float64
	// Seed seeds the latency jitter.
	Seed uint64

	Tick         time.Duration // how often a batch of requests is generated; default DefaultTick
	PollInterval time.Duration // how often routing objects are read; default DefaultPollInterval

	// ListenAddress serves /metrics and the control endpoints; default
	// DefaultListen (loopback, a free port). See Simulator.Addr.
	ListenAddress string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func (c Config) withDefaults() (Config, error) {
	if c.RESTConfig == nil {
		return c, errors.New("meshsim: RESTConfig is nil")
	}
	if !dnsLabel.MatchString(c.Namespace) || len(c.Namespace) > 63 {
		return c, fmt.Errorf("meshsim: namespace %q is not a Kubernetes name", c.Namespace)
	}
	if !dnsLabel.MatchString(c.Service) || len(c.Service) > 63 {
		return c, fmt.Errorf("meshsim: service %q is not a Kubernetes name", c.Service)
	}
	if c.VirtualService == "" {
		c.VirtualService = c.Service + "-mesh"
	}
	if c.RPS == 0 {
		c.RPS = DefaultRPS
	}
	if err := checkRPS(c.RPS); err != nil {
		return c, err
	}
	if c.CohortShare < 0 || c.CohortShare > 1 {
		return c, fmt.Errorf("meshsim: cohort share %g is not between 0 and 1", c.CohortShare)
	}
	if c.CohortHeader == "" {
		c.CohortHeader = DefaultCohortHeader
	}
	c.CohortHeader = strings.ToLower(c.CohortHeader)
	if c.CohortValue == "" {
		c.CohortValue = DefaultCohortValue
	}
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.Source.Workload == "" {
		c.Source.Workload = DefaultSource
	}
	if c.Source.Namespace == "" {
		c.Source.Namespace = c.Namespace
	}
	if c.Source.Labels == nil {
		c.Source.Labels = map[string]string{"app": c.Source.Workload}
	}
	if c.Source.Gateway == "" {
		c.Source.Gateway = "mesh"
	}
	if c.Default.Latency == 0 {
		c.Default.Latency = DefaultLatency
	}
	if err := checkBehavior("default", c.Default); err != nil {
		return c, err
	}
	for v, b := range c.Versions {
		if err := checkBehavior(v, b); err != nil {
			return c, err
		}
	}
	if c.Jitter < 0 || c.Jitter > 1 {
		return c, fmt.Errorf("meshsim: jitter %g is not between 0 and 1", c.Jitter)
	}
	if c.Tick == 0 {
		c.Tick = DefaultTick
	}
	if c.Tick < 10*time.Millisecond || c.Tick > 10*time.Second {
		return c, fmt.Errorf("meshsim: tick %s is not between 10ms and 10s", c.Tick)
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.PollInterval < 50*time.Millisecond {
		return c, fmt.Errorf("meshsim: poll interval %s is shorter than 50ms", c.PollInterval)
	}
	if c.ListenAddress == "" {
		c.ListenAddress = DefaultListen
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

func checkRPS(rps float64) error {
	if !(rps > 0 && rps <= MaxRPS) {
		return fmt.Errorf("meshsim: rate %g requests/s is not between 0 and %g", rps, MaxRPS)
	}
	return nil
}

func checkBehavior(version string, b Behavior) error {
	if version == "" {
		return errors.New("meshsim: version is empty")
	}
	if !(b.ErrorRate >= 0 && b.ErrorRate <= 1) {
		return fmt.Errorf("meshsim: version %s: error rate %g is not between 0 and 1", version, b.ErrorRate)
	}
	if b.Latency < 0 || b.Latency > time.Hour {
		return fmt.Errorf("meshsim: version %s: latency %s is not between 0 and 1h", version, b.Latency)
	}
	return nil
}

// Simulator generates the traffic. Its methods are safe for concurrent use.
type Simulator struct {
	cfg   Config
	log   *slog.Logger
	kube  kubernetes.Interface
	istio istioclient.Interface
	gw    gwclient.Interface
	reg   *prometheus.Registry
	m     *metrics
	ln    net.Listener
	srv   *http.Server

	table atomic.Pointer[table]

	// mu serialises the generator with scrapes, so a scrape never sees
	// half of a batch, and guards the rate.
	mu       sync.Mutex
	gen      *generator
	rps      float64
	rateFrom time.Time // when rps took effect
	rateBase int64     // requests emitted before rateFrom
	emitted  int64

	// Owned by the poll loop.
	fingerprint string
	lastErr     string

	cancel   context.CancelFunc
	done     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
	errMu    sync.Mutex
	err      error
}

// Start reads the routing objects once (so a wrong address or missing
// permission fails here), starts serving metrics and generating traffic, and
// returns. The simulator runs until ctx ends or Close is called.
func Start(ctx context.Context, cfg Config) (*Simulator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("meshsim: kubernetes client: %w", err)
	}
	istio, err := istioclient.NewForConfig(cfg.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("meshsim: istio client: %w", err)
	}
	gw, err := gwclient.NewForConfig(cfg.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("meshsim: gateway API client: %w", err)
	}
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("meshsim: register metrics: %w", err)
	}
	s := &Simulator{
		cfg:   cfg,
		log:   cfg.Logger.With("service", cfg.Namespace+"/"+cfg.Service),
		kube:  kube,
		istio: istio,
		gw:    gw,
		reg:   reg,
		m:     m,
		gen:   newGenerator(cfg.Source, cfg.Default, cfg.Versions, cfg.Jitter, cfg.Seed, m),
		rps:   cfg.RPS,
		done:  make(chan struct{}),
	}
	if err := s.sync(ctx); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		return nil, fmt.Errorf("meshsim: listen on %s: %w", cfg.ListenAddress, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}

	runCtx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.rateFrom = time.Now()
	s.wg.Go(func() { s.pollLoop(runCtx) })
	s.wg.Go(func() { s.trafficLoop(runCtx) })
	s.wg.Go(func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.setErr(fmt.Errorf("meshsim: serve %s: %w", ln.Addr(), err))
			cancel()
		}
	})
	// Stop when ctx ends even if nobody calls Close.
	go func() {
		<-runCtx.Done()
		s.stop()
	}()
	s.log.Info("meshsim started", "metrics", "http://"+s.Addr()+"/metrics", "virtualService", cfg.VirtualService, "rps", cfg.RPS)
	return s, nil
}

// Addr is the host:port serving /metrics.
func (s *Simulator) Addr() string { return s.ln.Addr().String() }

// Done is closed once the simulator has stopped.
func (s *Simulator) Done() <-chan struct{} { return s.done }

// Err is why the simulator stopped on its own, nil after a plain stop.
func (s *Simulator) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

func (s *Simulator) setErr(err error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// Close stops generating traffic and serving metrics and waits for both.
func (s *Simulator) Close() error {
	s.cancel()
	s.stop()
	return s.Err()
}

func (s *Simulator) stop() {
	s.stopOnce.Do(func() {
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.setErr(fmt.Errorf("meshsim: shut down metrics server: %w", err))
		}
		s.wg.Wait()
		close(s.done)
		s.log.Info("meshsim stopped")
	})
	<-s.done
}

// Gatherer gathers the simulator's metrics as /metrics serves them.
func (s *Simulator) Gatherer() prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.reg.Gather()
	})
}

// SetVersion changes how a version (by its version label) answers from the
// next request on.
func (s *Simulator) SetVersion(version string, errorRate float64, latency time.Duration) error {
	b := Behavior{ErrorRate: errorRate, Latency: latency}
	if err := checkBehavior(version, b); err != nil {
		return err
	}
	s.mu.Lock()
	s.gen.behaviors[version] = b
	s.mu.Unlock()
	s.log.Info("meshsim version behaviour", "version", version, "errorRate", errorRate, "latency", latency)
	return nil
}

// Versions returns the behaviour of every version set so far, and of the
// rest under "*".
func (s *Simulator) Versions() map[string]Behavior {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Behavior, len(s.gen.behaviors)+1)
	for k, v := range s.gen.behaviors {
		out[k] = v
	}
	out["*"] = s.gen.def
	return out
}

// SetRate changes the request rate from now on; 0 stops the traffic (a
// quiet service) until the next SetRate.
func (s *Simulator) SetRate(rps float64) error {
	if rps != 0 {
		if err := checkRPS(rps); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rps, s.rateFrom, s.rateBase = rps, time.Now(), s.emitted
	return nil
}

// Routing describes the routing in effect, in one line.
func (s *Simulator) Routing() string { return s.table.Load().summary() }

func (s *Simulator) pollLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.sync(ctx)
		if ctx.Err() != nil {
			return
		}
		// Keep routing as last read through API hiccups; say so once.
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != s.lastErr {
			if err != nil {
				s.log.Warn("meshsim: cannot read routing; keeping the last one", "err", err)
			} else {
				s.log.Info("meshsim: reading routing again")
			}
			s.lastErr = msg
		}
	}
}

// sync reads the routing objects and swaps in a new table when they changed.
func (s *Simulator) sync(ctx context.Context) error {
	objs, fp, err := s.read(ctx)
	if err != nil {
		return err
	}
	// Playing Istio's Gateway API controllers, report on the routes of
	// the simulated Service before routing by them.
	if err := s.writeRouteStatus(ctx, objs); err != nil {
		return err
	}
	if fp == s.fingerprint && s.table.Load() != nil {
		return nil
	}
	t := compile(s.cfg.Namespace, s.cfg.Service, s.cfg.Source, objs)
	s.mu.Lock()
	s.table.Store(t)
	s.gen.prune(t.keys)
	s.mu.Unlock()
	s.fingerprint = fp
	s.log.Info("meshsim routing", "routing", t.summary())
	for _, w := range t.warnings {
		s.log.Warn("meshsim routing: " + w)
	}
	return nil
}

func (s *Simulator) read(ctx context.Context) (objects, string, error) {
	ns := s.cfg.Namespace
	var objs objects
	var fp []string
	svc, err := s.kube.CoreV1().Services(ns).Get(ctx, s.cfg.Service, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		fp = append(fp, "svc:-")
	case err != nil:
		return objs, "", fmt.Errorf("meshsim: read Service %s/%s: %w", ns, s.cfg.Service, err)
	default:
		objs.service = svc
		fp = append(fp, "svc:"+svc.ResourceVersion)
	}
	vs, err := s.istio.NetworkingV1().VirtualServices(ns).Get(ctx, s.cfg.VirtualService, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		fp = append(fp, "vs:-")
	case err != nil:
		return objs, "", fmt.Errorf("meshsim: read VirtualService %s/%s: %w", ns, s.cfg.VirtualService, err)
	default:
		objs.virtualService = vs
		fp = append(fp, "vs:"+vs.ResourceVersion)
	}
	drs, err := s.istio.NetworkingV1().DestinationRules(ns).List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return objs, "", fmt.Errorf("meshsim: list DestinationRules in %s: %w", ns, err)
	}
	if drs != nil {
		for _, dr := range drs.Items {
			objs.destinationRules = append(objs.destinationRules, dr)
			fp = append(fp, "dr:"+dr.Name+"@"+dr.ResourceVersion)
		}
	}
	// Every Service of the namespace: Gateway API backends and
	// VirtualService destinations may name others than the simulated one.
	svcs, err := s.kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return objs, "", fmt.Errorf("meshsim: list Services in %s: %w", ns, err)
	}
	objs.services = make(map[string]*corev1.Service, len(svcs.Items))
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		objs.services[svc.Name] = svc
		fp = append(fp, "service:"+svc.Name+"@"+svc.ResourceVersion)
	}
	gwFP, err := s.readGatewayAPI(ctx, &objs)
	if err != nil {
		return objs, "", err
	}
	fp = append(fp, gwFP...)
	deps, err := s.kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return objs, "", fmt.Errorf("meshsim: list Deployments in %s: %w", ns, err)
	}
	for i := range deps.Items {
		d := &deps.Items[i]
		objs.deployments = append(objs.deployments, d)
		// Only what routing depends on, so status churn does not rebuild
		// the table (and reset balancing) needlessly.
		fp = append(fp, fmt.Sprintf("deploy:%s@%v/%d", d.Name, d.Spec.Template.Labels, d.Status.AvailableReplicas))
	}
	sort.Strings(fp[min(len(fp), 2):])
	return objs, strings.Join(fp, ";"), nil
}

func (s *Simulator) trafficLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	plain := Request{
		Method: "GET", Scheme: "http", Path: s.cfg.Path,
		Authority: s.cfg.Service, Headers: map[string]string{},
	}
	cohort := plain
	cohort.Headers = map[string]string{s.cfg.CohortHeader: s.cfg.CohortValue}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.batch(now, &plain, &cohort)
		}
	}
}

// batch generates the requests due by now, which keeps the rate exact
// however the ticker drifts. After a long stall it catches up at most one
// second's worth, rather than bursting.
func (s *Simulator) batch(now time.Time, plain, cohort *Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.table.Load()
	plain.Port, cohort.Port = t.service.port, t.service.port
	due := s.rateBase + int64(s.rps*now.Sub(s.rateFrom).Seconds()) - s.emitted
	if limit := int64(s.rps) + 1; due > limit {
		s.rateBase += due - limit
		due = limit
	}
	for ; due > 0; due-- {
		req := plain
		if s.gen.take(cohortKey, s.cfg.CohortShare) {
			req = cohort
		}
		s.m.outcomes.WithLabelValues(s.gen.serve(t, req)).Inc()
		s.emitted++
	}
}

func (s *Simulator) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Gatherer(), promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /routing", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(s.Routing() + "\n")) })
	mux.HandleFunc("GET /versions", s.getVersions)
	mux.HandleFunc("POST /versions/{version}", s.postVersion)
	return mux
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
