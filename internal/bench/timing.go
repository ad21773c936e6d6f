package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/internal/testenv"
	"sluice.dev/sluice/record"
)

// TimingConfig sets up the release-timing benchmark: the settings of the
// side-by-side trial with Flagger (analysis interval 10s, threshold 2,
// weights 10% to 50% in steps of 10, success rate >= 99 and p99 <= 500ms
// over 30s, 50 requests/s, the catalog example without its dark launch,
// the default 30s drain).
type TimingConfig struct {
	Sluice  string // the sluice binary
	Example string // examples/catalog
	Dir     string
	// SluiceArgs are added to `sluice run`; SluiceEnv (KEY=VALUE) to its
	// environment only.
	SluiceArgs, SluiceEnv []string
	Log                   *slog.Logger
}

// Timing is one release measured from the push of its candidate.
type Timing struct {
	Release string `json:"release"` // good or bad
	// Decided is trigger -> promoted (good) or rolled back (bad), as
	// recorded in Git; Traffic is trigger -> all traffic on the end state
	// (the VirtualService routes it all to the version that stays);
	// Retired is trigger -> the version leaving is removed after its drain.
	Decided time.Duration `json:"decided"`
	Traffic time.Duration `json:"traffic"`
	Retired time.Duration `json:"retired"`
	// RecordedBeforeDrainEnd is set when the decision was in Git before
	// the drain ended.
	RecordedBeforeDrainEnd bool `json:"recordedBeforeDrainEnd"`
	// PeakRSS and CPU are the sluice process's, from its start to the
	// retirement.
	PeakRSS uint64        `json:"peakRSSBytes"`
	CPU     time.Duration `json:"cpu"`
	// CPUBeforeTrigger is the process's CPU up to the push of the
	// candidate (start-up, v1's first step), so CPU-CPUBeforeTrigger is
	// the release's, as for Flagger (FlaggerTiming).
	CPUBeforeTrigger time.Duration `json:"cpuBeforeTrigger"`
	// SluiceEnv is what was added to sluice's environment; Load the
	// machine's load averages (1, 5, 15 min) when the release was decided.
	SluiceEnv []string `json:"sluiceEnv,omitempty"`
	Load      string   `json:"load,omitempty"`
}

const (
	timingInterval = 10 * time.Second
	timingWindow   = 30 * time.Second
)

// ReleaseTiming runs one good release (v2 healthy) and one bad one (v2
// failing 10% of its requests), each on its own stack and sluice process,
// and measures them.
func ReleaseTiming(ctx context.Context, cfg TimingConfig) ([]Timing, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	env, err := testenv.Start(ctx, testenv.Options{Prometheus: true, Logger: log.With("component", "testenv")})
	if err != nil {
		return nil, fmt.Errorf("timing: start the test cluster: %w", err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			log.Warn("stop the test cluster", "err", err)
		}
	}()
	var out []Timing
	for _, bad := range []bool{false, true} {
		t, err := timeRelease(ctx, env, cfg, bad, log)
		if err != nil {
			return out, err
		}
		out = append(out, t)
	}
	return out, nil
}

func timeRelease(ctx context.Context, env *testenv.Env, cfg TimingConfig, bad bool, log *slog.Logger) (Timing, error) {
	name, ns, end, leaving, phase := "good", "timing-good", "v2", "v1", record.PhasePromoted
	if bad {
		name, ns, end, leaving, phase = "bad", "timing-bad", "v1", "v2", record.PhaseRolledBack
	}
	res := Timing{Release: name, SluiceEnv: cfg.SluiceEnv}
	dir := filepath.Join(cfg.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	s, err := stack.Start(ctx, dir, stack.Options{
		Env: env, Sluice: cfg.Sluice, Example: cfg.Example, Namespace: ns,
		Interval: timingInterval, Window: timingWindow, Threshold: 2, NoDarkLaunch: true, RPS: 50,
		SluiceArgs: cfg.SluiceArgs, SluiceEnv: cfg.SluiceEnv,
		Log: log.With("release", name),
	})
	if err != nil {
		return res, err
	}
	defer s.Close()
	if err := s.StartSluice(ctx); err != nil {
		return res, err
	}
	pid := s.PID(stack.DefaultReplica)
	if err := waitRecorded(ctx, s, 2*time.Minute, func(st *record.Status) bool { return st.Phase == record.PhaseSteady }); err != nil {
		return res, fmt.Errorf("%s: steady: %w", name, err)
	}
	if bad {
		if err := s.Mesh.SetVersion("v2", 0.10, 20*time.Millisecond); err != nil {
			return res, err
		}
	}
	if res.CPUBeforeTrigger, err = cpuTime(pid); err != nil {
		return res, err
	}
	if _, err := s.PushCandidate(ctx, "v2"); err != nil {
		return res, err
	}
	trigger := time.Now()
	if err := s.TriggerSync(ctx); err != nil {
		return res, err
	}
	dyn, err := dynamic.NewForConfig(env.RESTConfig())
	if err != nil {
		return res, err
	}
	vs := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	var decided *record.Status
	err = stack.WaitFor(ctx, 5*time.Minute, 100*time.Millisecond, name+" release decided", func(ctx context.Context) (bool, error) {
		if decided == nil {
			st, err := readStatus(ctx, s)
			if err == nil && st.Phase == phase && st.Candidate == "v2" {
				decided, res.Decided = st, time.Since(trigger)
			}
		}
		// Stable has all traffic before the candidate takes any: a bad
		// release's end state counts only once it is rolled back.
		if res.Traffic == 0 && (!bad || decided != nil) {
			if u, err := dyn.Resource(vs).Namespace(ns).Get(ctx, "catalog-mesh", metav1.GetOptions{}); err == nil && allOn(u, end) {
				res.Traffic = time.Since(trigger)
			}
		}
		return res.Traffic > 0 && decided != nil, nil
	})
	if err != nil {
		return res, err
	}
	res.Load = LoadAvg()
	if len(decided.Draining) == 1 {
		res.RecordedBeforeDrainEnd = time.Now().Before(decided.Draining[0].Until) || trigger.Add(res.Decided).Before(decided.Draining[0].Until)
	}
	err = waitRecorded(ctx, s, 2*time.Minute, func(st *record.Status) bool { return len(st.Draining) == 0 })
	if err != nil {
		return res, fmt.Errorf("%s: %s retired: %w", name, leaving, err)
	}
	res.Retired = time.Since(trigger)
	if _, peak, err := memory(pid); err == nil {
		res.PeakRSS = peak
	}
	if cpu, err := cpuTime(pid); err == nil {
		res.CPU = cpu
	}
	return res, nil
}

func readStatus(ctx context.Context, s *stack.Stack) (*record.Status, error) {
	data, err := s.ReadRemote(ctx, record.StatusPath(record.DefaultStatusDir, s.Namespace, "catalog"))
	if err != nil {
		return nil, err
	}
	return record.ParseStatus([]byte(data))
}

func waitRecorded(ctx context.Context, s *stack.Stack, timeout time.Duration, cond func(*record.Status) bool) error {
	return stack.WaitFor(ctx, timeout, 100*time.Millisecond, "status", func(ctx context.Context) (bool, error) {
		st, err := readStatus(ctx, s)
		if err != nil {
			return false, nil
		}
		return cond(st), nil
	})
}

// allOn reports whether every route of a VirtualService sends all its
// traffic to version's subset.
func allOn(u *unstructured.Unstructured, version string) bool {
	routes, _, _ := unstructured.NestedSlice(u.Object, "spec", "http")
	if len(routes) == 0 {
		return false
	}
	for _, r := range routes {
		dests, _, _ := unstructured.NestedSlice(r.(map[string]any), "route")
		for _, d := range dests {
			subset, _, _ := unstructured.NestedString(d.(map[string]any), "destination", "subset")
			w, found, _ := unstructured.NestedInt64(d.(map[string]any), "weight")
			if subset != version && (!found || w > 0) {
				return false
			}
		}
	}
	return true
}

// WriteTimingTable prints the release timings.
func WriteTimingTable(w io.Writer, list []Timing) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tDECIDED\tALL TRAFFIC\tRETIRED\tRECORDED BEFORE DRAIN END\tPEAK RSS\tCPU\tCPU AFTER TRIGGER")
	for _, t := range list {
		fmt.Fprintf(tw, "%s\t%.1fs\t%.1fs\t%.1fs\t%v\t%.1f MiB\t%.2fs\t%.2fs\n", t.Release, t.Decided.Seconds(), t.Traffic.Seconds(), t.Retired.Seconds(),
			t.RecordedBeforeDrainEnd, float64(t.PeakRSS)/(1<<20), t.CPU.Seconds(), (t.CPU - t.CPUBeforeTrigger).Seconds())
	}
	return tw.Flush()
}
