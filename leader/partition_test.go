package leader

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// heldLease is a Lease named name held by holder for 15 s, saying count
// (none when 0).
func heldLease(name, holder string, count int) *coordinationv1.Lease {
	now := metav1.NowMicro()
	rec := record{holder: holder, leaseDurationSeconds: 15, acquire: now, renew: now}
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: rec.spec()}
	if count > 0 {
		l.Annotations = map[string]string{countAnnotation: strconv.Itoa(count)}
	}
	return l
}

// TestPartitionConflicts: which Leases are held under another shard
// count, for a replica with four shards and for the single leader.
func TestPartitionConflicts(t *testing.T) {
	free := heldLease("s-1", "", 6)
	expired := heldLease("s-2", "X", 6)
	expired.Spec.LeaseDurationSeconds = new(int32(1))
	tests := []struct {
		name   string
		count  int
		leases []*coordinationv1.Lease
		// seenAgo dates every Lease's first sighting this long ago.
		seenAgo time.Duration
		want    []string
	}{
		{"same count", 4, []*coordinationv1.Lease{heldLease("s-0", "O", 4), heldLease("s-3", "O", 4)}, 0, nil},
		{"own Lease under another count", 4, []*coordinationv1.Lease{heldLease("s-5", "me", 6)}, 0, nil},
		{"another count", 4, []*coordinationv1.Lease{heldLease("s-0", "O", 4), heldLease("s-5", "X", 6)}, 0,
			[]string{"s-5 held by X with 6 shards"}},
		{"the single leader", 4, []*coordinationv1.Lease{heldLease("s", "L", 0)}, 0,
			[]string{"s held by L with one shard (the single leader)"}},
		{"free or expired", 4, []*coordinationv1.Lease{free, expired}, 2 * time.Second, nil},
		{"held long ago, not renewed since", 4, []*coordinationv1.Lease{heldLease("s-5", "X", 6)}, 16 * time.Second, nil},
		{"not a shard's", 4, []*coordinationv1.Lease{heldLease("s-x", "X", 6), heldLease("other", "X", 6), heldLease("s-07", "X", 6)}, 0, nil},
		{"no count, one of ours", 4, []*coordinationv1.Lease{heldLease("s-3", "O", 0)}, 0, nil},
		{"no count, beyond ours", 4, []*coordinationv1.Lease{heldLease("s-4", "X", 0)}, 0,
			[]string{"s-4 held by X with an unknown number of shards"}},
		{"single leader meets shards", 1, []*coordinationv1.Lease{heldLease("s-0", "X", 0), heldLease("s-1", "Y", 3)}, 0,
			[]string{"s-0 held by X with an unknown number of shards", "s-1 held by Y with 3 shards"}},
		{"single leader meets another single leader", 1, []*coordinationv1.Lease{heldLease("s", "L", 0)}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPartition("s", tt.count, "me", slog.New(slog.DiscardHandler), "")
			var leases []coordinationv1.Lease
			for _, l := range tt.leases {
				leases = append(leases, *l)
			}
			now := time.Now()
			p.observe(leases, now.Add(-tt.seenAgo))
			if got := p.observe(leases, now); !slices.Equal(got, tt.want) {
				t.Errorf("conflicts = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestShardsOtherCountWaits: replicas with another shard count take no
// shard while one with the old count holds any, then take them all once
// it has let go; each Lease says the count it was written with.
func TestShardsOtherCountWaits(t *testing.T) {
	ctx := context.Background()
	store := newMemLeases()
	old := newMemShards(t, store, 4, "old", nil)
	oldBase, oldStop := context.WithCancel(ctx)
	defer oldStop()
	old.tick(ctx, oldBase)
	if got := len(old.Held()); got != 4 {
		t.Fatalf("old holds %d shards, want 4", got)
	}
	var gains atomic.Int32
	cur := newMemShards(t, store, 6, "new", func(c *ShardsConfig) { c.OnGain = func(int) { gains.Add(1) } })
	base, stop := context.WithCancel(ctx)
	defer stop()
	for range 3 {
		cur.tick(ctx, base)
	}
	if got := cur.Held(); len(got) != 0 || gains.Load() != 0 {
		t.Fatalf("with 6 shards, holds %v (%d gains) while a replica with 4 holds its shards, want none", got, gains.Load())
	}
	for i := range 6 {
		if l := store.lease("s-" + strconv.Itoa(i)); l != nil && l.Annotations[countAnnotation] != "4" {
			t.Errorf("Lease s-%d says %s shards, want 4", i, l.Annotations[countAnnotation])
		}
	}
	// The old replica stops: it gives its shards up and writes them free.
	for _, i := range old.Held() {
		old.giveUp(i, "test: stopping")
	}
	old.settle(ctx)
	if got := old.Held(); len(got) != 0 {
		t.Fatalf("old still holds %v after giving them up", got)
	}
	// A few ticks: the first may still read a Lease as it was before.
	for i := 0; i < 5 && len(cur.Held()) < 6; i++ {
		cur.tick(ctx, base)
	}
	if got := len(cur.Held()); got != 6 {
		t.Fatalf("with 6 shards, holds %d once the old replica let go, want 6", got)
	}
	for i := range 6 {
		if got := store.lease("s-" + strconv.Itoa(i)).Annotations[countAnnotation]; got != "6" {
			t.Errorf("Lease s-%d says %q shards, want 6", i, got)
		}
	}
}

// racingLeases puts a Lease of a replica with another count into the
// store right after this replica's first successful take, as a replica
// that listed the Leases at the same moment would.
type racingLeases struct {
	*memLeases
	race atomic.Bool
}

func (r *racingLeases) Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	out, err := r.memLeases.Update(ctx, l)
	if err == nil && recordOf(l.Spec).holder != "" && r.race.CompareAndSwap(true, false) {
		r.put(heldLease("s-5", "X", 6))
	}
	return out, err
}

// TestShardsTakenDuringRaceLetGo: a shard taken while a replica with
// another count took a Lease too is let go without being acted on: no
// OnGain, not held, its Lease written free.
func TestShardsTakenDuringRaceLetGo(t *testing.T) {
	ctx := context.Background()
	store := &racingLeases{memLeases: newMemLeases()}
	// The Leases exist, free, so that taking one is an Update.
	for i := range 4 {
		store.put(heldLease("s-"+strconv.Itoa(i), "", 4))
	}
	store.race.Store(true)
	var gains atomic.Int32
	s := newMemShards(t, store, 4, "H", func(c *ShardsConfig) { c.OnGain = func(int) { gains.Add(1) } })
	base, stop := context.WithCancel(ctx)
	defer stop()
	s.tick(ctx, base)
	if got := s.Held(); len(got) != 0 || gains.Load() != 0 {
		t.Fatalf("holds %v (%d gains) after another count took a Lease during the take, want none", got, gains.Load())
	}
	for i := range 4 {
		if h := recordOf(store.lease("s-" + strconv.Itoa(i)).Spec).holder; h != "" {
			t.Errorf("Lease s-%d names %q, want it written free", i, h)
		}
	}
	if !strings.Contains(s.part.blocked, "s-5 held by X") {
		t.Errorf("blocked = %q, want it to name s-5", s.part.blocked)
	}
}

// countingLeases counts the lists of the Leases.
type countingLeases struct {
	*memLeases
	lists atomic.Int32
}

func (c *countingLeases) List(ctx context.Context, ns string) ([]coordinationv1.Lease, error) {
	c.lists.Add(1)
	return c.memLeases.List(ctx, ns)
}

// TestLeaderWaitsForShards: the single leader does not lead while a
// sharded replica holds a live Lease, and leads once it is free.
func TestLeaderWaitsForShards(t *testing.T) {
	store := &countingLeases{memLeases: newMemLeases()}
	store.put(heldLease("s-1", "X", 3))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	led := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Client: store, Namespace: "ns", Name: "s", Identity: "L",
			LeaseDuration: memLease, RenewDeadline: memRenew, RetryPeriod: memRetry},
			func(ctx context.Context) error { close(led); <-ctx.Done(); return nil })
	}()
	// Three campaigns have looked at the Leases.
	deadline := time.Now().Add(10 * time.Second)
	for store.lists.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the Leases were not listed three times within 10s")
		}
		select {
		case <-led:
			t.Fatal("led while a sharded replica held a Lease")
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case <-led:
		t.Fatal("led while a sharded replica held a Lease")
	default:
	}
	if l := store.lease("s"); l != nil && recordOf(l.Spec).holder != "" {
		t.Errorf("the single leader's Lease names %q while a shard's is held, want no holder", recordOf(l.Spec).holder)
	}
	store.put(heldLease("s-1", "", 3))
	select {
	case <-led:
	case <-time.After(10 * time.Second):
		t.Fatal("did not lead within 10s of the shard's Lease being freed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}
