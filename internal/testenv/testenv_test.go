package testenv_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"sluice.dev/sluice/internal/testenv"
)

// testEnv is the env under test, started by the first test that needs it.
var testEnv = testenv.NewShared(testenv.Options{Prometheus: true, Nodes: 1})

func TestMain(m *testing.M) { os.Exit(testEnv.Main(m)) }

// waitTimeout is generous: these run on small, busy CI machines.
const waitTimeout = 60 * time.Second

func clients(t *testing.T) *kubernetes.Clientset {
	t.Helper()
	env := testEnv.Env(t)
	cs, err := kubernetes.NewForConfig(env.RESTConfig())
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	return cs
}

// namespace creates a namespace for one test, ready for pods.
func namespace(t *testing.T, name string) string {
	t.Helper()
	env := testEnv.Env(t)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := env.CreateNamespace(ctx, name); err != nil {
		t.Fatalf("namespace: %v", err)
	}
	return name
}

// poll waits for cond, reporting the last observed state on timeout.
func poll(t *testing.T, what string, cond func(ctx context.Context) (bool, string, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	state := ""
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, s, err := cond(ctx)
		state = s
		if err != nil {
			state = err.Error()
			return false, nil
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last state: %s)", what, err, state)
	}
}

func TestEnvStarts(t *testing.T) {
	env := testEnv.Env(t)
	want, err := testenv.K8sVersion(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The kubeconfig file on its own is enough to reach the cluster.
	cfg, err := clientcmd.BuildConfigFromFlags("", env.KubeconfigPath())
	if err != nil {
		t.Fatalf("load kubeconfig: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.GitVersion != want {
		t.Errorf("server version = %s, want %s (matching client-go)", v.GitVersion, want)
	}

	nodes, err := cs.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 1 {
		t.Fatalf("got %d nodes, want 1", len(nodes.Items))
	}
	n := nodes.Items[0]
	ready := false
	for _, c := range n.Status.Conditions {
		ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
	}
	if !ready || len(n.Spec.Taints) != 0 {
		t.Errorf("node %s: ready=%v taints=%v, want Ready and untainted", n.Name, ready, n.Spec.Taints)
	}

	// Istio's API is served.
	res, err := cs.Discovery().ServerResourcesForGroupVersion("networking.istio.io/v1")
	if err != nil {
		t.Fatalf("discovery networking.istio.io/v1: %v", err)
	}
	kinds := map[string]bool{}
	for _, r := range res.APIResources {
		kinds[r.Kind] = true
	}
	for _, k := range []string{"VirtualService", "DestinationRule", "Gateway"} {
		if !kinds[k] {
			t.Errorf("networking.istio.io/v1 does not serve %s", k)
		}
	}

	rss, err := env.MemoryRSS()
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range rss {
		t.Logf("%s RSS %d MiB", name, b>>20)
	}
	t.Logf("start took %s", env.StartupDuration())
}

func deployment(name string, replicas int32, podLabels map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	for k, v := range podLabels {
		labels[k] = v
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "catalog",
					Image: "istioinaction/catalog:v1",
				}}},
			},
		},
	}
}

func deploymentCondition(d *appsv1.Deployment, typ appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == typ {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

func TestDeploymentBecomesAvailable(t *testing.T) {
	cs := clients(t)
	ns := namespace(t, "rollout")
	if _, err := cs.AppsV1().Deployments(ns).Create(t.Context(), deployment("catalog", 2, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "deployment catalog to be Available with 2 replicas", func(ctx context.Context) (bool, string, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "catalog", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		c := deploymentCondition(d, appsv1.DeploymentAvailable)
		state := fmt.Sprintf("available=%d updated=%d conditions=%v", d.Status.AvailableReplicas, d.Status.UpdatedReplicas, d.Status.Conditions)
		return c != nil && c.Status == corev1.ConditionTrue && d.Status.AvailableReplicas == 2, state, nil
	})

	pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=catalog"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName == "" || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			t.Errorf("pod %s: node=%q phase=%s podIP=%q, want scheduled, Running, with an IP", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIP)
		}
	}
}

func TestNeverReadyPodStaysUnready(t *testing.T) {
	cs := clients(t)
	ns := namespace(t, "never-ready")
	d := deployment("candidate", 1, map[string]string{testenv.NeverReadyLabel: "true"})
	deadline := int32(2)
	d.Spec.ProgressDeadlineSeconds = &deadline
	if _, err := cs.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// First kwok must have run the pod (phase Running), so "not ready"
	// below is kwok's doing and not a pod nobody looked at yet.
	poll(t, "the candidate pod to run", func(ctx context.Context) (bool, string, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=candidate"})
		if err != nil {
			return false, "", err
		}
		if len(pods.Items) == 0 {
			return false, "no pods", nil
		}
		p := pods.Items[0]
		return p.Status.Phase == corev1.PodRunning, fmt.Sprintf("phase=%s", p.Status.Phase), nil
	})
	// The deployment controller gives up on the rollout only after the
	// deadline has passed with the pod still unready.
	poll(t, "deployment candidate to exceed its progress deadline", func(ctx context.Context) (bool, string, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "candidate", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		c := deploymentCondition(d, appsv1.DeploymentProgressing)
		return c != nil && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded",
			fmt.Sprintf("conditions=%v", d.Status.Conditions), nil
	})

	got, err := cs.AppsV1().Deployments(ns).Get(t.Context(), "candidate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.AvailableReplicas != 0 || got.Status.ReadyReplicas != 0 {
		t.Errorf("available=%d ready=%d, want 0", got.Status.AvailableReplicas, got.Status.ReadyReplicas)
	}
	pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=candidate"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Fatalf("got %d pods, want 1", len(pods.Items))
	}
	p := pods.Items[0]
	// Running shows kwok did process the pod: it ran the never-ready stage
	// rather than ignoring it.
	if p.Status.Phase != corev1.PodRunning {
		t.Errorf("pod phase = %s, want Running", p.Status.Phase)
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status != corev1.ConditionFalse {
			t.Errorf("pod Ready = %s, want False", c.Status)
		}
	}
	if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].Ready {
		t.Errorf("container statuses = %+v, want one unready container", p.Status.ContainerStatuses)
	}
}

var virtualServices = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}

func virtualService(name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "VirtualService",
		"metadata":   map[string]any{"name": name},
		"spec":       spec,
	}}
}

func TestVirtualServiceSchema(t *testing.T) {
	env := testEnv.Env(t)
	dyn, err := dynamic.NewForConfig(env.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, "istio-schema")
	route := []any{map[string]any{"route": []any{
		map[string]any{"destination": map[string]any{"host": "catalog", "subset": "v1"}, "weight": int64(90)},
		map[string]any{"destination": map[string]any{"host": "catalog", "subset": "v2"}, "weight": int64(10)},
	}}}
	tests := []struct {
		name      string
		spec      map[string]any
		wantField string // "" = accepted
	}{
		{"valid", map[string]any{"hosts": []any{"catalog"}, "http": route}, ""},
		{"hosts not a list", map[string]any{"hosts": "catalog", "http": route}, "spec.hosts"},
		{"weight not a number", map[string]any{"hosts": []any{"catalog"}, "http": []any{map[string]any{"route": []any{
			map[string]any{"destination": map[string]any{"host": "catalog"}, "weight": "ninety"},
		}}}}, "weight"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dyn.Resource(virtualServices).Namespace(ns).Create(t.Context(),
				virtualService(fmt.Sprintf("catalog-%d", i), tc.spec), metav1.CreateOptions{})
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("valid VirtualService rejected: %v", err)
				}
				return
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("err = %v, want Invalid", err)
			}
			if !strings.Contains(err.Error(), tc.wantField) {
				t.Errorf("err = %v, want it to name %s", err, tc.wantField)
			}
		})
	}
}

func TestServiceAccountIsLeastPrivileged(t *testing.T) {
	env := testEnv.Env(t)
	ns := namespace(t, "least-privilege")
	cfg, err := env.ServiceAccountConfig(t.Context(), ns, "sluice")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CertData != nil || cfg.KeyData != nil || cfg.BearerToken == "" {
		t.Fatal("service account config must authenticate by token only")
	}
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	review, err := sa.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("self subject review: %v", err)
	}
	if want := "system:serviceaccount:" + ns + ":sluice"; review.Status.UserInfo.Username != want {
		t.Errorf("authenticated as %q, want %q", review.Status.UserInfo.Username, want)
	}

	_, err = sa.CoreV1().Secrets("kube-system").List(t.Context(), metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("list secrets in kube-system: err = %v, want Forbidden", err)
	}

	// A Role grants exactly what it says: its own namespace, nothing else.
	admin := clients(t)
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "read-secrets", Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list"}}},
	}
	if _, err := admin.RbacV1().Roles(ns).Create(t.Context(), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "read-secrets", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "read-secrets"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "sluice", Namespace: ns}},
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(t.Context(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The RBAC authorizer's cache catches up within moments.
	poll(t, "the RoleBinding to take effect", func(ctx context.Context) (bool, string, error) {
		_, err := sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		return err == nil, fmt.Sprint(err), nil
	})
	if _, err := sa.CoreV1().Secrets("kube-system").List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets in kube-system after a namespaced grant: err = %v, want Forbidden", err)
	}
}

// serveMetrics serves a registry on a loopback port until the test ends.
func serveMetrics(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// queryScalar returns the single value of an instant query.
func queryScalar(ctx context.Context, api promv1.API, q string) (float64, error) {
	v, _, _, err := api.Query(ctx, q, time.Now())
	if err != nil {
		return 0, err
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 1 {
		return 0, fmt.Errorf("query %s: got %v, want one sample", q, v)
	}
	return float64(vec[0].Value), nil
}

func TestPrometheusScrapesAddedTarget(t *testing.T) {
	env := testEnv.Env(t)
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_testenv_probe_requests_total", Help: "Probe."})
	reg.MustRegister(requests)
	requests.Add(42)
	addr := serveMetrics(t, reg)

	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := env.AddScrapeTarget(ctx, "probe", addr); err != nil {
		t.Fatalf("add scrape target: %v", err)
	}
	client, err := promapi.NewClient(promapi.Config{Address: env.PrometheusURL()})
	if err != nil {
		t.Fatal(err)
	}
	api := promv1.NewAPI(client)
	const q = `sluice_testenv_probe_requests_total{job="probe"}`
	poll(t, "the probe counter in Prometheus", func(ctx context.Context) (bool, string, error) {
		v, err := queryScalar(ctx, api, q)
		return v == 42, fmt.Sprint(v), err
	})

	t.Run("stop and start", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		if err := env.StopPrometheus(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := api.Query(ctx, "up", time.Now()); err == nil {
			t.Fatal("query succeeded while Prometheus was stopped")
		}
		if err := env.AddScrapeTarget(ctx, "probe", addr); err == nil {
			t.Error("AddScrapeTarget succeeded while Prometheus was stopped")
		}
		requests.Add(8)
		if err := env.StartPrometheus(ctx); err != nil {
			t.Fatal(err)
		}
		// Same URL, same targets, fresh samples.
		poll(t, "the probe counter after restart", func(ctx context.Context) (bool, string, error) {
			v, err := queryScalar(ctx, api, q)
			return v == 50, fmt.Sprint(v), err
		})
	})
}

func TestPrometheusRejectsBadTargets(t *testing.T) {
	env := testEnv.Env(t)
	tests := []struct{ job, hostPort string }{
		{"", "127.0.0.1:9"},
		{"has space", "127.0.0.1:9"},
		{"prometheus", "127.0.0.1:9"},
		{"ok", "127.0.0.1"},
		{"ok", "127.0.0.1:http"},
		{"ok", ":9"},
	}
	for _, tc := range tests {
		err := env.AddScrapeTarget(t.Context(), tc.job, tc.hostPort)
		if err == nil {
			t.Errorf("AddScrapeTarget(%q, %q) succeeded, want an error", tc.job, tc.hostPort)
		}
	}
}

func TestServiceAccountConfigRejectsEmptyNames(t *testing.T) {
	env := testEnv.Env(t)
	for _, tc := range [][2]string{{"", "x"}, {"default", ""}} {
		if _, err := env.ServiceAccountConfig(t.Context(), tc[0], tc[1]); err == nil {
			t.Errorf("ServiceAccountConfig(%q, %q) succeeded", tc[0], tc[1])
		}
	}
}

func TestWithoutPrometheus(t *testing.T) {
	// The zero Env stands for one started without Options.Prometheus: the
	// Prometheus methods depend only on that.
	var e testenv.Env
	if e.PrometheusURL() != "" {
		t.Error("PrometheusURL without Prometheus is not empty")
	}
	calls := map[string]error{
		"AddScrapeTarget": e.AddScrapeTarget(t.Context(), "job", "127.0.0.1:1"),
		"StopPrometheus":  e.StopPrometheus(t.Context()),
		"StartPrometheus": e.StartPrometheus(t.Context()),
	}
	for name, err := range calls {
		if err == nil || !strings.Contains(err.Error(), "Options.Prometheus") {
			t.Errorf("%s without Prometheus: err = %v, want one naming Options.Prometheus", name, err)
		}
	}
}
