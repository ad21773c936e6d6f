// Package leader elects one of Sluice's replicas to reconcile, with
// client-go's leader election algorithm on a coordination.k8s.io Lease:
// the leader renews the Lease every retry period; the others stand by and
// take over once it has not been renewed for a lease duration. Shards
// applies the same discipline to a fixed number of Leases, one a shard of
// the releases, which the replicas share fairly.
package leader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Defaults, as Kubernetes' own controllers use.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// ErrLost is returned when this replica stopped leading without being
// asked to: it could not renew the Lease in time, so another replica may
// lead already. The process should exit rather than carry on with what it
// was doing.
var ErrLost = errors.New("leader election lost")

// Config configures an election.
type Config struct {
	// Client reads and writes the Lease; see NewLeases.
	Client Leases
	// Namespace and Name of the Lease.
	Namespace, Name string
	// Identity names this replica in the Lease; see NewIdentity.
	Identity string
	// LeaseDuration is how long standbys wait after the last renewal
	// before taking over; RenewDeadline how long the leader keeps trying
	// to renew before it gives up; RetryPeriod how often both try.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// OnNewLeader, when set, is told the identity of each new leader
	// (this replica's included).
	OnNewLeader func(identity string)
	Log         *slog.Logger
}

// NewIdentity names a replica: its host (the pod's name) and a random
// suffix, so a restarted process never mistakes the Lease for its own,
// then "@" and the address where it serves /sync when advertise is set,
// so standbys can pass a sync request on to the leader.
func NewIdentity(host, advertise string) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	id := host + "_" + hex.EncodeToString(b[:])
	if advertise != "" {
		id += "@" + advertise
	}
	return id
}

// Address is the address a leader's identity advertises, "" when none.
func Address(identity string) string {
	_, addr, _ := strings.Cut(identity, "@")
	return addr
}

func (c *Config) validate() error {
	if c.Client == nil {
		return errors.New("leader election: no client")
	}
	if c.Namespace == "" || c.Name == "" || c.Identity == "" {
		return fmt.Errorf("leader election: Lease namespace %q, name %q and identity %q must all be set", c.Namespace, c.Name, c.Identity)
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = DefaultRenewDeadline
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = DefaultRetryPeriod
	}
	// client-go's own rules, said in terms of Sluice's flags.
	// A Lease records its duration in whole seconds: a fraction would be
	// cut off, and others would count the Lease expired before this
	// replica stops acting.
	if c.LeaseDuration%time.Second != 0 {
		return fmt.Errorf("leader election: lease duration %s must be a whole number of seconds (Leases record it in seconds)", c.LeaseDuration)
	}
	if c.LeaseDuration < c.RenewDeadline+time.Second {
		return fmt.Errorf("leader election: lease duration %s must be longer than the renew deadline %s by at least 1s", c.LeaseDuration, c.RenewDeadline)
	}
	if float64(c.RenewDeadline) <= jitterFactor*float64(c.RetryPeriod) {
		return fmt.Errorf("leader election: renew deadline %s must be longer than %.1f times the retry period %s", c.RenewDeadline, jitterFactor, c.RetryPeriod)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Run campaigns for the Lease until ctx ends. While this replica leads,
// lead runs with a context that ends when ctx does or leadership is lost.
// Run returns once lead has returned: nil when ctx ended, ErrLost when
// leadership was lost, or lead's own error. The Lease is released only
// after lead has returned, so the next leader never overlaps this one.
func Run(ctx context.Context, cfg Config, lead func(context.Context) error) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	log := cfg.Log.With("lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)
	// The elector has its own context: it must keep renewing the Lease
	// until lead has returned, even after ctx has ended.
	electCtx, stopElect := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElect()
	leadCtx, stopLead := context.WithCancel(ctx)
	defer stopLead()

	var (
		mu       sync.Mutex
		leadDone chan struct{} // closed when lead returns; nil until it starts
		leadErr  error
		lost     bool
	)
	el := &elector{
		cfg:  cfg,
		log:  log,
		part: newPartition(cfg.Name, 1, cfg.Identity, log, "not leading: a sharded replica holds a Lease"),
		cb: callbacks{
			started: func(context.Context) {
				mu.Lock()
				if leadCtx.Err() != nil {
					mu.Unlock()
					stopElect()
					return
				}
				done := make(chan struct{})
				leadDone = done
				mu.Unlock()
				log.Info("leading: this replica reconciles")
				err := lead(leadCtx)
				mu.Lock()
				leadErr = err
				mu.Unlock()
				close(done)
				// Done leading, for whatever reason: give the Lease up.
				stopElect()
			},
			stopped: func() {
				mu.Lock()
				started := leadDone != nil
				if started && electCtx.Err() == nil {
					lost = true
				}
				mu.Unlock()
				stopLead()
			},
			newLeader: func(identity string) {
				if identity != cfg.Identity {
					log.Info("standing by; another replica leads", "leader", identity)
				}
				if cfg.OnNewLeader != nil {
					cfg.OnNewLeader(identity)
				}
			},
		},
	}
	go func() {
		// On shutdown, stop reconciling first and release the Lease after.
		select {
		case <-ctx.Done():
		case <-electCtx.Done():
			return
		}
		mu.Lock()
		done := leadDone
		mu.Unlock()
		if done != nil {
			<-done
		}
		stopElect()
	}()
	log.Info("campaigning for leadership", "lease_duration", cfg.LeaseDuration, "renew_deadline", cfg.RenewDeadline, "retry_period", cfg.RetryPeriod)
	el.run(electCtx)

	mu.Lock()
	done := leadDone
	mu.Unlock()
	if done == nil {
		if ctx.Err() != nil {
			return nil // never led: ctx ended while standing by
		}
		// The Lease was lost before lead could even start.
		log.Error("leadership lost: could not renew the Lease in time")
		return ErrLost
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	switch {
	case leadErr != nil:
		return leadErr
	case lost:
		log.Error("leadership lost: could not renew the Lease in time")
		return ErrLost
	}
	log.Info("stopped leading; Lease released")
	return nil
}
