package observe

import (
	"context"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"sluice.dev/sluice/reconciler"
	"sluice.dev/sluice/specs"
)

// ReportingController names Sluice in the Events it writes.
const ReportingController = "sluice.dev/sluice"

// eventTimeout bounds one Event's creation: Events are best effort and must
// not hold a release's reconcile up.
const eventTimeout = 5 * time.Second

// Limits of events.k8s.io/v1 fields.
const (
	maxNote     = 1024
	maxInstance = 128
)

// Events writes one Kubernetes Event (events.k8s.io/v1) per transition on
// the release's VirtualService: the reason names the transition (Started,
// Advanced, CheckFailed, RolledBack, Promoted, ...) and the note is the
// commit's subject, so `kubectl describe virtualservice` and `kubectl get
// events` tell a release's story. It implements reconciler.Observer.
type Events struct {
	reconciler.NopObserver
	client   dynamic.Interface
	instance string
	log      *slog.Logger
	now      func() time.Time
}

// NewEvents writes Events with client; instance names this replica (the
// Events' reportingInstance), e.g. its pod name. (The dynamic client, not
// client-go's typed events client: that would link and register every
// built-in API group.)
func NewEvents(client dynamic.Interface, instance string, log *slog.Logger) *Events {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(instance) > maxInstance {
		instance = instance[:maxInstance]
	}
	if instance == "" {
		instance = "sluice"
	}
	return &Events{client: client, instance: instance, log: log, now: time.Now}
}

// Transition implements reconciler.Observer: it creates the Event, and
// logs (never returns) a failure.
func (e *Events) Transition(ctx context.Context, t reconciler.Transition) {
	if t.VirtualService == "" || t.Namespace == "" {
		e.log.Debug("no VirtualService to report the transition on", "release", t.Release, "action", t.Action)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	now := e.now()
	reason, typ := t.Action.Reason()
	// An events.k8s.io/v1 Event, written as the map the dynamic client
	// sends: k8s.io/api's typed Event would link the core API group's
	// generated code for this one object.
	ev := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "events.k8s.io/v1",
		"kind":       "Event",
		"metadata": map[string]any{
			// Unique per VirtualService and instant, as client-go's recorder names them.
			"name":      fmt.Sprintf("%s.%x", t.VirtualService, now.UnixNano()),
			"namespace": t.Namespace,
			// `kubectl get events -l sluice.dev/release=NAME` finds a release's Events.
			"labels": map[string]any{specs.LabelRelease: t.Name},
		},
		"eventTime":           now.UTC().Format(metav1.RFC3339Micro),
		"reportingController": ReportingController,
		"reportingInstance":   e.instance,
		"action":              string(t.Action),
		"reason":              reason,
		"type":                typ,
		"note":                truncate(t.Subject, maxNote),
		"regarding": map[string]any{
			"apiVersion": "networking.istio.io/v1",
			"kind":       "VirtualService",
			"namespace":  t.Namespace,
			"name":       t.VirtualService,
		},
	}}
	events := e.client.Resource(schema.GroupVersionResource{Group: "events.k8s.io", Version: "v1", Resource: "events"})
	if _, err := events.Namespace(t.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		e.log.Warn("could not record an Event", "release", t.Release, "reason", reason, "err", err)
	}
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n-3]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}
