package record

import (
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// HashFS is a file system that names each file's content by a hash, as a
// gitsync.Tree does with Git object hashes.
type HashFS interface {
	fs.FS
	Hash(name string) (plumbing.Hash, error)
}

// StatusCache reads status files as Read does, but parses a file again
// only when its blob changed: a pass over every release, after a commit
// that changed none, otherwise spent much of its time parsing the same
// YAML. It keeps one parse per release and status directory, replaced when
// the blob changes; Forget drops a release's. Safe for concurrent use.
type StatusCache struct {
	mu sync.Mutex
	// byRelease is namespace/name -> status directory -> the last parse.
	byRelease map[string]map[string]parsedStatus
}

type parsedStatus struct {
	blob plumbing.Hash
	st   *Status
}

// NewStatusCache returns an empty cache.
func NewStatusCache() *StatusCache {
	return &StatusCache{byRelease: map[string]map[string]parsedStatus{}}
}

// Read returns the status of namespace/name under dir in fsys, nil when
// none is recorded; the Status is the caller's own (a deep copy of the
// cached parse), free to change.
func (c *StatusCache) Read(fsys HashFS, dir, namespace, name string) (*Status, error) {
	p := StatusPath(dir, namespace, name)
	id := namespace + "/" + name
	blob, err := fsys.Hash(p)
	if errors.Is(err, fs.ErrNotExist) {
		c.drop(id, dir)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", id, err)
	}
	c.mu.Lock()
	ps, ok := c.byRelease[id][dir]
	c.mu.Unlock()
	if ok && ps.blob == blob {
		return ps.st.DeepCopy(), nil
	}
	data, err := fs.ReadFile(fsys, p)
	if errors.Is(err, fs.ErrNotExist) {
		c.drop(id, dir)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st, err := ParseStatus(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	c.mu.Lock()
	if c.byRelease[id] == nil {
		c.byRelease[id] = map[string]parsedStatus{}
	}
	c.byRelease[id][dir] = parsedStatus{blob: blob, st: st}
	c.mu.Unlock()
	return st.DeepCopy(), nil
}

// Forget drops what the cache holds of namespace/name, in every status
// directory: a release deleted, or no longer this Sluice's.
func (c *StatusCache) Forget(namespace, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byRelease, namespace+"/"+name)
}

// Len is the number of parses held, for tests.
func (c *StatusCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, dirs := range c.byRelease {
		n += len(dirs)
	}
	return n
}

func (c *StatusCache) drop(id, dir string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if dirs, ok := c.byRelease[id]; ok {
		delete(dirs, dir)
		if len(dirs) == 0 {
			delete(c.byRelease, id)
		}
	}
}
