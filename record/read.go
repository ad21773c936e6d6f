package record

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"sluice.dev/sluice/gitsync"
)

// Read returns the status of namespace/name under dir in fsys; nil when
// none is recorded.
func Read(fsys fs.FS, dir, namespace, name string) (*Status, error) {
	p := StatusPath(dir, namespace, name)
	data, err := fs.ReadFile(fsys, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st, err := ParseStatus(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return st, nil
}

// ReadAll returns every status recorded under dir in fsys, by release.
func ReadAll(fsys fs.FS, dir string) ([]*Status, error) {
	var list []*Status
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() || path.Ext(p) != ".yaml" {
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		st, err := ParseStatus(data)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		list = append(list, st)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(list, func(a, b *Status) int { return strings.Compare(a.Release, b.Release) })
	return list, nil
}

// Transition is one recorded transition of a release, read back from Git.
type Transition struct {
	When time.Time `json:"when"`
	// Hash is the commit; Commit its short form.
	Hash    plumbing.Hash `json:"-"`
	Commit  string        `json:"commit"`
	Release string        `json:"release"`
	Action  Action        `json:"action"`
	Step    string        `json:"step"`
	Subject string        `json:"subject"`
	Author  string        `json:"author,omitempty"`
}

// Logger walks a repository's history from its head, newest first.
type Logger interface {
	Log(ctx context.Context, fn func(*object.Commit) error) error
}

// History lists the recorded transitions of a release, newest first:
// release is namespace/name, or a name alone. limit > 0 stops after that
// many.
func History(ctx context.Context, repo Logger, release string, limit int) ([]Transition, error) {
	var out []Transition
	err := repo.Log(ctx, func(c *object.Commit) error {
		for _, t := range CommitTransitions(c) {
			if t.Release != release && !strings.HasSuffix(t.Release, "/"+release) {
				continue
			}
			out = append(out, t)
			if limit > 0 && len(out) >= limit {
				return gitsync.ErrStopLog
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, gitsync.ErrStopLog) {
		return nil, err
	}
	return out, nil
}

// CommitTransitions are the transitions a commit records: one per release,
// read from its trailer groups (a commit records one release, or several at
// once, each with its own subject); none for a commit Sluice did not make.
func CommitTransitions(c *object.Commit) []Transition {
	var out []Transition
	for _, tr := range gitsync.TrailerGroups(gitsync.ParseTrailers(c.Message), TrailerRelease) {
		rel := gitsync.TrailerValue(tr, TrailerRelease)
		if rel == "" {
			continue
		}
		subject := gitsync.TrailerValue(tr, TrailerSubject)
		if subject == "" {
			subject, _, _ = strings.Cut(c.Message, "\n")
		}
		out = append(out, Transition{
			When: c.Committer.When, Hash: c.Hash, Commit: c.Hash.String()[:12], Release: rel,
			Action: Action(gitsync.TrailerValue(tr, TrailerAction)), Step: gitsync.TrailerValue(tr, TrailerStep),
			Subject: subject, Author: c.Author.Name,
		})
	}
	return out
}
