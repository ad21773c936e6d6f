package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

// Shared is what a run of several replicas (or shards) adds to Result.
// The phases of Result then count every replica: their CPU and API
// requests summed, its RSS figures those of the replica that holds most.
type Shared struct {
	Replicas       int    `json:"replicas"`
	Shards         int    `json:"shards"`
	LeaseNamespace string `json:"lease_namespace"`
	// PushRetries are the pushes lost to another replica's and retried,
	// summed over the replicas' sluice_git_push_retries_total (a killed
	// replica's as read just before its end).
	PushRetries float64         `json:"push_retries"`
	PerReplica  []ReplicaResult `json:"per_replica"`
	Takeover    Takeover        `json:"takeover"`
	History     History         `json:"history"`
}

// ReplicaResult is one replica's share of the run.
type ReplicaResult struct {
	Name   string `json:"name"`
	Killed bool   `json:"killed,omitempty"`
	// ShardsAfterCold is its sluice_shards_held after the cold start,
	// -1 when sluice exports no such gauge; LeaderAfterCold its
	// sluice_leader.
	ShardsAfterCold float64 `json:"shards_after_cold"`
	LeaderAfterCold bool    `json:"leader_after_cold"`
	// ColdCPUMillis and ColdAPI are from its start to the end of the cold
	// start; CPUMillis and API the whole run (until it was killed).
	ColdCPUMillis   float64   `json:"cold_cpu_ms"`
	ColdAPI         apiCounts `json:"cold_api"`
	RSSAfterColdMiB float64   `json:"rss_after_cold_mib"`
	CPUMillis       float64   `json:"cpu_ms"`
	API             apiCounts `json:"api"`
	PeakRSSMiB      float64   `json:"peak_rss_mib"`
	PushRetries     float64   `json:"push_retries"`
	// Transitions are the transitions it committed
	// (sluice_git_commits_total).
	Transitions float64 `json:"transitions_committed"`
}

// Takeover is one replica SIGKILLed and its releases taken over: right
// after the kill a commit gives releases of every shard a candidate, and
// the clock runs from the kill until their candidates are applied.
type Takeover struct {
	Killed string `json:"killed"`
	// KilledShards are the Leases the killed replica held.
	KilledShards int `json:"killed_shards"`
	// Changed is how many releases got a candidate; KilledReleases how
	// many of them were the killed replica's (-1: unknown, the harness
	// was not told the placement).
	Changed        int `json:"releases_changed"`
	KilledReleases int `json:"killed_releases_changed"`
	// FirstMillis is from the kill to the first candidate applied;
	// KilledMillis to the last of the killed replica's releases (of all
	// when unknown); AllMillis to the last of all.
	FirstMillis  float64 `json:"first_applied_ms"`
	KilledMillis float64 `json:"killed_releases_applied_ms"`
	AllMillis    float64 `json:"all_applied_ms"`
	// LeasesTakenMillis is from the kill until every Lease the killed
	// replica held names another holder.
	LeasesTakenMillis float64 `json:"leases_taken_ms"`
	// Applied is how many of the changed releases were applied in time.
	Applied int    `json:"applied"`
	Error   string `json:"error,omitempty"`
}

// History is the check of the remote's history after the run.
type History struct {
	Commits     int `json:"commits"`
	Transitions int `json:"transitions"`
	// Releases is how many releases have a transition recorded.
	Releases int `json:"releases"`
	// CommittedTwice counts transitions that repeat the release's previous
	// one: the same action, step and revision, committed twice in a row.
	CommittedTwice int      `json:"transitions_committed_twice"`
	Examples       []string `json:"committed_twice,omitempty"`
}

// replicaSnap is what a replica had used at one moment.
type replicaSnap struct {
	cpu    time.Duration
	rss    uint64
	api    apiCounts
	shards float64
	leader bool
}

// perReplica reads every replica's usage and counters.
func (h *harness) perReplica(ctx context.Context) []replicaSnap {
	if !h.cfg.multi() {
		return nil
	}
	out := make([]replicaSnap, len(h.replicas))
	for i, r := range h.replicas {
		r.counters(ctx)
		cpu, rss, _ := r.usage()
		out[i] = replicaSnap{cpu: cpu, rss: rss, api: r.proxy.snapshot(), shards: r.shardsHeld, leader: r.leader}
	}
	return out
}

// measureShared kills a replica and times the takeover, then checks the
// history and gathers each replica's figures into res.Shared.
func (h *harness) measureShared(ctx context.Context, res *Result, cold []replicaSnap) error {
	sh := &Shared{Replicas: h.cfg.SluiceReplicas, Shards: h.cfg.Shards, LeaseNamespace: h.cfg.LeaseNamespace}
	res.Shared = sh
	if len(h.replicas) > 1 {
		tk, err := h.takeover(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			tk.Error = err.Error()
			h.log.Error("takeover", "err", err)
		}
		sh.Takeover = tk
	} else {
		sh.Takeover.Error = "one replica: no takeover"
	}
	if err := h.quiesce(ctx); err != nil {
		return err
	}
	hist, err := CheckHistory(ctx, h.bare)
	if err != nil {
		return err
	}
	sh.History = hist
	h.log.Info("history checked", "commits", hist.Commits, "transitions", hist.Transitions, "releases", hist.Releases, "committed_twice", hist.CommittedTwice)
	for i, r := range h.replicas {
		r.counters(ctx)
		cpu, _, peak := r.usage()
		c := cold[i]
		sh.PushRetries += r.pushRetries
		sh.PerReplica = append(sh.PerReplica, ReplicaResult{
			Name: r.name, Killed: r.killed,
			ShardsAfterCold: c.shards, LeaderAfterCold: c.leader,
			ColdCPUMillis: c.cpu.Seconds() * 1000, ColdAPI: c.api, RSSAfterColdMiB: float64(c.rss) / (1 << 20),
			CPUMillis: cpu.Seconds() * 1000, API: r.proxy.snapshot(), PeakRSSMiB: float64(peak) / (1 << 20),
			PushRetries: r.pushRetries, Transitions: r.transitions,
		})
	}
	return nil
}

var gvrLease = schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}

// takeover SIGKILLs the replica holding the most shards (the leader,
// without shards), gives releases of every shard a candidate, and times
// until the others have applied them.
func (h *harness) takeover(ctx context.Context) (Takeover, error) {
	if err := h.quiesce(ctx); err != nil {
		return Takeover{}, err
	}
	var victim *replica
	for _, r := range h.live() {
		r.counters(ctx)
		if victim == nil || r.shardsHeld > victim.shardsHeld || (r.shardsHeld == victim.shardsHeld && r.leader && !victim.leader) {
			victim = r
		}
	}
	tk := Takeover{Killed: victim.name, KilledReleases: -1}
	shards, err := h.heldShards(ctx, victim)
	if err != nil {
		return tk, err
	}
	tk.KilledShards = len(shards)

	sample := h.takeoverSample()
	tk.Changed = len(sample)
	mine := map[string]bool{}
	switch {
	case h.cfg.Shards == 1:
		// One shard: the killed leader held every release.
		for _, r := range sample {
			mine[r.ID()] = true
		}
	case h.cfg.ShardOf != nil:
		for _, r := range sample {
			if shards[h.cfg.ShardOf(r.ID(), h.cfg.Shards)] {
				mine[r.ID()] = true
			}
		}
	}
	if h.cfg.Shards == 1 || h.cfg.ShardOf != nil {
		tk.KilledReleases = len(mine)
	}
	want := map[string]Release{}
	files := map[string][]byte{}
	for _, r := range sample {
		want[r.Namespace+"/"+r.Name+"-v2"] = r
		files[r.File] = []byte(ReleaseSpec(r, "v2"))
	}

	wctx, cancel := context.WithTimeout(ctx, h.cfg.TakeoverTimeout)
	defer cancel()
	events, err := h.watch(wctx, gvrDeployment, "", specs.LabelRelease)
	if err != nil {
		return tk, err
	}
	leases, err := h.watch(wctx, gvrLease, h.cfg.LeaseNamespace, "")
	if err != nil {
		return tk, err
	}
	// The Leases the victim holds, by name, until another takes them.
	leasesLeft := map[string]bool{}
	for i := range shards {
		leasesLeft[h.leaseName(i)] = true
	}
	h.log.Info("takeover: killing a replica", "replica", victim.name, "shards", tk.KilledShards, "releases_changed", tk.Changed, "its_releases_changed", tk.KilledReleases)
	if err := h.kill(ctx, victim); err != nil {
		return tk, err
	}
	killed := time.Now()
	if _, err := Commit(ctx, h.bare, fmt.Sprintf("%d releases v2", len(sample)), files); err != nil {
		return tk, err
	}
	for _, r := range sample {
		h.changed[r.ID()] = true
	}
	if err := h.triggerSync(ctx); err != nil {
		return tk, err
	}
	applied := map[string]time.Duration{}
	mineLeft := len(mine)
	for len(applied) < len(want) || len(leasesLeft) > 0 {
		select {
		case ev, ok := <-leases:
			if !ok {
				return tk, fmt.Errorf("bench: takeover: the Lease watch ended: %w", wctx.Err())
			}
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok || !leasesLeft[u.GetName()] {
				continue
			}
			if holder, _, _ := unstructured.NestedString(u.Object, "spec", "holderIdentity"); holder != "" && !strings.HasPrefix(holder, victim.name+"_") {
				delete(leasesLeft, u.GetName())
				if len(leasesLeft) == 0 {
					tk.LeasesTakenMillis = time.Since(killed).Seconds() * 1000
					h.log.Info("takeover: the killed replica's Leases taken", "took", time.Since(killed).Round(time.Millisecond))
				}
			}
		case ev, ok := <-events:
			if !ok {
				return tk, fmt.Errorf("bench: takeover: the Deployment watch ended: %w", wctx.Err())
			}
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			key := u.GetNamespace() + "/" + u.GetName()
			r, ok := want[key]
			if _, seen := applied[key]; !ok || seen {
				continue
			}
			took := time.Since(killed)
			applied[key] = took
			tk.Applied = len(applied)
			tk.AllMillis = took.Seconds() * 1000
			if tk.FirstMillis == 0 {
				tk.FirstMillis = tk.AllMillis
			}
			if mine[r.ID()] {
				mineLeft--
				if mineLeft == 0 {
					tk.KilledMillis = tk.AllMillis
					h.log.Info("takeover: the killed replica's releases applied again", "took", took.Round(time.Millisecond))
				}
			}
		case ev := <-h.exits:
			if err := h.unexpected(ev); err != nil {
				return tk, err
			}
		case <-wctx.Done():
			return tk, fmt.Errorf("bench: takeover: %d of %d candidates (%d of the killed replica's %d) applied, %d of its %d Leases taken %s after the kill\n%s",
				len(applied), len(want), len(mine)-mineLeft, len(mine), len(shards)-len(leasesLeft), len(shards), h.cfg.TakeoverTimeout, h.tail())
		}
	}
	if len(mine) == 0 {
		tk.KilledMillis = tk.AllMillis
	}
	h.log.Info("takeover done", "killed_releases_applied", time.Duration(tk.KilledMillis*float64(time.Millisecond)).Round(time.Millisecond),
		"all_applied", time.Duration(tk.AllMillis*float64(time.Millisecond)).Round(time.Millisecond))
	return tk, nil
}

// leaseName is the name of shard i's Lease (sluice's --leader-election-id,
// "sluice" by default, and the shard), or of the leader election's
// without shards.
func (h *harness) leaseName(i int) string {
	if h.cfg.Shards == 1 {
		return "sluice"
	}
	return "sluice-" + strconv.Itoa(i)
}

// heldShards are the shards whose Lease r holds (shard 0 for the leader
// election's Lease without shards).
func (h *harness) heldShards(ctx context.Context, r *replica) (map[int]bool, error) {
	list, err := h.dyn.Resource(gvrLease).Namespace(h.cfg.LeaseNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("bench: list the Leases: %w", err)
	}
	out := map[int]bool{}
	for _, l := range list.Items {
		holder, _, _ := unstructured.NestedString(l.Object, "spec", "holderIdentity")
		if !strings.HasPrefix(holder, r.name+"_") {
			continue
		}
		if h.cfg.Shards == 1 {
			out[0] = true
			continue
		}
		name := l.GetName()
		if i := strings.LastIndexByte(name, '-'); i >= 0 {
			if n, err := strconv.Atoi(name[i+1:]); err == nil {
				out[n] = true
			}
		}
	}
	return out, nil
}

// takeoverSample are the releases the takeover changes, none changed
// before: with the placement known, up to three of every shard; without,
// ten per shard (at least 24) spread over the list, which misses a shard
// of twelve once in three thousand runs.
func (h *harness) takeoverSample() []Release {
	var free []Release
	for _, r := range h.cfg.List() {
		if !h.changed[r.ID()] {
			free = append(free, r)
		}
	}
	if h.cfg.ShardOf != nil && h.cfg.Shards > 1 {
		per := map[int]int{}
		var out []Release
		for _, r := range free {
			if s := h.cfg.ShardOf(r.ID(), h.cfg.Shards); per[s] < 3 {
				per[s]++
				out = append(out, r)
			}
		}
		return out
	}
	k := min(len(free), max(24, 10*h.cfg.Shards))
	out := make([]Release, 0, k)
	for i := range k {
		out = append(out, free[i*len(free)/k])
	}
	return out
}

// CheckHistory walks the history of main in the bare repository dir, oldest
// first, and counts the transitions committed twice in a row for one
// release: the same action, step and revision as the release's previous
// transition (a commit recording several releases holds one trailer group
// each).
func CheckHistory(ctx context.Context, dir string) (History, error) {
	out, err := gitCmd(ctx, dir, nil, "log", "--reverse", "--format=%H%x00%B%x1e", "refs/heads/main")
	if err != nil {
		return History{}, fmt.Errorf("check history: git log: %w: %s", err, out)
	}
	return checkLog(out)
}

// checkLog is CheckHistory on `git log --format=%H%x00%B%x1e`, oldest
// first.
func checkLog(log string) (History, error) {
	type last struct{ key, commit string }
	var h History
	prev := map[string]last{}
	for entry := range strings.SplitSeq(log, "\x1e") {
		entry = strings.TrimLeft(entry, "\n")
		if entry == "" {
			continue
		}
		hash, body, ok := strings.Cut(entry, "\x00")
		if !ok {
			return History{}, errors.New("check history: a git log entry without its hash")
		}
		h.Commits++
		for _, tr := range gitsync.TrailerGroups(gitsync.ParseTrailers(body), record.TrailerRelease) {
			rel := gitsync.TrailerValue(tr, record.TrailerRelease)
			if rel == "" {
				continue
			}
			h.Transitions++
			key := strings.Join([]string{gitsync.TrailerValue(tr, record.TrailerAction), gitsync.TrailerValue(tr, record.TrailerStep), gitsync.TrailerValue(tr, record.TrailerRevision)}, " ")
			p, seen := prev[rel]
			if seen && p.key == key {
				h.CommittedTwice++
				if len(h.Examples) < 10 {
					h.Examples = append(h.Examples, fmt.Sprintf("%s: %s in %.12s and again in %.12s", rel, key, p.commit, hash))
				}
			}
			prev[rel] = last{key: key, commit: hash}
		}
	}
	h.Releases = len(prev)
	slices.Sort(h.Examples)
	return h, nil
}
