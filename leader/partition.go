package leader

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

// Replicas that split the releases into different numbers of shards must
// never act at the same time: a release in shard 2 of 4 may be in shard 5
// of 6, and each replica would reconcile it under a Lease of its own. That
// happens when --shards changes in a rolling update, or when the single
// leader (--shards 1, whose Lease is named Name) meets sharded replicas
// (Name-0, Name-1, ...). So every Lease a sharded replica writes says its
// count (countAnnotation); a replica takes no Lease while it sees a live
// one held under another count; and after taking Leases it lists them
// again before it acts on any. Of two replicas that took Leases under
// different counts at about the same moment, the later one's second list
// sees the earlier one's Lease (a list is a consistent read), and it lets
// go of what it took without acting on it.

// countAnnotation on a shard's Lease is the number of shards its holder
// splits the releases into.
const countAnnotation = "shards.sluice.dev/count"

// partition tells this replica's Leases from those of replicas that
// split the releases differently, from a list of the namespace's Leases.
type partition struct {
	// name is the single leader's Lease; name-<i> are shards'.
	name     string
	count    int
	identity string
	// seen is when each Lease's record last changed, as this replica saw
	// it: as everywhere here, a Lease is live until its duration after that.
	seen map[string]sighting
	// blocked is what clear last found in the way, so that the log says
	// each change once.
	blocked string
	log     *slog.Logger
	// waitMsg is logged when another count blocks this replica.
	waitMsg string
}

type sighting struct {
	raw string
	at  time.Time
}

func newPartition(name string, count int, identity string, log *slog.Logger, waitMsg string) *partition {
	return &partition{name: name, count: count, identity: identity, seen: map[string]sighting{}, log: log, waitMsg: waitMsg}
}

// clear lists the Leases and reports whether no replica with another
// count holds a live one; an error listing them counts as not clear. The
// log says when that changes.
func (p *partition) clear(ctx context.Context, client Leases, namespace string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	found, err := p.conflicts(ctx, client, namespace)
	why := strings.Join(found, "; ")
	if err != nil {
		why = err.Error()
	}
	if why != p.blocked {
		p.blocked = why
		if why != "" {
			p.log.Error(p.waitMsg+" (all replicas must run with the same --shards; change it by scaling to 0 or with a Recreate rollout)", "shards", p.count, "conflicts", why)
		} else {
			p.log.Info("no replica with another shard count holds a Lease any more")
		}
	}
	return why == ""
}

// conflicts lists the namespace's Leases and returns those held, and not
// expired, by another replica under another count, described for a log.
func (p *partition) conflicts(ctx context.Context, client Leases, namespace string) ([]string, error) {
	leases, err := client.List(ctx, namespace)
	if err != nil {
		return nil, fmt.Errorf("list the Leases in %s: %w", namespace, err)
	}
	return p.observe(leases, time.Now()), nil
}

// observe notes the Leases listed at now and returns the conflicting ones.
func (p *partition) observe(leases []coordinationv1.Lease, now time.Time) []string {
	var out []string
	listed := map[string]bool{}
	for _, l := range leases {
		count, ours := p.countOf(&l)
		if !ours {
			continue
		}
		listed[l.Name] = true
		raw, err := json.Marshal(l.Spec)
		if err != nil {
			continue
		}
		s, ok := p.seen[l.Name]
		if !ok || s.raw != string(raw) {
			s = sighting{raw: string(raw), at: now}
			p.seen[l.Name] = s
		}
		rec := recordOf(l.Spec)
		if rec.holder == "" || rec.holder == p.identity || count == p.count {
			continue
		}
		if !s.at.Add(time.Duration(rec.leaseDurationSeconds) * time.Second).After(now) {
			continue // expired: its holder stopped acting a while ago
		}
		out = append(out, fmt.Sprintf("%s held by %s with %s", l.Name, rec.holder, countText(count)))
	}
	for name := range p.seen {
		if !listed[name] {
			delete(p.seen, name)
		}
	}
	slices.Sort(out)
	return out
}

// countOf is the count a Lease's holder splits the releases into, -1 when
// unknown; ours is false for a Lease that is not the single leader's nor
// a shard's.
func (p *partition) countOf(l *coordinationv1.Lease) (count int, ours bool) {
	if l.Name == p.name {
		return 1, true
	}
	suffix, ok := strings.CutPrefix(l.Name, p.name+"-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(suffix)
	if err != nil || i < 0 || strconv.Itoa(i) != suffix {
		return 0, false
	}
	if c, err := strconv.Atoi(l.Annotations[countAnnotation]); err == nil && c > 0 {
		return c, true
	}
	// A shard's Lease that does not say its count was written before
	// Leases said it: one of this replica's shards is taken as written
	// under the same count, any other as under an unknown one.
	if p.count > 1 && i < p.count {
		return p.count, true
	}
	return -1, true
}

func countText(count int) string {
	switch count {
	case -1:
		return "an unknown number of shards"
	case 1:
		return "one shard (the single leader)"
	default:
		return strconv.Itoa(count) + " shards"
	}
}
