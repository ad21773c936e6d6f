package observe

import (
	"context"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
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
	ev := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{
			// Unique per VirtualService and instant, as client-go's recorder names them.
			Name:      fmt.Sprintf("%s.%x", t.VirtualService, now.UnixNano()),
			Namespace: t.Namespace,
			// `kubectl get events -l sluice.dev/release=NAME` finds a release's Events.
			Labels: map[string]string{specs.LabelRelease: t.Name},
		},
		EventTime:           metav1.NewMicroTime(now),
		ReportingController: ReportingController,
		ReportingInstance:   e.instance,
		Action:              string(t.Action),
		Reason:              reason,
		Type:                typ,
		Note:                truncate(t.Subject, maxNote),
		Regarding: corev1.ObjectReference{
			APIVersion: "networking.istio.io/v1",
			Kind:       "VirtualService",
			Namespace:  t.Namespace,
			Name:       t.VirtualService,
		},
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ev)
	if err != nil {
		e.log.Warn("could not record an Event", "release", t.Release, "reason", reason, "err", err)
		return
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetAPIVersion(eventsv1.SchemeGroupVersion.String())
	u.SetKind("Event")
	events := e.client.Resource(schema.GroupVersionResource{Group: eventsv1.GroupName, Version: "v1", Resource: "events"})
	if _, err := events.Namespace(t.Namespace).Create(ctx, u, metav1.CreateOptions{}); err != nil {
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
