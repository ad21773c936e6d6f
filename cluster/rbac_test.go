package cluster

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// TestRBAC applies deploy/rbac.yaml and runs the apply path as Sluice's
// ServiceAccount: everything Sluice does is allowed, Secrets are not.
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
	waitAllowed(ctx, t, kube, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "patch", Group: "networking.istio.io", Resource: "virtualservices"})

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

	forbidden := []struct {
		name string
		call func() error
	}{
		{"list secrets in kube-system", func() error {
			_, err := kube.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"get a secret in another namespace", func() error {
			_, err := kube.CoreV1().Secrets("default").Get(ctx, "anything", metav1.GetOptions{})
			return err
		}},
		{"create a secret in the release namespace", func() error {
			_, err := kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		}},
		{"apply a secret", func() error {
			secret := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "v1", "kind": "Secret",
				"metadata":   map[string]any{"name": "token", "namespace": ns},
				"stringData": map[string]any{"token": "s3cr3t"},
			}}
			_, err := a.Apply(ctx, Set{Owner: owner(ns, "shop"), Objects: []*unstructured.Unstructured{secret}}, ApplyOptions{})
			if err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error reveals the secret: %v", err)
			}
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
