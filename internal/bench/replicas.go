package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// replica is one sluice process of the run, with its own admin address,
// log file, identity and API proxy (so that its requests are counted
// apart from the others').
type replica struct {
	index   int
	name    string // POD_NAME, the prefix of its Lease identity
	cmd     *exec.Cmd
	admin   string
	logPath string
	proxy   *apiProxy
	// done is closed when the process has exited, after waitErr is set.
	done    chan struct{}
	waitErr error
	// killed is set before the harness kills it on purpose.
	killed bool

	// The last values read while it ran: a dead process keeps them.
	cpu         time.Duration
	rss, peak   uint64
	pushRetries float64
	transitions float64
	shardsHeld  float64 // -1: sluice does not export sluice_shards_held
	leader      bool
}

// replicaExit is a replica's process ending.
type replicaExit struct {
	r   *replica
	err error
}

// multi says whether the run has several replicas or shards, and so
// sluice runs with leader election and the result carries the
// per-replica figures.
func (c Config) multi() bool { return c.SluiceReplicas > 1 || c.Shards > 1 }

// startSluice runs every replica's `sluice run` against the Git server and
// its own API proxy.
func (h *harness) startSluice() error {
	n := max(1, h.cfg.SluiceReplicas)
	h.exits = make(chan replicaExit, n)
	for i := range n {
		r, err := h.startReplica(i)
		if r != nil {
			h.replicas = append(h.replicas, r)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *harness) startReplica(i int) (*replica, error) {
	multi := h.cfg.multi()
	r := &replica{index: i, name: "sluice", shardsHeld: -1, done: make(chan struct{})}
	kubeconfig := filepath.Join(h.cfg.Dir, "kubeconfig")
	r.logPath = filepath.Join(h.cfg.Dir, "sluice.log")
	if multi {
		r.name = fmt.Sprintf("sluice-%d", i)
		kubeconfig = filepath.Join(h.cfg.Dir, "kubeconfig-"+strconv.Itoa(i))
		r.logPath = filepath.Join(h.cfg.Dir, r.name+".log")
	}
	proxy, err := startAPIProxy(h.env.RESTConfig())
	if err != nil {
		return nil, err
	}
	r.proxy = proxy
	kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    server: %s\ncontexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\nusers:\n- name: bench\n  user: {}\ncurrent-context: bench\n", proxy.URL)
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		proxy.Close()
		return nil, fmt.Errorf("bench: write %s's kubeconfig: %w", r.name, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		proxy.Close()
		return nil, fmt.Errorf("bench: pick %s's admin port: %w", r.name, err)
	}
	r.admin = ln.Addr().String()
	ln.Close()
	args := []string{"run",
		"--git-url", h.git.URL + "/releases.git",
		"--kubeconfig", kubeconfig,
		"--prometheus-url", h.env.PrometheusURL(),
		"--listen", r.admin,
		// The harness triggers every sync itself, and no periodic
		// re-apply may fall inside a measurement.
		"--interval", "1h",
		"--reapply-interval", "1h",
	}
	if multi {
		args = append(args, "--leader-elect", "--leader-election-namespace", h.cfg.LeaseNamespace)
		if h.cfg.Shards > 1 {
			args = append(args, "--shards", strconv.Itoa(h.cfg.Shards))
		}
	} else {
		args = append(args, "--leader-elect=false")
	}
	args = append(args, "--git-author-name", "Sluice", "--git-author-email", "sluice@example.com")
	if !h.cfg.GitInMemory {
		// As deploy/ runs it: the clone on disk, not in the heap.
		args = append(args, "--git-cache-dir", filepath.Join(h.cfg.Dir, r.name+"-git"))
	}
	if h.cfg.Workers > 0 {
		args = append(args, "--workers", strconv.Itoa(h.cfg.Workers))
	}
	args = append(args, h.cfg.SluiceArgs...)
	logFile, err := os.Create(r.logPath)
	if err != nil {
		proxy.Close()
		return nil, fmt.Errorf("bench: %s's log: %w", r.name, err)
	}
	r.cmd = exec.Command(h.cfg.Sluice, args...)
	r.cmd.Env = append(os.Environ(), h.cfg.SluiceEnv...)
	if multi {
		// The replica's Lease identity starts with POD_NAME.
		r.cmd.Env = append(r.cmd.Env, "POD_NAME="+r.name)
	}
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		logFile.Close()
		proxy.Close()
		return nil, fmt.Errorf("bench: start %s: %w", r.name, err)
	}
	go func() {
		err := r.cmd.Wait()
		logFile.Close()
		r.waitErr = err
		close(r.done)
		h.exits <- replicaExit{r: r, err: err}
	}()
	return r, nil
}

// stopSluice ends every replica still running and closes their proxies.
func (h *harness) stopSluice() {
	for _, r := range h.replicas {
		if r.alive() {
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, r := range h.replicas {
		select {
		case <-r.done:
		case <-time.After(15 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.done
		}
		r.proxy.Close()
	}
}

// alive says whether the replica's process still runs.
func (r *replica) alive() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// kill SIGKILLs the replica and waits for it to end, after reading what
// it has used and counted so far.
func (h *harness) kill(ctx context.Context, r *replica) error {
	r.usage()
	r.counters(ctx)
	r.killed = true
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("bench: kill %s: %w", r.name, err)
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("bench: wait for %s to die: %w", r.name, ctx.Err())
	}
}

// unexpected turns a replica's exit into an error, unless the harness
// killed it.
func (h *harness) unexpected(ev replicaExit) error {
	if ev.r.killed {
		return nil
	}
	return fmt.Errorf("bench: %s exited: %v\n%s", ev.r.name, ev.err, h.tail())
}

// live are the replicas still running.
func (h *harness) live() []*replica {
	var out []*replica
	for _, r := range h.replicas {
		if r.alive() {
			out = append(out, r)
		}
	}
	return out
}

// usage reads the replica's CPU time and memory; a process that has
// ended keeps its last reading.
func (r *replica) usage() (cpu time.Duration, rss, peak uint64) {
	if !r.alive() {
		return r.cpu, r.rss, r.peak
	}
	if c, err := cpuTime(r.cmd.Process.Pid); err == nil {
		r.cpu = c
	}
	if rss, peak, err := memory(r.cmd.Process.Pid); err == nil {
		r.rss, r.peak = rss, peak
	}
	return r.cpu, r.rss, r.peak
}

// metric reads one metric (the sum of its series) from the replica's
// /metrics; ok is false when it did not answer or has no such metric.
func (r *replica) metric(ctx context.Context, name string) (v float64, ok bool) {
	v, matched, answered := sumMetric(ctx, "http://"+r.admin+"/metrics", func(line string) bool {
		return strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{")
	})
	return v, matched && answered
}

// counters reads the replica's push retries, committed transitions,
// shards held and leadership; a replica that does not answer keeps its
// last values.
func (r *replica) counters(ctx context.Context) {
	if !r.alive() {
		return
	}
	if v, ok := r.metric(ctx, "sluice_git_push_retries_total"); ok {
		r.pushRetries = v
	}
	if v, ok := r.metric(ctx, "sluice_git_commits_total"); ok {
		r.transitions = v
	}
	if v, ok := r.metric(ctx, "sluice_shards_held"); ok {
		r.shardsHeld = v
	}
	if v, ok := r.metric(ctx, "sluice_leader"); ok {
		r.leader = v == 1
	}
}

// active reports whether the replica reconciles releases now: it holds
// shards or, without shards, leads.
func (r *replica) active(ctx context.Context) bool {
	r.counters(ctx)
	if r.shardsHeld > 0 {
		return true
	}
	return r.leader
}

// triggerSync asks every running replica to sync now.
func (h *harness) triggerSync(ctx context.Context) error {
	for _, r := range h.live() {
		if err := r.triggerSync(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (r *replica) triggerSync(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.admin+"/sync", nil)
	if err != nil {
		return fmt.Errorf("bench: POST %s/sync: %w", r.name, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("bench: POST %s/sync: %w", r.name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("bench: POST %s/sync: %s", r.name, resp.Status)
	}
	return nil
}

// usageSummary is every replica's CPU time and memory so far, for logs and
// errors.
func (h *harness) usageSummary() string {
	parts := make([]string, 0, len(h.replicas))
	for _, r := range h.replicas {
		cpu, rss, peak := r.usage()
		parts = append(parts, fmt.Sprintf("%s: %s CPU, %d MiB (peak %d MiB)", r.name, cpu.Round(100*time.Millisecond), rss>>20, peak>>20))
	}
	return strings.Join(parts, "; ")
}
