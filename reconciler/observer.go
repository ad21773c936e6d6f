package reconciler

import (
	"context"
	"time"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

// Observer is told what the reconciler does, for metrics and Kubernetes
// Events. Calls come from several workers at once and are synchronous: an
// Observer must be safe for concurrent use and quick, and must not modify
// what it is given. It never sees a secret: it gets release names,
// statuses and commit subjects only.
type Observer interface {
	// GitSynced reports one fetch of the watched branch.
	GitSynced(elapsed time.Duration, err error)
	// Reconciled reports one reconcile of a release and the status it left
	// recorded (nil when nothing is recorded yet).
	Reconciled(release string, elapsed time.Duration, st *record.Status, err error)
	// Removed reports a release that is no longer in Git.
	Removed(release string)
	// GatesEvaluated reports one evaluation of a step's gates.
	GatesEvaluated(release string, values []record.GateValue)
	// Committed reports one attempt to record a transition: the pushes it
	// lost to concurrent pushers, and its error.
	Committed(action record.Action, retries int, err error)
	// Transition reports a transition pushed to Git.
	Transition(ctx context.Context, t Transition)
	// Drifted reports fields of a release's objects that someone changed
	// and that an apply has just put back.
	Drifted(ctx context.Context, d Drift)
	// SpecFilesInvalid reports, after each new snapshot of Git, the spec
	// files that do not parse far enough to name a release.
	SpecFilesInvalid(files []string)
}

// Drift is what an apply put back: the fields of a release's objects that
// no longer held what Sluice had applied.
type Drift struct {
	Release, Namespace, Name string
	// Step is the step that was re-applied.
	Step   string
	Fields []cluster.Drift
	// VirtualService is where Events about the release go (Transition's).
	VirtualService string
	// RouteKind is VirtualService's kind, as Transition's.
	RouteKind string
}

// Transition is one transition of a release, as committed to Git.
type Transition struct {
	// Release is namespace/name.
	Release, Namespace, Name string
	// Action is the commit's Sluice-Action trailer.
	Action record.Action
	// Subject is the commit's subject line.
	Subject string
	// Commit is the pushed commit's hash.
	Commit string
	Status *record.Status
	// VirtualService names the release's mesh route's VirtualService (or
	// its first route's), where Events about the release go; empty when
	// unknown (an invalid spec never seen valid) or when the release's
	// namespace is outside the allowed namespaces.
	VirtualService string
	// RouteKind is VirtualService's kind: HTTPRoute for a route with
	// Gateway API routing; empty means VirtualService.
	RouteKind string
}

// NopObserver does nothing; embed it to implement part of Observer.
type NopObserver struct{}

// GitSynced does nothing.
func (NopObserver) GitSynced(time.Duration, error) {}

// Reconciled does nothing.
func (NopObserver) Reconciled(string, time.Duration, *record.Status, error) {}

// Removed does nothing.
func (NopObserver) Removed(string) {}

// GatesEvaluated does nothing.
func (NopObserver) GatesEvaluated(string, []record.GateValue) {}

// Committed does nothing.
func (NopObserver) Committed(record.Action, int, error) {}

// Transition does nothing.
func (NopObserver) Transition(context.Context, Transition) {}

// Drifted does nothing.
func (NopObserver) Drifted(context.Context, Drift) {}

// SpecFilesInvalid does nothing.
func (NopObserver) SpecFilesInvalid([]string) {}

// Observers calls each observer in turn.
type Observers []Observer

// GitSynced tells every observer.
func (o Observers) GitSynced(d time.Duration, err error) {
	for _, x := range o {
		x.GitSynced(d, err)
	}
}

// Reconciled tells every observer.
func (o Observers) Reconciled(release string, d time.Duration, st *record.Status, err error) {
	for _, x := range o {
		x.Reconciled(release, d, st, err)
	}
}

// Removed tells every observer.
func (o Observers) Removed(release string) {
	for _, x := range o {
		x.Removed(release)
	}
}

// GatesEvaluated tells every observer.
func (o Observers) GatesEvaluated(release string, values []record.GateValue) {
	for _, x := range o {
		x.GatesEvaluated(release, values)
	}
}

// Committed tells every observer.
func (o Observers) Committed(action record.Action, retries int, err error) {
	for _, x := range o {
		x.Committed(action, retries, err)
	}
}

// Transition tells every observer.
func (o Observers) Transition(ctx context.Context, t Transition) {
	for _, x := range o {
		x.Transition(ctx, t)
	}
}

// Drifted tells every observer.
func (o Observers) Drifted(ctx context.Context, d Drift) {
	for _, x := range o {
		x.Drifted(ctx, d)
	}
}

// SpecFilesInvalid tells every observer.
func (o Observers) SpecFilesInvalid(files []string) {
	for _, x := range o {
		x.SpecFilesInvalid(files)
	}
}

// TrafficObserver is an Observer told, after each reconcile, what the
// recorded step of a release gives its candidate (record.StepTraffic): a
// dark launch's match, where the status's weight says 100.
type TrafficObserver interface {
	Traffic(release string, t specs.Traffic)
}

// Traffic tells every observer that is a TrafficObserver.
func (o Observers) Traffic(release string, t specs.Traffic) {
	for _, x := range o {
		if to, ok := x.(TrafficObserver); ok {
			to.Traffic(release, t)
		}
	}
}
