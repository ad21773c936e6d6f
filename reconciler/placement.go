package reconciler

import (
	"slices"

	"k8s.io/apimachinery/pkg/labels"

	"sluice.dev/sluice/record"
)

// mine reports whether a release is this Sluice's to reconcile: its
// labels match Config.Selector, it targets Config.ClusterName and, with
// Config.Shards, this replica holds its shard now. A release that is not
// is another's: it is never queued, reconciled or deleted here, and never
// counted as gone.
func (r *Reconciler) mine(e *entry) bool {
	if e == nil {
		return false
	}
	return r.placedHere(e) && r.holds(e.id)
}

// placedHere is mine without the shard: whether a release is this Sluice's
// by its labels and clusters, which only a new spec changes.
func (r *Reconciler) placedHere(e *entry) bool {
	return r.selects(e.place.Labels) && e.place.Targets(r.cfg.ClusterName)
}

// selects reports whether Config.Selector matches a release's labels.
func (r *Reconciler) selects(l map[string]string) bool {
	return r.cfg.Selector == nil || r.cfg.Selector.Matches(labels.Set(l))
}

// goneHere reports whether a release whose spec is gone from Git, with a
// status file in this Sluice's status directory, was this Sluice's: its
// objects are then this Sluice's to delete. The status directory is the
// cluster's, so only the selector is left to check, against the labels the
// release had when this Sluice last saw it (the previous snapshot, or an
// earlier one that found it gone already), else those its status file
// recorded. A release whose labels were never recorded matches as a
// release without labels.
func (r *Reconciler) goneHere(prev *snapshot, id string, st *record.Status) bool {
	if r.cfg.Selector == nil || r.cfg.Selector.Empty() {
		return true
	}
	if prev != nil {
		if e, ok := prev.releases[id]; ok {
			return r.selects(e.place.Labels)
		}
		if slices.Contains(prev.gone, id) {
			return true
		}
	}
	return r.selects(st.Labels)
}

// assigned are the releases of a snapshot this Sluice reconciles, sorted:
// its own, and those gone from Git that were its own.
func (r *Reconciler) assigned(snap *snapshot) []string {
	ids := make([]string, 0, len(snap.releases)+len(snap.gone))
	for id, e := range snap.releases {
		if r.mine(e) {
			ids = append(ids, id)
		}
	}
	for _, id := range snap.gone {
		if r.holds(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// placed narrows a release's definitions to this Sluice's own when it has
// any: one repository may then define a release once per cluster (the
// same namespace/name in files naming different spec.clusters), each
// Sluice following, recording and promoting its own. Without one of its
// own, every definition stays, for owner to pick from as before.
func (r *Reconciler) placed(defs []*entry) []*entry {
	if len(defs) < 2 {
		return defs
	}
	var own []*entry
	for _, e := range defs {
		if r.placedHere(e) {
			own = append(own, e)
		}
	}
	if len(own) == 0 {
		return defs
	}
	return own
}
