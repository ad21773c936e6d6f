package gitsync

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// compactAt is the number of packs in the cache that triggers compaction.
// Every fetch that brings commits adds a pack, and go-git searches packs
// one by one, so a long-running Sluice would slow down without it.
const compactAt = 50

// maxOpenPacks is how many packs the on-disk cache keeps open: all of
// them until compaction, which closes them.
const maxOpenPacks = compactAt + 14

// compactWindow is the delta search window when rewriting the cache (git's
// default).
const compactWindow = 10

// maybeCompact rewrites all objects of an on-disk cache into one pack once
// there are compactAt packs. go-git's own RepackObjects walks history from
// the refs and fails on a shallow clone, so this packs every stored object
// instead. The caller holds r.mu.
func (r *Repo) maybeCompact() error {
	pos, ok := r.st.(storer.PackedObjectStorer)
	if !ok {
		return nil
	}
	packs, err := pos.ObjectPacks()
	if err != nil || len(packs) < compactAt {
		return err
	}
	start := time.Now()
	n, err := r.compact(pos, packs)
	if err != nil {
		return fmt.Errorf("compact cache: %w", err)
	}
	r.log.Debug("git cache compacted", "packs", len(packs), "objects", n, "elapsed", time.Since(start))
	return nil
}

// compactOrWarn compacts when due; a failure only costs speed, so it is
// logged, not returned.
func (r *Repo) compactOrWarn(ctx context.Context) {
	if err := r.maybeCompact(); err != nil {
		r.log.WarnContext(ctx, "git cache compaction failed; reads get slower as packs pile up", "err", err)
	}
}

func (r *Repo) compact(pos storer.PackedObjectStorer, old []plumbing.Hash) (int, error) {
	pw, ok := r.st.(storer.PackfileWriter)
	if !ok {
		return 0, nil
	}
	var hashes []plumbing.Hash
	iter, err := r.st.IterEncodedObjects(plumbing.AnyObject)
	if err != nil {
		return 0, err
	}
	err = iter.ForEach(func(o plumbing.EncodedObject) error {
		hashes = append(hashes, o.Hash())
		return nil
	})
	if err != nil {
		return 0, err
	}
	w, err := pw.PackfileWriter()
	if err != nil {
		return 0, err
	}
	newPack, err := packfile.NewEncoder(w, r.st, false).Encode(hashes, compactWindow)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	// The new pack holds everything, so the old packs and loose objects
	// can go. A crash before this point only leaves duplicates behind.
	for _, h := range old {
		if h == newPack {
			continue
		}
		if err := pos.DeleteOldObjectPackAndIndex(h, time.Time{}); err != nil {
			return 0, err
		}
	}
	// The storage keeps packs open and every pack's index in memory: close
	// them (it opens what it needs again) and drop the deleted ones' indexes,
	// so that no lookup is sent to a pack that is gone and no descriptor
	// keeps a deleted pack's space.
	if c, ok := r.st.(io.Closer); ok {
		if err := c.Close(); err != nil {
			return 0, err
		}
	}
	if ri, ok := r.st.(interface{ Reindex() }); ok {
		ri.Reindex()
	}
	if los, ok := r.st.(storer.LooseObjectStorer); ok {
		err := los.ForEachObjectHash(func(h plumbing.Hash) error {
			return los.DeleteLooseObject(h)
		})
		if err != nil {
			return 0, err
		}
	}
	return len(hashes), nil
}
