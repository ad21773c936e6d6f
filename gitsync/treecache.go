package gitsync

import (
	"container/list"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// DefaultTreeCacheBytes bounds the decoded tree objects a Repo keeps
// (Config.TreeCacheBytes). A release costs about 1.5 KB of trees (its
// spec's and status file's directory entries, its source's directories),
// so this holds the trees of 10,000 releases with room for the versions
// recent commits replaced.
const DefaultTreeCacheBytes = 24 << 20

// Estimated memory of a cached directory, for the bound: the node itself
// with its list element and map slot, and per entry a TreeEntry plus its
// name's bytes.
const (
	dirNodeCost  = 160
	dirEntryCost = 48
)

// dirNode is one decoded tree object: its entries sorted by plain name (the
// order io/fs wants, in which names can be binary-searched; Git sorts a
// directory "a" as "a/"). It is never modified once built, so it is read
// without a lock.
type dirNode struct {
	hash    plumbing.Hash
	entries []object.TreeEntry
	cost    int64
}

func newDirNode(t *object.Tree) *dirNode {
	n := &dirNode{hash: t.Hash, entries: slices.Clone(t.Entries), cost: dirNodeCost}
	slices.SortFunc(n.entries, func(a, b object.TreeEntry) int { return strings.Compare(a.Name, b.Name) })
	for _, e := range n.entries {
		n.cost += dirEntryCost + int64(len(e.Name))
	}
	return n
}

// find returns the entry called name.
func (n *dirNode) find(name string) (object.TreeEntry, bool) {
	// A plain loop: slices.BinarySearchFunc's comparison closure was most
	// of the cost of a look-up.
	lo, hi := 0, len(n.entries)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if n.entries[m].Name < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(n.entries) && n.entries[lo].Name == name {
		return n.entries[lo], true
	}
	return object.TreeEntry{}, false
}

// treeCache keeps decoded tree objects by hash, least recently used
// dropped first once their estimated size passes max. A tree's hash names
// its content, so an entry never goes stale, whatever the commits. Every
// path look-up walks the directories from the root, and decoding a large
// directory (the status files of a namespace) on each look-up was most of
// the cost of a pass that changes nothing.
//
// It is weighed in bytes rather than counted in entries (as
// k8s.io/utils/lru would) because directory sizes vary by orders of
// magnitude: a count large enough for the small directories of sources
// would let versions of a directory of thousands of status files pile up.
type treeCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	order *list.List // of *dirNode, most recently used first
	nodes map[plumbing.Hash]*list.Element
}

func newTreeCache(maxBytes int64) *treeCache {
	return &treeCache{max: maxBytes, order: list.New(), nodes: map[plumbing.Hash]*list.Element{}}
}

func (c *treeCache) get(h plumbing.Hash) (*dirNode, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.nodes[h]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*dirNode), true
}

// add keeps n unless it alone is over the bound (it is then decoded again
// at each use, as before the cache).
func (c *treeCache) add(n *dirNode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.cost > c.max {
		return
	}
	if el, ok := c.nodes[n.hash]; ok {
		c.order.MoveToFront(el)
		return
	}
	c.nodes[n.hash] = c.order.PushFront(n)
	c.size += n.cost
	for c.size > c.max {
		el := c.order.Back()
		old := c.order.Remove(el).(*dirNode)
		delete(c.nodes, old.hash)
		c.size -= old.cost
	}
}

// stats are the cache's bytes and directories, for tests.
func (c *treeCache) stats() (size int64, dirs int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size, len(c.nodes)
}

// dir returns the decoded tree object h, from the cache or, holding r.mu
// for the storage, from the object store. The caller does not hold r.mu.
func (r *Repo) dir(h plumbing.Hash) (*dirNode, error) {
	if n, ok := r.trees.get(h); ok {
		return n, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dirLocked(h)
}

// dirLocked is dir for a caller holding r.mu.
func (r *Repo) dirLocked(h plumbing.Hash) (*dirNode, error) {
	if n, ok := r.trees.get(h); ok {
		return n, nil
	}
	t, err := r.repo.TreeObject(h)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", h, err)
	}
	n := newDirNode(t)
	r.trees.add(n)
	return n, nil
}
