package gitsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Tree is the file tree of one commit, read straight from git objects
// without a checkout. It implements io/fs.FS, fs.ReadFileFS, fs.ReadDirFS
// and fs.StatFS; paths are slash-separated and relative to the repository
// root ("." is the root). Methods are safe for concurrent use. Paths are
// resolved through the Repo's cache of decoded directories, without its
// mutex unless a directory must be decoded.
type Tree struct {
	r      *Repo
	commit plumbing.Hash
	root   *dirNode
	mtime  time.Time
}

var (
	_ fs.ReadFileFS = (*Tree)(nil)
	_ fs.ReadDirFS  = (*Tree)(nil)
	_ fs.StatFS     = (*Tree)(nil)
)

// Tree returns the tree of commit, which must be in the local cache (a
// head returned by Sync, or any commit Log visited).
func (r *Repo) Tree(ctx context.Context, commit plumbing.Hash) (*Tree, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.repo.CommitObject(commit)
	if err != nil {
		return nil, fmt.Errorf("tree of commit %s: %w", commit, err)
	}
	root, err := r.dirLocked(c.TreeHash)
	if err != nil {
		return nil, fmt.Errorf("tree of commit %s: %w", commit, err)
	}
	return &Tree{r: r, commit: commit, root: root, mtime: c.Committer.When}, nil
}

// Commit returns the commit this tree belongs to.
func (t *Tree) Commit() plumbing.Hash { return t.commit }

// entry finds name; the root has a zero mode and the root tree's hash.
// The caller does not hold t.r.mu.
func (t *Tree) entry(op, name string) (object.TreeEntry, error) {
	if !fs.ValidPath(name) {
		return object.TreeEntry{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return object.TreeEntry{Name: ".", Mode: filemode.Dir, Hash: t.root.hash}, nil
	}
	dir, rest := t.root, name
	for {
		elem, after, more := strings.Cut(rest, "/")
		e, ok := dir.find(elem)
		if !ok {
			return object.TreeEntry{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if !more {
			return e, nil
		}
		if e.Mode != filemode.Dir {
			// A path through a file, as go-git's FindEntry has it.
			return object.TreeEntry{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		sub, err := t.r.dir(e.Hash)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return object.TreeEntry{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if err != nil {
			return object.TreeEntry{}, &fs.PathError{Op: op, Path: name, Err: err}
		}
		dir, rest = sub, after
	}
}

// Hash returns the git object hash of the file or directory at name (the
// root tree's hash for "."). It changes exactly when the content under name
// changes, whatever the commit, so it identifies content cheaply.
func (t *Tree) Hash(name string) (plumbing.Hash, error) {
	e, err := t.entry("hash", name)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return e.Hash, nil
}

// ContentID identifies the content of several paths at once (for a release:
// its spec and the sources it renders): "sha256:" and a hex digest over the
// sorted paths and their object hashes. Commits that leave all of them
// unchanged keep the same ID. Every path must exist.
func (t *Tree) ContentID(paths ...string) (string, error) {
	if len(paths) == 0 {
		return "", errors.New("content id: no paths given")
	}
	ps := slices.Clone(paths)
	for i, p := range ps {
		ps[i] = path.Clean(p)
	}
	slices.Sort(ps)
	ps = slices.Compact(ps)
	h := sha256.New()
	// Each line is "<object hash> <path>\n", written without fmt: this
	// runs for every release at every reconcile.
	line := make([]byte, 0, 128)
	for _, p := range ps {
		oh, err := t.Hash(p)
		if err != nil {
			return "", fmt.Errorf("content id: %w", err)
		}
		line = hex.AppendEncode(line[:0], oh[:])
		line = append(line, ' ')
		line = append(line, p...)
		line = append(line, '\n')
		h.Write(line)
	}
	var sum [sha256.Size]byte
	return "sha256:" + hex.EncodeToString(h.Sum(sum[:0])), nil
}

// ReadFile implements fs.ReadFileFS.
func (t *Tree) ReadFile(name string) ([]byte, error) {
	e, err := t.entry("read", name)
	if err != nil {
		return nil, err
	}
	if !e.Mode.IsFile() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("is a directory or submodule")}
	}
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	return t.r.readBlob(e.Hash, name)
}

// readBlob returns a blob's content. The caller holds r.mu.
func (r *Repo) readBlob(h plumbing.Hash, name string) ([]byte, error) {
	b, err := r.repo.BlobObject(h)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	rd, err := b.Reader()
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	defer rd.Close()
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return data, nil
}

// Stat implements fs.StatFS.
func (t *Tree) Stat(name string) (fs.FileInfo, error) {
	e, err := t.entry("stat", name)
	if err != nil {
		return nil, err
	}
	fi, err := t.info(e, path.Base(name))
	if err != nil {
		return nil, err
	}
	return fi, nil
}

// info builds a FileInfo; the caller does not hold t.r.mu, which it takes
// to read a file's size.
func (t *Tree) info(e object.TreeEntry, base string) (*fileInfo, error) {
	fi := &fileInfo{name: base, mtime: t.mtime}
	switch e.Mode {
	case filemode.Dir:
		fi.mode = fs.ModeDir | 0o555
		return fi, nil
	case filemode.Executable:
		fi.mode = 0o555
	case filemode.Symlink:
		fi.mode = fs.ModeSymlink | 0o444
	case filemode.Submodule:
		fi.mode = fs.ModeIrregular
		return fi, nil
	default:
		fi.mode = 0o444
	}
	t.r.mu.Lock()
	sz, err := t.r.st.EncodedObject(plumbing.BlobObject, e.Hash)
	t.r.mu.Unlock()
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: base, Err: err}
	}
	fi.size = sz.Size()
	return fi, nil
}

// ReadDir implements fs.ReadDirFS; entries are sorted by name.
func (t *Tree) ReadDir(name string) ([]fs.DirEntry, error) {
	e, err := t.entry("readdir", name)
	if err != nil {
		return nil, err
	}
	return t.readDir(name, e)
}

// readDir lists the directory e found at name, in plain name order (the
// order dirNode keeps).
func (t *Tree) readDir(name string, e object.TreeEntry) ([]fs.DirEntry, error) {
	if e.Mode != filemode.Dir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	sub, err := t.r.dir(e.Hash)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, 0, len(sub.entries))
	for _, se := range sub.entries {
		out = append(out, &dirEntry{t: t, e: se})
	}
	return out, nil
}

// Open implements fs.FS. A file's content is read into memory on Open:
// release specs and manifests are small, and the file then stays readable
// while the Repo syncs.
func (t *Tree) Open(name string) (fs.File, error) {
	e, err := t.entry("open", name)
	if err != nil {
		return nil, err
	}
	fi, err := t.info(e, path.Base(name))
	if err != nil {
		return nil, err
	}
	switch {
	case e.Mode == filemode.Dir:
		entries, err := t.readDir(name, e)
		if err != nil {
			return nil, err
		}
		return &dirFile{info: fi, entries: entries}, nil
	case e.Mode.IsFile():
		t.r.mu.Lock()
		data, err := t.r.readBlob(e.Hash, name)
		t.r.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return &blobFile{info: fi, Reader: bytes.NewReader(data)}, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("submodules are not readable")}
}

type fileInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return fi.size }
func (fi *fileInfo) Mode() fs.FileMode  { return fi.mode }
func (fi *fileInfo) ModTime() time.Time { return fi.mtime }
func (fi *fileInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi *fileInfo) Sys() any           { return nil }

// dirEntry reads its size only when Info is called: a directory of
// thousands of files is listed without loading their blobs.
type dirEntry struct {
	t *Tree
	e object.TreeEntry
}

func (d *dirEntry) Name() string { return d.e.Name }
func (d *dirEntry) IsDir() bool  { return d.e.Mode == filemode.Dir }
func (d *dirEntry) Type() fs.FileMode {
	switch d.e.Mode {
	case filemode.Dir:
		return fs.ModeDir
	case filemode.Symlink:
		return fs.ModeSymlink
	case filemode.Submodule:
		return fs.ModeIrregular
	}
	return 0
}

func (d *dirEntry) Info() (fs.FileInfo, error) {
	fi, err := d.t.info(d.e, d.e.Name)
	if err != nil {
		return nil, err
	}
	return fi, nil
}

func (d *dirEntry) String() string { return fs.FormatDirEntry(d) }

type blobFile struct {
	info *fileInfo
	*bytes.Reader
}

func (f *blobFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *blobFile) Close() error               { return nil }

type dirFile struct {
	info    *fileInfo
	entries []fs.DirEntry
	off     int
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dirFile) Close() error               { return nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errors.New("is a directory")}
}

// ReadDir implements fs.ReadDirFile.
func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	if n > len(rest) {
		n = len(rest)
	}
	d.off += n
	return rest[:n], nil
}
