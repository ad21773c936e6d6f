package reconciler

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"

	"github.com/go-git/go-git/v5/plumbing"

	"sluice.dev/sluice/gitsync"
)

// specFile is a YAML file of the repository and its blob hash.
type specFile struct {
	path string
	blob plumbing.Hash
}

// listing is what a directory held when its tree had hash: its YAML files
// and its subdirectories. A directory whose tree hash is unchanged since
// the last snapshot is not walked again: Sluice's own commits change only
// the status directory, so refreshing after them costs a few lookups
// however many releases there are.
type listing struct {
	hash  plumbing.Hash
	files []specFile
	dirs  []string
}

// specFiles lists the YAML files under the configured paths, outside the
// status dir, with their blob hashes; changed is false when they are the
// same files with the same content as at the last call (the caller may
// then reuse what it built from them). r.listings is updated in place, so
// an unchanged directory costs one hash lookup whatever lies under it;
// callers are serialised by r.refreshMu.
func (r *Reconciler) specFiles(tree *gitsync.Tree) (files []specFile, changed bool, err error) {
	if r.listings == nil {
		r.listings = map[string]listing{}
	}
	for _, root := range r.cfg.Paths {
		root = path.Clean(root)
		c, err := r.listDir(tree, root)
		if errors.Is(err, fs.ErrNotExist) {
			if _, had := r.listings[root]; had {
				r.forget(root)
				changed = true
			}
			continue
		}
		if err != nil {
			return nil, true, fmt.Errorf("list %s: %w", root, err)
		}
		changed = changed || c
	}
	if !changed && r.listed {
		return nil, false, nil
	}
	r.listed = true
	for _, root := range r.cfg.Paths {
		if _, ok := r.listings[path.Clean(root)]; ok {
			files = collect(r.listings, path.Clean(root), files)
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	out := files[:0]
	for i, f := range files {
		if i == 0 || f.path != files[i-1].path {
			out = append(out, f)
		}
	}
	return out, true, nil
}

// collect appends the files of dir and of every directory under it.
func collect(listings map[string]listing, dir string, files []specFile) []specFile {
	l := listings[dir]
	files = append(files, l.files...)
	for _, d := range l.dirs {
		files = collect(listings, d, files)
	}
	return files
}

// listDir brings the listing of dir up to date and reports whether any
// file under it was added, removed or changed.
func (r *Reconciler) listDir(tree *gitsync.Tree, dir string) (bool, error) {
	h, err := tree.Hash(dir)
	if err != nil {
		return false, err
	}
	old, had := r.listings[dir]
	if had && old.hash == h {
		return false, nil
	}
	entries, err := tree.ReadDir(dir)
	if err != nil {
		return false, err
	}
	l := listing{hash: h}
	changed := false
	for _, e := range entries {
		p := path.Join(dir, e.Name())
		if e.IsDir() {
			if p == r.cfg.StatusDir || e.Name() == ".git" {
				continue
			}
			c, err := r.listDir(tree, p)
			if err != nil {
				return false, err
			}
			changed = changed || c
			l.dirs = append(l.dirs, p)
			continue
		}
		if ext := path.Ext(p); ext != ".yaml" && ext != ".yml" {
			continue
		}
		blob, err := tree.Hash(p)
		if err != nil {
			return false, err
		}
		l.files = append(l.files, specFile{path: p, blob: blob})
	}
	if had {
		// Subdirectories that are gone take their listings with them.
		for _, d := range old.dirs {
			if !slices.Contains(l.dirs, d) {
				r.forget(d)
				changed = true
			}
		}
		changed = changed || !slices.Equal(old.files, l.files)
	} else {
		changed = changed || len(l.files) > 0
	}
	r.listings[dir] = l
	return changed, nil
}

// forget drops the listings of dir and everything under it.
func (r *Reconciler) forget(dir string) {
	l, ok := r.listings[dir]
	if !ok {
		return
	}
	delete(r.listings, dir)
	for _, d := range l.dirs {
		r.forget(d)
	}
}
