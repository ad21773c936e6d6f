package reconciler

import (
	"context"
	"fmt"
	"strings"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/renderer"
)

// Deleter is a Cluster that can remove every object of a release.
type Deleter interface {
	Delete(ctx context.Context, owner map[string]string) (*cluster.Result, error)
}

// deleteRelease follows a release spec deleted from Git: it removes what
// Sluice applied for the release (but what is annotated to be orphaned),
// closes its approval pull request, then removes its status file with a
// commit that says so.
//
// Unlike a transition, the cluster changes before the record: the person's
// commit that deleted the spec is the decision, and the status file is
// what tells a restarted Sluice that the objects are still to be removed.
// Removing it first would leave them behind for good if Sluice stopped in
// between; removing the objects twice is harmless.
func (r *Reconciler) deleteRelease(ctx context.Context, snap *snapshot, id string) error {
	ns, name, _ := strings.Cut(id, "/")
	st, err := r.statuses.Read(snap.tree, r.cfg.StatusDir, ns, name)
	if err != nil || st == nil {
		return err
	}
	subject := fmt.Sprintf("%s: release spec deleted from %s", name, st.SpecFile)
	switch {
	case r.cfg.OnDelete == OnDeleteOrphan:
		subject += "; its objects are left running (sluice run --on-delete=orphan)"
	case !r.allowed(ns):
		subject += "; nothing was applied (namespace not allowed)"
	default:
		d, ok := r.cfg.Cluster.(Deleter)
		if !ok {
			return fmt.Errorf("release %s deleted: the cluster client cannot delete", id)
		}
		res, err := d.Delete(ctx, renderer.OwnerOf(ns, name))
		if err != nil {
			return err
		}
		subject += fmt.Sprintf("; removed %s", countObjects(len(res.Pruned)))
		if n := len(res.Orphaned); n > 0 {
			subject += fmt.Sprintf(", left %s (sluice.dev/on-delete: orphan)", countObjects(n))
		}
		r.log.Info("release deleted", "release", id, "pruned", len(res.Pruned), "orphaned", len(res.Orphaned))
	}
	if st.PullRequest != nil && st.Phase == record.PhaseWaiting && r.cfg.Forge != nil {
		rc := &run{r: r, snap: snap, e: &entry{id: id, namespace: ns, name: name}, memo: r.memoFor(id)}
		rc.retirePullRequest(ctx, PullRequestAction{Op: PullRequestRetire, Ref: st.PullRequest,
			Comment: "The release spec was deleted from Git; this approval is moot."})
	}
	e := &entry{id: id, namespace: ns, name: name, file: st.SpecFile}
	return r.commit(ctx, e, record.Entry{Release: id, Namespace: ns, Name: name, Action: record.ActionDelete, Subject: subject})
}

func countObjects(n int) string {
	if n == 1 {
		return "1 object"
	}
	return fmt.Sprintf("%d objects", n)
}
