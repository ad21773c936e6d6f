package reconciler

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/specs"
)

// snapshot is the repository at one commit: its tree and its releases.
type snapshot struct {
	head     plumbing.Hash
	tree     *gitsync.Tree
	releases map[string]*entry
	// gone are releases with a status file whose spec is no longer in Git:
	// Sluice removes their objects and their status file.
	gone []string
	// invalidFiles are spec files that name no release Sluice can read (a
	// YAML syntax error, over the size limit), with why.
	invalidFiles map[string]error
}

// entry is one release of the snapshot, valid or not.
type entry struct {
	id, namespace, name string
	file                string
	rel                 *specs.Release // nil when the spec is invalid
	err                 error          // why the spec is invalid
	// place decides which Sluice reconciles the release (mine); read
	// leniently from an invalid spec.
	place specs.Placement
}

// parsedFile caches the parse of one spec file by its blob hash, so a
// commit that changes other files costs no re-parse.
type parsedFile struct {
	blob    plumbing.Hash
	entries []*entry
	// err is why the file names no release, when it does not.
	err error
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
		snap.releases, snap.gone, snap.invalidFiles = prev.releases, prev.gone, prev.invalidFiles
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.snap == nil || r.snap.head != head {
			r.snap = snap
		}
		return snap, nil
	}
	snap.releases = map[string]*entry{}
	parsed := map[string]parsedFile{}
	defs := map[string][]*entry{} // release ID -> its definitions, in file order
	var order []string
	limit := r.maxSpecSize()
	for _, sf := range files {
		f, blob := sf.path, sf.blob
		r.mu.Lock()
		pf, ok := r.parsed[f]
		r.mu.Unlock()
		if !ok || pf.blob != blob {
			entries, ferr, err := r.parseFile(ctx, tree, f, limit, pf.entries)
			if err != nil {
				return nil, err
			}
			pf = parsedFile{blob: blob, entries: entries, err: ferr}
		}
		parsed[f] = pf
		if pf.err != nil {
			if snap.invalidFiles == nil {
				snap.invalidFiles = map[string]error{}
			}
			snap.invalidFiles[f] = pf.err
		}
		for _, e := range pf.entries {
			if _, seen := defs[e.id]; !seen {
				order = append(order, e.id)
			}
			defs[e.id] = append(defs[e.id], e)
		}
	}
	for _, id := range order {
		snap.releases[id] = r.owner(tree, prev, r.placed(defs[id]))
	}
	if snap.gone, err = r.goneReleases(tree, prev, snap); err != nil {
		return nil, err
	}
	r.cfg.Observer.SpecFilesInvalid(slices.Sorted(maps.Keys(snap.invalidFiles)))
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

// parseFile reads and parses one spec file. A file over the size limit is
// not read at all: the releases it defined before (known from its last
// parse) are reported invalid with the size error, so they hold where they
// are, and one huge file never holds the pass over the others. The same
// goes for a file that no longer parses far enough to name its releases
// (a YAML syntax error). fileErr says why a file names no release.
func (r *Reconciler) parseFile(ctx context.Context, tree *gitsync.Tree, f string, limit int64, before []*entry) (entries []*entry, fileErr, err error) {
	st, err := tree.Stat(f)
	if err != nil {
		return nil, nil, err
	}
	if err := specs.CheckSize(f, st.Size(), limit); err != nil {
		if len(before) == 0 {
			r.log.Warn("YAML file is over the size limit of a release spec; skipping it unread", "file", f, "err", err)
		}
		return invalidAgain(before, f, err), err, nil
	}
	data, err := tree.ReadFile(f)
	if err != nil {
		return nil, nil, err
	}
	entries, unnamed, err := parseEntries(ctx, f, data)
	if err != nil {
		return nil, nil, err
	}
	if unnamed != nil {
		if len(entries) == 0 && len(before) > 0 {
			return invalidAgain(before, f, unnamed), unnamed, nil
		}
		// Without a namespace and name there is no status file to
		// report in: the log, the pass summary and a metric are the
		// places (and the status of releases the file defined before).
		r.log.Error("release spec is invalid and names no release; skipping it", "file", f, "err", unnamed)
		return entries, unnamed, nil
	}
	return entries, nil, nil
}

// invalidAgain are the releases a file defined before, now invalid for err.
func invalidAgain(before []*entry, file string, err error) []*entry {
	out := make([]*entry, 0, len(before))
	for _, e := range before {
		out = append(out, &entry{id: e.id, namespace: e.namespace, name: e.name, file: file, err: err, place: e.place})
	}
	return out
}

// goneReleases are the releases recorded in a status file whose spec is no
// longer in Git. A release whose recorded spec file is one Sluice cannot
// read (a syntax error, over the size limit: after a restart it no longer
// knows what the file defined) is not gone but invalid, and is added to
// snap.releases as such; so is nothing outside the paths this Sluice
// watches, which another one may own.
//
// A release whose spec is in Git is never gone, whether it is this
// Sluice's or not (Config.Selector, Config.ClusterName); and a release
// whose spec is gone is this Sluice's to delete only if it was its own
// (goneHere).
func (r *Reconciler) goneReleases(tree *gitsync.Tree, prev, snap *snapshot) ([]string, error) {
	nsDirs, err := tree.ReadDir(r.cfg.StatusDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list status files: %w", err)
	}
	var gone []string
	for _, nd := range nsDirs {
		if !nd.IsDir() {
			continue
		}
		ns := nd.Name()
		files, err := tree.ReadDir(path.Join(r.cfg.StatusDir, ns))
		if err != nil {
			return nil, fmt.Errorf("list status files: %w", err)
		}
		for _, f := range files {
			name, ok := strings.CutSuffix(f.Name(), ".yaml")
			if !ok || f.IsDir() {
				continue
			}
			id := ns + "/" + name
			if snap.releases[id] != nil {
				continue
			}
			st, err := r.statuses.Read(tree, r.cfg.StatusDir, ns, name)
			if err != nil || st == nil {
				r.log.Warn("status file of a release without a spec is unreadable; leaving it", "release", id, "err", err)
				continue
			}
			if !r.watches(st.SpecFile) {
				continue
			}
			if ferr, ok := snap.invalidFiles[st.SpecFile]; ok {
				// Its placement is what it was last recorded with: its
				// labels, and this cluster, whose status file it has.
				snap.releases[id] = &entry{id: id, namespace: ns, name: name, file: st.SpecFile, err: ferr,
					place: specs.Placement{Labels: st.Labels}}
				continue
			}
			if !r.goneHere(prev, id, st) {
				continue
			}
			gone = append(gone, id)
		}
	}
	return gone, nil
}

// watches reports whether file is under one of the paths Sluice watches.
func (r *Reconciler) watches(file string) bool {
	for _, p := range r.cfg.Paths {
		p = path.Clean(p)
		if p == "." || file == p || strings.HasPrefix(file, p+"/") {
			return true
		}
	}
	return false
}

// maxSpecSize bounds a spec file: Config.MaxSpecSize (negative: no
// limit), or specs' default.
func (r *Reconciler) maxSpecSize() int64 {
	switch {
	case r.cfg.MaxSpecSize < 0:
		return 0
	case r.cfg.MaxSpecSize > 0:
		return r.cfg.MaxSpecSize
	}
	return specs.DefaultMaxSpecSize
}

// owner picks, among a release's definitions (in lexical file order, then
// document order), the one Sluice follows; the others are logged as
// duplicates and otherwise ignored, so a copy pushed beside a running
// release never takes it over or invalidates it. The rule is stable across
// restarts and across replicas, since it depends on Git alone where it
// can: the file named by the release's status file (the one Sluice has
// been following), else the file it came from in the previous snapshot
// (a release not yet recorded), else the first in lexical order.
func (r *Reconciler) owner(tree *gitsync.Tree, prev *snapshot, defs []*entry) *entry {
	if len(defs) == 1 {
		return defs[0]
	}
	first := defs[0]
	pick := func(file string) *entry {
		for _, e := range defs {
			if e.file == file {
				return e
			}
		}
		return nil
	}
	var chosen *entry
	st, err := r.statuses.Read(tree, r.cfg.StatusDir, first.namespace, first.name)
	if err == nil && st != nil && st.SpecFile != "" {
		chosen = pick(st.SpecFile)
	}
	if chosen == nil && prev != nil {
		if pe, ok := prev.releases[first.id]; ok {
			chosen = pick(pe.file)
		}
	}
	if chosen == nil {
		chosen = first
	}
	for _, e := range defs {
		if e != chosen {
			r.log.Error("release is defined twice; ignoring this definition, the first one stays in charge",
				"release", e.id, "file", e.file, "in_charge", chosen.file)
		}
	}
	return chosen
}

// parseEntries parses a file's releases. A file that is not a release spec
// gives none; an invalid release gives an entry with its errors, named by
// whatever metadata could be read. unnamed is the error of a file whose
// invalid documents name no release.
func parseEntries(ctx context.Context, file string, data []byte) (entries []*entry, unnamed, err error) {
	if !specs.IsRelease(data) {
		return nil, nil, nil
	}
	rels, perr := specs.ParseContext(ctx, file, data)
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	var out []*entry
	valid := map[string]bool{}
	for _, rel := range rels {
		valid[rel.ID()] = true
		out = append(out, &entry{id: rel.ID(), namespace: rel.Metadata.Namespace, name: rel.Metadata.Name, file: file, rel: rel,
			place: specs.PlacementOf(rel)})
	}
	if perr == nil {
		return out, nil, nil
	}
	named := false
	places := specs.Placements(data)
	for _, id := range specs.Identify(data) {
		if valid[id.String()] {
			continue
		}
		named = true
		out = append(out, &entry{id: id.String(), namespace: id.Namespace, name: id.Name, file: file, err: errorsFor(perr),
			place: places[id.String()]})
	}
	if !named {
		return out, errorsFor(perr), nil
	}
	return out, nil, nil
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
