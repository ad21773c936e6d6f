package observe

import (
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/internal/testenv"
	"sluice.dev/sluice/reconciler"
)

// testEnv is the API server the Events test writes to, started when needed.
var testEnv = testenv.NewShared(testenv.Options{})

func TestMain(m *testing.M) { os.Exit(testEnv.Main(m)) }

// TestEvents records transitions as events.k8s.io/v1 Events on the real
// API server and reads them back as `kubectl get events` would.
func TestEvents(t *testing.T) {
	env := testEnv.Env(t)
	ctx := t.Context()
	const ns = "events"
	if err := env.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())
	ev := NewEvents(dynamic.NewForConfigOrDie(env.RESTConfig()), "sluice-7d9f-x2k4q_1a2b3c4d@10.0.0.7:8080", nil)
	long := "catalog: rolled back at 10% (" + strings.Repeat("é", 600) + ")"
	transitions := []reconciler.Transition{
		{Action: "start", Subject: "catalog: start v1 -> v2 at deploy"},
		{Action: "advance", Subject: "catalog: deploy -> dark-launch (available)"},
		{Action: "check", Subject: "catalog: check failed at 10% (success-rate 97.1 < 99, 1/5 checks failed)"},
		{Action: "rollback", Subject: long},
		{Action: "invalid", Subject: "catalog: invalid release spec, skipped", VirtualService: "-"}, // no target: no Event
	}
	for _, tr := range transitions {
		tr.Release, tr.Namespace, tr.Name = ns+"/catalog", ns, "catalog"
		switch tr.VirtualService {
		case "":
			tr.VirtualService = "catalog-mesh"
		case "-":
			tr.VirtualService = ""
		}
		ev.Transition(ctx, tr)
	}

	list, err := kube.EventsV1().Events(ns).List(ctx, metav1.ListOptions{LabelSelector: "sluice.dev/release=catalog"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 4 {
		t.Fatalf("%d Events, want 4: %+v", len(list.Items), list.Items)
	}
	byReason := map[string]string{}
	for _, e := range list.Items {
		if e.Regarding.Kind != "VirtualService" || e.Regarding.Name != "catalog-mesh" || e.Regarding.Namespace != ns {
			t.Errorf("Event %s regards %+v", e.Name, e.Regarding)
		}
		if e.ReportingController != ReportingController || !strings.HasPrefix(e.ReportingInstance, "sluice-7d9f-x2k4q_") {
			t.Errorf("Event %s reported by %s/%s", e.Name, e.ReportingController, e.ReportingInstance)
		}
		byReason[e.Reason] = e.Type + " " + e.Note
	}
	want := map[string]string{
		"Started":     "Normal catalog: start v1 -> v2 at deploy",
		"Advanced":    "Normal catalog: deploy -> dark-launch (available)",
		"CheckFailed": "Warning catalog: check failed at 10% (success-rate 97.1 < 99, 1/5 checks failed)",
	}
	for reason, w := range want {
		if byReason[reason] != w {
			t.Errorf("%s: %q, want %q", reason, byReason[reason], w)
		}
	}
	if rb := byReason["RolledBack"]; !strings.HasPrefix(rb, "Warning catalog: rolled back at 10% (éé") || !strings.HasSuffix(rb, "...") || len(rb) > len("Warning ")+maxNote {
		t.Errorf("RolledBack note not cut to %d bytes: %d bytes", maxNote, len(rb))
	}

	// The core/v1 view (kubectl describe) shows them too.
	core, err := kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=catalog-mesh"})
	if err != nil {
		t.Fatal(err)
	}
	if len(core.Items) != 4 || core.Items[0].InvolvedObject.Kind != "VirtualService" || core.Items[0].Type == "" {
		t.Errorf("core/v1 Events: %d, first %+v", len(core.Items), core.Items)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"0123456789abc", 10, "0123456..."},
		{"ééééé", 8, "éé..."}, // é is two bytes: never cut one in half
	}
	for _, tc := range tests {
		if got := truncate(tc.in, tc.n); got != tc.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// TestEventsOnHTTPRoute: a release routed with the Gateway API has its
// Events on its mesh HTTPRoute.
func TestEventsOnHTTPRoute(t *testing.T) {
	env := testEnv.Env(t)
	ctx := t.Context()
	const ns = "events-gwapi"
	if err := env.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())
	NewEvents(dynamic.NewForConfigOrDie(env.RESTConfig()), "sluice", nil).Transition(ctx, reconciler.Transition{
		Release: ns + "/catalog", Namespace: ns, Name: "catalog", Action: "start",
		Subject: "catalog: start v1 -> v2 at deploy", VirtualService: "catalog-mesh", RouteKind: "HTTPRoute",
	})
	list, err := kube.EventsV1().Events(ns).List(ctx, metav1.ListOptions{LabelSelector: "sluice.dev/release=catalog"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Regarding.Kind != "HTTPRoute" || list.Items[0].Regarding.APIVersion != "gateway.networking.k8s.io/v1" || list.Items[0].Regarding.Name != "catalog-mesh" {
		t.Fatalf("Events %+v", list.Items)
	}
}
