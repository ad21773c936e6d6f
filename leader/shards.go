package leader

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// waitingPrefix starts the annotation a replica holding less than its
// fair share, with no shard free, writes on the first shard's Lease:
// waitingPrefix and a hash of its identity, its identity and a counter as
// value. The holders count it among the replicas while it keeps changing
// the value, and one of them releases a shard for it.
const waitingPrefix = "shards.sluice.dev/waiting-"

// ShardsConfig configures a replica's share of the shards.
type ShardsConfig struct {
	// Client reads and writes the Leases; see NewLeases.
	Client Leases
	// Namespace of the Leases; shard i's Lease is named Name-i.
	Namespace, Name string
	// Shards is the number of shards, at least 1.
	Shards int
	// Identity names this replica in the Leases; see NewIdentity.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are as in Config, per
	// shard: a shard not renewed for LeaseDuration is free; this replica
	// stops acting on a shard it could not renew for RenewDeadline.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// OnGain is told of each shard this replica starts to hold, before
	// Hold holds it: Hold and Holds called meanwhile wait for OnGain to
	// return, so that what OnGain marks (the reconciler's wait for a Git
	// sync) is in place before anyone acts on the shard (OnGain must not
	// call them). OnLoss is told
	// of each shard it stops holding (given up or lost), once the shard's
	// context has ended. Keep them short.
	OnGain, OnLoss func(shard int)
	Log            *slog.Logger
}

func (c *ShardsConfig) validate() error {
	if c.Shards < 1 {
		return fmt.Errorf("shards: %d shards, want at least 1", c.Shards)
	}
	lc := Config{Client: c.Client, Namespace: c.Namespace, Name: c.Name, Identity: c.Identity,
		LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod, Log: c.Log}
	if err := lc.validate(); err != nil {
		return err
	}
	c.LeaseDuration, c.RenewDeadline, c.RetryPeriod, c.Log = lc.LeaseDuration, lc.RenewDeadline, lc.RetryPeriod, lc.Log
	return nil
}

// Shards is one replica's share of a fixed number of shards, each a
// coordination.k8s.io Lease, with client-go's leader election discipline
// on every Lease: it takes shards that are free or expired, renews its
// own every retry period, gives up those above its fair share (see
// view.target) so that a new replica gets its share, and releases all it
// holds when Run's context ends. Every shard held has a context (Hold)
// that ends when this replica gives the shard up, or could not renew it
// within the renew deadline: before any other replica may take it.
type Shards struct {
	cfg ShardsConfig
	log *slog.Logger
	// start is where this replica starts looking for free shards.
	start int

	mu     sync.Mutex
	shards []*shardState
	// waiting is what this replica's waiting annotation says, "" when it
	// does not wait; waitSeq makes each write a change.
	waitSeq int
	// waiters are others' waiting annotations as last seen, with when
	// their value last changed.
	waiters map[string]observed
	// part tells Leases held under another shard count (partition.go);
	// only the tick uses it.
	part *partition
}

type observed struct {
	value string
	at    time.Time
}

// shardState is one shard's Lease as this replica knows it.
type shardState struct {
	lease       *coordinationv1.Lease // as last read or written; nil if none
	readErr     bool                  // the last read failed
	observed    record
	observedAt  time.Time
	observedRaw []byte

	// held while this replica holds the shard, with ctx and cancel;
	// releasing once it gives it up, until the Lease is written free.
	held, releasing bool
	// announced once OnGain has returned for this holding; until then
	// gaining is open, and Hold and Holds wait for it to close.
	announced bool
	gaining   chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	// inflight are the callers of Hold not yet done.
	inflight *sync.WaitGroup
	drained  chan struct{}
	// deadline is when the shard is lost unless renewed; watchdog fires then.
	deadline time.Time
	watchdog *time.Timer
	gen      int
}

// NewShards checks cfg and returns a replica's Shards; Run makes it take
// its share.
func NewShards(cfg ShardsConfig) (*Shards, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(cfg.Identity))
	s := &Shards{cfg: cfg, start: int(h.Sum32() % uint32(cfg.Shards)), waiters: map[string]observed{},
		log: cfg.Log.With("leases", cfg.Namespace+"/"+cfg.Name+"-*", "identity", cfg.Identity)}
	s.part = newPartition(cfg.Name, cfg.Shards, cfg.Identity, s.log, "taking no shard: a replica with another shard count holds a Lease")
	for range cfg.Shards {
		s.shards = append(s.shards, &shardState{})
	}
	return s, nil
}

// Count is the number of shards.
func (s *Shards) Count() int { return s.cfg.Shards }

// Of is the shard of a release ID (ShardOf).
func (s *Shards) Of(id string) int { return ShardOf(id, s.cfg.Shards) }

// LeaseName is the name of shard i's Lease.
func (s *Shards) LeaseName(i int) string { return s.cfg.Name + "-" + strconv.Itoa(i) }

// Hold reports whether this replica holds shard i now; when it does, ctx
// ends as soon as it stops holding it, and done must be called once the
// caller stops acting on the shard: a shard given up is written free only
// after every holder of it is done.
func (s *Shards) Hold(i int) (ctx context.Context, done func(), ok bool) {
	return s.hold(i, false)
}

// hold is Hold; gaining also holds a shard whose gain OnGain is being
// told of (for tests that hold a shard from OnGain).
func (s *Shards) hold(i int, gaining bool) (ctx context.Context, done func(), ok bool) {
	if i < 0 || i >= len(s.shards) {
		return nil, nil, false
	}
	if !gaining {
		s.awaitGain(i)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.shards[i]
	if !st.held || (!st.announced && !gaining) || st.releasing || st.ctx.Err() != nil {
		return nil, nil, false
	}
	st.inflight.Add(1)
	return st.ctx, sync.OnceFunc(st.inflight.Done), true
}

// awaitGain waits while OnGain is being told that this replica gained
// shard i (it is short), so that Hold and Holds neither hold the shard
// before OnGain has returned nor report it not held meanwhile.
func (s *Shards) awaitGain(i int) {
	s.mu.Lock()
	ch := s.shards[i].gaining
	s.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// Held lists the shards this replica holds now.
func (s *Shards) Held() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for i, st := range s.shards {
		if st.held && !st.releasing {
			out = append(out, i)
		}
	}
	return out
}

// Holders lists the other replicas holding a shard, as the Leases last
// said: those to pass a sync request on to.
func (s *Shards) Holders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var out []string
	for _, st := range s.shards {
		if h := st.observed.holder; h != "" && h != s.cfg.Identity && st.valid(now) {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (st *shardState) valid(now time.Time) bool {
	return st.observedAt.Add(time.Duration(st.observed.leaseDurationSeconds) * time.Second).After(now)
}

// Run takes and keeps this replica's share of the shards until ctx
// ends, then gives up every shard it holds and releases each (writes its
// Lease free, so that others take it at once) once its holders are done,
// renewing it meanwhile for up to two lease durations; it returns nil.
func (s *Shards) Run(ctx context.Context) error {
	s.log.Info("sharing the shards", "shards", s.cfg.Shards, "lease_duration", s.cfg.LeaseDuration,
		"renew_deadline", s.cfg.RenewDeadline, "retry_period", s.cfg.RetryPeriod)
	base, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	// No jitter: renewals must come every retry period. Replicas spread
	// over the shards by where each starts looking for free ones.
	wait.UntilWithContext(ctx, func(ctx context.Context) { s.tick(ctx, base) }, s.cfg.RetryPeriod)

	for _, i := range s.Held() {
		s.giveUp(i, "stopping")
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*s.cfg.LeaseDuration)
	defer cancel()
	wait.UntilWithContext(stopCtx, func(ctx context.Context) {
		if s.settle(ctx) == 0 {
			cancel()
		}
	}, s.cfg.RetryPeriod/4)
	for i, st := range s.shards {
		s.mu.Lock()
		held := st.held
		s.mu.Unlock()
		if held {
			s.log.Warn("shard's work did not end in time; leaving its Lease to expire", "shard", i)
		}
	}
	ctx2, cancel2 := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RenewDeadline)
	defer cancel2()
	s.announce(ctx2, false)
	s.log.Info("stopped sharing the shards")
	return nil
}

// tick reads every shard's Lease, renews those held, and gives up or
// takes shards towards this replica's fair share. It takes none while a
// replica with another shard count holds a Lease, and acts on those it
// took only once a second look finds none (partition.go).
func (s *Shards) tick(ctx context.Context, base context.Context) {
	s.settle(ctx)
	if ctx.Err() != nil {
		return
	}
	v, releasing, orphans := s.view(time.Now())
	release, acquire, waiting := v.plan(s.cfg.Identity, releasing, s.start)
	for _, i := range release {
		s.giveUp(i, fmt.Sprintf("above this replica's fair share of %d", v.target(s.cfg.Identity)))
	}
	if len(acquire) > 0 && !s.partitionClear(ctx) {
		acquire, waiting = nil, false
	}
	var taken []gainInProgress
	for _, i := range acquire {
		if g, ok := s.take(ctx, base, i); ok {
			taken = append(taken, g)
		}
	}
	if len(taken) > 0 {
		clear := s.partitionClear(ctx)
		for _, g := range taken {
			if clear {
				s.gain(g)
			} else {
				s.abandon(ctx, g)
			}
		}
	}
	// A Lease naming this replica that it does not hold (a renewal that
	// landed after the renew deadline, an Update that succeeded while
	// this replica saw an error) is taken back above, or written free
	// now: left alone, nobody would act on its shard until it expires.
	for _, i := range orphans {
		if !slices.Contains(acquire, i) {
			s.freeOrphan(ctx, i)
		}
	}
	s.announce(ctx, waiting)
}

// partitionClear reports whether no replica with another shard count
// holds a live Lease.
func (s *Shards) partitionClear(ctx context.Context) bool {
	return s.part.clear(ctx, s.cfg.Client, s.cfg.Namespace, s.callTimeout())
}

// settle reads every shard's Lease, renews those this replica holds, and
// writes free those it gave up whose holders are done; it returns how
// many it still holds.
func (s *Shards) settle(ctx context.Context) int {
	// Renew first, so that a tick's renewals do not wait behind the reads,
	// each renewal on its own and bounded by its shard's renew deadline,
	// so that one hung request does not hold the others; then read every
	// Lease at once, each read bounded, so that a slow API server does not
	// hold the next tick's renewals either.
	var wg sync.WaitGroup
	for i := range s.shards {
		s.mu.Lock()
		held := s.shards[i].held
		s.mu.Unlock()
		if held {
			wg.Go(func() { s.renew(ctx, i) })
		}
	}
	wg.Wait()
	for i := range s.shards {
		wg.Go(func() { s.read(ctx, i) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return len(s.shards)
	}
	held := 0
	for i := range s.shards {
		s.mu.Lock()
		st := s.shards[i]
		isHeld, releasing := st.held, st.releasing
		drained := false
		if releasing {
			select {
			case <-st.drained:
				drained = true
			default:
			}
		}
		s.mu.Unlock()
		if releasing && drained && !s.free(ctx, i) && isHeld {
			// Still held until written free: keep it renewed.
			s.renew(ctx, i)
		}
		s.mu.Lock()
		if st.held {
			held++
		}
		s.mu.Unlock()
	}
	return held
}

// read reads shard i's Lease and notes when its record last changed,
// dated to when the Get returned (not to when the tick began: with slow
// reads, a renewal read late would otherwise look older than it is); a
// shard this replica holds that names another holder is lost.
func (s *Shards) read(ctx context.Context, i int) {
	cctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	lease, err := s.cfg.Client.Get(cctx, s.cfg.Namespace, s.LeaseName(i))
	cancel()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.shards[i]
	switch {
	case apierrors.IsNotFound(err):
		st.lease, st.readErr, st.observed, st.observedRaw = nil, false, record{}, nil
		if st.held {
			s.loseLocked(i, "its Lease was deleted")
		}
		return
	case err != nil:
		if ctx.Err() == nil {
			s.log.Warn("cannot read a shard's Lease", "shard", i, "err", err)
		}
		st.readErr = true
		return
	}
	st.readErr = false
	st.lease = lease
	raw, err := json.Marshal(lease.Spec)
	if err != nil {
		st.readErr = true
		return
	}
	if !bytes.Equal(st.observedRaw, raw) {
		st.observed, st.observedAt, st.observedRaw = recordOf(lease.Spec), now, raw
	}
	if i == 0 {
		s.observeWaiters(lease.Annotations, now)
	}
	if st.held && st.observed.holder != s.cfg.Identity {
		s.loseLocked(i, "another replica holds its Lease: "+st.observed.holder)
	}
}

// observeWaiters notes the waiting annotations on the first shard's Lease.
func (s *Shards) observeWaiters(annotations map[string]string, now time.Time) {
	for k, v := range annotations {
		if !strings.HasPrefix(k, waitingPrefix) {
			continue
		}
		if o, ok := s.waiters[k]; !ok || o.value != v {
			s.waiters[k] = observed{value: v, at: now}
		}
	}
	for k := range s.waiters {
		if _, ok := annotations[k]; !ok {
			delete(s.waiters, k)
		}
	}
}

// view is the Leases as this replica sees them at now, the shards it is
// releasing, and the orphans: shards whose Lease names this replica
// though it does not hold them, which the view shows free (to this
// replica only: it alone may take them back at once).
func (s *Shards) view(now time.Time) (view, map[int]bool, []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := view{holders: make([]string, len(s.shards))}
	releasing := map[int]bool{}
	var orphans []int
	for i, st := range s.shards {
		switch {
		case st.held:
			v.holders[i] = s.cfg.Identity
			if st.releasing {
				releasing[i] = true
			}
		case st.readErr:
			v.holders[i] = unknownHolder
		case st.lease != nil && st.observed.holder == s.cfg.Identity:
			orphans = append(orphans, i)
		case st.lease != nil && st.observed.holder != "" && st.valid(now):
			v.holders[i] = st.observed.holder
		}
	}
	live := s.liveWaitersLocked(now)
	for _, k := range slices.Sorted(maps.Keys(live)) {
		v.waiting = append(v.waiting, live[k])
	}
	return v, releasing, orphans
}

// liveWaitersLocked are the waiting annotations (key: identity) whose
// value changed within a lease duration, but this replica's own.
func (s *Shards) liveWaitersLocked(now time.Time) map[string]string {
	out := map[string]string{}
	for k, o := range s.waiters {
		id, _, _ := strings.Cut(o.value, " ")
		if id == s.cfg.Identity || !o.at.Add(s.cfg.LeaseDuration).After(now) {
			continue
		}
		out[k] = id
	}
	return out
}

// renew renews shard i's Lease, on the Lease as last read or written.
func (s *Shards) renew(ctx context.Context, i int) {
	s.mu.Lock()
	st := s.shards[i]
	if st.lease == nil {
		s.mu.Unlock()
		return
	}
	lease := st.lease.DeepCopy()
	rec := st.observed
	gen := st.gen
	deadline := st.deadline
	if i == 0 {
		s.pruneWaitersLocked(lease, time.Now())
	}
	s.mu.Unlock()
	// No call may outlast the renew deadline: the shard is lost then
	// anyway, and a hung request must not hold the other renewals.
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	start := time.Now()
	now := metav1.NowMicro()
	rec.holder, rec.renew = s.cfg.Identity, now
	rec.leaseDurationSeconds = int32(s.cfg.LeaseDuration / time.Second)
	lease.Spec = rec.spec()
	s.markCount(lease)
	out, err := s.cfg.Client.Update(ctx, lease)
	if apierrors.IsConflict(err) {
		// A waiting replica's annotation, most likely: read the Lease
		// again and renew it if it still names this replica.
		var cur *coordinationv1.Lease
		if cur, err = s.cfg.Client.Get(ctx, s.cfg.Namespace, s.LeaseName(i)); err == nil {
			if h := recordOf(cur.Spec).holder; h != s.cfg.Identity {
				// Another replica took it: stop acting on it at once.
				s.mu.Lock()
				if st.gen == gen && st.held {
					s.loseLocked(i, "another replica holds its Lease: "+h)
				}
				s.mu.Unlock()
				return
			}
			cur.Spec = rec.spec()
			s.markCount(cur)
			out, err = s.cfg.Client.Update(ctx, cur)
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Debug("cannot renew a shard's Lease; trying again", "shard", i, "err", err)
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.gen != gen || !st.held {
		return
	}
	s.storeLocked(st, out, rec, start)
	st.deadline = start.Add(s.cfg.RenewDeadline)
	st.watchdog.Reset(time.Until(st.deadline))
}

// callTimeout bounds a Lease API call other than a renewal (whose bound
// is its shard's renew deadline): a retry period, so that a hung request
// cannot hold the tick's renewals past theirs.
func (s *Shards) callTimeout() time.Duration { return s.cfg.RetryPeriod }

// pruneWaitersLocked drops from lease the waiting annotations that have
// not changed for a lease duration (a replica that stopped waiting or died).
func (s *Shards) pruneWaitersLocked(lease *coordinationv1.Lease, now time.Time) {
	for k := range lease.Annotations {
		if o, seen := s.waiters[k]; seen && k != s.waitingKey() && !o.at.Add(s.cfg.LeaseDuration).After(now) {
			delete(lease.Annotations, k)
		}
	}
}

func (s *Shards) storeLocked(st *shardState, out *coordinationv1.Lease, rec record, at time.Time) {
	st.lease = out
	st.readErr = false
	st.observed, st.observedAt = rec, at
	st.observedRaw, _ = json.Marshal(out.Spec)
}

// gainInProgress is a shard taken whose gain is not announced yet.
type gainInProgress struct {
	shard, gen int
	gaining    chan struct{}
}

// take takes shard i, free as last read, with a compare-and-swap on its
// Lease (or by creating it). The shard is held but not announced: Hold
// and Holds wait until gain or abandon.
func (s *Shards) take(ctx context.Context, base context.Context, i int) (gainInProgress, bool) {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	defer cancel()
	s.mu.Lock()
	st := s.shards[i]
	var lease *coordinationv1.Lease
	if st.lease != nil {
		lease = st.lease.DeepCopy()
	}
	old := st.observed
	s.mu.Unlock()
	start := time.Now()
	now := metav1.NowMicro()
	rec := record{holder: s.cfg.Identity, leaseDurationSeconds: int32(s.cfg.LeaseDuration / time.Second),
		acquire: now, renew: now, transitions: old.transitions}
	if old.holder != "" && old.holder != s.cfg.Identity {
		rec.transitions++
	}
	var out *coordinationv1.Lease
	var err error
	if lease == nil {
		lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: s.cfg.Namespace, Name: s.LeaseName(i)}, Spec: rec.spec()}
		s.markCount(lease)
		out, err = s.cfg.Client.Create(ctx, lease)
	} else {
		lease.Spec = rec.spec()
		s.markCount(lease)
		out, err = s.cfg.Client.Update(ctx, lease)
	}
	if err != nil {
		// Another replica was quicker, most likely.
		if ctx.Err() == nil {
			s.log.Debug("cannot take a shard", "shard", i, "err", err)
		}
		return gainInProgress{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storeLocked(st, out, rec, start)
	st.gen++
	gen := st.gen
	st.held, st.releasing, st.announced = true, false, false
	gaining := make(chan struct{})
	st.gaining = gaining
	st.ctx, st.cancel = context.WithCancel(base)
	st.inflight = &sync.WaitGroup{}
	st.drained = nil
	st.deadline = start.Add(s.cfg.RenewDeadline)
	st.watchdog = time.AfterFunc(time.Until(st.deadline), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if st.gen == gen && st.held && !time.Now().Before(st.deadline) {
			s.loseLocked(i, "could not renew its Lease within the renew deadline")
		}
	})
	s.log.Info("shard gained", "shard", i, "lease", s.LeaseName(i), "previous_holder", old.holder)
	return gainInProgress{shard: i, gen: gen, gaining: gaining}, true
}

// gain tells OnGain of a shard taken, and only then lets Hold hold it: a
// caller must not act on the shard before OnGain has marked what it needs to.
func (s *Shards) gain(g gainInProgress) {
	if s.cfg.OnGain != nil {
		s.cfg.OnGain(g.shard)
	}
	s.mu.Lock()
	st := s.shards[g.shard]
	if st.gen == g.gen {
		st.announced = true
	}
	if st.gaining == g.gaining {
		st.gaining = nil
	}
	s.mu.Unlock()
	close(g.gaining)
}

// abandon lets go of a shard taken, never acted on, and writes its Lease
// free: a replica with another shard count took a Lease meanwhile.
func (s *Shards) abandon(ctx context.Context, g gainInProgress) {
	s.mu.Lock()
	st := s.shards[g.shard]
	if st.gen == g.gen && st.held {
		st.held, st.releasing = false, false
		st.cancel()
		st.watchdog.Stop()
	}
	if st.gaining == g.gaining {
		st.gaining = nil
	}
	s.mu.Unlock()
	close(g.gaining)
	s.log.Warn("letting a shard just taken go: a replica with another shard count took a Lease meanwhile", "shard", g.shard, "lease", s.LeaseName(g.shard))
	s.freeOrphan(ctx, g.shard)
}

// markCount writes this replica's shard count on a Lease it writes.
func (s *Shards) markCount(lease *coordinationv1.Lease) {
	if lease.Annotations == nil {
		lease.Annotations = map[string]string{}
	}
	lease.Annotations[countAnnotation] = strconv.Itoa(s.cfg.Shards)
}

// loseLocked stops holding shard i at once: it was not renewed in time or
// another replica holds it.
func (s *Shards) loseLocked(i int, why string) {
	st := s.shards[i]
	if !st.held {
		return
	}
	st.held, st.releasing = false, false
	st.cancel()
	st.watchdog.Stop()
	s.log.Warn("shard lost", "shard", i, "lease", s.LeaseName(i), "reason", why)
	if s.cfg.OnLoss != nil {
		go s.cfg.OnLoss(i)
	}
}

// giveUp starts releasing shard i: its context ends at once, and the
// Lease is written free by a later tick once its holders are done. Until
// then this replica keeps renewing it, so no one else acts on the shard
// while its work winds down.
func (s *Shards) giveUp(i int, why string) {
	s.mu.Lock()
	st := s.shards[i]
	if !st.held || st.releasing {
		s.mu.Unlock()
		return
	}
	st.releasing = true
	st.cancel()
	drained := make(chan struct{})
	st.drained = drained
	wg := st.inflight
	s.mu.Unlock()
	go func() {
		wg.Wait()
		close(drained)
	}()
	s.log.Info("giving a shard up", "shard", i, "lease", s.LeaseName(i), "reason", why)
	if s.cfg.OnLoss != nil {
		s.cfg.OnLoss(i)
	}
}

// free writes shard i's Lease free (no holder, a 1s duration), as
// client-go's ReleaseOnCancel does, so that another replica takes it at
// once; it reports whether this replica no longer holds the shard.
func (s *Shards) free(ctx context.Context, i int) bool {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	defer cancel()
	s.mu.Lock()
	st := s.shards[i]
	if st.lease == nil || !st.held {
		s.mu.Unlock()
		return !st.held
	}
	lease := st.lease.DeepCopy()
	old := st.observed
	s.mu.Unlock()
	now := metav1.NowMicro()
	rec := record{leaseDurationSeconds: 1, acquire: now, renew: now, transitions: old.transitions}
	lease.Spec = rec.spec()
	out, err := s.cfg.Client.Update(ctx, lease)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Debug("cannot release a shard's Lease; trying again", "shard", i, "err", err)
		}
		return false
	}
	s.mu.Lock()
	s.storeLocked(st, out, rec, time.Now())
	st.held, st.releasing = false, false
	st.watchdog.Stop()
	s.mu.Unlock()
	s.log.Info("shard released", "shard", i, "lease", s.LeaseName(i))
	return true
}

// freeOrphan writes free, with a compare-and-swap, shard i's Lease as
// last read when it names this replica but this replica does not hold it.
func (s *Shards) freeOrphan(ctx context.Context, i int) {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	defer cancel()
	s.mu.Lock()
	st := s.shards[i]
	if st.lease == nil || st.held || st.observed.holder != s.cfg.Identity {
		s.mu.Unlock()
		return
	}
	lease := st.lease.DeepCopy()
	old := st.observed
	s.mu.Unlock()
	now := metav1.NowMicro()
	rec := record{leaseDurationSeconds: 1, acquire: now, renew: now, transitions: old.transitions}
	lease.Spec = rec.spec()
	out, err := s.cfg.Client.Update(ctx, lease)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Debug("cannot release a Lease naming this replica; trying again", "shard", i, "err", err)
		}
		return
	}
	s.mu.Lock()
	if !st.held {
		s.storeLocked(st, out, rec, time.Now())
	}
	s.mu.Unlock()
	s.log.Info("released a shard's Lease that named this replica though it did not hold it", "shard", i, "lease", s.LeaseName(i))
}

func (s *Shards) waitingKey() string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s.cfg.Identity))
	return waitingPrefix + strconv.FormatUint(uint64(h.Sum32()), 16)
}

// announce writes this replica's waiting annotation on the first shard's
// Lease while it waits (a new value each time, so that others see it
// live), and removes it once it does not.
func (s *Shards) announce(ctx context.Context, waiting bool) {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	defer cancel()
	key := s.waitingKey()
	s.mu.Lock()
	st := s.shards[0]
	if st.lease == nil {
		s.mu.Unlock()
		return
	}
	lease := st.lease.DeepCopy()
	_, present := lease.Annotations[key]
	if !waiting && !present {
		s.mu.Unlock()
		return
	}
	if waiting {
		s.waitSeq++
		if lease.Annotations == nil {
			lease.Annotations = map[string]string{}
		}
		lease.Annotations[key] = s.cfg.Identity + " " + strconv.Itoa(s.waitSeq)
	} else {
		delete(lease.Annotations, key)
	}
	s.pruneWaitersLocked(lease, time.Now())
	s.mu.Unlock()
	out, err := s.cfg.Client.Update(ctx, lease)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Debug("cannot write the waiting annotation; trying again", "err", err)
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.lease = out
	if waiting {
		s.log.Debug("waiting for a fair share of the shards")
	}
}

// Holds reports whether this replica holds shard i now (Hold without
// holding it).
func (s *Shards) Holds(i int) bool {
	if i < 0 || i >= len(s.shards) {
		return false
	}
	s.awaitGain(i)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.shards[i]
	return st.held && st.announced && !st.releasing && st.ctx.Err() == nil
}
