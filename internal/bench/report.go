package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
)

// Phase is what one measured phase cost Sluice.
type Phase struct {
	// WallMillis is the phase's wall time as the harness saw it.
	WallMillis float64 `json:"wall_ms"`
	// SluiceMillis is the pass's time as sluice logged it (no-change
	// passes only).
	SluiceMillis float64 `json:"sluice_ms,omitempty"`
	// CPUMillis is sluice's user+system CPU time.
	CPUMillis float64 `json:"cpu_ms"`
	// API are sluice's requests to the API server.
	API apiCounts `json:"api"`
	// GitFetches counts fetches (ref advertisements), GitPushes pushes.
	GitFetches int64 `json:"git_fetches"`
	GitPushes  int64 `json:"git_pushes"`
	// Commits are the commits the branch gained (Sluice's and the
	// person's).
	Commits     int   `json:"commits"`
	PromQueries int64 `json:"prometheus_queries"`
	// ClusterCPUMillis is the CPU time of each of the test cluster's
	// components meanwhile (kube-apiserver, etcd, kube-controller-manager,
	// ...): what Sluice's requests, and the objects it creates, cost the
	// other side.
	ClusterCPUMillis map[string]float64 `json:"cluster_cpu_ms,omitempty"`
}

// Machine is where the figures come from.
type Machine struct {
	CPUs      int    `json:"cpus"`
	Model     string `json:"cpu_model"`
	MemoryGiB int    `json:"memory_gib"`
	GoVersion string `json:"go"`
}

// LoadAvg is the machine's 1, 5 and 15 minute load averages, from
// /proc/loadavg; "" when unknown.
func LoadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// ReadMachine describes this machine from /proc.
func ReadMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb); err != nil {
					kb = 0 // unknown
				}
			}
		}
		m.MemoryGiB = (kb + (1 << 19)) >> 20
	}
	return m
}

// Result is one harness run.
type Result struct {
	Releases   int     `json:"releases"`
	Namespaces int     `json:"namespaces"`
	Replicas   int     `json:"replicas"`
	Workers    int     `json:"workers,omitempty"`
	Machine    Machine `json:"machine"`
	Date       string  `json:"date"`
	// SluiceEnv is what was added to sluice's environment (GOMEMLIMIT as
	// deploy/ sets it); Load the machine's load averages (1, 5, 15 min)
	// at the start and the end of the run: other work on the same CPUs
	// moves the times.
	SluiceEnv []string `json:"sluice_env,omitempty"`
	// GitInMemory: sluice kept its clone in memory, not on disk as
	// deploy/ does (runs before 2026-11-26 all did).
	GitInMemory bool   `json:"git_in_memory,omitempty"`
	LoadStart   string `json:"load_start,omitempty"`
	LoadEnd     string `json:"load_end,omitempty"`

	// Cold is from sluice's start until every release's first step was
	// applied; its CPU time counts from the process's start.
	Cold Phase `json:"cold_start"`
	// Steady are passes over every release after a commit that changes
	// none of them.
	Steady []Phase `json:"no_change_passes"`
	// Changed are single releases given a candidate, from the sync to
	// the candidate's Deployment applied.
	Changed []Phase `json:"one_release_changed"`

	RSSAfterColdMiB float64 `json:"rss_after_cold_mib"`
	RSSEndMiB       float64 `json:"rss_end_mib"`
	// PeakRSSMiB is the process's high-water mark (VmHWM) over the run.
	PeakRSSMiB float64 `json:"peak_rss_mib"`

	// Shared is set when several replicas or shards shared the releases:
	// the phases above then count them all (CPU and API requests summed,
	// the RSS figures the replica's that holds most).
	Shared *Shared `json:"shared,omitempty"`

	// Medians of the samples, for the table.
	SteadyMedianMillis  float64 `json:"no_change_pass_median_ms"`
	ChangedMedianMillis float64 `json:"one_release_changed_median_ms"`
	ChangedMaxMillis    float64 `json:"one_release_changed_max_ms"`
}

func (r *Result) summarize() {
	var s, c []float64
	for _, p := range r.Steady {
		s = append(s, p.WallMillis)
	}
	for _, p := range r.Changed {
		c = append(c, p.WallMillis)
		r.ChangedMaxMillis = max(r.ChangedMaxMillis, p.WallMillis)
	}
	r.SteadyMedianMillis = median(s)
	r.ChangedMedianMillis = median(c)
}

// steadyMedian is the no-change pass with the median wall time.
func (r *Result) steadyMedian() Phase {
	for _, p := range r.Steady {
		if p.WallMillis == r.SteadyMedianMillis {
			return p
		}
	}
	return Phase{}
}

func ms(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1f s", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// WriteTable prints the results as a table, one row per run.
func WriteTable(w io.Writer, results []*Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "releases\tcold start\tcold CPU\tcold API req (writes)\tcold commits (pushes)\tno-change pass\tpass CPU\tpass API req (writes)\tpass fetches\tpass Prom queries\tone changed (median/max)\tpeak RSS\t")
	for _, r := range results {
		p := r.steadyMedian()
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d (%d)\t%d (%d)\t%s\t%s\t%d (%d)\t%d\t%d\t%s / %s\t%.0f MiB\t\n",
			r.Releases, ms(r.Cold.WallMillis), ms(r.Cold.CPUMillis), r.Cold.API.Total, r.Cold.API.Writes,
			r.Cold.Commits, r.Cold.GitPushes,
			ms(p.WallMillis), ms(p.CPUMillis), p.API.Total, p.API.Writes, p.GitFetches, p.PromQueries,
			ms(r.ChangedMedianMillis), ms(r.ChangedMaxMillis), r.PeakRSSMiB)
	}
	return tw.Flush()
}

// WriteMarkdown writes the results as a Markdown table.
func WriteMarkdown(w io.Writer, results []*Result) {
	fmt.Fprintln(w, "| releases | cold start | cold CPU | cold API requests (writes) | cold commits (pushes) | no-change pass | pass CPU | pass API requests (writes) | pass Git fetches | pass Prometheus queries | one release changed (median / max) | peak RSS |")
	fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range results {
		p := r.steadyMedian()
		fmt.Fprintf(w, "| %d | %s | %s | %d (%d) | %d (%d) | %s | %s | %d (%d) | %d | %d | %s / %s | %.0f MiB |\n",
			r.Releases, ms(r.Cold.WallMillis), ms(r.Cold.CPUMillis), r.Cold.API.Total, r.Cold.API.Writes,
			r.Cold.Commits, r.Cold.GitPushes,
			ms(p.WallMillis), ms(p.CPUMillis), p.API.Total, p.API.Writes, p.GitFetches, p.PromQueries,
			ms(r.ChangedMedianMillis), ms(r.ChangedMaxMillis), r.PeakRSSMiB)
	}
	writeSharedMarkdown(w, results)
}

// sharedSummary is one line on a run of several replicas: its push
// retries, takeover and history check.
func sharedSummary(r *Result) string {
	s := r.Shared
	var b strings.Builder
	fmt.Fprintf(&b, "%d releases, %d replicas, %d shards: %.0f push retries; ", r.Releases, s.Replicas, s.Shards, s.PushRetries)
	t := s.Takeover
	if t.Killed == "" {
		fmt.Fprintf(&b, "no takeover (%s); ", t.Error)
	} else {
		whose := fmt.Sprintf("its %d of the %d changed releases", t.KilledReleases, t.Changed)
		if t.KilledReleases < 0 {
			whose = fmt.Sprintf("all %d changed releases (its among them)", t.Changed)
		}
		fmt.Fprintf(&b, "takeover: %s killed holding %d shard(s), %s applied again %s after the kill (its Leases taken after %s; first release %s, all %s)",
			t.Killed, t.KilledShards, whose, ms(t.KilledMillis), ms(t.LeasesTakenMillis), ms(t.FirstMillis), ms(t.AllMillis))
		if t.Error != "" {
			fmt.Fprintf(&b, ", FAILED: %d of %d applied: %s", t.Applied, t.Changed, firstLine(t.Error))
		}
		b.WriteString("; ")
	}
	h := s.History
	fmt.Fprintf(&b, "history: %d commits, %d transitions of %d releases, %d committed twice", h.Commits, h.Transitions, h.Releases, h.CommittedTwice)
	for _, e := range h.Examples {
		fmt.Fprintf(&b, "\n  committed twice: %s", e)
	}
	return b.String()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// replicaRow is one replica's cells, for both tables.
func replicaRow(p ReplicaResult) []string {
	name := p.Name
	if p.Killed {
		name += " (killed)"
	}
	shards := "-"
	if p.ShardsAfterCold >= 0 {
		shards = fmt.Sprintf("%.0f", p.ShardsAfterCold)
	}
	return []string{name, shards, fmt.Sprint(p.LeaderAfterCold),
		ms(p.ColdCPUMillis), fmt.Sprintf("%d (%d)", p.ColdAPI.Total, p.ColdAPI.Writes), fmt.Sprintf("%.0f MiB", p.RSSAfterColdMiB),
		ms(p.CPUMillis), fmt.Sprintf("%d (%d)", p.API.Total, p.API.Writes), fmt.Sprint(p.API.Leases),
		fmt.Sprintf("%.0f", p.Transitions), fmt.Sprintf("%.0f", p.PushRetries), fmt.Sprintf("%.0f MiB", p.PeakRSSMiB)}
}

var replicaColumns = []string{"replica", "shards after cold", "leader after cold", "cold CPU", "cold API req (writes)", "RSS after cold",
	"run CPU", "run API req (writes)", "Lease requests", "transitions committed", "push retries", "peak RSS"}

// WriteShared prints, for every run of several replicas, a summary line
// and a table of the replicas.
func WriteShared(w io.Writer, results []*Result) error {
	for _, r := range results {
		if r.Shared == nil {
			continue
		}
		fmt.Fprintf(w, "\n%s\n", sharedSummary(r))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(replicaColumns, "\t")+"\t")
		for _, p := range r.Shared.PerReplica {
			fmt.Fprintln(tw, strings.Join(replicaRow(p), "\t")+"\t")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// writeSharedMarkdown is WriteShared as Markdown.
func writeSharedMarkdown(w io.Writer, results []*Result) {
	for _, r := range results {
		if r.Shared == nil {
			continue
		}
		fmt.Fprintf(w, "\n%s\n\n", sharedSummary(r))
		fmt.Fprintf(w, "| %s |\n", strings.Join(replicaColumns, " | "))
		fmt.Fprintf(w, "| ---%s |\n", strings.Repeat(" | ---:", len(replicaColumns)-1))
		for _, p := range r.Shared.PerReplica {
			fmt.Fprintf(w, "| %s |\n", strings.Join(replicaRow(p), " | "))
		}
	}
}
