package renderer

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// genDir is where Sluice's generated kustomizations live inside the
// layered filesystem; a repository path there is refused.
const genDir = "/.sluice-render"

// layeredFS is a read-only kustomize filesystem: the repository (any
// io/fs.FS, such as a directory on disk or a Git tree) mounted at "/", with
// Sluice's generated files laid over it under genDir. Because the repository
// is the root, no path can escape it; it also records every repository file
// read, which is what a version's content revision is computed from.
type layeredFS struct {
	repo fs.FS
	gen  map[string][]byte // absolute path -> content

	mu   sync.Mutex
	read map[string]bool
}

var _ filesys.FileSystem = (*layeredFS)(nil)

func newLayeredFS(repo fs.FS) *layeredFS {
	return &layeredFS{repo: repo, gen: map[string][]byte{}, read: map[string]bool{}}
}

func (l *layeredFS) addGenerated(p string, data []byte) { l.gen[path.Clean(p)] = data }

// filesRead lists the repository files read since the last reset.
func (l *layeredFS) filesRead() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(maps.Keys(l.read))
}

func (l *layeredFS) resetRead() {
	l.mu.Lock()
	l.read = map[string]bool{}
	l.mu.Unlock()
}

func clean(p string) string {
	p = filepath.ToSlash(p)
	if !path.IsAbs(p) {
		p = "/" + p
	}
	return path.Clean(p)
}

// repoPath maps an absolute path to the io/fs name of the repository.
func repoPath(p string) string {
	if p == "/" {
		return "."
	}
	return strings.TrimPrefix(p, "/")
}

func isGen(p string) bool { return p == genDir || strings.HasPrefix(p, genDir+"/") }

func (l *layeredFS) genIsDir(p string) bool {
	if p == genDir {
		return true
	}
	prefix := p + "/"
	for k := range l.gen {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

func errReadOnly(op, p string) error {
	return &fs.PathError{Op: op, Path: p, Err: errors.New("the rendering filesystem is read-only")}
}

func (l *layeredFS) Create(p string) (filesys.File, error) { return nil, errReadOnly("create", p) }
func (l *layeredFS) Mkdir(p string) error                  { return errReadOnly("mkdir", p) }
func (l *layeredFS) MkdirAll(p string) error               { return errReadOnly("mkdir", p) }
func (l *layeredFS) RemoveAll(p string) error              { return errReadOnly("remove", p) }
func (l *layeredFS) WriteFile(p string, _ []byte) error    { return errReadOnly("write", p) }

func (l *layeredFS) Open(p string) (filesys.File, error) {
	return nil, &fs.PathError{Op: "open", Path: p, Err: errors.New("not supported; use ReadFile")}
}

func (l *layeredFS) IsDir(p string) bool {
	p = clean(p)
	if isGen(p) {
		return l.genIsDir(p)
	}
	st, err := fs.Stat(l.repo, repoPath(p))
	return err == nil && st.IsDir()
}

func (l *layeredFS) Exists(p string) bool {
	p = clean(p)
	if isGen(p) {
		_, ok := l.gen[p]
		return ok || l.genIsDir(p)
	}
	_, err := fs.Stat(l.repo, repoPath(p))
	return err == nil
}

func (l *layeredFS) ReadFile(p string) ([]byte, error) {
	p = clean(p)
	if isGen(p) {
		if data, ok := l.gen[p]; ok {
			return data, nil
		}
		return nil, &fs.PathError{Op: "read", Path: p, Err: fs.ErrNotExist}
	}
	data, err := fs.ReadFile(l.repo, repoPath(p))
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.read[repoPath(p)] = true
	l.mu.Unlock()
	return data, nil
}

func (l *layeredFS) ReadDir(p string) ([]string, error) {
	p = clean(p)
	if isGen(p) {
		seen := map[string]bool{}
		for k := range l.gen {
			if rest, ok := strings.CutPrefix(k, p+"/"); ok {
				name, _, _ := strings.Cut(rest, "/")
				seen[name] = true
			}
		}
		return slices.Sorted(maps.Keys(seen)), nil
	}
	entries, err := fs.ReadDir(l.repo, repoPath(p))
	if err != nil {
		return nil, err
	}
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Name()
	}
	return out, nil
}

func (l *layeredFS) CleanedAbs(p string) (filesys.ConfirmedDir, string, error) {
	p = clean(p)
	if l.IsDir(p) {
		return filesys.ConfirmedDir(p), "", nil
	}
	d := path.Dir(p)
	if !l.IsDir(d) {
		return "", "", fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	return filesys.ConfirmedDir(d), path.Base(p), nil
}

func (l *layeredFS) Glob(pattern string) ([]string, error) {
	pattern = clean(pattern)
	if isGen(pattern) {
		var out []string
		for k := range l.gen {
			if ok, _ := path.Match(pattern, k); ok {
				out = append(out, k)
			}
		}
		sort.Strings(out)
		return out, nil
	}
	matches, err := fs.Glob(l.repo, repoPath(pattern))
	if err != nil {
		return nil, err
	}
	for i, m := range matches {
		matches[i] = "/" + m
	}
	return matches, nil
}

func (l *layeredFS) Walk(root string, walkFn filepath.WalkFunc) error {
	root = clean(root)
	if isGen(root) {
		return fmt.Errorf("walk %s: not supported for generated files", root)
	}
	return fs.WalkDir(l.repo, repoPath(root), func(p string, d fs.DirEntry, err error) error {
		abs := clean(p)
		if err != nil {
			return walkFn(abs, nil, err)
		}
		info, ierr := d.Info()
		if ierr != nil {
			return walkFn(abs, nil, ierr)
		}
		return walkFn(abs, info, nil)
	})
}
