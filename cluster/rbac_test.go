package cluster

import (
	"context"
	"os"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// TestRBAC applies deploy/rbac.yaml and runs the apply path as Sluice's
// ServiceAccount, with live objects read from watches as `sluice run`
// does: everything Sluice does is allowed (a version's Secrets, ConfigMaps
// and autoscaler included), nothing else is.
func TestRBAC(t *testing.T) {
	env := testEnv.Env(t)
	ctx := testContext(t)
	admin, _ := newApplier(t)
	data, err := os.ReadFile("../deploy/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects(data)
	if err != nil {
		t.Fatalf("deploy/rbac.yaml: %v", err)
	}
	if _, err := admin.Apply(ctx, Set{Owner: owner("sluice-system", "sluice-rbac"), Objects: objs}, ApplyOptions{}); err != nil {
		t.Fatalf("apply deploy/rbac.yaml: %v", err)
	}

	saCfg, err := env.ServiceAccountConfig(ctx, "sluice-system", "sluice")
	if err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(saCfg)
	ns := newNamespace(t)
	// The authorizer learns of new bindings through a watch; wait for it.
	for _, attrs := range []authorizationv1.ResourceAttributes{
		{Namespace: ns, Verb: "patch", Group: "networking.istio.io", Resource: "virtualservices"},
		{Namespace: ns, Verb: "patch", Group: "gateway.networking.k8s.io", Resource: "httproutes"},
		{Verb: "watch", Group: "autoscaling", Resource: "horizontalpodautoscalers"},
		{Verb: "watch", Resource: "secrets"},
	} {
		waitAllowed(ctx, t, kube, attrs)
	}

	cfg, counter := CountingConfig(saCfg)
	a, err := New(cfg, Options{Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		files  []string
		pruned int
	}{
		{"canary", []string{"shared.yaml", "deployment-v1.yaml", "deployment-v2.yaml", "destinationrule.yaml", "vs-canary.yaml"}, 0},
		{"canary again", []string{"shared.yaml", "deployment-v1.yaml", "deployment-v2.yaml", "destinationrule.yaml", "vs-canary.yaml"}, 0},
		{"promote", []string{"shared.yaml", "deployment-v2.yaml", "destinationrule.yaml", "vs-promoted.yaml"}, 1},
	}
	for _, step := range steps {
		res, err := a.Apply(ctx, shopSet(t, ns, step.files...), ApplyOptions{})
		if err != nil {
			t.Fatalf("%s as the sluice ServiceAccount: %v", step.name, err)
		}
		if len(res.Pruned) != step.pruned {
			t.Errorf("%s: pruned %v, want %d objects", step.name, res.Pruned, step.pruned)
		}
	}
	if err := a.WaitAvailable(ctx, ns, "shop-v2", 2*time.Minute); err != nil {
		t.Errorf("WaitAvailable as the sluice ServiceAccount: %v", err)
	}
	if _, err := kube.CoreV1().Events(ns).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "shop-", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Deployment", Namespace: ns, Name: "shop-v2"},
		Reason:         "Promoted", Message: "test", Type: corev1.EventTypeNormal,
	}, metav1.CreateOptions{}); err != nil {
		t.Errorf("create event as the sluice ServiceAccount: %v", err)
	}
	t.Logf("requests as the ServiceAccount: %v", counter.Snapshot())

	t.Run("autoscaled release", func(t *testing.T) {
		// The way `sluice run` reads live objects: watches of every kind it
		// prunes, cluster-wide.
		watching, counter := CountingConfig(saCfg)
		a, err := New(watching, Options{Log: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.WatchLive(ctx); err != nil {
			t.Fatalf("watch live objects as the sluice ServiceAccount: %v", err)
		}
		applyAutoscaledRelease(ctx, t, a, counter, kubernetes.NewForConfigOrDie(testEnv.Env(t).RESTConfig()), newNamespace(t))
	})

	t.Run("gateway API release", func(t *testing.T) {
		// HTTPRoutes and per-version Services, read from watches, and
		// the routes' status read back.
		a, err := New(saCfg, Options{Log: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.WatchLive(ctx); err != nil {
			t.Fatalf("watch live objects as the sluice ServiceAccount: %v", err)
		}
		applyGatewayAPIRelease(ctx, t, a, newNamespace(t))
	})

	t.Run("sharded", func(t *testing.T) {
		// The watches of one shard, and the LIST of strays made when it
		// is gained, are allowed to the ServiceAccount too.
		a, err := New(saCfg, Options{Log: testLogger(t), Shards: testShards})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.WatchLive(ctx); err != nil {
			t.Fatal(err)
		}
		rns := newNamespace(t)
		rel := releaseInShard(t, rns, 0, testShards)
		a.ShardGained(0)
		awaitShard(t, ctx, a, 0)
		res, err := a.Apply(ctx, configMapSet(rns, rel, rel+"-x"), ApplyOptions{})
		if err != nil {
			t.Fatalf("apply as the sluice ServiceAccount: %v", err)
		}
		checkRefs(t, "created", res.Created, rns, []string{"ConfigMap NS/" + rel + "-x"})
	})

	forbidden := []struct {
		name string
		call func() error
	}{
		// Server-side apply and pruning need neither update nor
		// deletecollection.
		{"update a secret", func() error {
			_, err := kube.CoreV1().Secrets(ns).Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: ns}}, metav1.UpdateOptions{})
			return err
		}},
		{"delete every secret of a namespace", func() error {
			return kube.CoreV1().Secrets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		}},
		{"update an autoscaler", func() error {
			_, err := kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Update(ctx, &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: ns}}, metav1.UpdateOptions{})
			return err
		}},
		{"scale a Deployment", func() error {
			_, err := kube.AppsV1().Deployments(ns).UpdateScale(ctx, "shop-v2", &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "shop-v2", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: 9}}, metav1.UpdateOptions{})
			return err
		}},
		{"delete a namespace", func() error {
			return kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		}},
	}
	for _, tc := range forbidden {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !apierrors.IsForbidden(err) {
				t.Errorf("err = %v, want Forbidden", err)
			}
		})
	}
}

// waitAllowed polls until the client may do attrs.
func waitAllowed(ctx context.Context, t *testing.T, kube kubernetes.Interface, attrs authorizationv1.ResourceAttributes) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		review, err := kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
			&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs}}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return review.Status.Allowed, nil
	})
	if err != nil {
		t.Fatalf("wait until allowed to %s %s: %v", attrs.Verb, attrs.Resource, err)
	}
}
