package observe

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	eventsclient "k8s.io/client-go/kubernetes/typed/events/v1"

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
	client   eventsclient.EventsGetter
	instance string
	log      *slog.Logger
	now      func() time.Time
}

// NewEvents writes Events with client; instance names this replica (the
// Events' reportingInstance), e.g. its pod name.
func NewEvents(client eventsclient.EventsGetter, instance string, log *slog.Logger) *Events {
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
	e.emit(ctx, d.Namespace, d.Name, d.VirtualService, d.RouteKind, "revert", "Drift", corev1.EventTypeWarning, note)
}

// emit creates one Event on a release's VirtualService (kind is
// VirtualService or empty), or on its HTTPRoute (kind HTTPRoute), and
// logs (never returns) a failure.
func (e *Events) emit(ctx context.Context, namespace, release, vs, kind, action, reason, typ, note string) {
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	now := e.now()
	ev := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{
			// Unique per VirtualService and instant, as client-go's recorder names them.
			Name:      fmt.Sprintf("%s.%x", vs, now.UnixNano()),
			Namespace: namespace,
			// `kubectl get events -l sluice.dev/release=NAME` finds a release's Events.
			Labels: map[string]string{specs.LabelRelease: release},
		},
		EventTime:           metav1.NewMicroTime(now),
		ReportingController: ReportingController,
		ReportingInstance:   e.instance,
		Action:              action,
		Reason:              reason,
		Type:                typ,
		Note:                truncate(note, maxNote),
		Regarding: corev1.ObjectReference{
			APIVersion: "networking.istio.io/v1",
			Kind:       "VirtualService",
			Namespace:  namespace,
			Name:       vs,
		},
	}
	if kind == "HTTPRoute" {
		ev.Regarding.APIVersion, ev.Regarding.Kind = "gateway.networking.k8s.io/v1", "HTTPRoute"
	}
	if _, err := e.client.Events(namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
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
