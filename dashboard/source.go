package dashboard

import (
	"context"
	"io/fs"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"sluice.dev/sluice/gitsync"
)

// Source is the Git record the dashboard reads: a branch's head, the tree
// of any commit of its history, and the history itself, newest first.
// *gitsync.Repo is one, through RepoSource.
type Source interface {
	// Head is the branch's head as last synced; ok is false before that.
	Head() (head plumbing.Hash, ok bool, err error)
	// Tree is the file tree of a commit Head or Log returned.
	Tree(ctx context.Context, commit plumbing.Hash) (fs.FS, error)
	// Log calls fn for every commit from the head, newest first;
	// gitsync.ErrStopLog ends the walk early.
	Log(ctx context.Context, fn func(*object.Commit) error) error
}

// RepoSource reads a gitsync.Repo that something else keeps in sync (the
// reconciler in `sluice run`, a sync loop in `sluice dashboard`).
func RepoSource(r *gitsync.Repo) Source { return repoSource{r} }

type repoSource struct{ r *gitsync.Repo }

func (s repoSource) Head() (plumbing.Hash, bool, error) { return s.r.Head() }

func (s repoSource) Tree(ctx context.Context, c plumbing.Hash) (fs.FS, error) {
	return s.r.Tree(ctx, c)
}

func (s repoSource) Log(ctx context.Context, fn func(*object.Commit) error) error {
	return s.r.Log(ctx, fn)
}
