package gitsync

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
)

// pushOnto sends commit, whose parent base the remote's branch already
// holds, and moves the branch from base to commit in one receive-pack
// request: the server refuses the update unless the branch still points at
// base. It sends only the objects commit adds to base, found by comparing
// their trees along the changed paths. (go-git's own push walks every
// object reachable from the remote's head to find what to send: a walk of
// the whole repository per push, which made each push cost grow with the
// number of releases.) The caller holds r.mu.
func (r *Repo) pushOnto(ctx context.Context, t transportOpts, branch string, commit, base plumbing.Hash) error {
	local := plumbing.NewBranchReferenceName(branch)
	if err := r.st.SetReference(plumbing.NewHashReference(local, commit)); err != nil {
		return fmt.Errorf("set local ref %s: %w", local, err)
	}
	objs, err := r.newObjects(commit, base)
	if err != nil {
		return err
	}
	ep, err := transport.NewEndpoint(r.remote.url)
	if err != nil {
		return err
	}
	ep.CaBundle = t.caBundle
	ep.Proxy = t.proxy
	cl, err := client.NewClient(ep)
	if err != nil {
		return err
	}
	sess, err := cl.NewReceivePackSession(ep, t.auth)
	if err != nil {
		return err
	}
	defer sess.Close()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		return err
	}
	req := packp.NewReferenceUpdateRequestFromCapabilities(ar.Capabilities)
	// Capture what the server says (a hook's reason for refusing), so the
	// error tells a person why.
	var said tailBuffer
	req.Progress = &said
	if ar.Capabilities.Supports(capability.Sideband64k) {
		_ = req.Capabilities.Set(capability.Sideband64k)
	} else if ar.Capabilities.Supports(capability.Sideband) {
		_ = req.Capabilities.Set(capability.Sideband)
	}
	req.Commands = []*packp.Command{{Name: local, Old: base, New: commit}}
	rd, wr := io.Pipe()
	req.Packfile = rd
	encoded := make(chan error, 1)
	go func() {
		_, err := packfile.NewEncoder(wr, r.st, false).Encode(objs, 10)
		encoded <- wr.CloseWithError(err)
	}()
	report, err := sess.ReceivePack(ctx, req)
	if err != nil {
		_ = rd.Close()
		<-encoded
		return withSaid(err, &said)
	}
	if err := <-encoded; err != nil {
		return fmt.Errorf("encode pack: %w", err)
	}
	if report != nil {
		if err := report.Error(); err != nil {
			return withSaid(err, &said)
		}
	}
	return nil
}

func withSaid(err error, said *tailBuffer) error {
	if said.Len() > 0 {
		return fmt.Errorf("%w (remote said: %s)", err, strings.Join(strings.Fields(said.String()), " "))
	}
	return err
}

// newObjects lists commit and the trees and blobs its tree has that
// base's tree does not, descending only into subtrees whose hash changed.
func (r *Repo) newObjects(commit, base plumbing.Hash) ([]plumbing.Hash, error) {
	c, err := r.repo.CommitObject(commit)
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", commit, err)
	}
	b, err := r.repo.CommitObject(base)
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", base, err)
	}
	objs := []plumbing.Hash{commit}
	var walk func(cur, old plumbing.Hash) error
	walk = func(cur, old plumbing.Hash) error {
		if cur == old {
			return nil
		}
		objs = append(objs, cur)
		t, err := r.repo.TreeObject(cur)
		if err != nil {
			return fmt.Errorf("read tree %s: %w", cur, err)
		}
		had := map[string]object.TreeEntry{}
		if !old.IsZero() {
			ot, err := r.repo.TreeObject(old)
			if err != nil {
				return fmt.Errorf("read tree %s: %w", old, err)
			}
			for _, e := range ot.Entries {
				had[e.Name] = e
			}
		}
		for _, e := range t.Entries {
			prev, ok := had[e.Name]
			if ok && prev.Hash == e.Hash {
				continue
			}
			switch e.Mode {
			case filemode.Dir:
				var oldSub plumbing.Hash
				if ok && prev.Mode == filemode.Dir {
					oldSub = prev.Hash
				}
				if err := walk(e.Hash, oldSub); err != nil {
					return err
				}
			case filemode.Submodule:
				// A submodule's commit is not in this repository.
			default:
				objs = append(objs, e.Hash)
			}
		}
		return nil
	}
	if err := walk(c.TreeHash, b.TreeHash); err != nil {
		return nil, err
	}
	return objs, nil
}
