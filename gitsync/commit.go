package gitsync

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Edit changes part of a file that people edit too (a release spec's
// version fields). Apply gets the file's current content (nil when it does
// not exist) and returns the new content. It is called again on top of a
// newer head whenever a push loses a race, so a person's concurrent edits to
// the rest of the file survive; it must be a pure function of old.
type Edit struct {
	Path  string
	Apply func(old []byte) ([]byte, error)
}

// Change is one commit Sluice wants to make.
type Change struct {
	// Message is the subject and body; Trailers are appended as the last
	// paragraph.
	Message  string
	Trailers []Trailer
	// Files are whole files Sluice owns (status files): they replace
	// whatever is there, so Sluice's version wins. A nil value deletes.
	Files map[string][]byte
	// Edits are re-applied to the current content, so people's edits win
	// wherever Apply leaves the content alone.
	Edits []Edit
}

// CommitResult reports a Commit.
type CommitResult struct {
	// Hash of the pushed commit; zero when NoChange.
	Hash plumbing.Hash
	// Parent is the head the commit was built on (after any retries).
	Parent plumbing.Hash
	// Branch the commit was pushed to.
	Branch string
	Pushed bool
	// Retries counts pushes lost to concurrent pushers.
	Retries int
	// NoChange is true when the change would not alter the tree; no
	// commit is made then.
	NoChange bool
}

// ErrPushConflict is returned (wrapped) when every allowed retry lost the
// race to another pusher.
var ErrPushConflict = errors.New("push kept losing to concurrent pushes")

// validFilePath refuses paths that could escape the tree or touch git's
// own metadata.
func validFilePath(p string) error {
	if !fs.ValidPath(p) || p == "." {
		return fmt.Errorf("path %q: want a clean relative slash path such as dir/file.yaml", p)
	}
	for _, part := range strings.Split(p, "/") {
		if strings.EqualFold(part, ".git") {
			return fmt.Errorf("path %q: writing inside .git is not allowed", p)
		}
	}
	return nil
}

func (c Change) validate() (string, error) {
	msg, err := FormatMessage(c.Message, c.Trailers)
	if err != nil {
		return "", err
	}
	if len(c.Files) == 0 && len(c.Edits) == 0 {
		return "", errors.New("change has no files and no edits")
	}
	seen := map[string]bool{}
	for p := range c.Files {
		if err := validFilePath(p); err != nil {
			return "", err
		}
		seen[p] = true
	}
	for i, e := range c.Edits {
		if err := validFilePath(e.Path); err != nil {
			return "", fmt.Errorf("edit %d: %w", i, err)
		}
		if e.Apply == nil {
			return "", fmt.Errorf("edit %d (%s): Apply is nil", i, e.Path)
		}
		if seen[e.Path] {
			return "", fmt.Errorf("path %q is both in Files and in Edits", e.Path)
		}
		seen[e.Path] = true
	}
	return msg, nil
}

// Commit writes c as one commit on top of the push branch's latest known
// head (the watched branch's head when the push branch does not exist yet)
// and pushes it. The push only ever fast-forwards: when someone else pushed
// first, Commit fetches, re-creates the change on the new head and retries
// with jittered backoff, up to Config.MaxPushRetries. Nothing is committed
// when the change would not alter the tree.
func (r *Repo) Commit(ctx context.Context, c Change) (CommitResult, error) {
	msg, err := c.validate()
	if err != nil {
		return CommitResult{}, fmt.Errorf("commit: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	target := r.cfg.PushBranch
	res := CommitResult{Branch: target}
	t, err := loadTransport(r.remote, r.cfg.Auth)
	if err != nil {
		return res, fmt.Errorf("commit to %s: %w", target, err)
	}
	if target != r.cfg.Branch {
		// Sync fetches only the watched branch; learn whether the push
		// branch exists before building on anything.
		if _, ok, err := r.refHash(trackingRef(target)); err != nil {
			return res, err
		} else if !ok {
			if _, err := r.update(ctx, t, target); err != nil {
				return res, fmt.Errorf("commit: %w", err)
			}
		}
	}
	for {
		base, exists, err := r.refHash(trackingRef(target))
		if err != nil {
			return res, err
		}
		if !exists {
			if base, _, err = r.refHash(trackingRef(r.cfg.Branch)); err != nil {
				return res, err
			}
			if base.IsZero() {
				return res, errors.New("commit: nothing synced yet; call Sync first")
			}
		}
		res.Parent = base
		commit, changed, err := r.buildCommit(base, c, msg)
		if err != nil {
			return res, fmt.Errorf("commit on %s: %w", base, err)
		}
		if !changed {
			res.NoChange = true
			r.log.Debug("git commit skipped: no change", "base", base.String())
			return res, nil
		}
		var pushErr error
		if exists {
			pushErr = r.pushOnto(ctx, t, target, commit, base)
		} else {
			pushErr = r.push(ctx, t, target, commit, base, exists)
		}
		if pushErr == nil {
			return r.pushed(ctx, res, commit, base), nil
		}
		if ctx.Err() != nil {
			return res, wrapErr("push "+target, pushErr, t.secrets)
		}
		// Tell a lost race from a real failure by looking at the remote
		// rather than parsing error strings, which differ by transport.
		found, err := r.update(ctx, t, target)
		if err != nil {
			return res, fmt.Errorf("%w (after push failed: %s)", err, redactText(pushErr.Error(), t.secrets))
		}
		now, _, err := r.refHash(trackingRef(target))
		if err != nil {
			return res, err
		}
		switch {
		case found && now == commit:
			// The push landed although its report was lost.
			return r.pushed(ctx, res, commit, base), nil
		case exists && !found:
			return res, fmt.Errorf("push %s: branch was deleted on the remote: %s", target, redactText(pushErr.Error(), t.secrets))
		case !exists && !found, exists && now == base && !refLocked(pushErr):
			// Nobody else moved the branch: this is not a race. (A branch
			// whose lock another push held may move in a moment: that is
			// retried as a race.)
			return res, wrapErr("push "+target+" to "+r.remote.display, explain(pushErr, t), t.secrets)
		}
		if res.Retries >= r.retries {
			return res, fmt.Errorf("push %s: %w (%d retries); last error: %s", target, ErrPushConflict, res.Retries, redactText(pushErr.Error(), t.secrets))
		}
		res.Retries++
		wait := backoff(r.cfg.RetryBackoff, res.Retries)
		r.log.Info("git push lost a race; re-creating the commit on the new head",
			"push_branch", target, "new_head", now.String(), "retry", res.Retries, "wait", wait)
		if err := sleep(ctx, wait); err != nil {
			return res, fmt.Errorf("push %s: %w", target, err)
		}
		// Refresh after the wait, so the rebuilt commit sits on the
		// newest head and the push window stays short.
		if _, err := r.update(ctx, t, target); err != nil {
			return res, fmt.Errorf("commit: %w", err)
		}
	}
}

// pushed records a successful push. The caller holds r.mu.
func (r *Repo) pushed(ctx context.Context, res CommitResult, commit, base plumbing.Hash) CommitResult {
	res.Hash, res.Pushed = commit, true
	_ = r.st.SetReference(plumbing.NewHashReference(trackingRef(res.Branch), commit))
	// Sluice's own commit on top of a head the caller already saw is not
	// news for the next Sync; a rebase onto someone else's commit is.
	if res.Branch == r.cfg.Branch && base == r.reported {
		r.reported = commit
	}
	r.compactOrWarn(ctx)
	r.log.Info("git commit pushed", "push_branch", res.Branch, "commit", commit.String(), "parent", base.String(), "retries", res.Retries)
	return res
}

// backoff is exponential from base with jitter in [d/2, d], capped at
// 30*base, so concurrent writers do not retry in lockstep.
func backoff(base time.Duration, attempt int) time.Duration {
	d := base << min(attempt-1, 10)
	if limit := 30 * base; d > limit {
		d = limit
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// push sends commit to branch. When the branch exists it is a
// compare-and-swap from base: the server refuses the update unless the
// branch still points at base, and commit has base as its parent, so the
// update is always a fast-forward. (go-git calls this a lease; unlike its
// client-side ancestry walk it needs no history beyond the shallow clone.)
func (r *Repo) push(ctx context.Context, t transportOpts, branch string, commit, base plumbing.Hash, exists bool) error {
	local := plumbing.NewBranchReferenceName(branch)
	if err := r.st.SetReference(plumbing.NewHashReference(local, commit)); err != nil {
		return fmt.Errorf("set local ref %s: %w", local, err)
	}
	opts := &git.PushOptions{
		RemoteName:   remoteName,
		RefSpecs:     []config.RefSpec{config.RefSpec(local.String() + ":" + local.String())},
		Auth:         t.auth,
		CABundle:     t.caBundle,
		ProxyOptions: t.proxy,
	}
	if exists {
		opts.ForceWithLease = &git.ForceWithLease{RefName: local, Hash: base}
	}
	// Capture what the server says (a hook's reason for refusing), so the
	// error tells a person why.
	var said tailBuffer
	opts.Progress = &said
	err := r.newRemote().PushContext(ctx, opts)
	if errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	if err != nil && said.Len() > 0 {
		return fmt.Errorf("%w (remote said: %s)", err, strings.Join(strings.Fields(said.String()), " "))
	}
	return err
}

// tailBuffer keeps the last 1 KiB written to it.
type tailBuffer struct{ b []byte }

const tailMax = 1024

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = t.b[len(t.b)-tailMax:]
	}
	return len(p), nil
}

func (t *tailBuffer) Len() int       { return len(t.b) }
func (t *tailBuffer) String() string { return string(t.b) }

// buildCommit writes the change on top of base. changed is false when the
// resulting tree equals base's tree. The caller holds r.mu.
func (r *Repo) buildCommit(base plumbing.Hash, c Change, msg string) (plumbing.Hash, bool, error) {
	bc, err := r.repo.CommitObject(base)
	if err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("read base commit: %w", err)
	}
	root, err := bc.Tree()
	if err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("read base tree: %w", err)
	}
	writes := make(map[string]*[]byte, len(c.Files)+len(c.Edits))
	for p, data := range c.Files {
		if data == nil {
			writes[p] = nil
			continue
		}
		d := data
		writes[p] = &d
	}
	for _, e := range c.Edits {
		var old []byte
		entry, err := root.FindEntry(e.Path)
		switch {
		case errors.Is(err, object.ErrEntryNotFound), errors.Is(err, object.ErrDirectoryNotFound):
			// A missing file is edited from nil.
		case err != nil:
			return plumbing.ZeroHash, false, fmt.Errorf("edit %s: %w", e.Path, err)
		case !entry.Mode.IsFile():
			return plumbing.ZeroHash, false, fmt.Errorf("edit %s: not a file", e.Path)
		default:
			if old, err = r.readBlob(entry.Hash, e.Path); err != nil {
				return plumbing.ZeroHash, false, err
			}
		}
		nw, err := e.Apply(old)
		if err != nil {
			return plumbing.ZeroHash, false, fmt.Errorf("edit %s: %w", e.Path, err)
		}
		writes[e.Path] = &nw
	}
	treeHash, _, err := r.writeTree(root, writes, "")
	if err != nil {
		return plumbing.ZeroHash, false, err
	}
	if treeHash == root.Hash {
		return plumbing.ZeroHash, false, nil
	}
	now := r.cfg.Now()
	commit := &object.Commit{
		Author:       object.Signature{Name: r.cfg.Author.Name, Email: r.cfg.Author.Email, When: now},
		Committer:    object.Signature{Name: r.cfg.Committer.Name, Email: r.cfg.Committer.Email, When: now},
		Message:      msg,
		TreeHash:     treeHash,
		ParentHashes: []plumbing.Hash{base},
	}
	obj := r.st.NewEncodedObject()
	if err := commit.Encode(obj); err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("encode commit: %w", err)
	}
	h, err := r.st.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("store commit: %w", err)
	}
	return h, true, nil
}

func (r *Repo) storeBlob(data []byte) (plumbing.Hash, error) {
	obj := r.st.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	obj.SetSize(int64(len(data)))
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(data); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return r.st.SetEncodedObject(obj)
}

// writeTree applies writes (paths relative to tree; nil deletes) to tree,
// which is nil for a directory that does not exist yet, and stores the
// changed trees. Untouched subtrees keep their hashes, so a no-op change
// yields the original root hash. empty reports a tree with no entries.
func (r *Repo) writeTree(tree *object.Tree, writes map[string]*[]byte, prefix string) (plumbing.Hash, bool, error) {
	entries := map[string]object.TreeEntry{}
	if tree != nil {
		for _, e := range tree.Entries {
			entries[e.Name] = e
		}
	}
	changed := false
	subs := map[string]map[string]*[]byte{}
	for p, data := range writes {
		name, rest, deeper := strings.Cut(p, "/")
		if deeper {
			if subs[name] == nil {
				subs[name] = map[string]*[]byte{}
			}
			subs[name][rest] = data
			continue
		}
		full := path.Join(prefix, name)
		old, had := entries[name]
		if had && !old.Mode.IsFile() {
			return plumbing.ZeroHash, false, fmt.Errorf("write %s: it is a directory or submodule", full)
		}
		if data == nil {
			if had {
				delete(entries, name)
				changed = true
			}
			continue
		}
		h, err := r.storeBlob(*data)
		if err != nil {
			return plumbing.ZeroHash, false, fmt.Errorf("store %s: %w", full, err)
		}
		mode := filemode.Regular
		if had && old.Mode == filemode.Executable {
			mode = filemode.Executable
		}
		if !had || old.Hash != h || old.Mode != mode {
			entries[name] = object.TreeEntry{Name: name, Mode: mode, Hash: h}
			changed = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(subs)) {
		full := path.Join(prefix, name)
		old, had := entries[name]
		var sub *object.Tree
		if had {
			if old.Mode != filemode.Dir {
				return plumbing.ZeroHash, false, fmt.Errorf("write under %s: it is a file, not a directory", full)
			}
			var err error
			if sub, err = r.repo.TreeObject(old.Hash); err != nil {
				return plumbing.ZeroHash, false, fmt.Errorf("read tree %s: %w", full, err)
			}
		}
		h, empty, err := r.writeTree(sub, subs[name], full)
		if err != nil {
			return plumbing.ZeroHash, false, err
		}
		switch {
		case empty && had:
			delete(entries, name)
			changed = true
		case empty:
		case !had || old.Hash != h:
			entries[name] = object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h}
			changed = true
		}
	}
	if !changed && tree != nil {
		return tree.Hash, len(tree.Entries) == 0, nil
	}
	if !changed {
		return plumbing.ZeroHash, true, nil
	}
	list := slices.Collect(maps.Values(entries))
	// Git sorts a directory's entries as if directory names ended in "/".
	slices.SortFunc(list, func(a, b object.TreeEntry) int {
		return strings.Compare(gitSortName(a), gitSortName(b))
	})
	nt := &object.Tree{Entries: list}
	obj := r.st.NewEncodedObject()
	if err := nt.Encode(obj); err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("encode tree %s: %w", prefix, err)
	}
	h, err := r.st.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("store tree %s: %w", prefix, err)
	}
	return h, len(list) == 0, nil
}

func gitSortName(e object.TreeEntry) string {
	if e.Mode == filemode.Dir {
		return e.Name + "/"
	}
	return e.Name
}

// refLocked reports whether the remote refused a push because another push
// held the branch's lock at that moment (git's receive-pack: "cannot lock
// ref", "failed to lock"). Replicas of Sluice pushing to one branch meet
// it; the other push may still be under way when the remote is read again,
// so the branch has not moved yet, but the push is worth another try.
func refLocked(err error) bool {
	if err == nil {
		return false
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "cannot lock ref") || strings.Contains(msg, "failed to lock") || strings.Contains(msg, "unable to lock")
}
