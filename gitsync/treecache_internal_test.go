package gitsync

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

func testDir(i, entries int) *dirNode {
	t := &object.Tree{Hash: plumbing.NewHash(fmt.Sprintf("%040x", i+1))}
	for j := range entries {
		t.Entries = append(t.Entries, object.TreeEntry{Name: fmt.Sprintf("e%04d", entries-j), Mode: filemode.Regular})
	}
	return newDirNode(t)
}

func TestDirNodeFind(t *testing.T) {
	n := newDirNode(&object.Tree{Entries: []object.TreeEntry{
		{Name: "a.b", Mode: filemode.Regular}, {Name: "a", Mode: filemode.Dir}, {Name: "b", Mode: filemode.Regular},
	}})
	for _, tc := range []struct {
		name string
		want bool
	}{{"a", true}, {"a.b", true}, {"b", true}, {"c", false}, {"", false}, {"a/", false}} {
		e, ok := n.find(tc.name)
		if ok != tc.want || ok && e.Name != tc.name {
			t.Errorf("find(%q) = %v, %v; want found %v", tc.name, e.Name, ok, tc.want)
		}
	}
	if got := [3]string{n.entries[0].Name, n.entries[1].Name, n.entries[2].Name}; got != [3]string{"a", "a.b", "b"} {
		t.Errorf("entries in order %q, want plain name order", got)
	}
}

// TestTreeCacheBound: the estimated size never passes the bound, the
// least recently used directory goes first, and a directory over the
// bound on its own is not kept.
func TestTreeCacheBound(t *testing.T) {
	small := testDir(0, 10).cost
	tests := []struct {
		name     string
		max      int64
		add      []*dirNode
		touch    int // index of add read again before the last add; -1 none
		wantKept []int
	}{
		{"all fit", 3 * small, []*dirNode{testDir(0, 10), testDir(1, 10), testDir(2, 10)}, -1, []int{0, 1, 2}},
		{"oldest dropped", 2 * small, []*dirNode{testDir(0, 10), testDir(1, 10), testDir(2, 10)}, -1, []int{1, 2}},
		{"read keeps", 2 * small, []*dirNode{testDir(0, 10), testDir(1, 10), testDir(2, 10)}, 0, []int{0, 2}},
		{"too big alone", 2 * small, []*dirNode{testDir(0, 10), testDir(1, 1000)}, -1, []int{0}},
		{"big evicts many", testDir(9, 40).cost, []*dirNode{testDir(0, 10), testDir(1, 10), testDir(2, 40)}, -1, []int{2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newTreeCache(tc.max)
			for i, n := range tc.add {
				if i == len(tc.add)-1 && tc.touch >= 0 {
					if _, ok := c.get(tc.add[tc.touch].hash); !ok {
						t.Fatalf("directory %d gone before the bound was reached", tc.touch)
					}
				}
				c.add(n)
				if size, _ := c.stats(); size > tc.max {
					t.Fatalf("after add %d: size %d over the bound %d", i, size, tc.max)
				}
			}
			var kept []int
			for i, n := range tc.add {
				if got, ok := c.get(n.hash); ok {
					if got != n {
						t.Errorf("directory %d: got another node", i)
					}
					kept = append(kept, i)
				}
			}
			if fmt.Sprint(kept) != fmt.Sprint(tc.wantKept) {
				t.Errorf("kept %v, want %v", kept, tc.wantKept)
			}
			var want int64
			for _, i := range tc.wantKept {
				want += tc.add[i].cost
			}
			if size, dirs := c.stats(); size != want || dirs != len(tc.wantKept) {
				t.Errorf("stats = %d bytes, %d dirs; want %d, %d", size, dirs, want, len(tc.wantKept))
			}
		})
	}
}

// TestTreeCacheCostEstimate: the estimate the bound is kept in is not
// below what the cache really holds on the heap, for directories shaped
// like a release repository's: short names, a few entries each, and a
// few large ones.
func TestTreeCacheCostEstimate(t *testing.T) {
	const dirs = 3000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newTreeCache(1 << 40)
	for i := range dirs {
		entries := 3
		if i%100 == 0 {
			entries = 300
		}
		tr := &object.Tree{Hash: plumbing.NewHash(fmt.Sprintf("%040x", i+1))}
		for j := range entries {
			tr.Entries = append(tr.Entries, object.TreeEntry{Name: fmt.Sprintf("app-%05d.yaml", j), Mode: filemode.Regular})
		}
		c.add(newDirNode(tr))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	est, n := c.stats()
	runtime.KeepAlive(c)
	t.Logf("%d directories: estimated %d bytes, heap grew by %d", n, est, held)
	// 64 KiB of slack for what else the process allocated meanwhile.
	if held > est+64<<10 {
		t.Errorf("the cache holds %d bytes on the heap, more than its estimate %d: the bound would not hold", held, est)
	}
}
