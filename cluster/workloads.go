package cluster

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The fields of Deployments, ReplicaSets and pods that WaitAvailable,
// Available and their diagnoses read, in the API's JSON names. Read
// through the dynamic client and converted to these, they spare the
// binary k8s.io/api's core and apps groups (their generated code is
// megabytes, linked whole and paged in) for a dozen fields.

type deployment struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Replicas *int32                `json:"replicas,omitempty"`
		Selector *metav1.LabelSelector `json:"selector,omitempty"`
	} `json:"spec"`
	Status struct {
		ObservedGeneration  int64             `json:"observedGeneration,omitempty"`
		Replicas            int32             `json:"replicas,omitempty"`
		UpdatedReplicas     int32             `json:"updatedReplicas,omitempty"`
		ReadyReplicas       int32             `json:"readyReplicas,omitempty"`
		AvailableReplicas   int32             `json:"availableReplicas,omitempty"`
		UnavailableReplicas int32             `json:"unavailableReplicas,omitempty"`
		Conditions          []statusCondition `json:"conditions,omitempty"`
	} `json:"status"`
}

type replicaSet struct {
	metav1.ObjectMeta `json:"metadata"`
	Status            struct {
		Conditions []statusCondition `json:"conditions,omitempty"`
	} `json:"status"`
}

type pod struct {
	metav1.ObjectMeta `json:"metadata"`
	Status            struct {
		Phase                 string            `json:"phase,omitempty"`
		Conditions            []statusCondition `json:"conditions,omitempty"`
		InitContainerStatuses []containerStatus `json:"initContainerStatuses,omitempty"`
		ContainerStatuses     []containerStatus `json:"containerStatuses,omitempty"`
	} `json:"status"`
}

// statusCondition is a Deployment's, a ReplicaSet's or a pod's condition.
type statusCondition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

type containerStatus struct {
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
	State struct {
		Waiting *struct {
			Reason  string `json:"reason,omitempty"`
			Message string `json:"message,omitempty"`
		} `json:"waiting,omitempty"`
		Terminated *struct {
			ExitCode int32  `json:"exitCode"`
			Reason   string `json:"reason,omitempty"`
			Message  string `json:"message,omitempty"`
		} `json:"terminated,omitempty"`
	} `json:"state"`
}

// Condition types and statuses, as k8s.io/api names them.
const (
	conditionTrue                = "True"
	deploymentProgressing        = "Progressing"
	deploymentReplicaFailure     = "ReplicaFailure"
	replicaSetReplicaFailure     = "ReplicaFailure"
	podReady                     = "Ready"
	podScheduled                 = "PodScheduled"
	reasonProgressDeadlineExceed = "ProgressDeadlineExceeded"
)
