package leader

import (
	"cmp"
	"hash/fnv"
	"slices"
)

// ShardOf is the shard of a release: the FNV-1a (32-bit) hash of its ID,
// "namespace/name", modulo the number of shards. It depends on nothing
// else, so every replica (and a person with the same formula) places a
// release in the same shard; changing the number of shards moves most
// releases.
func ShardOf(id string, shards int) int {
	if shards <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(id)) // a hash.Hash never fails to write
	return int(h.Sum32() % uint32(shards))
}

// view is what one replica sees of the shard Leases at one moment.
type view struct {
	// holders has one entry per shard: the identity holding it, "" when
	// it is free (no Lease, no holder, or not renewed for a lease
	// duration), unknownHolder when its Lease could not be read.
	holders []string
	// waiting are replicas that announced they hold less than their
	// share and found no free shard (see Shards).
	waiting []string
}

// unknownHolder holds a shard whose Lease could not be read: it is
// neither free nor counted as anyone's.
const unknownHolder = "\x00unknown"

// members are the replicas that share the shards, sorted: every live
// holder, every live waiting replica, and self.
func (v view) members(self string) []string {
	m := []string{self}
	for _, h := range v.holders {
		if h != "" && h != unknownHolder {
			m = append(m, h)
		}
	}
	m = append(m, v.waiting...)
	slices.Sort(m)
	return slices.Compact(m)
}

// held counts the shards each identity holds.
func (v view) held() map[string]int {
	n := map[string]int{}
	for _, h := range v.holders {
		if h != "" && h != unknownHolder {
			n[h]++
		}
	}
	return n
}

// target is self's fair share: with n shards among r members, each holds
// n/r, and the n%r members holding the most now (ties by identity) hold
// one more. Every member computes the same targets from the same view,
// they add up to n, none exceeds ceil(n/r), and a member joining or
// leaving moves as few shards as it can: the replicas already holding the
// extra shards keep them.
func (v view) target(self string) int {
	members := v.members(self)
	if len(v.holders) == 0 {
		return 0
	}
	held := v.held()
	base, extra := len(v.holders)/len(members), len(v.holders)%len(members)
	slices.SortFunc(members, func(a, b string) int {
		return cmp.Or(cmp.Compare(held[b], held[a]), cmp.Compare(a, b))
	})
	if slices.Index(members, self) < extra {
		return base + 1
	}
	return base
}

// plan is what self does with the shards next: release its surplus
// above its target (the highest-numbered of those it holds), or try to
// take free shards up to its target, starting at start so that replicas
// spread over the shards rather than all racing for the first; wait is
// set when it holds less than its target and no shard is free, so it must
// announce itself for a holder above the new share to release one.
// releasing are shards self holds but already gives up.
func (v view) plan(self string, releasing map[int]bool, start int) (release, acquire []int, wait bool) {
	t := v.target(self)
	var mine []int
	for i, h := range v.holders {
		if h == self && !releasing[i] {
			mine = append(mine, i)
		}
	}
	if len(mine) > t {
		return mine[t:], nil, false
	}
	n := len(v.holders)
	for k := range n {
		if len(mine)+len(acquire) >= t {
			break
		}
		i := (start + k) % n
		if v.holders[i] == "" {
			acquire = append(acquire, i)
		}
	}
	return nil, acquire, len(mine)+len(acquire) < t
}
