package dashboard

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

// errNotSynced: the source has no head yet (the first Git sync is under way).
var errNotSynced = errors.New("the Git repository has not been synced yet")

// index is what the dashboard knows of one head: the status files and the
// release specs they name, and, built the first time a release page needs
// it, the history of every release.
type index struct {
	head     plumbing.Hash
	tree     fs.FS
	statuses []*record.Status
	// specs holds each release's spec at head (nil when it has no
	// readable one: the reason is in specErrs).
	specs    map[string]*specs.Release
	specErrs map[string]string

	histOnce sync.Once
	hist     *history
	histErr  error
}

// commitInfo is one commit of a release's history.
type commitInfo struct {
	Hash    plumbing.Hash
	When    time.Time
	Author  string
	Action  record.Action
	Step    string
	Subject string
}

// history is every release's commits, oldest first.
type history struct {
	byRelease map[string][]commitInfo
	// truncated: the walk stopped at maxCommits; older runs are missing.
	truncated bool
}

// store caches indexes and what never changes: specs by content, statuses
// by commit.
type store struct {
	src        Source
	statusDir  string
	maxCommits int

	mu        sync.Mutex
	cur       *index
	specCache map[[sha256.Size]byte]parsedSpec
	statuses  map[statusKey]*record.Status
}

type parsedSpec struct {
	releases []*specs.Release
	err      error
}

type statusKey struct {
	commit  plumbing.Hash
	release string
}

// maxCachedStatuses bounds the statuses read at past commits kept in
// memory; the cache starts again empty past it.
const maxCachedStatuses = 20000

func newStore(src Source, statusDir string, maxCommits int) *store {
	return &store{
		src: src, statusDir: statusDir, maxCommits: maxCommits,
		specCache: map[[sha256.Size]byte]parsedSpec{},
		statuses:  map[statusKey]*record.Status{},
	}
}

// index returns the index of the source's current head, building it when
// the head moved.
func (s *store) index(ctx context.Context) (*index, error) {
	head, ok, err := s.src.Head()
	if err != nil {
		return nil, fmt.Errorf("read the head: %w", err)
	}
	if !ok {
		return nil, errNotSynced
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && s.cur.head == head {
		return s.cur, nil
	}
	tree, err := s.src.Tree(ctx, head)
	if err != nil {
		return nil, err
	}
	list, err := record.ReadAll(tree, s.statusDir)
	if err != nil {
		return nil, fmt.Errorf("read the status files at %s: %w", head, err)
	}
	ix := &index{head: head, tree: tree, statuses: list, specs: map[string]*specs.Release{}, specErrs: map[string]string{}}
	for _, st := range list {
		rel, err := s.specLocked(tree, st.SpecFile, st.Release)
		if err != nil {
			ix.specErrs[st.Release] = err.Error()
			continue
		}
		ix.specs[st.Release] = rel
	}
	s.cur = ix
	return ix, nil
}

// specLocked is the release id in file of tree, parsed once per content.
func (s *store) specLocked(tree fs.FS, file, id string) (*specs.Release, error) {
	if file == "" {
		return nil, errors.New("the status names no spec file")
	}
	data, err := fs.ReadFile(tree, file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	sum := sha256.Sum256(append([]byte(file+"\x00"), data...))
	p, ok := s.specCache[sum]
	if !ok {
		rels, err := specs.Parse(file, data)
		p = parsedSpec{releases: rels, err: err}
		s.specCache[sum] = p
	}
	for _, r := range p.releases {
		if r.ID() == id {
			return r, nil
		}
	}
	if p.err != nil {
		return nil, p.err
	}
	return nil, fmt.Errorf("%s holds no release %s", file, id)
}

// specAt is a release's spec at a past commit; nil when it had none.
func (s *store) specAt(ctx context.Context, commit plumbing.Hash, file, id string) *specs.Release {
	tree, err := s.src.Tree(ctx, commit)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rel, _ := s.specLocked(tree, file, id)
	return rel
}

// history returns every release's commits at the index's head, walking
// the log once per head.
func (s *store) history(ctx context.Context, ix *index) (*history, error) {
	ix.histOnce.Do(func() {
		// The walk outlives one request: a page that gives up must not
		// leave the index without its history.
		ix.hist, ix.histErr = s.walk(context.WithoutCancel(ctx))
	})
	return ix.hist, ix.histErr
}

func (s *store) walk(ctx context.Context) (*history, error) {
	h := &history{byRelease: map[string][]commitInfo{}}
	n := 0
	err := s.src.Log(ctx, func(c *object.Commit) error {
		if n++; s.maxCommits > 0 && n > s.maxCommits {
			h.truncated = true
			return gitsync.ErrStopLog
		}
		for _, t := range record.CommitTransitions(c) {
			h.byRelease[t.Release] = append(h.byRelease[t.Release], commitInfo{
				Hash: t.Hash, When: t.When, Author: t.Author, Action: t.Action, Step: t.Step, Subject: t.Subject,
			})
		}
		return nil
	})
	if err != nil && !errors.Is(err, gitsync.ErrStopLog) {
		return nil, fmt.Errorf("read the Git history: %w", err)
	}
	for _, list := range h.byRelease {
		slices.Reverse(list)
	}
	return h, nil
}

// statusAt is the status file of release id at a commit of its history;
// nil when the commit has none.
func (s *store) statusAt(ctx context.Context, commit plumbing.Hash, id string) (*record.Status, error) {
	key := statusKey{commit, id}
	s.mu.Lock()
	st, ok := s.statuses[key]
	s.mu.Unlock()
	if ok {
		return st, nil
	}
	ns, name, _ := strings.Cut(id, "/")
	tree, err := s.src.Tree(ctx, commit)
	if err != nil {
		return nil, err
	}
	st, err = record.Read(tree, s.statusDir, ns, name)
	if err != nil {
		return nil, fmt.Errorf("status of %s at %s: %w", id, commit, err)
	}
	s.mu.Lock()
	if len(s.statuses) >= maxCachedStatuses {
		clear(s.statuses)
	}
	s.statuses[key] = st
	s.mu.Unlock()
	return st, nil
}
