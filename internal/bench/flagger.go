package bench

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	sigsyaml "sigs.k8s.io/yaml"

	"sluice.dev/sluice/internal/meshsim"
	"sluice.dev/sluice/internal/testenv"
)

// FlaggerConfig sets up the release-timing benchmark's Flagger mode: the
// same releases as ReleaseTiming's (analysis interval 10s, threshold 2,
// weights 10% to 50% in steps of 10, success rate >= 99 and p99 <= 500ms
// over 30s, 50 requests/s; the bad v2 fails 10% of its requests), run by
// Flagger on the same local stack, so that its time, CPU and memory can be
// put next to Sluice's. Flagger is an external binary, not a dependency.
type FlaggerConfig struct {
	// Flagger is the flagger binary (go install
	// github.com/fluxcd/flagger/cmd/flagger@v1.36.1).
	Flagger string
	// CRD is Flagger's CustomResourceDefinitions (artifacts/flagger/crd.yaml
	// of the same release): Canary, MetricTemplate, AlertProvider.
	CRD string
	// Example is examples/catalog; its base Deployment and ServiceAccount
	// are what Flagger's Canary targets.
	Example string
	Dir     string
	// Runs is how many good and how many bad releases to time; default 1.
	Runs int
	Log  *slog.Logger
}

// FlaggerTiming is one release by Flagger, measured from the change of the
// target Deployment's pod template (the trigger; Flagger notices it on
// its next analysis tick).
type FlaggerTiming struct {
	Release string `json:"release"` // good or bad
	Run     int    `json:"run"`
	// Flagger is what `flagger -version` printed; Build how the binary
	// was built (Go version, cgo, linker flags).
	Flagger string `json:"flagger"`
	Build   string `json:"build,omitempty"`
	// Started is trigger -> Canary Progressing (the new revision noticed).
	Started time.Duration `json:"started"`
	// Decided is trigger -> Promoting (good: the analysis passed and v2 is
	// copied to the primary) or Failed (bad: rolled back).
	Decided time.Duration `json:"decided"`
	// Traffic is trigger -> all traffic on the end state: the
	// VirtualService routes all of it to the primary, after the decision
	// (good: the primary runs v2; bad: still v1).
	Traffic time.Duration `json:"traffic"`
	// Done is trigger -> Succeeded (good) or Failed (bad): the canary
	// Deployment is scaled to zero, the release over.
	Done time.Duration `json:"done"`
	// PeakRSS and CPU are the flagger process's from its start to Done;
	// CPUBeforeTrigger is its CPU up to the trigger (start-up, the Canary's
	// initialisation, idle ticks), so CPU-CPUBeforeTrigger is the release's.
	PeakRSS          uint64        `json:"peakRSSBytes"`
	CPU              time.Duration `json:"cpu"`
	CPUBeforeTrigger time.Duration `json:"cpuBeforeTrigger"`
	// LoadStart and Load are the machine's load averages (1, 5, 15 min) at
	// the trigger and at Done.
	LoadStart string `json:"loadStart,omitempty"`
	Load      string `json:"load,omitempty"`
}

// Flagger's Canary phases (flagger.app/v1beta1 CanaryPhase).
const (
	flaggerInitialized = "Initialized"
	flaggerProgressing = "Progressing"
	flaggerPromoting   = "Promoting"
	flaggerFinalising  = "Finalising"
	flaggerSucceeded   = "Succeeded"
	flaggerFailed      = "Failed"
)

var gvrCanary = schema.GroupVersionResource{Group: "flagger.app", Version: "v1beta1", Resource: "canaries"}

// FlaggerReleaseTiming times Runs good and Runs bad releases by Flagger,
// each in its own namespace with its own flagger process and mesh
// simulator, on one test cluster with Prometheus.
func FlaggerReleaseTiming(ctx context.Context, cfg FlaggerConfig) ([]FlaggerTiming, error) {
	if cfg.Flagger == "" || cfg.CRD == "" || cfg.Example == "" || cfg.Dir == "" {
		return nil, errors.New("flagger timing: FlaggerConfig.Flagger, CRD, Example and Dir are required")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out, err := exec.CommandContext(ctx, cfg.Flagger, "-version").Output()
	if err != nil {
		return nil, fmt.Errorf("flagger timing: %s -version: %w", cfg.Flagger, err)
	}
	version := strings.TrimSpace(string(out))
	build := binaryBuild(cfg.Flagger)
	env, err := testenv.Start(ctx, testenv.Options{Prometheus: true, Logger: log.With("component", "testenv")})
	if err != nil {
		return nil, fmt.Errorf("flagger timing: start the test cluster: %w", err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			log.Warn("stop the test cluster", "err", err)
		}
	}()
	if err := env.InstallCRDs(ctx, cfg.CRD); err != nil {
		return nil, fmt.Errorf("flagger timing: install Flagger's CRDs: %w", err)
	}
	var list []FlaggerTiming
	for run := 1; run <= max(1, cfg.Runs); run++ {
		for _, bad := range []bool{false, true} {
			t, err := timeFlaggerRelease(ctx, env, cfg, run, bad, log)
			if err != nil {
				return list, err
			}
			t.Flagger, t.Build = version, build
			list = append(list, t)
			log.Info("flagger release timed", "release", t.Release, "run", run, "decided", t.Decided.Round(100*time.Millisecond),
				"done", t.Done.Round(100*time.Millisecond), "peakRSSMiB", float64(t.PeakRSS)/(1<<20), "cpu", t.CPU, "load", t.Load)
		}
	}
	return list, nil
}

func timeFlaggerRelease(ctx context.Context, env *testenv.Env, cfg FlaggerConfig, run int, bad bool, log *slog.Logger) (FlaggerTiming, error) {
	// The watches and the simulator end with the release.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	name := "good"
	if bad {
		name = "bad"
	}
	res := FlaggerTiming{Release: name, Run: run}
	ns := fmt.Sprintf("flagger-%s-%d", name, run)
	log = log.With("release", name, "run", run, "namespace", ns)
	dir := filepath.Join(cfg.Dir, ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, fmt.Errorf("flagger timing: %w", err)
	}
	if err := env.CreateNamespace(ctx, ns); err != nil {
		return res, fmt.Errorf("flagger timing: %w", err)
	}
	dyn, err := dynamic.NewForConfig(env.RESTConfig())
	if err != nil {
		return res, fmt.Errorf("flagger timing: dynamic client: %w", err)
	}

	// Requests to the apex Service, routed by Flagger's VirtualService
	// (named after the Canary) to catalog-primary and catalog-canary.
	mesh, err := meshsim.Start(ctx, meshsim.Config{
		RESTConfig: env.RESTConfig(), Namespace: ns, Service: "catalog", VirtualService: "catalog",
		RPS: 50, Jitter: 0.2, Seed: 1, Logger: log.With("component", "meshsim"),
	})
	if err != nil {
		return res, fmt.Errorf("flagger timing: %w", err)
	}
	defer mesh.Close()
	if err := env.AddScrapeTarget(ctx, "meshsim-"+ns, mesh.Addr()); err != nil {
		return res, fmt.Errorf("flagger timing: scrape the simulator: %w", err)
	}

	flagger, err := startFlagger(cfg.Flagger, dir, env, ns)
	if err != nil {
		return res, err
	}
	defer flagger.stop()

	objs, err := flaggerObjects(cfg.Example, ns)
	if err != nil {
		return res, err
	}
	for _, o := range objs {
		gvr := schema.GroupVersionResource{Group: o.GroupVersionKind().Group, Version: o.GroupVersionKind().Version, Resource: strings.ToLower(o.GetKind()) + "s"}
		if o.GetKind() == "Canary" {
			gvr.Resource = "canaries"
		}
		if _, err := dyn.Resource(gvr).Namespace(ns).Create(ctx, o, metav1.CreateOptions{}); err != nil {
			return res, fmt.Errorf("flagger timing: create %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	canaries := dyn.Resource(gvrCanary).Namespace(ns)
	// The Canary's phase, "" when it cannot be read (the API server busy):
	// the next poll reads it again.
	phase := func(ctx context.Context) string {
		u, err := canaries.Get(ctx, "catalog", metav1.GetOptions{})
		if err != nil {
			log.Debug("read the Canary", "err", err)
			return ""
		}
		p, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		return p
	}
	err = poll(ctx, 3*time.Minute, 100*time.Millisecond, name+" Canary initialized", func(ctx context.Context) (bool, error) {
		if err := flagger.exited(); err != nil {
			return false, err
		}
		switch p := phase(ctx); p {
		case flaggerFailed:
			return false, fmt.Errorf("the Canary is %s", p)
		default:
			return p == flaggerInitialized, nil
		}
	})
	if err != nil {
		return res, fmt.Errorf("flagger timing: %w\n%s", err, flagger.tail())
	}
	log.Info("Canary initialized; triggering v2", "routing", mesh.Routing())

	if bad {
		if err := mesh.SetVersion("v2", 0.10, 20*time.Millisecond); err != nil {
			return res, fmt.Errorf("flagger timing: %w", err)
		}
	}
	res.LoadStart = LoadAvg()
	res.CPUBeforeTrigger, err = cpuTime(flagger.pid())
	if err != nil {
		return res, err
	}
	if err := setVersion(ctx, dyn.Resource(gvrDeployment).Namespace(ns), "catalog", "v2"); err != nil {
		return res, err
	}
	trigger := time.Now()

	decidedPhase, donePhase, wrongPhase := flaggerPromoting, flaggerSucceeded, flaggerFailed
	if bad {
		decidedPhase, donePhase, wrongPhase = flaggerFailed, flaggerFailed, flaggerSucceeded
	}
	// The phases a good release passes through after its decision.
	afterDecision := []string{decidedPhase, flaggerFinalising, donePhase}
	vs := dyn.Resource(gvrVirtualService).Namespace(ns)
	err = poll(ctx, 10*time.Minute, 100*time.Millisecond, name+" release done", func(ctx context.Context) (bool, error) {
		if err := flagger.exited(); err != nil {
			return false, err
		}
		p := phase(ctx)
		if p == "" {
			return false, nil
		}
		since := time.Since(trigger)
		if p == wrongPhase {
			return false, fmt.Errorf("the Canary ended %s, want %s", p, donePhase)
		}
		if res.Started == 0 && p != flaggerInitialized {
			res.Started = since
		}
		if res.Decided == 0 && slices.Contains(afterDecision, p) {
			res.Decided = since
		}
		if res.Decided > 0 && res.Traffic == 0 {
			if u, err := vs.Get(ctx, "catalog", metav1.GetOptions{}); err == nil && allOnHost(u, "catalog-primary") {
				res.Traffic = time.Since(trigger)
			}
		}
		if p == donePhase && res.Traffic > 0 {
			res.Done = time.Since(trigger)
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return res, fmt.Errorf("flagger timing: %w\n%s", err, flagger.tail())
	}
	res.Load = LoadAvg()
	if res.CPU, err = cpuTime(flagger.pid()); err != nil {
		return res, err
	}
	if _, res.PeakRSS, err = memory(flagger.pid()); err != nil {
		return res, err
	}
	return res, nil
}

// binaryBuild describes how a Go binary was built: its Go version, cgo
// and linker flags; "" when it carries no build information.
func binaryBuild(path string) string {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return ""
	}
	parts := []string{info.GoVersion}
	for _, s := range info.Settings {
		if s.Key == "CGO_ENABLED" || s.Key == "-ldflags" {
			parts = append(parts, s.Key+"="+s.Value)
		}
	}
	return strings.Join(parts, " ")
}

// poll calls cond every interval until it is done, fails or timeout
// passes.
func poll(ctx context.Context, timeout, interval time.Duration, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		done, err := cond(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting %s for %s: %w", timeout, what, ctx.Err())
		case <-t.C:
		}
	}
}

// flaggerObjects are what a person applies for Flagger: the example's
// ServiceAccount and v1 Deployment, and a Canary with the trial's
// analysis. The Deployment selects its pods by app alone, as Flagger
// expects (it derives the primary's selector from it) and as a selector
// must when the version label of the pods changes; Flagger makes the
// Services, the DestinationRules and the VirtualService.
func flaggerObjects(example, ns string) ([]*unstructured.Unstructured, error) {
	base := filepath.Join(example, "apps", "catalog", "base")
	var out []*unstructured.Unstructured
	for _, f := range []string{"serviceaccount.yaml", "deployment.yaml"} {
		data, err := os.ReadFile(filepath.Join(base, f))
		if err != nil {
			return nil, fmt.Errorf("flagger timing: read the example: %w", err)
		}
		u := &unstructured.Unstructured{}
		if err := sigsyaml.Unmarshal(data, &u.Object); err != nil {
			return nil, fmt.Errorf("flagger timing: %s: %w", f, err)
		}
		u.SetNamespace(ns)
		if u.GetKind() == "Deployment" {
			if err := unstructured.SetNestedStringMap(u.Object, map[string]string{"app": "catalog"}, "spec", "selector", "matchLabels"); err != nil {
				return nil, fmt.Errorf("flagger timing: %s: %w", f, err)
			}
		}
		out = append(out, u)
	}
	canary := &unstructured.Unstructured{}
	if err := sigsyaml.Unmarshal([]byte(flaggerCanary), &canary.Object); err != nil {
		return nil, fmt.Errorf("flagger timing: the Canary: %w", err)
	}
	canary.SetNamespace(ns)
	return append(out, canary), nil
}

// flaggerCanary has the trial's analysis: interval 10s, threshold 2,
// 10% to 50% in steps of 10, Flagger's built-in Istio success rate (>= 99)
// and p99 duration (<= 500 ms) over 30s. The service is the example's
// (port 80 to the pods' 3000), routed for the mesh.
const flaggerCanary = `apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: catalog
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: catalog
  service:
    port: 80
    targetPort: 3000
    gateways: [mesh]
    hosts: [catalog]
  analysis:
    interval: 10s
    threshold: 2
    maxWeight: 50
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 30s
      - name: request-duration
        thresholdRange:
          max: 500
        interval: 30s
`

// setVersion changes a Deployment's pod template to a version as the
// example's overlays/v2 does (its SHOW_IMAGE variable) and labels its pods
// with the version, which the simulator answers by.
func setVersion(ctx context.Context, deployments dynamic.ResourceInterface, name, version string) error {
	u, err := deployments.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("flagger timing: get Deployment %s: %w", name, err)
	}
	if err := applyVersion(u, version); err != nil {
		return err
	}
	if _, err := deployments.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("flagger timing: update Deployment %s to %s: %w", name, version, err)
	}
	return nil
}

func applyVersion(u *unstructured.Unstructured, version string) error {
	if err := unstructured.SetNestedField(u.Object, version, "spec", "template", "metadata", "labels", "version"); err != nil {
		return fmt.Errorf("flagger timing: label %s: %w", version, err)
	}
	containers, _, err := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	if err != nil || len(containers) == 0 {
		return fmt.Errorf("flagger timing: Deployment %s has no containers (%v)", u.GetName(), err)
	}
	c, ok := containers[0].(map[string]any)
	if !ok {
		return fmt.Errorf("flagger timing: Deployment %s: container is a %T", u.GetName(), containers[0])
	}
	env, _ := c["env"].([]any)
	env = slices.DeleteFunc(env, func(e any) bool {
		m, _ := e.(map[string]any)
		return m["name"] == "SHOW_IMAGE"
	})
	if version != "v1" {
		env = append(env, map[string]any{"name": "SHOW_IMAGE", "value": "true"})
	}
	c["env"] = env
	return unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers")
}

// allOnHost reports whether every HTTP route of a VirtualService sends all
// its traffic to host.
func allOnHost(u *unstructured.Unstructured, host string) bool {
	routes, _, _ := unstructured.NestedSlice(u.Object, "spec", "http")
	if len(routes) == 0 {
		return false
	}
	for _, r := range routes {
		rm, ok := r.(map[string]any)
		if !ok {
			return false
		}
		dests, _, _ := unstructured.NestedSlice(rm, "route")
		if len(dests) == 0 {
			return false
		}
		for _, d := range dests {
			dm, ok := d.(map[string]any)
			if !ok {
				return false
			}
			h, _, _ := unstructured.NestedString(dm, "destination", "host")
			// An integer from the API server; a float64 from YAML.
			var w float64
			switch v := dm["weight"].(type) {
			case int64:
				w = float64(v)
			case float64:
				w = v
			case nil:
				// Without a weight the only destination takes it all,
				// one of several none.
				if len(dests) == 1 {
					w = 100
				}
			}
			if h != host && w > 0 {
				return false
			}
		}
	}
	return true
}

// flaggerProcess is one running flagger.
type flaggerProcess struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // why it exited, once done is closed
}

// startFlagger runs flagger as its Helm chart does for Istio (log level
// info, no leader election), watching one namespace, against the test
// cluster and its Prometheus.
func startFlagger(bin, dir string, env *testenv.Env, namespace string) (*flaggerProcess, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("flagger timing: pick a port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p := &flaggerProcess{logPath: filepath.Join(dir, "flagger.log"), done: make(chan struct{})}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		return nil, fmt.Errorf("flagger timing: %w", err)
	}
	p.cmd = exec.Command(bin,
		"-kubeconfig", env.KubeconfigPath(),
		"-mesh-provider", "istio",
		"-metrics-server", env.PrometheusURL(),
		"-namespace", namespace,
		"-log-level", "info",
		"-port", strconv.Itoa(port),
		"-enable-leader-election=false",
	)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("flagger timing: start %s: %w", bin, err)
	}
	go func() {
		err := p.cmd.Wait()
		logFile.Close()
		p.err = errors.New("flagger exited")
		if err != nil {
			p.err = fmt.Errorf("flagger exited: %w", err)
		}
		close(p.done)
	}()
	return p, nil
}

func (p *flaggerProcess) pid() int { return p.cmd.Process.Pid }

// exited is why flagger stopped, nil while it runs.
func (p *flaggerProcess) exited() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

func (p *flaggerProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail is the end of flagger's log, for errors.
func (p *flaggerProcess) tail() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return "flagger log (" + p.logPath + "), last lines:\n" + string(data)
}

// WriteFlaggerTable prints Flagger's release timings, then the medians of
// each release's runs.
func WriteFlaggerTable(w io.Writer, list []FlaggerTiming) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tRUN\tPROGRESSING\tDECIDED\tALL TRAFFIC\tDONE\tPEAK RSS\tCPU\tCPU AFTER TRIGGER\tLOAD")
	row := func(name, run string, started, decided, traffic, done, rss, cpu, cpuRel float64, load string) {
		fmt.Fprintf(tw, "%s\t%s\t%.1fs\t%.1fs\t%.1fs\t%.1fs\t%.1f MiB\t%.2fs\t%.2fs\t%s\n", name, run, started, decided, traffic, done, rss, cpu, cpuRel, load)
	}
	for _, t := range list {
		row(t.Release, strconv.Itoa(t.Run), t.Started.Seconds(), t.Decided.Seconds(), t.Traffic.Seconds(), t.Done.Seconds(),
			float64(t.PeakRSS)/(1<<20), t.CPU.Seconds(), (t.CPU - t.CPUBeforeTrigger).Seconds(), t.Load)
	}
	for _, name := range []string{"good", "bad"} {
		var started, decided, traffic, done, rss, cpu, cpuRel []float64
		for _, t := range list {
			if t.Release != name {
				continue
			}
			started, decided = append(started, t.Started.Seconds()), append(decided, t.Decided.Seconds())
			traffic, done = append(traffic, t.Traffic.Seconds()), append(done, t.Done.Seconds())
			rss, cpu = append(rss, float64(t.PeakRSS)/(1<<20)), append(cpu, t.CPU.Seconds())
			cpuRel = append(cpuRel, (t.CPU - t.CPUBeforeTrigger).Seconds())
		}
		if len(done) > 1 {
			row(name, "median", median(started), median(decided), median(traffic), median(done), median(rss), median(cpu), median(cpuRel), "")
		}
	}
	return tw.Flush()
}
