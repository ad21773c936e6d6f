package leader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

const testShards = 6

// cutLeases is a Leases that fails every call once cut, as a replica cut
// off from the API server (or frozen) sees it.
type cutLeases struct {
	Leases
	cut atomic.Bool
}

var errCut = errors.New("cut off from the API server")

func (c *cutLeases) Get(ctx context.Context, ns, name string) (*coordinationv1.Lease, error) {
	if c.cut.Load() {
		return nil, errCut
	}
	return c.Leases.Get(ctx, ns, name)
}

func (c *cutLeases) Create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if c.cut.Load() {
		return nil, errCut
	}
	return c.Leases.Create(ctx, l)
}

func (c *cutLeases) Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if c.cut.Load() {
		return nil, errCut
	}
	return c.Leases.Update(ctx, l)
}

// shardReplica is one replica's Shards running in the background, with
// when each of its shards' contexts ended.
type shardReplica struct {
	name   string
	s      *Shards
	client *cutLeases
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	gained map[int]time.Time // last gain of each shard
	ended  map[int]time.Time // when the context of its last holding ended
}

func startShardReplica(t *testing.T, ns, name string) *shardReplica {
	t.Helper()
	env := testEnv.Env(t)
	r := &shardReplica{name: name, done: make(chan struct{}), gained: map[int]time.Time{}, ended: map[int]time.Time{},
		client: &cutLeases{Leases: NewLeases(dynamic.NewForConfigOrDie(env.RESTConfig()))}}
	s, err := NewShards(ShardsConfig{
		Client: r.client, Namespace: ns, Name: "sluice", Shards: testShards, Identity: NewIdentity(name, ""),
		LeaseDuration: testLease, RenewDeadline: testRenew, RetryPeriod: testRetry,
		OnGain: func(i int) {
			ctx, done, ok := r.s.hold(i, true)
			if !ok {
				return
			}
			r.mu.Lock()
			r.gained[i] = time.Now()
			delete(r.ended, i)
			r.mu.Unlock()
			context.AfterFunc(ctx, func() {
				r.mu.Lock()
				r.ended[i] = time.Now()
				r.mu.Unlock()
				done()
			})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.s = s
	ctx, cancel := context.WithCancel(t.Context())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		_ = s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// holders reads who holds each shard's Lease, by replica name ("" for none).
func holders(t *testing.T, ns string, rs ...*shardReplica) []string {
	t.Helper()
	leases := kubernetes.NewForConfigOrDie(testEnv.Env(t).RESTConfig()).CoordinationV1().Leases(ns)
	out := make([]string, testShards)
	for i := range testShards {
		l, err := leases.Get(t.Context(), fmt.Sprintf("sluice-%d", i), metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			continue
		}
		for _, r := range rs {
			if *l.Spec.HolderIdentity == r.s.cfg.Identity {
				out[i] = r.name
			}
		}
		if out[i] == "" && *l.Spec.HolderIdentity != "" {
			out[i] = "?"
		}
	}
	return out
}

// shares waits until the replicas hold every shard in the Leases and in
// their own Held, each between lo and hi of them.
func waitShares(t *testing.T, ns string, lo, hi int, rs ...*shardReplica) []string {
	t.Helper()
	var last []string
	waitFor(t, fmt.Sprintf("%d to %d shards each", lo, hi), func() bool {
		last = holders(t, ns, rs...)
		counts := map[string]int{}
		for _, h := range last {
			if h == "" || h == "?" {
				return false
			}
			counts[h]++
		}
		for _, r := range rs {
			held := r.s.Held()
			if counts[r.name] < lo || counts[r.name] > hi || len(held) != counts[r.name] {
				return false
			}
			for _, i := range held {
				if last[i] != r.name {
					return false
				}
			}
		}
		return true
	})
	return last
}

// TestShardsShare: one replica takes every shard; three share them two
// each; a fourth gets one from a replica above the new share, the others
// keep theirs; a replica that stops renewing loses its shards, its
// contexts ending before another replica takes them over.
func TestShardsShare(t *testing.T) {
	ns := newNamespace(t)
	a := startShardReplica(t, ns, "a")
	waitShares(t, ns, testShards, testShards, a)

	b := startShardReplica(t, ns, "b")
	c := startShardReplica(t, ns, "c")
	three := waitShares(t, ns, 2, 2, a, b, c)
	t.Logf("three replicas: %v", three)

	d := startShardReplica(t, ns, "d")
	four := waitShares(t, ns, 1, 2, a, b, c, d)
	t.Logf("four replicas: %v", four)
	moved := 0
	for i := range testShards {
		if three[i] != four[i] {
			moved++
		}
	}
	if moved != 1 {
		t.Errorf("%d shards moved when d joined (%v -> %v), want 1", moved, three, four)
	}

	// d stops renewing: its shards expire and others take them, only
	// after d stopped acting on them.
	d.client.cut.Store(true)
	cutAt := time.Now()
	dHeld := []int{}
	for i, h := range four {
		if h == "d" {
			dHeld = append(dHeld, i)
		}
	}
	after := waitShares(t, ns, 2, 2, a, b, c)
	t.Logf("after d stopped renewing: %v", after)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, i := range dHeld {
		ended, ok := d.ended[i]
		if !ok {
			t.Errorf("d still acts on shard %d after it stopped renewing", i)
			continue
		}
		if ended.Sub(cutAt) > testRenew+testRetry {
			t.Errorf("d's shard %d ended %s after it stopped renewing, want within the renew deadline %s", i, ended.Sub(cutAt), testRenew)
		}
		for _, r := range []*shardReplica{a, b, c} {
			r.mu.Lock()
			gained, ok := r.gained[i]
			r.mu.Unlock()
			if ok && gained.After(cutAt) && !gained.After(ended) {
				t.Errorf("%s took shard %d at %s, before d stopped acting on it at %s", r.name, i, gained, ended)
			}
		}
	}
	if got := d.s.Held(); len(got) != 0 {
		t.Errorf("d still holds %v", got)
	}
}

// TestShardsReleaseOnStop: a replica that stops releases its shards and
// another takes them at once, without waiting for them to expire; a
// shard's Lease is written free only after its holder is done, and is
// renewed meanwhile.
func TestShardsReleaseOnStop(t *testing.T) {
	ns := newNamespace(t)
	a := startShardReplica(t, ns, "a")
	b := startShardReplica(t, ns, "b")
	waitShares(t, ns, 3, 3, a, b)

	// A long reconcile still in a's shard 'busy' when a stops.
	busy := a.s.Held()[0]
	_, done, ok := a.s.Hold(busy)
	if !ok {
		t.Fatalf("a does not hold shard %d", busy)
	}
	a.cancel()
	// a writes free every other shard at once, and keeps busy's Lease
	// while its holder works.
	waitFor(t, "a to release its idle shards", func() bool {
		h := holders(t, ns, a, b)
		for i := range testShards {
			if (i == busy) != (h[i] == "a") {
				return false
			}
		}
		return true
	})
	released := time.Now()
	done()
	<-a.done
	waitShares(t, ns, testShards, testShards, b)
	if took := time.Since(released); took > testLease {
		t.Errorf("b took the last shard %s after a released it, want at once (lease duration %s)", took, testLease)
	}
}
