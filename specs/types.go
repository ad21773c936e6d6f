// Package specs defines Sluice's release spec: its types, strict parsing,
// validation and the plan of steps a release walks through.
package specs

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// APIVersion and Kind identify a Release document.
const (
	APIVersion = "sluice.dev/v1alpha1"
	Kind       = "Release"
)

// Release is one progressive delivery of a service from its stable version
// to a candidate, as people write it in Git.
type Release struct {
	APIVersion string      `json:"apiVersion" yaml:"apiVersion"`
	Kind       string      `json:"kind" yaml:"kind"`
	Metadata   ObjectMeta  `json:"metadata" yaml:"metadata"`
	Spec       ReleaseSpec `json:"spec" yaml:"spec"`

	// Origin says where the release was read from; it is not part of the document.
	Origin Origin `json:"-" yaml:"-"`
}

// Origin is the file (relative to the repository root where known) and the
// document index a release came from.
type Origin struct {
	File string
	Doc  int
	// lines maps a field path (spec.stages[1].name) to its place in File.
	lines map[string]position
}

// Line returns the line of a field path in the release's file, or of its
// nearest ancestor that has one, and 0 when unknown.
func (o Origin) Line(path string) int { return o.pos(path).line }

// Column is Line's column, 0 when unknown.
func (o Origin) Column(path string) int { return o.pos(path).column }

func (o Origin) pos(path string) position {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := o.lines[p]; ok {
			return l
		}
	}
	return position{}
}

// ID is namespace/name, the key Sluice uses for a release everywhere.
func (r *Release) ID() string { return r.Metadata.Namespace + "/" + r.Metadata.Name }

// ObjectMeta is the Kubernetes-style identity of a release.
type ObjectMeta struct {
	Name        string            `json:"name" yaml:"name"`
	Namespace   string            `json:"namespace" yaml:"namespace"`
	Labels      map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty" yaml:"annotations,omitempty"`
}

// ReleaseSpec is what a release delivers and how.
type ReleaseSpec struct {
	// Service is the Kubernetes Service that fronts every version.
	Service Service `json:"service" yaml:"service"`
	// Source is the default kustomize directory a version is built from,
	// relative to the repository root.
	Source string `json:"source,omitempty" yaml:"source,omitempty"`
	// Versions the release knows; Stable and Candidate name two of them.
	Versions []Version `json:"versions" yaml:"versions"`
	// Stable is the version that serves traffic now.
	Stable string `json:"stable" yaml:"stable"`
	// Candidate is the version being released; empty when none is.
	Candidate string `json:"candidate,omitempty" yaml:"candidate,omitempty"`
	// Routes are the routing contexts (the mesh, ingress gateways) whose
	// traffic is shifted; every step renders all of them consistently.
	Routes   []Route  `json:"routes" yaml:"routes"`
	Analysis Analysis `json:"analysis,omitempty" yaml:"analysis,omitempty"`
	Stages   []Stage  `json:"stages" yaml:"stages"`
	// Window, when set, lets steps advance only inside it; rollbacks are never held.
	Window *Window `json:"window,omitempty" yaml:"window,omitempty"`
	// Approvals record a person's approval of a stage for a candidate.
	Approvals []Approval `json:"approvals,omitempty" yaml:"approvals,omitempty"`
	// Retry, when changed after a rollback, asks Sluice to release the same
	// candidate again.
	Retry string `json:"retry,omitempty" yaml:"retry,omitempty"`
	// Routing is how every route shifts traffic unless it says otherwise:
	// "istio" (default: a VirtualService per route and a DestinationRule
	// with a subset per version) or "gatewayAPI" (an HTTPRoute per route
	// and a Service per version).
	Routing string `json:"routing,omitempty" yaml:"routing,omitempty" jsonschema:"enum=istio,enum=gatewayAPI"`
	// Paused holds a running release at its step (`sluice pause`): the
	// step stays applied, its gates are not checked and its deadlines do
	// not run. Removing it (`sluice resume`) starts the step's checks over.
	Paused bool `json:"paused,omitempty" yaml:"paused,omitempty"`
	// Clusters are the clusters the release runs on, by the names their
	// Sluice is started with (sluice run --cluster); empty: every cluster.
	// A release naming clusters is never reconciled by a Sluice started
	// without --cluster.
	Clusters []string `json:"clusters,omitempty" yaml:"clusters,omitempty"`
	// Abort, when it names the candidate, rolls the release back now
	// (`sluice abort`). It names a version rather than being a switch so
	// that it never applies to a later candidate.
	Abort string `json:"abort,omitempty" yaml:"abort,omitempty"`
	// SkipAnalysis, when it names the candidate, sends the release
	// straight to its promote step, without further checks, approvals or
	// release window (`sluice promote --skip-analysis`).
	SkipAnalysis string `json:"skipAnalysis,omitempty" yaml:"skipAnalysis,omitempty"`
}

// Aborted reports whether spec.abort names the candidate.
func (r *Release) Aborted() bool {
	return r.Spec.Candidate != "" && r.Spec.Abort == r.Spec.Candidate
}

// AnalysisSkipped reports whether spec.skipAnalysis names the candidate.
func (r *Release) AnalysisSkipped() bool {
	return r.Spec.Candidate != "" && r.Spec.SkipAnalysis == r.Spec.Candidate
}

// Service names the Kubernetes Service of the app and its port.
type Service struct {
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	Port int32  `json:"port" yaml:"port"`
}

// Version is one build of the app: a kustomize source plus optional tweaks.
type Version struct {
	Name string `json:"name" yaml:"name"`
	// Source overrides spec.source for this version.
	Source string `json:"source,omitempty" yaml:"source,omitempty"`
	// Images are kustomize image overrides (name, newName, newTag, digest).
	Images []Image `json:"images,omitempty" yaml:"images,omitempty"`
	// Env sets environment variables on every container of the version's Deployment.
	Env map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	// Replicas overrides the Deployment's replica count.
	Replicas *int32 `json:"replicas,omitempty" yaml:"replicas,omitempty"`
	// Patches are kustomize patches (strategic merge or JSON 6902) applied to the version's build.
	Patches []Patch `json:"patches,omitempty" yaml:"patches,omitempty"`
}

// Image is a kustomize image override.
type Image struct {
	Name    string `json:"name" yaml:"name"`
	NewName string `json:"newName,omitempty" yaml:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty" yaml:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty" yaml:"digest,omitempty"`
}

// Patch is an inline kustomize patch with an optional target.
type Patch struct {
	Patch  string       `json:"patch" yaml:"patch"`
	Target *PatchTarget `json:"target,omitempty" yaml:"target,omitempty"`
}

// PatchTarget selects the resources a patch applies to, as in kustomize.
type PatchTarget struct {
	Group              string `json:"group,omitempty" yaml:"group,omitempty"`
	Version            string `json:"version,omitempty" yaml:"version,omitempty"`
	Kind               string `json:"kind,omitempty" yaml:"kind,omitempty"`
	Name               string `json:"name,omitempty" yaml:"name,omitempty"`
	Namespace          string `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	LabelSelector      string `json:"labelSelector,omitempty" yaml:"labelSelector,omitempty"`
	AnnotationSelector string `json:"annotationSelector,omitempty" yaml:"annotationSelector,omitempty"`
}

// Route is a routing context: the VirtualService hosts and gateways whose
// traffic the release shifts. Gateway "mesh" means sidecars inside the mesh.
type Route struct {
	Name     string   `json:"name" yaml:"name"`
	Gateways []string `json:"gateways" yaml:"gateways"`
	Hosts    []string `json:"hosts" yaml:"hosts"`
	// Routing overrides spec.routing for this route, for a release that
	// mixes an Istio gateway and a Gateway API one.
	Routing string `json:"routing,omitempty" yaml:"routing,omitempty" jsonschema:"enum=istio,enum=gatewayAPI"`
}

// Routing kinds: how a route shifts traffic.
const (
	// RoutingIstio renders a VirtualService per route and a DestinationRule
	// with a subset per version.
	RoutingIstio = "istio"
	// RoutingGatewayAPI renders a Gateway API HTTPRoute per route and a
	// Service per version; mesh routes attach to the Service (GAMMA).
	RoutingGatewayAPI = "gatewayAPI"
)

// RoutingOf is the routing a route uses: its own, else the release's, else Istio.
func (r *Release) RoutingOf(rt Route) string {
	switch {
	case rt.Routing != "":
		return rt.Routing
	case r.Spec.Routing != "":
		return r.Spec.Routing
	}
	return RoutingIstio
}

// Uses reports whether any route of the release uses the routing kind.
func (r *Release) Uses(routing string) bool {
	for _, rt := range r.Spec.Routes {
		if r.RoutingOf(rt) == routing {
			return true
		}
	}
	return false
}

// MeshGateway is Istio's reserved gateway name for traffic inside the mesh.
const MeshGateway = "mesh"

// IsMesh reports whether the route applies to sidecars inside the mesh.
func (r Route) IsMesh() bool {
	for _, g := range r.Gateways {
		if g == MeshGateway {
			return true
		}
	}
	return false
}

// Analysis is Flagger-compatible in meaning: a check runs every Interval;
// Threshold failed checks roll the release back; a step advances after
// Iterations passing checks.
type Analysis struct {
	Interval   Duration `json:"interval,omitempty" yaml:"interval,omitempty"`
	Threshold  int      `json:"threshold,omitempty" yaml:"threshold,omitempty"`
	Iterations int      `json:"iterations,omitempty" yaml:"iterations,omitempty"`
	// NoData says what a check whose metric has no data counts as: "hold"
	// (default: the step holds, visibly, for up to Threshold checks in a
	// row, and each further one counts as a failed check: a candidate that
	// gets no traffic rolls back after at most 2 x Threshold checks) or
	// "fail" (it counts as a failed check at once, as in Flagger: at most
	// Threshold checks, but a metric that is slow to appear costs a check).
	NoData  string   `json:"noData,omitempty" yaml:"noData,omitempty"`
	Metrics []Metric `json:"metrics,omitempty" yaml:"metrics,omitempty"`
	// Drain is how long a version that lost its traffic (the old stable
	// after a promotion, the candidate after a rollback or when replaced)
	// keeps running before it is retired, so that requests the mesh still
	// routes to it while new routes reach every sidecar are served; default
	// 30s, 0 retires at once.
	Drain *Duration `json:"drain,omitempty" yaml:"drain,omitempty"`
	// Webhooks are webhook gates, for every step that has metrics (a
	// stage's own replace them): pre-step, check and load hooks.
	Webhooks []Webhook `json:"webhooks,omitempty" yaml:"webhooks,omitempty"`
}

// DrainDelay is the release's drain delay, with its default.
func (a Analysis) DrainDelay() time.Duration {
	if a.Drain == nil {
		return DefaultDrain
	}
	return a.Drain.Duration
}

// Builtin metric names, over Istio's standard metrics.
const (
	MetricRequestSuccessRate = "request-success-rate"
	MetricRequestDuration    = "request-duration"
)

// NoData policies.
const (
	NoDataFail = "fail"
	NoDataHold = "hold"
)

// Metric is one gate: a query over a window compared with a threshold range.
type Metric struct {
	Name string `json:"name" yaml:"name"`
	// Query is PromQL as a Go template; builtin metrics need none. Variables:
	// {{ .Namespace }}, {{ .Service }}, {{ .Workload }}, {{ .Version }}, {{ .Window }}.
	Query          string         `json:"query,omitempty" yaml:"query,omitempty"`
	ThresholdRange ThresholdRange `json:"thresholdRange" yaml:"thresholdRange"`
	// Interval is the metric's window (Flagger's name for it), e.g. 1m.
	Interval Duration `json:"interval,omitempty" yaml:"interval,omitempty"`
}

// ThresholdRange bounds a metric's value: it passes when min <= value <= max.
type ThresholdRange struct {
	Min *float64 `json:"min,omitempty" yaml:"min,omitempty"`
	Max *float64 `json:"max,omitempty" yaml:"max,omitempty"`
}

// Stage is one stage of the release; exactly one of its kinds is set.
type Stage struct {
	Name       string           `json:"name" yaml:"name"`
	Deploy     *DeployStage     `json:"deploy,omitempty" yaml:"deploy,omitempty"`
	DarkLaunch *DarkLaunchStage `json:"darkLaunch,omitempty" yaml:"darkLaunch,omitempty"`
	Weighted   *WeightedStage   `json:"weighted,omitempty" yaml:"weighted,omitempty"`
	Mirror     *MirrorStage     `json:"mirror,omitempty" yaml:"mirror,omitempty"`
	Promote    *PromoteStage    `json:"promote,omitempty" yaml:"promote,omitempty"`
	// Analysis overrides spec.analysis for this stage's steps.
	Analysis *AnalysisOverride `json:"analysis,omitempty" yaml:"analysis,omitempty"`
	// Approval holds the stage before its first step until a person
	// approves it: "manual" waits for an entry in spec.approvals;
	// "pullRequest" opens a pull request on the forge whose merge approves
	// the step and whose closing rolls the release back.
	Approval string `json:"approval,omitempty" yaml:"approval,omitempty" jsonschema:"enum=manual,enum=pullRequest"`
}

// Approval kinds.
const (
	ApprovalManual      = "manual"
	ApprovalPullRequest = "pullRequest"
)

// DeployStage runs the candidate beside the stable version with no traffic.
type DeployStage struct{}

// DarkLaunchStage sends only matching requests to the candidate.
type DarkLaunchStage struct {
	Match []Match `json:"match" yaml:"match"`
}

// WeightedStage shifts a growing share of traffic to the candidate, either at
// explicit Weights or from StepWeight up to MaxWeight. With Match, only
// matching requests are split (Flagger's sourceLabels canary).
type WeightedStage struct {
	Weights    []int32 `json:"weights,omitempty" yaml:"weights,omitempty"`
	StepWeight int32   `json:"stepWeight,omitempty" yaml:"stepWeight,omitempty"`
	MaxWeight  int32   `json:"maxWeight,omitempty" yaml:"maxWeight,omitempty"`
	Match      []Match `json:"match,omitempty" yaml:"match,omitempty"`
}

// MirrorStage shadows a percentage of traffic to the candidate; responses
// still come from the stable version.
type MirrorStage struct {
	Percent float64 `json:"percent" yaml:"percent"`
}

// PromoteStage sends all traffic to the candidate and retires the stable version.
type PromoteStage struct{}

// AnalysisOverride replaces parts of spec.analysis for one stage.
type AnalysisOverride struct {
	Interval   Duration `json:"interval,omitempty" yaml:"interval,omitempty"`
	Iterations int      `json:"iterations,omitempty" yaml:"iterations,omitempty"`
	// Metrics, when set, replace the release's metrics for this stage.
	Metrics []Metric `json:"metrics,omitempty" yaml:"metrics,omitempty"`
	// SkipMetrics holds the stage on availability (and approval) alone:
	// no metrics and no check webhooks.
	SkipMetrics bool `json:"skipMetrics,omitempty" yaml:"skipMetrics,omitempty"`
	// Webhooks, when set, replace the release's webhooks for this stage.
	Webhooks []Webhook `json:"webhooks,omitempty" yaml:"webhooks,omitempty"`
}

// Webhook is a webhook gate: Sluice POSTs the step's context as JSON to
// URL, signed with HMAC-SHA256 when Sluice has a key, and any 2xx answer
// passes.
type Webhook struct {
	Name string `json:"name" yaml:"name"`
	// Type is when it runs: "pre-step" once before a step takes traffic (a
	// failure rolls back), "check" at every analysis interval beside the
	// metrics (a failure is a failed check), "load" when a step begins
	// and at each of its checks, for a load generator (never a gate).
	Type string `json:"type" yaml:"type" jsonschema:"enum=pre-step,enum=check,enum=load"`
	// URL is an http:// or https:// URL.
	URL string `json:"url" yaml:"url"`
	// Timeout bounds each attempt; default 10s.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// Retries are the attempts after the first for no answer, a 5xx, 408
	// or 429; default 2, at most 5.
	Retries *int `json:"retries,omitempty" yaml:"retries,omitempty"`
	// Metadata is passed to the receiver as the payload's metadata.
	Metadata map[string]string `json:"metadata,omitempty" yaml:"metadata,omitempty"`
}

// Webhook types.
const (
	WebhookPreStep = "pre-step"
	WebhookCheck   = "check"
	WebhookLoad    = "load"
)

// Webhook defaults and bounds.
const (
	DefaultWebhookTimeout = 10 * time.Second
	DefaultWebhookRetries = 2
	MaxWebhookRetries     = 5
	MaxWebhookTimeout     = 5 * time.Minute
)

// Attempts is how many times the hook may be posted.
func (w Webhook) Attempts() int {
	if w.Retries == nil {
		return DefaultWebhookRetries + 1
	}
	return *w.Retries + 1
}

// TimeoutOrDefault is the hook's timeout per attempt.
func (w Webhook) TimeoutOrDefault() time.Duration {
	if w.Timeout.Duration <= 0 {
		return DefaultWebhookTimeout
	}
	return w.Timeout.Duration
}

// Match selects requests, as an Istio HTTPMatchRequest: all conditions of
// one Match must hold; any Match of a list may.
type Match struct {
	Headers      map[string]StringMatch `json:"headers,omitempty" yaml:"headers,omitempty"`
	Cookie       *CookieMatch           `json:"cookie,omitempty" yaml:"cookie,omitempty"`
	SourceLabels map[string]string      `json:"sourceLabels,omitempty" yaml:"sourceLabels,omitempty"`
}

// StringMatch is exactly one of exact, prefix or regex (RE2).
type StringMatch struct {
	Exact  string `json:"exact,omitempty" yaml:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
	Regex  string `json:"regex,omitempty" yaml:"regex,omitempty"`
}

// CookieMatch matches a request carrying cookie Name with Value.
type CookieMatch struct {
	Name  string `json:"name" yaml:"name"`
	Value string `json:"value" yaml:"value"`
}

// Window lets steps advance only while it is open: from each time the cron
// Schedule fires, for Duration, in TimeZone (default UTC).
type Window struct {
	Schedule string   `json:"schedule" yaml:"schedule"`
	Duration Duration `json:"duration" yaml:"duration"`
	TimeZone string   `json:"timeZone,omitempty" yaml:"timeZone,omitempty"`
}

// Approval records that a person approved a stage for a candidate version.
type Approval struct {
	Stage     string `json:"stage" yaml:"stage"`
	Candidate string `json:"candidate" yaml:"candidate"`
	By        string `json:"by,omitempty" yaml:"by,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("45s", "1m").
type Duration struct{ time.Duration }

// UnmarshalYAML reads a duration string. A bad one is left zero rather than
// failing: Parse has already reported it with its field path, and stopping
// here would hide the file's other errors.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if v, err := parseDuration(n.Value); err == nil {
		d.Duration = v
	}
	return nil
}

// MarshalYAML writes the duration back as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

// IsZero lets omitempty drop unset durations.
func (d Duration) IsZero() bool { return d.Duration == 0 }

func (d Duration) String() string {
	if d.Duration == 0 {
		return "0s"
	}
	s := d.Duration.String()
	// time.Duration prints 1m0s; people write 1m.
	for strings.HasSuffix(s, "m0s") || strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func parseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (use e.g. 45s, 1m, 1h30m)", s)
	}
	return v, nil
}

func parentPath(p string) string {
	if i := strings.LastIndexAny(p, ".["); i > 0 {
		return p[:i]
	}
	return ""
}
