package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
)

// Defaults of the commit batcher.
const (
	// DefaultCommitLinger is how long the batcher waits for more records
	// after the first one of a batch.
	DefaultCommitLinger = 100 * time.Millisecond
	// commitIdle closes a batch early when no record came for this long:
	// a lone transition is not held for the whole linger.
	commitIdle = 50 * time.Millisecond
)

// batcher gathers the status records of releases that transition at about
// the same time into one commit: a thousand releases starting at once make
// a few pushes, not a thousand racing ones. Each release still waits until
// its record is pushed before it applies anything.
type batcher struct {
	repo   *gitsync.Repo
	log    *slog.Logger
	linger time.Duration
	// max closes a batch at once: with every worker waiting on a record no
	// more can come.
	max  int
	reqs chan *commitReq
}

// commitReq is one release's record waiting to be pushed.
type commitReq struct {
	ctx     context.Context
	release string
	action  record.Action
	subject string
	body    string
	change  gitsync.Change
	done    chan commitResult
}

type commitResult struct {
	res gitsync.CommitResult
	err error
}

func newBatcher(repo *gitsync.Repo, log *slog.Logger, linger time.Duration, max int) *batcher {
	return &batcher{repo: repo, log: log, linger: linger, max: max, reqs: make(chan *commitReq)}
}

// commit hands a record to the batcher and waits until it is pushed, or
// its push has ended. Once handed over, it waits for the push even when
// ctx ends (the push is then cancelled: see flush), so that a replica that
// gives a shard up frees its Lease only after its last push for that
// shard has landed or failed, never while one is under way.
func (b *batcher) commit(ctx context.Context, req *commitReq) (gitsync.CommitResult, error) {
	req.ctx = ctx
	req.done = make(chan commitResult, 1)
	select {
	case b.reqs <- req:
	case <-ctx.Done():
		return gitsync.CommitResult{}, ctx.Err()
	}
	r := <-req.done
	return r.res, r.err
}

// run gathers and pushes batches until ctx ends.
func (b *batcher) run(ctx context.Context) {
	for {
		var batch []*commitReq
		select {
		case <-ctx.Done():
			return
		case r := <-b.reqs:
			batch = append(batch, r)
		}
		timer := time.NewTimer(b.linger)
		idle := time.NewTimer(min(commitIdle, b.linger))
	gather:
		for len(batch) < b.max {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
				idle.Reset(min(commitIdle, b.linger))
			case <-idle.C:
				break gather
			case <-timer.C:
				break gather
			case <-ctx.Done():
				break gather
			}
		}
		timer.Stop()
		idle.Stop()
		b.flush(ctx, batch)
	}
}

// flush pushes a batch as one commit. When that fails for any reason but
// the end of ctx, each record is pushed on its own, so that one bad record
// (a spec edit that no longer applies, say) does not hold the others.
func (b *batcher) flush(ctx context.Context, batch []*commitReq) {
	batch = slices.DeleteFunc(batch, func(r *commitReq) bool {
		if r.ctx.Err() != nil {
			r.done <- commitResult{err: r.ctx.Err()}
			return true
		}
		return false
	})
	switch len(batch) {
	case 0:
		return
	case 1:
		res, err := b.repo.Commit(batch[0].ctx, batch[0].change)
		batch[0].done <- commitResult{res, err}
		return
	}
	// The batch's push ends as soon as any of its records' contexts does
	// (a shard lost): no record is pushed for a release this replica no
	// longer holds. The others are then pushed again without it.
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, r := range batch {
		stop := context.AfterFunc(r.ctx, cancel)
		defer stop()
	}
	res, err := b.repo.Commit(mctx, mergeChanges(batch))
	if err != nil && ctx.Err() == nil && mctx.Err() != nil {
		live := slices.DeleteFunc(slices.Clone(batch), func(r *commitReq) bool {
			if r.ctx.Err() != nil {
				r.done <- commitResult{err: r.ctx.Err()}
				return true
			}
			return false
		})
		b.flush(ctx, live)
		return
	}
	if err == nil || ctx.Err() != nil {
		for _, r := range batch {
			r.done <- commitResult{res, err}
			// One push: its retries are counted once, with the first
			// record (sluice_git_push_retries_total), not once a record.
			res.Retries = 0
		}
		return
	}
	b.log.Warn("batched status commit failed; committing each release on its own", "releases", len(batch), "err", err)
	for _, r := range batch {
		res, err := b.repo.Commit(r.ctx, r.change)
		r.done <- commitResult{res, err}
	}
}

// mergeChanges makes one commit of several releases' records. Its subject
// counts them by action; its body lists each release's subject (and
// message); its trailers hold one group per release, each starting with
// Sluice-Release and carrying the release's own subject, which is what
// `sluice history` shows.
func mergeChanges(batch []*commitReq) gitsync.Change {
	merged := gitsync.Change{Files: map[string][]byte{}}
	actions := map[record.Action]int{}
	var body strings.Builder
	for _, r := range batch {
		actions[r.action]++
		maps.Copy(merged.Files, r.change.Files)
		merged.Edits = append(merged.Edits, r.change.Edits...)
		fmt.Fprintf(&body, "- %s\n", r.subject)
		if r.body != "" {
			for line := range strings.SplitSeq(strings.TrimSpace(r.body), "\n") {
				fmt.Fprintf(&body, "  %s\n", line)
			}
		}
		merged.Trailers = append(merged.Trailers, r.change.Trailers...)
		merged.Trailers = append(merged.Trailers, gitsync.Trailer{Key: record.TrailerSubject, Value: r.subject})
	}
	counts := make([]string, 0, len(actions))
	for _, a := range slices.Sorted(maps.Keys(actions)) {
		counts = append(counts, fmt.Sprintf("%d %s", actions[a], a))
	}
	merged.Message = fmt.Sprintf("sluice: %d releases (%s)\n\n%s", len(batch), strings.Join(counts, ", "), body.String())
	return merged
}
