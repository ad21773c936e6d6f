package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/gates"
	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/leader"
	"sluice.dev/sluice/observe"
	"sluice.dev/sluice/reconciler"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

const sluiceNamespace = "sluice-system"

// renderDeploy builds deploy/ as `kubectl apply -k deploy/` would.
func renderDeploy(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "../deploy")
	if err != nil {
		t.Fatalf("kustomize build deploy/: %v", err)
	}
	var objs []*unstructured.Unstructured
	for _, res := range resMap.Resources() {
		m, err := res.Map()
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

// applier applies objects with server-side apply, as kubectl does.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(t *testing.T, cfg *rest.Config) *applier {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dynamic.NewForConfigOrDie(cfg), mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

func (a *applier) apply(ctx context.Context, u *unstructured.Unstructured, dryRun bool) error {
	gvk := u.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
	}
	opts := metav1.ApplyOptions{FieldManager: "e2e", Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = a.dyn.Resource(m.Resource).Namespace(u.GetNamespace()).Apply(ctx, u.GetName(), u, opts)
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w", gvk.Kind, u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

// TestDeploy checks deploy/ on the real API server: it renders, the API
// server accepts all of it (server-side dry run), and Sluice running as
// its ServiceAccount, with its RBAC only, completes a release and is
// refused anything else.
func TestDeploy(t *testing.T) {
	env := testEnv.Env(t)
	t.Parallel()
	ctx := t.Context()
	objs := renderDeploy(t)
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())
	admin := newApplier(t, env.RESTConfig())

	t.Run("manifests", func(t *testing.T) {
		kinds := map[string]bool{}
		var dep *unstructured.Unstructured
		for _, o := range objs {
			kinds[o.GetKind()] = true
			if o.GetKind() == "Deployment" {
				dep = o
			}
			if o.GetKind() == "Secret" {
				t.Errorf("deploy/ holds Secret %s: credentials must not live in the repository", o.GetName())
			}
		}
		for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service"} {
			if !kinds[k] {
				t.Errorf("deploy/ renders no %s", k)
			}
		}
		if dep == nil {
			t.Fatal("no Deployment")
		}
		want := []struct {
			path []string
			val  any
		}{
			{[]string{"spec", "replicas"}, 2},
			{[]string{"spec", "template", "spec", "serviceAccountName"}, "sluice"},
			{[]string{"spec", "template", "spec", "securityContext", "runAsNonRoot"}, true},
			{[]string{"spec", "template", "spec", "securityContext", "seccompProfile", "type"}, "RuntimeDefault"},
			{[]string{"spec", "template", "spec", "containers", "0", "image"}, "ghcr.io/sluice-dev/sluice:v0.1.0"},
			{[]string{"spec", "template", "spec", "containers", "0", "securityContext", "allowPrivilegeEscalation"}, false},
			{[]string{"spec", "template", "spec", "containers", "0", "securityContext", "readOnlyRootFilesystem"}, true},
			{[]string{"spec", "template", "spec", "containers", "0", "securityContext", "capabilities", "drop", "0"}, "ALL"},
			{[]string{"spec", "template", "spec", "containers", "0", "livenessProbe", "httpGet", "path"}, "/healthz"},
			{[]string{"spec", "template", "spec", "containers", "0", "readinessProbe", "httpGet", "path"}, "/readyz"},
			{[]string{"spec", "template", "spec", "containers", "0", "envFrom", "0", "configMapRef", "name"}, "sluice-config"},
			{[]string{"spec", "template", "spec", "containers", "0", "resources", "limits", "memory"}, "512Mi"},
			{[]string{"spec", "template", "spec", "containers", "0", "resources", "requests", "cpu"}, "100m"},
		}
		for _, w := range want {
			got, err := lookup(dep.Object, w.path)
			// Numbers come as int or int64 depending on the decoder: compare as text.
			if err != nil || fmt.Sprint(got) != fmt.Sprint(w.val) {
				t.Errorf("Deployment %s = %v (%v), want %v", strings.Join(w.path, "."), got, err, w.val)
			}
		}
	})

	t.Run("server dry run", func(t *testing.T) {
		if err := ensureNamespace(ctx, kube, sluiceNamespace); err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if err := admin.apply(ctx, o, true); err != nil {
				t.Errorf("the API server refuses %v", err)
			}
		}
		if _, err := kube.AppsV1().Deployments(sluiceNamespace).Get(ctx, "sluice", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("a dry run created the Deployment: %v", err)
		}
	})

	t.Run("release as the ServiceAccount", func(t *testing.T) {
		for _, o := range objs {
			switch o.GetKind() {
			case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
				if err := admin.apply(ctx, o, false); err != nil {
					t.Fatal(err)
				}
			}
		}
		serviceAccountRelease(t)
	})
}

// serviceAccountRelease runs Sluice in process as sluice-system/sluice,
// with that ServiceAccount's own token for everything it does in the
// cluster (apply, Events, the leader election Lease).
func serviceAccountRelease(t *testing.T) {
	env := testEnv.Env(t)
	ctx := t.Context()
	s := startStack(t, stack.Options{Namespace: "e2e-sa"})
	saCfg, err := env.ServiceAccountConfig(ctx, sluiceNamespace, "sluice")
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(saCfg)
	saDyn := dynamic.NewForConfigOrDie(saCfg)
	// The authorizer learns of new bindings through a watch; wait for it.
	for _, attrs := range []authorizationv1.ResourceAttributes{
		{Namespace: s.Namespace, Verb: "patch", Group: "networking.istio.io", Resource: "virtualservices"},
		{Namespace: sluiceNamespace, Verb: "update", Group: "coordination.k8s.io", Resource: "leases"},
	} {
		err := stack.WaitFor(ctx, 30*time.Second, 100*time.Millisecond, "RBAC to allow "+attrs.Verb+" "+attrs.Resource, func(ctx context.Context) (bool, error) {
			review, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
				&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs}}, metav1.CreateOptions{})
			return err == nil && review.Status.Allowed, err
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	repo, err := gitsync.Open(ctx, gitsync.Config{URL: s.Remote, Author: gitsync.Signature{Name: "Sluice", Email: "sluice@example.com"}}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	applier, err := cluster.New(saCfg, cluster.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := gates.New(gates.Options{Address: env.PrometheusURL(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	identity := leader.NewIdentity("in-process", "")
	rec, err := reconciler.New(reconciler.Config{
		Repo: repo, Cluster: applier, Gates: ev,
		SyncInterval: interval, ProgressDeadline: 2 * time.Minute, ReapplyInterval: 10 * time.Second,
		AllowedNamespaces: []string{s.Namespace},
		Observer:          observe.NewEvents(saDyn, identity, log),
		Log:               log,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- leader.Run(runCtx, leader.Config{
			Client: leader.NewLeases(saDyn), Namespace: sluiceNamespace, Name: "sluice-e2e", Identity: identity,
			LeaseDuration: testLeaderElection.LeaseDuration, RenewDeadline: testLeaderElection.RenewDeadline, RetryPeriod: testLeaderElection.RetryPeriod,
			Log: log,
		}, rec.Run)
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("leader.Run: %v", err)
		}
	}()

	waitPhase(t, s, record.PhaseSteady, time.Minute)
	if _, err := s.PushCandidate(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	rec.Trigger()
	waitPhase(t, s, record.PhasePromoted, releaseTimeout)
	checkGoodRelease(t, transitions(sluiceSubjects(t, s)), "v1", "v2")
	waitDeployments(t, s.Namespace, "catalog-v2")

	events, err := sa.EventsV1().Events(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: specs.LabelRelease + "=catalog"})
	if err == nil {
		t.Errorf("the ServiceAccount may list Events (%d); it should only create them", len(events.Items))
	} else if !apierrors.IsForbidden(err) {
		t.Fatal(err)
	}
	adminEvents, err := kubernetes.NewForConfigOrDie(env.RESTConfig()).EventsV1().Events(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: specs.LabelRelease + "=catalog"})
	if err != nil || len(adminEvents.Items) < 9 {
		t.Errorf("%d Events written as the ServiceAccount (%v), want one per transition", len(adminEvents.Items), err)
	}

	// Outside its RBAC, the ServiceAccount is refused. It may apply, read
	// and prune Secrets (a version's, from kustomize's secretGenerator),
	// but not update them or delete them wholesale.
	forbidden := []struct {
		name string
		call func() error
	}{
		{"update a Secret", func() error {
			_, err := sa.CoreV1().Secrets(sluiceNamespace).Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sluice-git", Namespace: sluiceNamespace}}, metav1.UpdateOptions{})
			return err
		}},
		{"delete every Secret of a namespace", func() error {
			return sa.CoreV1().Secrets(sluiceNamespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		}},
		{"scale a Deployment, as an autoscaler does", func() error {
			_, err := sa.AppsV1().Deployments(s.Namespace).UpdateScale(ctx, "catalog-v2", &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "catalog-v2", Namespace: s.Namespace}, Spec: autoscalingv1.ScaleSpec{Replicas: 3}}, metav1.UpdateOptions{})
			return err
		}},
		{"take a Lease outside its namespace", func() error {
			_, err := sa.CoordinationV1().Leases("kube-system").Get(ctx, "kube-controller-manager", metav1.GetOptions{})
			return err
		}},
		{"grant itself more", func() error {
			_, err := sa.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "sluice-admin"},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "sluice", Namespace: sluiceNamespace}},
			}, metav1.CreateOptions{})
			return err
		}},
		{"delete a namespace", func() error {
			return sa.CoreV1().Namespaces().Delete(ctx, s.Namespace, metav1.DeleteOptions{})
		}},
	}
	for _, tc := range forbidden {
		if err := tc.call(); !apierrors.IsForbidden(err) {
			t.Errorf("%s: err = %v, want Forbidden", tc.name, err)
		}
	}
}

func ensureNamespace(ctx context.Context, kube kubernetes.Interface, name string) error {
	_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// lookup reads a field of an object by path; list items by index.
func lookup(obj map[string]any, path []string) (any, error) {
	var cur any = obj
	for _, p := range path {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[p]
			if !ok {
				return nil, fmt.Errorf("no %s", p)
			}
			cur = v
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i >= len(c) {
				return nil, fmt.Errorf("no item %s", p)
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("%s: not an object", p)
		}
	}
	return cur, nil
}

// testLogWriter sends log lines to t.Log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
