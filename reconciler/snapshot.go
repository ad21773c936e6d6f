package reconciler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"go.yaml.in/yaml/v3"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/specs"
)

// snapshot is the repository at one commit: its tree and its releases.
type snapshot struct {
	head     plumbing.Hash
	tree     *gitsync.Tree
	releases map[string]*entry
}

// entry is one release of the snapshot, valid or not.
type entry struct {
	id, namespace, name string
	file                string
	rel                 *specs.Release // nil when the spec is invalid
	err                 error          // why the spec is invalid
}

// parsedFile caches the parse of one spec file by its blob hash, so a
// commit that changes other files costs no re-parse.
type parsedFile struct {
	blob    plumbing.Hash
	entries []*entry
}

// refresh returns the snapshot of the current head, building it when the
// head moved (after a sync, or after Sluice's own commit).
func (r *Reconciler) refresh(ctx context.Context) (*snapshot, error) {
	head, ok, err := r.cfg.Repo.Head()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("nothing synced yet")
	}
	r.mu.Lock()
	if r.snap != nil && r.snap.head == head {
		s := r.snap
		r.mu.Unlock()
		return s, nil
	}
	r.mu.Unlock()
	// One worker builds the snapshot of a new head; the others, which
	// all notice the new head at once after a commit, wait and share it.
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	// The head may have moved again while this worker waited.
	if head, _, err = r.cfg.Repo.Head(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	prev := r.snap
	r.mu.Unlock()
	if prev != nil && prev.head == head {
		return prev, nil
	}
	tree, err := r.cfg.Repo.Tree(ctx, head)
	if err != nil {
		return nil, fmt.Errorf("read tree %s: %w", head, err)
	}
	files, changed, err := r.specFiles(tree)
	built := false
	defer func() {
		if !built {
			// The listings may be ahead of r.snap: rebuild from them all
			// next time rather than trust them.
			r.listed = false
		}
	}()
	if err != nil {
		return nil, err
	}
	snap := &snapshot{head: head, tree: tree}
	if !changed && prev != nil {
		built = true
		snap.releases = prev.releases
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.snap == nil || r.snap.head != head {
			r.snap = snap
		}
		return snap, nil
	}
	snap.releases = map[string]*entry{}
	parsed := map[string]parsedFile{}
	for _, sf := range files {
		f, blob := sf.path, sf.blob
		r.mu.Lock()
		pf, ok := r.parsed[f]
		r.mu.Unlock()
		if !ok || pf.blob != blob {
			data, err := tree.ReadFile(f)
			if err != nil {
				return nil, err
			}
			var unnamed error
			pf.entries, unnamed = parseEntries(f, data)
			pf.blob = blob
			if unnamed != nil {
				// Without a namespace and name there is no status file to
				// report in: the log is the only place.
				r.log.Error("release spec is invalid and names no release; skipping it", "file", f, "err", unnamed)
			}
		}
		parsed[f] = pf
		for _, e := range pf.entries {
			if prev, dup := snap.releases[e.id]; dup {
				err := fmt.Errorf("release %s is defined in both %s and %s", e.id, prev.file, e.file)
				snap.releases[e.id] = &entry{id: e.id, namespace: e.namespace, name: e.name, file: prev.file, err: err}
				continue
			}
			snap.releases[e.id] = e
		}
	}
	built = true
	r.mu.Lock()
	defer r.mu.Unlock()
	r.parsed = parsed
	// Another worker may have built a newer one meanwhile; keep the newest
	// by only replacing a snapshot of a different head.
	if r.snap == nil || r.snap.head != head {
		r.snap = snap
	}
	return snap, nil
}

// parseEntries parses a file's releases. A file that is not a release spec
// gives none; an invalid release gives an entry with its errors, named by
// whatever metadata could be read.
func parseEntries(file string, data []byte) ([]*entry, error) {
	if !specs.IsRelease(data) {
		return nil, nil
	}
	rels, err := specs.Parse(file, data)
	var out []*entry
	valid := map[string]bool{}
	for _, rel := range rels {
		valid[rel.ID()] = true
		out = append(out, &entry{id: rel.ID(), namespace: rel.Metadata.Namespace, name: rel.Metadata.Name, file: file, rel: rel})
	}
	if err == nil {
		return out, nil
	}
	named := false
	for _, id := range identify(data) {
		if valid[id.namespace+"/"+id.name] {
			continue
		}
		named = true
		out = append(out, &entry{id: id.namespace + "/" + id.name, namespace: id.namespace, name: id.name, file: file, err: errorsFor(err)})
	}
	if !named {
		return out, errorsFor(err)
	}
	return out, nil
}

type releaseID struct{ namespace, name string }

// identify reads the metadata of every Release document, leniently.
func identify(data []byte) []releaseID {
	var ids []releaseID
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name      string `yaml:"name"`
				Namespace string `yaml:"namespace"`
			} `yaml:"metadata"`
		}
		err := dec.Decode(&doc)
		if err == io.EOF {
			return ids
		}
		if err != nil {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return ids
			}
		}
		if doc.Kind == specs.Kind && doc.Metadata.Name != "" && doc.Metadata.Namespace != "" {
			ids = append(ids, releaseID{doc.Metadata.Namespace, doc.Metadata.Name})
		}
	}
}

// errorsFor is the whole error list of a file; a multi-release file names
// every problem, which is what a person fixing it wants.
func errorsFor(err error) error {
	msg := err.Error()
	if n := strings.Count(msg, "\n") + 1; n > 20 {
		lines := strings.SplitN(msg, "\n", 21)
		msg = strings.Join(lines[:20], "\n") + fmt.Sprintf("\n... and %d more", n-20)
	}
	return errors.New(msg)
}
