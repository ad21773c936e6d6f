package leader

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
		if min := start.Add(d); st.observedAt.Before(min) {
			t.Errorf("shard %d: observed at +%s, before its Get returned (+%s or later)", i, st.observedAt.Sub(start), min.Sub(start))
		}
	}
}

// TestShardsHoldAfterGainAnnounced: Hold and Holds do not report a
// shard held before OnGain has returned (they wait for it), so that a
// worker cannot act on a shard gained before the reconciler has marked
// it as waiting for a Git sync, nor drop its releases meanwhile.
func TestShardsHoldAfterGainAnnounced(t *testing.T) {
	const n = 3
	ctx := context.Background()
	var s *Shards
	var returned [n]atomic.Bool
	var wg sync.WaitGroup
	s = newMemShards(t, newMemLeases(), n, "H", func(c *ShardsConfig) {
		c.OnGain = func(i int) {
			wg.Go(func() {
				_, done, ok := s.Hold(i)
				if !returned[i].Load() {
					t.Errorf("shard %d: Hold returned before OnGain had", i)
				}
				if !ok {
					t.Errorf("shard %d: not held once OnGain returned", i)
					return
				}
				done()
			})
			wg.Go(func() {
				ok := s.Holds(i)
				if !returned[i].Load() {
					t.Errorf("shard %d: Holds returned before OnGain had", i)
				}
				if !ok {
					t.Errorf("shard %d: Holds says not held once OnGain returned", i)
				}
			})
			returned[i].Store(true)
		}
	})
	base, stop := context.WithCancel(ctx)
	defer stop()
	s.tick(ctx, base)
	wg.Wait()
	if got := len(s.Held()); got != n {
		t.Errorf("H holds %d shards, want %d", got, n)
	}
}

// TestShardsOrphanTakenBack: a Lease naming this replica that it does not
// hold (a renewal that landed after the renew deadline had fired, or an
// Update that succeeded while this replica saw an error) is taken back at
// the next tick, through OnGain, rather than left idle until it expires.
func TestShardsOrphanTakenBack(t *testing.T) {
	ctx := context.Background()
	store := newMemLeases()
	var gains []int
	s := newMemShards(t, store, 2, "H", func(c *ShardsConfig) {
		c.OnGain = func(i int) { gains = append(gains, i) }
	})
	base, stop := context.WithCancel(ctx)
	defer stop()
	s.tick(ctx, base)
	if got := len(s.Held()); got != 2 {
		t.Fatalf("H holds %d shards, want 2", got)
	}
	// The watchdog fired, but the renewal had landed: the Lease still
	// names H.
	s.mu.Lock()
	s.loseLocked(1, "test: renewal landed after the renew deadline")
	s.mu.Unlock()
	if s.Holds(1) {
		t.Fatal("shard 1 still held once lost")
	}
	s.tick(ctx, base)
	if !s.Holds(1) {
		t.Error("shard 1, whose Lease names H, not taken back at the next tick")
	}
	slices.Sort(gains)
	if want := []int{0, 1, 1}; !slices.Equal(gains, want) {
		t.Errorf("OnGain told of %v, want %v", gains, want)
	}
}

// TestShardsOrphanAboveShareFreed: a Lease naming this replica that it
// does not hold, above its fair share, is written free at once.
func TestShardsOrphanAboveShareFreed(t *testing.T) {
	const n = 4
	ctx := context.Background()
	store := newMemLeases()
	o := newMemShards(t, store, n, "O", nil)
	oBase, oStop := context.WithCancel(ctx)
	defer oStop()
	o.tick(ctx, oBase) // O takes every shard
	h := newMemShards(t, store, n, "H", nil)
	hBase, hStop := context.WithCancel(ctx)
	defer hStop()
	nameH := func(i int) {
		l := store.lease(h.LeaseName(i))
		now := metav1.NowMicro()
		l.Spec = record{holder: "H", leaseDurationSeconds: 2, acquire: now, renew: now}.spec()
		store.put(l)
	}
	// H's Updates of shards 2 and 3 succeeded server-side but H saw
	// errors: they are its share (2 of 4), taken back ...
	nameH(2)
	nameH(3)
	h.tick(ctx, hBase)
	if !h.Holds(2) || !h.Holds(3) {
		t.Fatalf("H holds %v, want its share [2 3], whose Leases name it", h.Held())
	}
	// ... and an orphan above its share is written free.
	nameH(1)
	h.tick(ctx, hBase)
	if h.Holds(1) {
		t.Error("H took shard 1, above its share")
	}
	if got := recordOf(store.lease(h.LeaseName(1)).Spec).holder; got != "" {
		t.Errorf("shard 1's Lease names %q, want it written free", got)
	}
}

// failingFrees fails the next fail Updates that write a Lease free.
type failingFrees struct {
	Leases
	fail atomic.Int32
}

func (f *failingFrees) Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if recordOf(l.Spec).holder == "" && f.fail.Add(-1) >= 0 {
		return nil, errors.New("test: update failed")
	}
	return f.Leases.Update(ctx, l)
}

// TestShardsRenewSeesTaken: a renewal whose compare-and-swap conflicts
// and which then reads another holder on the Lease stops holding the
// shard at once.
func TestShardsRenewSeesTaken(t *testing.T) {
	ctx := context.Background()
	store := newMemLeases()
	var lost atomic.Int32
	h := newMemShards(t, store, 1, "H", func(c *ShardsConfig) { c.OnLoss = func(int) { lost.Add(1) } })
	base, stop := context.WithCancel(ctx)
	defer stop()
	h.tick(ctx, base)
	l := store.lease(h.LeaseName(0))
	now := metav1.NowMicro()
	l.Spec = record{holder: "O", leaseDurationSeconds: 2, acquire: now, renew: now}.spec()
	store.put(l)
	h.renew(ctx, 0)
	if h.Holds(0) {
		t.Error("H still holds shard 0 after its renewal found O holding it")
	}
}

// TestShardsRenewWhenFreeFails: a shard given up whose Lease could not be
// written free is renewed in the same tick, so that it is not lost
// (nor taken by another) while its holders may still act.
func TestShardsRenewWhenFreeFails(t *testing.T) {
	ctx := context.Background()
	client := &failingFrees{Leases: newMemLeases()}
	h := newMemShards(t, client, 1, "H", nil)
	base, stop := context.WithCancel(ctx)
	defer stop()
	h.tick(ctx, base)
	_, done, ok := h.Hold(0)
	if !ok {
		t.Fatal("shard 0 not held")
	}
	h.giveUp(0, "test")
	h.mu.Lock()
	before, drained := h.shards[0].deadline, h.shards[0].drained
	h.mu.Unlock()
	done()
	<-drained
	client.fail.Store(1) // free's Update
	h.settle(ctx)
	h.mu.Lock()
	st := h.shards[0]
	held, after := st.held, st.deadline
	h.mu.Unlock()
	if !held {
		t.Fatal("shard 0 written free though its Update failed")
	}
	if !after.After(before) {
		t.Error("shard 0 not renewed in the tick whose free failed")
	}
}

// TestShardsSlowReadsKeepShards: with every Get slow (a loaded API
// server, a client-side rate limit) and every call succeeding, a replica
// renews what it holds every tick: reading all Leases one after another
// took longer than the renew deadline, and renewals came after the reads.
func TestShardsSlowReadsKeepShards(t *testing.T) {
	const n = 8
	store := newMemLeases()
	var lost atomic.Int32
	h := newMemShards(t, store, n, "H", func(c *ShardsConfig) { c.OnLoss = func(int) { lost.Add(1) } })
	ctx := context.Background()
	base, stop := context.WithCancel(ctx)
	defer stop()
	h.tick(ctx, base)
	if got := len(h.Held()); got != n {
		t.Fatalf("H holds %d shards, want %d", got, n)
	}
	// n reads one after another: longer than the renew deadline.
	store.getDelay.Store(int64(memRenew / n * 3 / 2))
	for range 4 {
		h.tick(ctx, base)
	}
	if got := len(h.Held()); got != n || lost.Load() > 0 {
		t.Errorf("H holds %d shards of %d and lost %d, with every API call succeeding", got, n, lost.Load())
	}
}

// TestShardsHungCallBounded: a Lease API call that hangs ends at the
// renew deadline (renewals) or the retry period (others), so that a tick
// goes on.
func TestShardsHungCallBounded(t *testing.T) {
	store := newMemLeases()
	h := newMemShards(t, store, 2, "H", nil)
	ctx := context.Background()
	base, stop := context.WithCancel(ctx)
	defer stop()
	h.tick(ctx, base)
	store.getDelay.Store(int64(time.Hour))
	store.updateDelay.Store(int64(time.Hour))
	start := time.Now()
	h.tick(ctx, base)
	// Renewals end by the renew deadline, then reads and the waiting
	// annotation take a retry period each.
	if took := time.Since(start); took > 2*memRenew {
		t.Errorf("a tick with hung calls took %s, want about the renew deadline %s and two retry periods", took, memRenew)
	}
}

// TestConfigWholeSeconds: a Lease records its duration in whole seconds,
// so a lease duration must be whole seconds and at least the renew
// deadline + 1s, for the single leader and for shards alike.
func TestConfigWholeSeconds(t *testing.T) {
	tests := []struct {
		name         string
		lease, renew time.Duration
		wantErr      string
	}{
		{"whole seconds, a second above", 3 * time.Second, 2 * time.Second, ""},
		{"fraction of a second", 2500 * time.Millisecond, time.Second, "whole number of seconds"},
		{"less than a second above", 3 * time.Second, 2500 * time.Millisecond, "by at least 1s"},
		{"equal", 2 * time.Second, 2 * time.Second, "must be longer than the renew deadline"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := func(what string, err error) {
				t.Helper()
				if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
					t.Errorf("%s: err = %v, want %q", what, err, tc.wantErr)
				}
			}
			cfg := Config{Client: newMemLeases(), Namespace: "n", Name: "l", Identity: "i",
				LeaseDuration: tc.lease, RenewDeadline: tc.renew, RetryPeriod: memRetry}
			check("leader", cfg.validate())
			_, err := NewShards(ShardsConfig{Client: newMemLeases(), Namespace: "n", Name: "l", Identity: "i", Shards: 2,
				LeaseDuration: tc.lease, RenewDeadline: tc.renew, RetryPeriod: memRetry})
			check("shards", err)
		})
	}
}
