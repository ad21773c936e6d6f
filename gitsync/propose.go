package gitsync

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ProposeResult reports a Propose.
type ProposeResult struct {
	Branch string
	// Hash is the branch's tip afterwards, Parent the commit it sits on.
	Hash, Parent plumbing.Hash
	// Pushed is false when the branch already held the change on a base
	// that is still current for the files it writes.
	Pushed bool
	// NoChange is true when the watched branch already holds the change;
	// nothing is proposed then.
	NoChange bool
}

// Propose puts c on branch as one commit on top of the watched branch's
// head, as last synced, for a pull request into the watched branch.
//
// The branch is Sluice's own: when it went stale it is replaced (pushed
// with a lease on the tip it had, never blindly). Stale means it does not
// hold the change, or a file the change writes differs between the branch's
// base and the watched head: merging it then would conflict or undo that
// newer change. A branch that is only behind in other files is left alone,
// so a busy repository does not rewrite the pull request at every push.
//
// Only Files are supported: Edits are re-applied on a newer head by Commit,
// which nothing does for a branch waiting to be merged.
func (r *Repo) Propose(ctx context.Context, branch string, c Change) (ProposeResult, error) {
	res := ProposeResult{Branch: branch}
	if err := validBranch(branch); err != nil {
		return res, fmt.Errorf("propose: %w", err)
	}
	if branch == r.cfg.Branch || branch == r.cfg.PushBranch {
		return res, fmt.Errorf("propose: branch %q is the branch Sluice commits to; a proposal needs its own", branch)
	}
	if len(c.Edits) > 0 {
		return res, errors.New("propose: edits are not supported; give whole files")
	}
	msg, err := c.validate()
	if err != nil {
		return res, fmt.Errorf("propose: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t, err := loadTransport(r.remote, r.cfg.Auth)
	if err != nil {
		return res, fmt.Errorf("propose %s: %w", branch, err)
	}
	head, ok, err := r.refHash(trackingRef(r.cfg.Branch))
	if err != nil {
		return res, err
	}
	if !ok {
		return res, errors.New("propose: nothing synced yet; call Sync first")
	}
	found, err := r.update(ctx, t, branch)
	if err != nil {
		return res, fmt.Errorf("propose: %w", err)
	}
	var tip plumbing.Hash
	if found {
		if tip, _, err = r.refHash(trackingRef(branch)); err != nil {
			return res, err
		}
		if parent, fresh := r.fresh(tip, head, c.Files); fresh {
			res.Hash, res.Parent = tip, parent
			return res, nil
		}
	}
	commit, changed, err := r.buildCommit(head, c, msg)
	if err != nil {
		return res, fmt.Errorf("propose on %s: %w", head, err)
	}
	if !changed {
		res.NoChange = true
		return res, nil
	}
	if err := r.push(ctx, t, branch, commit, tip, found); err != nil {
		return res, wrapErr("push "+branch+" to "+r.remote.display, explain(err, t), t.secrets)
	}
	_ = r.st.SetReference(plumbing.NewHashReference(trackingRef(branch), commit))
	r.log.Info("git proposal pushed", "proposal_branch", branch, "commit", commit.String(), "parent", head.String(), "replaced", found)
	res.Hash, res.Parent, res.Pushed = commit, head, true
	return res, nil
}

// fresh reports whether tip is one commit that writes exactly files on a
// base whose versions of those files equal head's. Anything unreadable
// (beyond a shallow boundary, say) counts as stale: rebuilding is safe.
func (r *Repo) fresh(tip, head plumbing.Hash, files map[string][]byte) (plumbing.Hash, bool) {
	tc, err := r.repo.CommitObject(tip)
	if err != nil || len(tc.ParentHashes) != 1 {
		return plumbing.ZeroHash, false
	}
	base := tc.ParentHashes[0]
	bc, err := r.repo.CommitObject(base)
	if err != nil {
		return plumbing.ZeroHash, false
	}
	hc, err := r.repo.CommitObject(head)
	if err != nil {
		return plumbing.ZeroHash, false
	}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		want := plumbing.ZeroHash
		if files[p] != nil {
			want = plumbing.ComputeHash(plumbing.BlobObject, files[p])
		}
		if blobHash(tc, p) != want || blobHash(bc, p) != blobHash(hc, p) {
			return plumbing.ZeroHash, false
		}
	}
	return base, true
}

// blobHash is the hash of the file at p in c, zero when it has none.
func blobHash(c *object.Commit, p string) plumbing.Hash {
	tree, err := c.Tree()
	if err != nil {
		return plumbing.ZeroHash
	}
	e, err := tree.FindEntry(p)
	if err != nil || !e.Mode.IsFile() {
		return plumbing.ZeroHash
	}
	return e.Hash
}

// DeleteBranch removes a proposal branch from the remote; a branch that
// is already gone is no error. The watched branch cannot be deleted.
func (r *Repo) DeleteBranch(ctx context.Context, branch string) error {
	if err := validBranch(branch); err != nil {
		return fmt.Errorf("delete branch: %w", err)
	}
	if branch == r.cfg.Branch || branch == r.cfg.PushBranch {
		return fmt.Errorf("delete branch: %q is the branch Sluice commits to", branch)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t, err := loadTransport(r.remote, r.cfg.Auth)
	if err != nil {
		return fmt.Errorf("delete branch %s: %w", branch, err)
	}
	ref := plumbing.NewBranchReferenceName(branch)
	err = r.newRemote().PushContext(ctx, &git.PushOptions{
		RemoteName:   remoteName,
		RefSpecs:     []config.RefSpec{config.RefSpec(":" + ref.String())},
		Auth:         t.auth,
		CABundle:     t.caBundle,
		ProxyOptions: t.proxy,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return wrapErr("delete branch "+branch+" on "+r.remote.display, explain(err, t), t.secrets)
	}
	_ = r.st.RemoveReference(trackingRef(branch))
	_ = r.st.RemoveReference(ref)
	return nil
}
