package webhook

import (
	"encoding/json"
	"time"
)

// Types of webhooks.
const (
	// TypePreStep runs once before a step takes traffic; a failure rolls
	// the release back.
	TypePreStep = "pre-step"
	// TypeCheck runs at every analysis interval beside the metric gates;
	// a failure is a failed check.
	TypeCheck = "check"
	// TypeLoad is started when a step begins and at each of its checks,
	// for a load generator; its outcome is logged, never a gate.
	TypeLoad = "load"
)

// Payload is the JSON body Sluice posts to a webhook.
type Payload struct {
	// Type is pre-step, check or load; Webhook the hook's name.
	Type    string `json:"type"`
	Webhook string `json:"webhook"`
	// Release is namespace/name.
	Release   string `json:"release"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Step is the step the hook is about (for pre-step, the step about to
	// take traffic), StepIndex its place in the plan, Stage its stage.
	Step      string `json:"step"`
	StepIndex int    `json:"stepIndex"`
	Stage     string `json:"stage"`
	// Weights are the shares of the step's traffic, in percent.
	Weights Weights `json:"weights"`
	// Stable and Candidate are the versions; Revision the candidate's
	// content revision.
	Stable    string `json:"stable"`
	Candidate string `json:"candidate"`
	Revision  string `json:"revision"`
	// Service is the Kubernetes Service in front of every version, and
	// Workload the candidate's Deployment: where a smoke test or a load
	// generator aims.
	Service  string `json:"service"`
	Workload string `json:"workload,omitempty"`
	// Interval is the step's analysis interval: a load generator started
	// by a load hook runs at least that long (it is called again at each
	// check).
	Interval string `json:"interval"`
	// Metadata is the webhook's metadata, from the release spec;
	// Labels and Annotations the release's.
	Metadata    map[string]string `json:"metadata,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// SentAt is when Sluice made the call.
	SentAt time.Time `json:"sentAt"`
}

// Weights split a step's traffic.
type Weights struct {
	Stable    int32 `json:"stable"`
	Candidate int32 `json:"candidate"`
}

// Marshal is the body of p.
func (p Payload) Marshal() ([]byte, error) { return json.Marshal(p) }
