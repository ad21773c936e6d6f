package record

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"sluice.dev/sluice/gates"
)

// DefaultStatusDir is where Sluice writes one status file per release.
const DefaultStatusDir = ".sluice/status"

// Phase is where a release stands.
type Phase string

// Phases of a release.
const (
	// PhaseSteady: no candidate; the stable version takes all traffic.
	PhaseSteady Phase = "Steady"
	// PhaseProgressing: the candidate is at a step and its gates are checked.
	PhaseProgressing Phase = "Progressing"
	// PhaseWaiting: the step passed, and the next waits for an approval or
	// for the release window to open.
	PhaseWaiting Phase = "Waiting"
	// PhasePromoted: the candidate became the stable version.
	PhasePromoted Phase = "Promoted"
	// PhaseRolledBack: a gate failed; all traffic is back on stable.
	PhaseRolledBack Phase = "RolledBack"
	// PhaseInvalid: the release spec has errors; nothing is applied.
	PhaseInvalid Phase = "Invalid"
	// PhaseBlocked: the reconcile keeps failing for the reason in Message
	// (an apply the API server refuses, a missing namespace); Sluice
	// keeps trying, and the release goes back to Resume when it succeeds.
	PhaseBlocked Phase = "Blocked"
	// PhasePaused: spec.paused holds the release at its step; its gates
	// are not checked and its deadlines do not run.
	PhasePaused Phase = "Paused"
)

// Phases lists every phase.
func Phases() []Phase {
	return []Phase{PhaseSteady, PhaseProgressing, PhaseWaiting, PhasePromoted, PhaseRolledBack,
		PhaseInvalid, PhaseBlocked, PhasePaused}
}

// Status is the record Sluice alone writes for a release, one file per
// release in Git. With the release spec, it is everything needed to
// rebuild the release's cluster state.
type Status struct {
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	Kind       string `yaml:"kind" json:"kind"`
	Release    string `yaml:"release" json:"release"`
	SpecFile   string `yaml:"specFile" json:"specFile"`
	// Labels are the release's metadata.labels when this was recorded: a
	// Sluice with a --release-selector reads them to know whether a
	// release whose spec is gone from Git was its own.
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	Phase  Phase             `yaml:"phase" json:"phase"`
	// Since is when the release entered its phase (or its current step).
	Since     time.Time `yaml:"since" json:"since"`
	Stable    string    `yaml:"stable,omitempty" json:"stable,omitempty"`
	Candidate string    `yaml:"candidate,omitempty" json:"candidate,omitempty"`
	// Revision is the candidate's content revision: a new one restarts the release.
	Revision string `yaml:"revision,omitempty" json:"revision,omitempty"`
	// Step is the step the cluster holds, StepIndex its place in the plan.
	Step      string `yaml:"step,omitempty" json:"step,omitempty"`
	StepIndex int    `yaml:"stepIndex" json:"stepIndex"`
	Weight    int32  `yaml:"weight" json:"weight"`
	// FailedChecks counts failed checks since the candidate started.
	FailedChecks int `yaml:"failedChecks" json:"failedChecks"`
	// Gates are the values of the last evaluation that was recorded.
	Gates []GateValue `yaml:"gates,omitempty" json:"gates,omitempty"`
	// Retry is spec.retry as it was when the release was rolled back.
	Retry string `yaml:"retry,omitempty" json:"retry,omitempty"`
	// Commit introduced the candidate: the head Sluice synced when it first
	// saw the revision. The forge shows the release's outcome on it.
	Commit string `yaml:"commit,omitempty" json:"commit,omitempty"`
	// PullRequest is the approval pull request the release waits on
	// (Waiting), or the one whose merge approved the current step.
	PullRequest *PullRequestRef `yaml:"pullRequest,omitempty" json:"pullRequest,omitempty"`
	// NoData is set while the step holds on checks whose metrics had no
	// data.
	NoData *NoDataHold `yaml:"noData,omitempty" json:"noData,omitempty"`
	// Draining are versions that lost their traffic and keep running until
	// their drain ends; each is retired with its own record.
	Draining []Drain `yaml:"draining,omitempty" json:"draining,omitempty"`
	// Resume is where a Blocked release goes back to once its reconcile
	// succeeds again, and a Paused one once spec.paused is removed.
	Resume  *Resume `yaml:"resume,omitempty" json:"resume,omitempty"`
	Message string  `yaml:"message,omitempty" json:"message,omitempty"`
}

// Resume is the phase a Blocked or Paused release was in, with its since
// and message.
type Resume struct {
	Phase   Phase     `yaml:"phase" json:"phase"`
	Since   time.Time `yaml:"since" json:"since"`
	Message string    `yaml:"message,omitempty" json:"message,omitempty"`
	// Resume is where a release blocked while Paused goes after that.
	Resume *Resume `yaml:"resume,omitempty" json:"resume,omitempty"`
}

// NoDataHold is a run of checks in a row without data at the current step.
type NoDataHold struct {
	// Since is the first check of the run, Last the latest.
	Since time.Time `yaml:"since" json:"since"`
	Last  time.Time `yaml:"last" json:"last"`
	// Checks is how many checks of the run held; Allowed how many may hold
	// before each further one counts as a failed check.
	Checks  int `yaml:"checks" json:"checks"`
	Allowed int `yaml:"allowed" json:"allowed"`
}

// Drain is a version that keeps running without traffic until Until.
type Drain struct {
	Version string    `yaml:"version" json:"version"`
	Until   time.Time `yaml:"until" json:"until"`
}

// GateValue is one gate's value at an evaluation: a metric's, or a
// webhook's (Webhook set), whose Value is the HTTP status it answered.
type GateValue struct {
	Metric string   `yaml:"metric" json:"metric"`
	Value  *float64 `yaml:"value,omitempty" json:"value,omitempty"` // nil: no data, or a webhook without answer
	Min    *float64 `yaml:"min,omitempty" json:"min,omitempty"`
	Max    *float64 `yaml:"max,omitempty" json:"max,omitempty"`
	Passed bool     `yaml:"passed" json:"passed"`
	// Webhook is the type (pre-step, check) of a webhook gate, whose name
	// is Metric; Error says why one that did not answer failed
	// ("timeout", "unreachable").
	Webhook string `yaml:"webhook,omitempty" json:"webhook,omitempty"`
	Error   string `yaml:"error,omitempty" json:"error,omitempty"`
}

// WebhookValue is the gate value of a webhook that answered code (0: no
// answer, for reason).
func WebhookValue(name, typ string, code int, passed bool, reason string) GateValue {
	g := GateValue{Metric: name, Webhook: typ, Passed: passed}
	if code != 0 {
		v := float64(code)
		g.Value = &v
	} else {
		g.Error = reason
	}
	return g
}

const statusKind = "ReleaseStatus"

const statusHeader = "# Written by Sluice: the record of this release's progress. Do not edit;\n# change the release spec instead (spec.approvals, spec.retry, spec.candidate).\n"

// StatusPath is the status file of a release under dir.
func StatusPath(dir, namespace, name string) string {
	return path.Join(dir, namespace, name+".yaml")
}

// Marshal writes the status as YAML with a header comment.
func (s *Status) Marshal() ([]byte, error) {
	s.APIVersion, s.Kind = "sluice.dev/v1alpha1", statusKind
	var body bytes.Buffer
	enc := yaml.NewEncoder(&body)
	enc.SetIndent(2)
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("marshal status of %s: %w", s.Release, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal status of %s: %w", s.Release, err)
	}
	// Every different record differs on this line, so when an approval
	// pull request's record and a newer one on the watched branch both
	// come from the same base, merging them is a conflict, never a line by
	// line mixture of the two.
	sum := sha256.Sum256(body.Bytes())
	var buf bytes.Buffer
	buf.WriteString(statusHeader)
	fmt.Fprintf(&buf, "# record %s\n", hex.EncodeToString(sum[:8]))
	buf.Write(body.Bytes())
	return buf.Bytes(), nil
}

// ParseStatus reads a status file.
func ParseStatus(data []byte) (*Status, error) {
	var s Status
	if err := yaml.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	if s.Kind != statusKind {
		return nil, fmt.Errorf("kind is %q, want %s", s.Kind, statusKind)
	}
	return &s, nil
}

// String reads like "success-rate 99.8 >= 99" or "p99 212ms <= 500ms",
// as the gates write their results.
func (g GateValue) String() string {
	if g.Webhook != "" {
		// "webhook smoke-test 200", "webhook smoke-test timeout"
		if g.Value != nil {
			return fmt.Sprintf("webhook %s %d", g.Metric, int(*g.Value))
		}
		return "webhook " + g.Metric + " " + cmp.Or(g.Error, "error")
	}
	r := gates.Result{Metric: g.Metric, Min: g.Min, Max: g.Max, NoData: g.Value == nil}
	if g.Value != nil {
		r.Value = *g.Value
	}
	return r.String()
}

// Summary joins gate values as commit subjects show them.
func Summary(vals []GateValue) string {
	parts := make([]string, 0, len(vals))
	for _, g := range vals {
		parts = append(parts, g.String())
	}
	return strings.Join(parts, ", ")
}

// Failing returns the values that did not pass.
func Failing(vals []GateValue) []GateValue {
	var out []GateValue
	for _, g := range vals {
		if !g.Passed {
			out = append(out, g)
		}
	}
	return out
}

// PullRequestRef is the approval pull request a release waits on (phase
// Waiting), or, once merged, the one that approved the current step.
type PullRequestRef struct {
	Number int64  `yaml:"number" json:"number"`
	URL    string `yaml:"url,omitempty" json:"url,omitempty"`
	Branch string `yaml:"branch" json:"branch"`
	// Step is the step merging it approves.
	Step string `yaml:"step" json:"step"`
}

// StatusContext is the commit status context of a release on the forge.
func StatusContext(releaseID string) string { return "sluice/" + releaseID }

// ApprovalBranch is the branch of a step's approval pull request.
func ApprovalBranch(namespace, name, step string) string {
	return "sluice/" + namespace + "/" + name + "/" + step
}

// DeepCopy returns a copy of s that shares no memory with it: a cached
// status is handed out to callers that change theirs.
func (s *Status) DeepCopy() *Status {
	if s == nil {
		return nil
	}
	out := *s
	out.Labels = maps.Clone(s.Labels)
	if s.Gates != nil {
		out.Gates = make([]GateValue, len(s.Gates))
		for i, g := range s.Gates {
			g.Value, g.Min, g.Max = clonePtr(g.Value), clonePtr(g.Min), clonePtr(g.Max)
			out.Gates[i] = g
		}
	}
	out.PullRequest = clonePtr(s.PullRequest)
	out.NoData = clonePtr(s.NoData)
	out.Draining = slices.Clone(s.Draining)
	out.Resume = s.Resume.deepCopy()
	return &out
}

func (r *Resume) deepCopy() *Resume {
	if r == nil {
		return nil
	}
	out := *r
	out.Resume = r.Resume.deepCopy()
	return &out
}

// clonePtr copies what p points to; nil stays nil. For types without
// pointers, maps or slices of their own.
func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
