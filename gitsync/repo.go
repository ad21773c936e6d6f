package gitsync

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Depth values for Config.Depth.
const (
	// DefaultDepth is used when Config.Depth is 0: Sluice reads trees, so
	// one commit of history is enough to reconcile.
	DefaultDepth = 1
	// FullHistory fetches all history.
	FullHistory = -1
)

// unshallowDepth asks the server for all history while still telling it
// which commits are shallow here (git's own --unshallow uses this value).
const unshallowDepth = 0x7fffffff

// Signature is the name and e-mail of a commit's author or committer.
type Signature struct {
	Name  string
	Email string
}

// Config configures a Repo.
type Config struct {
	// URL of the remote: file://, http(s):// or ssh:// (scp-like
	// user@host:path works too). It must not embed a password.
	URL string
	// Branch is the watched branch. Default "main".
	Branch string
	// Depth of fetches: 0 means DefaultDepth, FullHistory means all.
	Depth int
	// Dir is the local cache of the bare clone; "" keeps it in memory.
	Dir  string
	Auth Auth
	// PushBranch receives Sluice's commits; "" means Branch.
	PushBranch string
	// Author and Committer of Sluice's commits; Committer defaults to
	// Author.
	Author    Signature
	Committer Signature
	// MaxPushRetries bounds re-creating a commit after someone else pushed
	// first: 0 means 5, a negative value means no retry.
	MaxPushRetries int
	// RetryBackoff is the base of the jittered exponential backoff between
	// push attempts: 0 means 200ms. The wait never exceeds 30 times it.
	RetryBackoff time.Duration
	// Now stamps commits; nil means time.Now.
	Now func() time.Time
	// TreeCacheBytes bounds the decoded tree objects kept for reading
	// trees, in estimated bytes; 0 means DefaultTreeCacheBytes.
	TreeCacheBytes int64
}

// SyncResult reports the watched branch after a Sync.
type SyncResult struct {
	Head plumbing.Hash
	// Changed is true when Head differs from what this Repo last reported
	// (always true on the first Sync). A commit that Sluice itself pushed
	// on top of an already reported head does not count as a change.
	Changed bool
	// Previous is the head reported before, zero on the first Sync.
	Previous plumbing.Hash
}

// Repo is a cached clone of one branch. Its methods are safe for concurrent
// use; they are serialised by one mutex.
type Repo struct {
	cfg     Config
	remote  remoteEndpoint
	log     *slog.Logger
	st      storage.Storer
	repo    *git.Repository
	depth   int // go-git fetch depth; 0 = full
	retries int

	// trees has its own lock: reading a tree takes r.mu only to decode
	// a directory it does not hold.
	trees *treeCache

	mu       sync.Mutex
	reported plumbing.Hash // head last reported by Sync
}

const remoteName = "origin"

// Open validates cfg and opens (or creates) the local cache. It does no
// network I/O: the first Sync clones, so Sluice starts even while the Git
// server is down.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Repo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ep, err := parseRemote(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("gitsync config: %w", err)
	}
	if cfg.Branch == "" {
		cfg.Branch = "main"
	}
	if cfg.PushBranch == "" {
		cfg.PushBranch = cfg.Branch
	}
	for _, b := range []string{cfg.Branch, cfg.PushBranch} {
		if err := validBranch(b); err != nil {
			return nil, fmt.Errorf("gitsync config: %w", err)
		}
	}
	if cfg.Author.Name == "" || cfg.Author.Email == "" {
		return nil, errors.New("gitsync config: Author needs a name and an e-mail")
	}
	if cfg.Committer == (Signature{}) {
		cfg.Committer = cfg.Author
	}
	if cfg.Committer.Name == "" || cfg.Committer.Email == "" {
		return nil, errors.New("gitsync config: Committer needs a name and an e-mail")
	}
	r := &Repo{cfg: cfg, remote: ep, log: log.With("remote", ep.display, "branch", cfg.Branch)}
	switch {
	case cfg.Depth == 0:
		r.depth = DefaultDepth
	case cfg.Depth == FullHistory:
		r.depth = 0
	case cfg.Depth > 0:
		r.depth = cfg.Depth
	default:
		return nil, fmt.Errorf("gitsync config: depth %d: want > 0, 0 (default %d) or FullHistory (-1)", cfg.Depth, DefaultDepth)
	}
	switch {
	case cfg.MaxPushRetries == 0:
		r.retries = 5
	case cfg.MaxPushRetries > 0:
		r.retries = cfg.MaxPushRetries
	}
	if r.cfg.RetryBackoff <= 0 {
		r.cfg.RetryBackoff = 200 * time.Millisecond
	}
	if r.cfg.Now == nil {
		r.cfg.Now = time.Now
	}
	if r.cfg.TreeCacheBytes <= 0 {
		r.cfg.TreeCacheBytes = DefaultTreeCacheBytes
	}
	r.trees = newTreeCache(r.cfg.TreeCacheBytes)

	if cfg.Dir == "" {
		r.st = memory.NewStorage()
		r.repo, err = git.Init(r.st, nil)
	} else {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("create cache dir: %w", err)
		}
		// Packs stay open between reads: by default go-git opens the pack
		// (and stats every directory on its path) for every object it
		// reads, which made a pass over 1,000 releases read from disk
		// twice as slow as one read from memory.
		r.st = newCachedRefs(filesystem.NewStorageWithOptions(osfs.New(cfg.Dir), cache.NewObjectLRUDefault(),
			filesystem.Options{MaxOpenDescriptors: maxOpenPacks}))
		r.repo, err = git.Open(r.st, nil)
		if errors.Is(err, git.ErrRepositoryNotExists) {
			r.repo, err = git.Init(r.st, nil)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open cache %q: %w", cfg.Dir, err)
	}
	if cfg.Dir != "" {
		if err := r.claimCache(); err != nil {
			return nil, fmt.Errorf("open cache %q: %w", cfg.Dir, err)
		}
	}
	return r, nil
}

// cacheOwnerFile records which remote a cache directory mirrors.
const cacheOwnerFile = "sluice-remote"

// claimCache makes sure refs in the cache came from this remote. When the
// configured URL changed, the old refs are dropped, so the next Sync makes
// a fresh shallow clone instead of negotiating with commits the new remote
// does not know (which would make it send its whole history).
func (r *Repo) claimCache() error {
	p := filepath.Join(r.cfg.Dir, cacheOwnerFile)
	owner, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if string(owner) == r.remote.display {
		return nil
	}
	if len(owner) > 0 {
		refs, err := r.st.IterReferences()
		if err != nil {
			return err
		}
		var stale []plumbing.ReferenceName
		_ = refs.ForEach(func(ref *plumbing.Reference) error {
			if ref.Name().IsRemote() || ref.Name().IsBranch() {
				stale = append(stale, ref.Name())
			}
			return nil
		})
		for _, n := range stale {
			if err := r.st.RemoveReference(n); err != nil {
				return err
			}
		}
		r.log.Info("git cache belonged to another remote; starting a fresh clone", "previous_remote", string(owner))
	}
	// The display URL carries no credentials, by construction.
	return os.WriteFile(p, []byte(r.remote.display), 0o644)
}

// Close releases files the cache holds open. The Repo must not be used
// afterwards.
func (r *Repo) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.st.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// validBranch refuses names git would refuse, and full ref names, which
// would double the refs/heads/ prefix.
func validBranch(b string) error {
	if strings.HasPrefix(b, "refs/") {
		return fmt.Errorf("branch %q: give the short name, without refs/", b)
	}
	if err := plumbing.NewBranchReferenceName(b).Validate(); err != nil || strings.ContainsAny(b, " \t\n") {
		return fmt.Errorf("branch %q is not a valid git branch name", b)
	}
	return nil
}

// URL returns the remote URL without userinfo, for display.
func (r *Repo) URL() string { return r.remote.display }

// Branch returns the watched branch.
func (r *Repo) Branch() string { return r.cfg.Branch }

func trackingRef(branch string) plumbing.ReferenceName {
	return plumbing.NewRemoteReferenceName(remoteName, branch)
}

func (r *Repo) newRemote() *git.Remote {
	specs := []config.RefSpec{r.fetchSpec(r.cfg.Branch)}
	if r.cfg.PushBranch != r.cfg.Branch {
		specs = append(specs, r.fetchSpec(r.cfg.PushBranch))
	}
	// The remote lives only in memory, so the URL is never written to the
	// cache's config file.
	return git.NewRemote(r.st, &config.RemoteConfig{Name: remoteName, URLs: []string{r.remote.url}, Fetch: specs})
}

func (r *Repo) fetchSpec(branch string) config.RefSpec {
	return config.RefSpec(fmt.Sprintf("+refs/heads/%s:%s", branch, trackingRef(branch)))
}

// update fetches branch: the first time with the configured depth (a
// shallow clone), afterwards incrementally, asking only for the commits
// the remote has beyond ours. (A depth-limited fetch into a shallow clone
// makes git send the whole tree again, since go-git cannot take thin
// packs: that cost a cold clone's time for every new commit.) After a
// history rewrite, the incremental fetch brings the rewritten commits down
// to the common ancestor.
func (r *Repo) update(ctx context.Context, t transportOpts, branch string) (found bool, err error) {
	_, have, err := r.refHash(trackingRef(branch))
	if err != nil {
		return false, err
	}
	depth := r.depth
	if have {
		depth = 0
	}
	return r.fetch(ctx, t, branch, depth)
}

// fetch brings branch's tip into the tracking ref. found is false when the
// remote has no such branch.
func (r *Repo) fetch(ctx context.Context, t transportOpts, branch string, depth int) (found bool, err error) {
	err = r.newRemote().FetchContext(ctx, &git.FetchOptions{
		RemoteName:   remoteName,
		RefSpecs:     []config.RefSpec{r.fetchSpec(branch)},
		Depth:        depth,
		Auth:         t.auth,
		CABundle:     t.caBundle,
		ProxyOptions: t.proxy,
		Tags:         git.NoTags,
		Force:        true,
	})
	var noMatch git.NoMatchingRefSpecError
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
		return true, nil
	case errors.As(err, &noMatch):
		return false, nil
	}
	return false, wrapErr(fmt.Sprintf("fetch %s from %s", branch, r.remote.display), explain(err, t), t.secrets)
}

// explain adds what a person needs to fix an authentication failure: go-git
// cannot tell "no credentials" from "wrong credentials".
func explain(err error, t transportOpts) error {
	if t.auth != nil && errorsIsAny(err, transport.ErrAuthenticationRequired, transport.ErrAuthorizationFailed) {
		return fmt.Errorf("%w (the server refused the credentials from the Auth files)", err)
	}
	return err
}

func (r *Repo) refHash(name plumbing.ReferenceName) (plumbing.Hash, bool, error) {
	ref, err := r.st.Reference(name)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return plumbing.ZeroHash, false, nil
	}
	if err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("read ref %s: %w", name, err)
	}
	return ref.Hash(), true, nil
}

// Sync fetches the watched branch (cloning on first use) and reports its
// head.
func (r *Repo) Sync(ctx context.Context) (SyncResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	t, err := loadTransport(r.remote, r.cfg.Auth)
	if err != nil {
		return SyncResult{}, fmt.Errorf("sync %s: %w", r.remote.display, err)
	}
	found, err := r.update(ctx, t, r.cfg.Branch)
	if err != nil {
		return SyncResult{}, err
	}
	if !found {
		return SyncResult{}, fmt.Errorf("sync %s: branch %q does not exist on the remote", r.remote.display, r.cfg.Branch)
	}
	head, _, err := r.refHash(trackingRef(r.cfg.Branch))
	if err != nil {
		return SyncResult{}, fmt.Errorf("sync %s: %w", r.remote.display, err)
	}
	res := SyncResult{Head: head, Previous: r.reported, Changed: head != r.reported}
	r.reported = head
	if res.Changed {
		r.compactOrWarn(ctx)
	}
	lvl := slog.LevelDebug
	if res.Changed {
		lvl = slog.LevelInfo
	}
	r.log.Log(ctx, lvl, "git sync", "head", head.String(), "changed", res.Changed, "elapsed", time.Since(start))
	return res, nil
}

// Head returns the watched branch's head as last fetched, without network
// I/O; ok is false before the first successful Sync.
func (r *Repo) Head() (head plumbing.Hash, ok bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refHash(trackingRef(r.cfg.Branch))
}

// ErrStopLog may be returned by a Log callback to end the walk early
// without an error.
var ErrStopLog = errors.New("stop log")

// Log calls fn for each commit reachable from the watched branch's head as
// last synced, newest first (by committer time). On a shallow clone it
// deepens the history from the remote on demand, so it may do network I/O;
// stop early with ErrStopLog to avoid fetching more than needed. fn must
// not call other methods of r.
func (r *Repo) Log(ctx context.Context, fn func(*object.Commit) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	head, ok, err := r.refHash(trackingRef(r.cfg.Branch))
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("log: nothing synced yet; call Sync first")
	}
	depth := r.depth
	q := &commitQueue{}
	seen := map[plumbing.Hash]bool{head: true}
	c, err := r.repo.CommitObject(head)
	if err != nil {
		return fmt.Errorf("log: read head %s: %w", head, err)
	}
	heap.Push(q, c)
	for q.Len() > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := heap.Pop(q).(*object.Commit)
		if err := fn(c); err != nil {
			if errors.Is(err, ErrStopLog) {
				return nil
			}
			return err
		}
		for _, ph := range c.ParentHashes {
			if seen[ph] {
				continue
			}
			seen[ph] = true
			p, err := r.repo.CommitObject(ph)
			for errors.Is(err, plumbing.ErrObjectNotFound) && depth != 0 {
				// The parent lies beyond the shallow boundary: fetch
				// deeper (doubling), as `git fetch --deepen` would.
				if depth, err = r.deepen(ctx, depth); err != nil {
					return err
				}
				p, err = r.repo.CommitObject(ph)
			}
			if err != nil {
				return fmt.Errorf("log: read commit %s (parent of %s): %w", ph, c.Hash, err)
			}
			heap.Push(q, p)
		}
	}
	return nil
}

// deepen fetches more history of the watched branch and returns the new
// depth (0 once everything was asked for).
func (r *Repo) deepen(ctx context.Context, depth int) (int, error) {
	next := depth * 4
	if next < 64 {
		next = 64
	}
	ask := next
	if next >= 1<<20 {
		ask, next = unshallowDepth, 0
	}
	t, err := loadTransport(r.remote, r.cfg.Auth)
	if err != nil {
		return 0, fmt.Errorf("deepen history: %w", err)
	}
	r.log.Debug("git deepen history", "depth", ask)
	if _, err := r.fetch(ctx, t, r.cfg.Branch, ask); err != nil {
		return 0, fmt.Errorf("deepen history: %w", err)
	}
	return next, nil
}

// commitQueue orders commits newest first, like `git log`
// (container/heap interface).
type commitQueue []*object.Commit

func (q commitQueue) Len() int { return len(q) }
func (q commitQueue) Less(i, j int) bool {
	a, b := q[i], q[j]
	if !a.Committer.When.Equal(b.Committer.When) {
		return a.Committer.When.After(b.Committer.When)
	}
	return a.Hash.String() < b.Hash.String()
}
func (q commitQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *commitQueue) Push(x any)   { *q = append(*q, x.(*object.Commit)) }
func (q *commitQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	*q = old[:len(old)-1]
	return c
}
