package cluster

import (
	"errors"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// convert turns a typed object into what the dynamic client returns and
// then into one of workloads.go's types, as the Applier reads them.
func convert[T any](t *testing.T, typed any, into *T) *T {
	t.Helper()
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(typed)
	if err != nil {
		t.Fatal(err)
	}
	if err := fromUnstructured(&unstructured.Unstructured{Object: obj}, into); err != nil {
		t.Fatal(err)
	}
	return into
}

// TestWorkloadFields: the fields the availability checks read come
// through from Kubernetes' own types, under the API's JSON names.
func TestWorkloadFields(t *testing.T) {
	three := int32(3)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Generation: 4, UID: "d-uid"},
		Spec:       appsv1.DeploymentSpec{Replicas: &three, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
		Status: appsv1.DeploymentStatus{
			ObservedGeneration: 4, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}},
		},
	}
	got := convert(t, d, &deployment{})
	if ok, err := rolledOut(got); !ok || err != nil {
		t.Errorf("rolledOut(%+v) = %v, %v; want true", got, ok, err)
	}
	if got.Generation != 4 || *got.Spec.Replicas != 3 || got.Spec.Selector.MatchLabels["app"] != "web" || got.Status.ReadyReplicas != 3 {
		t.Errorf("deployment fields lost: %+v", got)
	}

	d.Status.AvailableReplicas = 2
	if ok, _ := rolledOut(convert(t, d, &deployment{})); ok {
		t.Error("rolled out with 2 of 3 replicas available")
	}
	d.Status.Conditions = append(d.Status.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"})
	if _, err := rolledOut(convert(t, d, &deployment{})); !errors.Is(err, errProgressDeadline) {
		t.Errorf("rolledOut past the progress deadline: %v, want errProgressDeadline", err)
	}
	d.Generation = 5
	if ok, err := rolledOut(convert(t, d, &deployment{})); ok || err != nil {
		t.Errorf("rolledOut before the controller observed the spec: %v, %v", ok, err)
	}

	isController := true
	rs := convert(t, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-7d9f", Annotations: map[string]string{"deployment.kubernetes.io/revision": "7"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: "web", UID: "d-uid", Controller: &isController}}},
		Status: appsv1.ReplicaSetStatus{Conditions: []appsv1.ReplicaSetCondition{{Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate"}}},
	}, &replicaSet{})
	if !metav1.IsControlledBy(rs, got) || revision(rs) != 7 || rs.Status.Conditions[0].Reason != "FailedCreate" {
		t.Errorf("replica set fields lost: %+v", rs)
	}

	p := convert(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-7d9f-x2k4q"},
		Status: corev1.PodStatus{
			Phase:      corev1.PodPending,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", State: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}}}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "web", State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "no such image"}}}},
		},
	}, &pod{})
	want := "pod web-7d9f-x2k4q (Pending) not ready: Ready=False (ContainersNotReady), container init terminated: Error (exit code 2), container web waiting: ImagePullBackOff: no such image"
	if why := podNotReady(p); why != want {
		t.Errorf("podNotReady:\n got %s\nwant %s", why, want)
	}
}
