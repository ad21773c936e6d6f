package gitsync

import (
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// cachedRefs is an on-disk cache whose references are also kept in memory.
// Every reconcile reads the watched branch's head, and the file storage
// reads a reference from its file (or packed-refs) each time, stat'ing
// every directory on the way. The cache directory is this process's own
// and go-git writes references only through the storage, so the copy in
// memory stays the same as the files.
type cachedRefs struct {
	*filesystem.Storage

	mu   sync.Mutex
	refs map[plumbing.ReferenceName]*plumbing.Reference
}

func newCachedRefs(s *filesystem.Storage) *cachedRefs {
	return &cachedRefs{Storage: s, refs: map[plumbing.ReferenceName]*plumbing.Reference{}}
}

func (c *cachedRefs) Reference(n plumbing.ReferenceName) (*plumbing.Reference, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ref, ok := c.refs[n]; ok {
		return ref, nil
	}
	ref, err := c.Storage.Reference(n)
	if err == nil {
		c.refs[n] = ref
	}
	return ref, err
}

func (c *cachedRefs) SetReference(ref *plumbing.Reference) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.Storage.SetReference(ref)
	c.remember(ref, err)
	return err
}

func (c *cachedRefs) CheckAndSetReference(ref, old *plumbing.Reference) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.Storage.CheckAndSetReference(ref, old)
	c.remember(ref, err)
	return err
}

func (c *cachedRefs) RemoveReference(n plumbing.ReferenceName) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.refs, n)
	return c.Storage.RemoveReference(n)
}

// remember notes a reference written, or forgets it when the write failed
// (the file may or may not have changed: the next read looks).
func (c *cachedRefs) remember(ref *plumbing.Reference, err error) {
	if err != nil {
		delete(c.refs, ref.Name())
		return
	}
	c.refs[ref.Name()] = ref
}
