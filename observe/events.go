package observe

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
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
	reason, typ := t.Action.Reason()
	e.emit(ctx, t.Namespace, t.Name, t.VirtualService, t.RouteKind, string(t.Action), reason, typ, t.Subject)
}

// Drifted implements reconciler.Observer: a Warning Event "Drift" that
// names what was put back.
func (e *Events) Drifted(ctx context.Context, d reconciler.Drift) {
	if d.VirtualService == "" || d.Namespace == "" || len(d.Fields) == 0 {
		return
	}
	fields := make([]string, 0, len(d.Fields))
	for _, f := range d.Fields {
		fields = append(fields, f.String())
	}
	note := fmt.Sprintf("%s: reverted at %s: %s", d.Name, d.Step, strings.Join(fields, "; "))
	e.emit(ctx, d.Namespace, d.Name, d.VirtualService, d.RouteKind, "revert", "Drift", "Warning", note)
}

// emit creates one Event on a release's VirtualService (kind is
// VirtualService or empty), or on its HTTPRoute (kind HTTPRoute), and
// logs (never returns) a failure.
func (e *Events) emit(ctx context.Context, namespace, release, vs, kind, action, reason, typ, note string) {
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	now := e.now()
	// An events.k8s.io/v1 Event, written as the map the dynamic client
	// sends: k8s.io/api's typed Event would link the core API group's
	// generated code for this one object.
	regarding := map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "VirtualService",
		"namespace":  namespace,
		"name":       vs,
	}
	if kind == "HTTPRoute" {
		regarding["apiVersion"], regarding["kind"] = "gateway.networking.k8s.io/v1", "HTTPRoute"
	}
	ev := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "events.k8s.io/v1",
		"kind":       "Event",
		"metadata": map[string]any{
			// Unique per object and instant, as client-go's recorder names them.
			"name":      fmt.Sprintf("%s.%x", vs, now.UnixNano()),
			"namespace": namespace,
			// `kubectl get events -l sluice.dev/release=NAME` finds a release's Events.
			"labels": map[string]any{specs.LabelRelease: release},
		},
		"eventTime":           now.UTC().Format(metav1.RFC3339Micro),
		"reportingController": ReportingController,
		"reportingInstance":   e.instance,
		"action":              action,
		"reason":              reason,
		"type":                typ,
		"note":                truncate(note, maxNote),
		"regarding":           regarding,
	}}
	events := e.client.Resource(schema.GroupVersionResource{Group: "events.k8s.io", Version: "v1", Resource: "events"})
	if _, err := events.Namespace(namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		e.log.Warn("could not record an Event", "release", namespace+"/"+release, "reason", reason, "err", err)
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
