package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/leader"
)

// testShards is the number of shards of the sharded tests.
const testShards = 4

// releaseInShard returns a release name in namespace ns whose release is
// in shard i of n, unlike any in avoid.
func releaseInShard(t testing.TB, ns string, i, n int, avoid ...string) string {
	t.Helper()
	for k := range 1000 {
		name := fmt.Sprintf("rel-%d", k)
		if leader.ShardOf(ns+"/"+name, n) == i && !slices.Contains(avoid, name) {
			return name
		}
	}
	t.Fatalf("no release of shard %d of %d", i, n)
	return ""
}

// configMapSet is release ns/release made of one ConfigMap per name.
func configMapSet(ns, release string, names ...string) Set {
	var objs []*unstructured.Unstructured
	for _, n := range names {
		objs = append(objs, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": n, "namespace": ns},
			"data":     map[string]any{"release": release},
		}})
	}
	return Set{Owner: owner(ns, release), Objects: objs}
}

// newShardedApplier returns an Applier of testShards shards, watching,
// whose requests count.
func newShardedApplier(t testing.TB, ctx context.Context) (*Applier, *RequestCounter) {
	t.Helper()
	cfg, counter := CountingConfig(testEnv.Env(t).RESTConfig())
	a, err := New(cfg, Options{Log: testLogger(t), Shards: testShards})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.WatchLive(ctx); err != nil {
		t.Fatal(err)
	}
	return a, counter
}

// awaitShard waits until a's watches of shard i have synced.
func awaitShard(t testing.TB, ctx context.Context, a *Applier, i int) *shardWatch {
	t.Helper()
	a.cache.mu.Lock()
	w := a.cache.watches[i]
	a.cache.mu.Unlock()
	if w == nil {
		t.Fatalf("shard %d is not watched", i)
	}
	select {
	case <-w.ready:
	case <-ctx.Done():
		t.Fatalf("shard %d's watches never synced: %v", i, ctx.Err())
	}
	return w
}

// cachedReleases lists the releases (namespace/name) whose objects a's
// watches hold, by shard watched, and fails on an object held in the
// watches of a shard other than its label's.
func cachedReleases(t testing.TB, a *Applier) map[int][]string {
	t.Helper()
	out := map[int][]string{}
	for _, w := range a.cache.synced() {
		out[w.shard] = nil
		for gk, inf := range w.kinds {
			for _, obj := range inf.GetStore().List() {
				u := obj.(*unstructured.Unstructured)
				if got, want := u.GetLabels()[LabelShard], ShardLabel(w.shard, testShards); got != want {
					t.Errorf("the watches of shard %d hold %s %s/%s labelled %s=%q", w.shard, gk.Kind, u.GetNamespace(), u.GetName(), LabelShard, got)
				}
				if id := releaseKey(u.GetLabels()); !slices.Contains(out[w.shard], id) {
					out[w.shard] = append(out[w.shard], id)
				}
			}
		}
	}
	return out
}

// TestShardWatches runs the apply path of a sharded Applier: it watches
// only the objects of the shards it holds (each labelled with its shard),
// reads a release of a shard held from them and prunes it, starts
// watching a shard gained later, and forgets a shard lost.
func TestShardWatches(t *testing.T) {
	ns := newNamespace(t)
	ctx := testContext(t)
	const shardA, shardB = 1, 2
	relA := releaseInShard(t, ns, shardA, testShards)
	relB := releaseInShard(t, ns, shardB, testShards)
	idA, idB := ns+"/"+relA, ns+"/"+relB

	a, counter := newShardedApplier(t, ctx)
	a.ShardGained(shardA)
	// Another replica holds shard B and applies its release.
	other, err := New(testEnv.Env(t).RESTConfig(), Options{Shards: testShards})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Apply(ctx, configMapSet(ns, relB, relB+"-x"), ApplyOptions{}); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name                     string
		gain, lose               int // shard+1, 0 for none
		set                      Set
		created, updated, pruned []string
		reads                    bool   // the apply reads the cluster
		err                      string // in the error, when one is expected
	}{
		// Not in the watches, which hold only shard A's objects: the dry
		// run says the objects are new, so nothing is read.
		{name: "create A", set: configMapSet(ns, relA, relA+"-x", relA+"-y"), created: []string{"ConfigMap NS/" + relA + "-x", "ConfigMap NS/" + relA + "-y"}},
		{name: "A unchanged", set: configMapSet(ns, relA, relA+"-x", relA+"-y")},
		// An object of a release of a shard not held is not in the
		// watches: the dry run finds it, then it is read, and refused.
		{name: "A takes B's", set: configMapSet(ns, relA, relA+"-x", relA+"-y", relB+"-x"), reads: true,
			err: "ConfigMap " + ns + "/" + relB + "-x already belongs to release " + idB},
		{name: "prune A", set: configMapSet(ns, relA, relA+"-x"), pruned: []string{"ConfigMap NS/" + relA + "-y"}},
		{name: "gain B", gain: shardB + 1, set: configMapSet(ns, relB, relB+"-x")},
		{name: "prune B", set: configMapSet(ns, relB), pruned: []string{"ConfigMap NS/" + relB + "-x"}},
		{name: "lose A", lose: shardA + 1, set: configMapSet(ns, relA, relA+"-x"), reads: true},
	}
	// Discovery's reads (the prune kinds' group versions) come before the count.
	if _, err := a.Apply(ctx, configMapSet(ns, relA), ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, st := range steps {
		if st.gain > 0 {
			// The new watches' own requests come before the count.
			a.ShardGained(st.gain - 1)
			awaitShard(t, ctx, a, st.gain-1)
		}
		if st.lose > 0 {
			a.ShardLost(st.lose - 1)
		}
		counter.Reset()
		res, err := a.Apply(ctx, st.set, ApplyOptions{})
		switch {
		case st.err != "" && (err == nil || !strings.Contains(err.Error(), st.err)):
			t.Fatalf("%s: error = %v, want one containing %q", st.name, err, st.err)
		case st.err == "" && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		}
		checkRefs(t, st.name+": created", res.Created, ns, st.created)
		checkRefs(t, st.name+": updated", res.Updated, ns, st.updated)
		checkRefs(t, st.name+": pruned", res.Pruned, ns, st.pruned)
		if r := counter.Count("GET"); (r > 0) != st.reads {
			t.Errorf("%s: %d reads (%v), want reads: %v", st.name, r, counter.Snapshot(), st.reads)
		}
		held := cachedReleases(t, a)
		switch st.name {
		case "A unchanged":
			if _, ok := held[shardB]; ok || slices.Contains(held[shardA], idB) {
				t.Errorf("%s: the watches hold %v, want nothing of shard %d", st.name, held, shardB)
			}
			if !slices.Contains(held[shardA], idA) {
				t.Errorf("%s: the watches hold %v, want %s", st.name, held, idA)
			}
		case "gain B":
			if !slices.Contains(held[shardB], idB) {
				t.Errorf("%s: the watches hold %v, want %s in shard %d", st.name, held, idB, shardB)
			}
		case "lose A":
			if _, ok := held[shardA]; ok {
				t.Errorf("%s: the watches hold %v, want nothing of shard %d", st.name, held, shardA)
			}
		}
	}

	kube := kubernetes.NewForConfigOrDie(testEnv.Env(t).RESTConfig())
	cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, relA+"-x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cm.Labels[LabelShard], ShardLabel(shardA, testShards); got != want {
		t.Errorf("ConfigMap %s: %s=%q, want %q", cm.Name, LabelShard, got, want)
	}
	for _, name := range []string{relA + "-y", relB + "-x"} {
		if _, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("pruned ConfigMap %s: err = %v, want NotFound", name, err)
		}
	}
}

// TestShardStrays applies a release without the shard label of the
// current number of shards (before sharding, or under another number),
// then with a sharded Applier that holds its shard: the gain finds the
// strays, the next apply lists them, relabels what the release still
// renders and prunes the rest, and the apply after that reads the watches.
func TestShardStrays(t *testing.T) {
	cases := []struct {
		name   string
		shards int // of the Applier that applied first
	}{
		{name: "unsharded", shards: 1},
		{name: "other count", shards: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t)
			ctx := testContext(t)
			const shard = 3
			rel := releaseInShard(t, ns, shard, testShards)
			kube := kubernetes.NewForConfigOrDie(testEnv.Env(t).RESTConfig())

			before, err := New(testEnv.Env(t).RESTConfig(), Options{Shards: tc.shards})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := before.Apply(ctx, configMapSet(ns, rel, rel+"-keep", rel+"-drop"), ApplyOptions{}); err != nil {
				t.Fatal(err)
			}
			cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, rel+"-keep", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			wantBefore := ""
			if tc.shards > 1 {
				wantBefore = ShardLabel(leader.ShardOf(ns+"/"+rel, tc.shards), tc.shards)
			}
			if got := cm.Labels[LabelShard]; got != wantBefore {
				t.Fatalf("applied with %d shards: %s=%q, want %q", tc.shards, LabelShard, got, wantBefore)
			}

			a, counter := newShardedApplier(t, ctx)
			a.ShardGained(shard)
			w := awaitShard(t, ctx, a, shard)
			a.cache.mu.Lock()
			stray := w.strays[ns+"/"+rel]
			a.cache.mu.Unlock()
			if !stray {
				t.Fatalf("release %s/%s not found to have strays", ns, rel)
			}

			set := configMapSet(ns, rel, rel+"-keep")
			res, err := a.Apply(ctx, set, ApplyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkRefs(t, "first apply: created", res.Created, ns, nil)
			checkRefs(t, "first apply: updated", res.Updated, ns, []string{"ConfigMap NS/" + rel + "-keep"})
			checkRefs(t, "first apply: pruned", res.Pruned, ns, []string{"ConfigMap NS/" + rel + "-drop"})
			cm, err = kube.CoreV1().ConfigMaps(ns).Get(ctx, rel+"-keep", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := cm.Labels[LabelShard], ShardLabel(shard, testShards); got != want {
				t.Errorf("after the apply: %s=%q, want %q", LabelShard, got, want)
			}
			if _, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, rel+"-drop", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("stray ConfigMap %s-drop: err = %v, want NotFound", rel, err)
			}

			counter.Reset()
			res, err = a.Apply(ctx, set, ApplyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkRefs(t, "second apply: unchanged", res.Unchanged, ns, []string{"ConfigMap NS/" + rel + "-keep"})
			if n := counter.Total(); n != 0 {
				t.Errorf("second apply: %d requests (%v), want none", n, counter.Snapshot())
			}
		})
	}
}

// TestShardWatchesLate: an Apply of a shard whose watches have not synced
// waits for them a while, then lists; once one has given up, the next
// lists at once.
func TestShardWatchesLate(t *testing.T) {
	ns := newNamespace(t)
	ctx := testContext(t)
	const shard = 2
	rel := releaseInShard(t, ns, shard, testShards)
	// Watches that never sync, as when the RBAC forbids them.
	a, counter, stuck := pendingShardApplier(t, ctx, shard, 50*time.Millisecond)

	set := configMapSet(ns, rel, rel+"-x")
	for i, want := range []string{"created", "unchanged"} {
		counter.Reset()
		res, err := a.Apply(ctx, set, ApplyOptions{})
		if err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		if got := len(res.Created) + len(res.Unchanged); got != 1 || (want == "created") != (len(res.Created) == 1) {
			t.Errorf("apply %d: %+v, want the ConfigMap %s", i, res, want)
		}
		if counter.Count("GET") == 0 {
			t.Errorf("apply %d: no reads, want a LIST per kind", i)
		}
		if !stuck.late.Load() {
			t.Errorf("apply %d: the watches are not marked late", i)
		}
	}
}

// TestShardWatchesUrgent: an urgent apply (a release in progress) does not
// wait for the watches of its shard to sync: it lists at once, and leaves
// the others to wait for them.
func TestShardWatchesUrgent(t *testing.T) {
	ns := newNamespace(t)
	const shard = 2
	rel := releaseInShard(t, ns, shard, testShards)
	// Watches that have not synced, and a wait that would outlast the test.
	ctx, cancel := context.WithTimeout(testContext(t), 30*time.Second)
	defer cancel()
	a, counter, pending := pendingShardApplier(t, ctx, shard, time.Hour)

	res, err := a.Apply(ctx, configMapSet(ns, rel, rel+"-x"), ApplyOptions{Urgent: true})
	if err != nil {
		t.Fatalf("urgent apply: %v", err)
	}
	if len(res.Created) != 1 {
		t.Errorf("urgent apply: %+v, want the ConfigMap created", res)
	}
	if counter.Count("GET") == 0 {
		t.Error("urgent apply: no reads, want a LIST per kind")
	}
	if pending.late.Load() {
		t.Error("an urgent apply marked the watches late; the others would stop waiting for them")
	}
}

// pendingShardApplier returns a sharded Applier, whose requests count,
// holding shard with watches that have not synced (nor will), and that
// waits for them up to wait.
func pendingShardApplier(t *testing.T, ctx context.Context, shard int, wait time.Duration) (*Applier, *RequestCounter, *shardWatch) {
	t.Helper()
	cfg, counter := CountingConfig(testEnv.Env(t).RESTConfig())
	a, err := New(cfg, Options{Log: testLogger(t), Shards: testShards})
	if err != nil {
		t.Fatal(err)
	}
	w := &shardWatch{shard: shard, ready: make(chan struct{}), done: ctx.Done(), cancel: func() {}, strays: map[string]bool{}}
	a.cache.watches[shard] = w
	a.cache.syncWait = wait
	return a, counter, w
}
