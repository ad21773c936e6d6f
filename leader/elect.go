package leader

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// jitterFactor spreads the standbys' attempts to acquire the Lease over
// up to 1.2 retry periods more, as client-go's leader election does.
const jitterFactor = 1.2

// record is what a Lease says about its holder.
type record struct {
	holder               string
	leaseDurationSeconds int32
	acquire, renew       metav1.MicroTime
	transitions          int32
}

func recordOf(spec coordinationv1.LeaseSpec) record {
	var r record
	if spec.HolderIdentity != nil {
		r.holder = *spec.HolderIdentity
	}
	if spec.LeaseDurationSeconds != nil {
		r.leaseDurationSeconds = *spec.LeaseDurationSeconds
	}
	if spec.AcquireTime != nil {
		r.acquire = *spec.AcquireTime
	}
	if spec.RenewTime != nil {
		r.renew = *spec.RenewTime
	}
	if spec.LeaseTransitions != nil {
		r.transitions = *spec.LeaseTransitions
	}
	return r
}

func (r record) spec() coordinationv1.LeaseSpec {
	return coordinationv1.LeaseSpec{
		HolderIdentity:       &r.holder,
		LeaseDurationSeconds: &r.leaseDurationSeconds,
		AcquireTime:          &r.acquire,
		RenewTime:            &r.renew,
		LeaseTransitions:     &r.transitions,
	}
}

// callbacks are what an elector tells its user, with client-go's
// LeaderCallbacks' meaning: started runs in its own goroutine with a
// context that ends when leadership does; stopped runs when run returns,
// whether or not this replica led; newLeader runs in its own goroutine
// for each leader seen.
type callbacks struct {
	started   func(context.Context)
	stopped   func()
	newLeader func(identity string)
}

// elector is the algorithm of client-go's leader election on a Lease
// (tools/leaderelection with a LeaseLock and ReleaseOnCancel), written
// over the Leases interface: that package imports client-go's typed
// clients, and with them every built-in API group. Each replica trusts
// its own clock only: a Lease is held until leaseDuration after this
// replica saw its record last change.
type elector struct {
	cfg Config
	cb  callbacks
	log *slog.Logger

	mu sync.Mutex
	// lease is the Lease as last read or written, for the next update's
	// resourceVersion; nil before the first read.
	lease *coordinationv1.Lease
	// observed is the record last seen or written, observedAt when;
	// observedRaw is the record as last read, to tell whether it changed.
	observed    record
	observedAt  time.Time
	observedRaw []byte
	reported    string
	// part tells sharded replicas' Leases (partition.go); only the
	// campaign uses it.
	part *partition
}

// run campaigns until ctx ends; once it leads, it renews the Lease until
// it fails to within the renew deadline or ctx ends, then releases it.
func (e *elector) run(ctx context.Context) {
	defer e.cb.stopped()
	if !e.acquire(ctx) {
		return // ctx ended
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go e.cb.started(ctx)
	e.renew(ctx)
}

func (e *elector) acquire(ctx context.Context) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	succeeded := false
	wait.JitterUntilWithContext(ctx, func(ctx context.Context) {
		// Sharded replicas (Name-0, ...) split the releases otherwise: take
		// the Lease only while none holds one, and lead only if none took
		// one meanwhile (partition.go).
		if !e.partitionClear(ctx) {
			return
		}
		succeeded = e.tryAcquireOrRenew(ctx)
		e.maybeReportTransition()
		if succeeded && !e.partitionClear(ctx) {
			e.log.Warn("letting the Lease just taken go: a sharded replica took a shard's Lease meanwhile")
			e.release()
			succeeded = false
		}
		if succeeded {
			e.log.Debug("acquired the Lease")
			cancel()
		}
	}, e.cfg.RetryPeriod, jitterFactor, true)
	return succeeded
}

func (e *elector) renew(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		err := wait.PollUntilContextTimeout(ctx, e.cfg.RetryPeriod, e.cfg.RenewDeadline, true, func(ctx context.Context) (bool, error) {
			if err := ctx.Err(); err != nil {
				return false, err
			}
			return e.tryAcquireOrRenew(ctx), nil
		})
		e.maybeReportTransition()
		if err == nil {
			return
		}
		e.log.Info("failed to renew the Lease", "err", err)
		cancel()
	}, e.cfg.RetryPeriod)
	e.release()
}

// partitionClear reports whether no sharded replica holds a live
// shard's Lease.
func (e *elector) partitionClear(ctx context.Context) bool {
	return e.part.clear(ctx, e.cfg.Client, e.cfg.Namespace, e.cfg.RetryPeriod)
}

// tryAcquireOrRenew takes the Lease when it is free or expired, or renews
// it when this replica holds it; it reports whether this replica holds it.
func (e *elector) tryAcquireOrRenew(ctx context.Context) bool {
	now := metav1.NowMicro()
	rec := record{
		holder:               e.cfg.Identity,
		leaseDurationSeconds: int32(e.cfg.LeaseDuration / time.Second),
		acquire:              now,
		renew:                now,
	}
	// 1. The leader renews optimistically, on the Lease as it last wrote it.
	if e.isLeader() && e.isLeaseValid(now.Time) {
		old := e.observedRecord()
		rec.acquire, rec.transitions = old.acquire, old.transitions
		err := e.update(ctx, rec)
		if err == nil {
			e.setObserved(rec)
			return true
		}
		e.log.Debug("could not renew the Lease as last written; reading it", "err", err)
	}
	// 2. Read the Lease, or create it.
	lease, err := e.cfg.Client.Get(ctx, e.cfg.Namespace, e.cfg.Name)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			e.log.Warn("cannot read the Lease", "err", err)
			return false
		}
		created, err := e.cfg.Client.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: e.cfg.Namespace, Name: e.cfg.Name},
			Spec:       rec.spec(),
		})
		if err != nil {
			e.log.Warn("cannot create the Lease", "err", err)
			return false
		}
		e.setLease(created)
		e.setObserved(rec)
		return true
	}
	e.setLease(lease)
	// 3. A record seen for the first time starts its lease duration now.
	old := recordOf(lease.Spec)
	raw, err := json.Marshal(lease.Spec)
	if err != nil {
		e.log.Warn("cannot encode the Lease", "err", err)
		return false
	}
	e.mu.Lock()
	if !bytes.Equal(e.observedRaw, raw) {
		e.observed, e.observedAt, e.observedRaw = old, time.Now(), raw
	}
	e.mu.Unlock()
	if old.holder != "" && e.isLeaseValid(now.Time) && !e.isLeader() {
		return false // held by another replica, not expired
	}
	// 4. Take it over, or renew it.
	if e.isLeader() {
		rec.acquire, rec.transitions = old.acquire, old.transitions
	} else {
		rec.transitions = old.transitions + 1
	}
	if err := e.update(ctx, rec); err != nil {
		e.log.Warn("cannot update the Lease", "err", err)
		return false
	}
	e.setObserved(rec)
	return true
}

// release gives the Lease up when this replica holds it, so that another
// takes over at once rather than after the lease duration.
func (e *elector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RenewDeadline)
	defer cancel()
	for {
		lease, err := e.cfg.Client.Get(ctx, e.cfg.Namespace, e.cfg.Name)
		if err != nil {
			e.log.Warn("cannot read the Lease to release it", "err", err)
			return
		}
		old := recordOf(lease.Spec)
		if !e.isLeader() || old.holder != e.cfg.Identity {
			return
		}
		e.setLease(lease)
		now := metav1.NowMicro()
		rec := record{leaseDurationSeconds: 1, acquire: now, renew: now, transitions: old.transitions}
		err = e.update(ctx, rec)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			e.log.Warn("cannot release the Lease", "err", err)
			return
		}
		e.setObserved(rec)
		return
	}
}

// update writes rec to the Lease as last read or written.
func (e *elector) update(ctx context.Context, rec record) error {
	e.mu.Lock()
	if e.lease == nil {
		e.mu.Unlock()
		return apierrors.NewNotFound(coordinationv1.Resource("leases"), e.cfg.Name)
	}
	lease := e.lease.DeepCopy()
	e.mu.Unlock()
	lease.Spec = rec.spec()
	out, err := e.cfg.Client.Update(ctx, lease)
	if err != nil {
		return err
	}
	e.setLease(out)
	return nil
}

func (e *elector) setLease(l *coordinationv1.Lease) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lease = l
}

func (e *elector) setObserved(r record) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.observed, e.observedAt = r, time.Now()
}

func (e *elector) observedRecord() record {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.observed
}

func (e *elector) isLeader() bool {
	return e.observedRecord().holder == e.cfg.Identity
}

// isLeaseValid reports whether the record last seen still holds at now.
func (e *elector) isLeaseValid(now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.observedAt.Add(time.Duration(e.observed.leaseDurationSeconds) * time.Second).After(now)
}

// maybeReportTransition tells newLeader of a holder not told yet.
func (e *elector) maybeReportTransition() {
	e.mu.Lock()
	holder := e.observed.holder
	if holder == e.reported {
		e.mu.Unlock()
		return
	}
	e.reported = holder
	e.mu.Unlock()
	if e.cb.newLeader != nil {
		go e.cb.newLeader(holder)
	}
}
