package leader

import (
	"context"
	"testing"
	"time"
)

const (
	memLease = 2 * time.Second
	memRenew = time.Second
	memRetry = 200 * time.Millisecond
)

func newMemShards(t *testing.T, client Leases, n int, id string, mod func(*ShardsConfig)) *Shards {
	t.Helper()
	cfg := ShardsConfig{Client: client, Namespace: "ns", Name: "s", Shards: n, Identity: id,
		LeaseDuration: memLease, RenewDeadline: memRenew, RetryPeriod: memRetry}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewShards(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestShardsObservedWhenRead: a record first seen is dated to when its
// Lease was read, not to when the tick began: with slow reads, a renewal
// read late must not look older than it is, or this replica would take
// a shard whose holder is still within its renew deadline.
func TestShardsObservedWhenRead(t *testing.T) {
	const n = 4
	const d = 50 * time.Millisecond
	store := newMemLeases()
	ctx := context.Background()
	h := newMemShards(t, store, n, "H", nil)
	hBase, hStop := context.WithCancel(ctx)
	defer hStop()
	h.tick(ctx, hBase)
	if got := len(h.Held()); got != n {
		t.Fatalf("H holds %d shards, want %d", got, n)
	}
	store.getDelay.Store(int64(d))
	o := newMemShards(t, store, n, "O", nil)
	start := time.Now()
	o.settle(ctx)
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, st := range o.shards {
		if min := start.Add(time.Duration(i+1) * d); st.observedAt.Before(min) {
			t.Errorf("shard %d: observed at +%s, before its Get returned (+%s or later)", i, st.observedAt.Sub(start), min.Sub(start))
		}
	}
}

// TestShardsHoldAfterGainAnnounced: Hold does not hold a shard until
// OnGain has returned, so that a worker cannot act on a shard gained
// before the reconciler has marked it as waiting for a Git sync.
func TestShardsHoldAfterGainAnnounced(t *testing.T) {
	const n = 3
	ctx := context.Background()
	var s *Shards
	gained := map[int]bool{}
	s = newMemShards(t, newMemLeases(), n, "H", func(c *ShardsConfig) {
		c.OnGain = func(i int) {
			gained[i] = true
			if _, _, ok := s.Hold(i); ok {
				t.Errorf("shard %d: Hold holds it before OnGain has returned", i)
			}
			if s.Holds(i) {
				t.Errorf("shard %d: Holds reports it held before OnGain has returned", i)
			}
		}
	})
	base, stop := context.WithCancel(ctx)
	defer stop()
	s.tick(ctx, base)
	for i := range n {
		if !gained[i] {
			t.Errorf("shard %d: OnGain not told", i)
		}
		_, done, ok := s.Hold(i)
		if !ok {
			t.Errorf("shard %d: not held once OnGain returned", i)
			continue
		}
		done()
	}
}
