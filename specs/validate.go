package specs

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults Sluice applies where a release leaves a field out.
const (
	DefaultInterval   = time.Minute
	DefaultThreshold  = 5
	DefaultIterations = 1
	// DefaultDrain is Argo Rollouts' default scaleDownDelaySeconds.
	DefaultDrain = 30 * time.Second
)

// Validate checks a decoded release and returns every problem, each with the
// file, line and field path it concerns.
func Validate(r *Release) ErrorList {
	v := validator{r: r}
	v.release()
	v.errs.Sort()
	return v.errs
}

type validator struct {
	r    *Release
	errs ErrorList
}

func (v *validator) fail(path, format string, args ...any) {
	v.errs = append(v.errs, FieldError{
		File:   v.r.Origin.File,
		Line:   v.r.Origin.Line(path),
		Column: v.r.Origin.Column(path),
		Path:   path,
		Reason: fmt.Sprintf(format, args...),
	})
}

func (v *validator) dnsLabel(path, value string) {
	if value == "" {
		v.fail(path, "is required")
		return
	}
	if msgs := validation.IsDNS1123Label(value); len(msgs) > 0 {
		v.fail(path, "%q is not a valid name: %s", value, strings.Join(msgs, "; "))
	}
}

func (v *validator) release() {
	r := v.r
	if r.APIVersion != APIVersion {
		v.fail("apiVersion", "must be %s, got %q", APIVersion, r.APIVersion)
	}
	if r.Kind != Kind {
		hint := ""
		if r.Kind != "" && editDistance(strings.ToLower(r.Kind), strings.ToLower(Kind)) <= 2 {
			hint = fmt.Sprintf(" (did you mean %q?)", Kind)
		}
		v.fail("kind", "must be %s, got %q%s", Kind, r.Kind, hint)
	}
	v.dnsLabel("metadata.name", r.Metadata.Name)
	v.dnsLabel("metadata.namespace", r.Metadata.Namespace)
	if od, ok := r.Metadata.Annotations[AnnotationOnDelete]; ok && od != OnDeleteOrphan && od != OnDeleteDelete {
		v.fail("metadata.annotations."+AnnotationOnDelete, "must be %q or %q, got %q", OnDeleteOrphan, OnDeleteDelete, od)
	}
	s := &r.Spec
	v.clusters(s.Clusters)

	if s.Service.Name != "" {
		if msgs := validation.IsDNS1035Label(s.Service.Name); len(msgs) > 0 {
			v.fail("spec.service.name", "%q is not a valid Service name: %s", s.Service.Name, strings.Join(msgs, "; "))
		}
	}
	if s.Service.Port < 1 || s.Service.Port > 65535 {
		v.fail("spec.service.port", "must be a port number from 1 to 65535, got %d", s.Service.Port)
	}
	if s.Source != "" {
		v.sourcePath("spec.source", s.Source)
	}

	versions := map[string]bool{}
	if len(s.Versions) == 0 {
		v.fail("spec.versions", "list at least the stable version")
	}
	for i, ver := range s.Versions {
		p := fmt.Sprintf("spec.versions[%d]", i)
		v.dnsLabel(p+".name", ver.Name)
		if versions[ver.Name] {
			v.fail(p+".name", "version %q is defined twice", ver.Name)
		}
		versions[ver.Name] = true
		switch {
		case ver.Source != "":
			v.sourcePath(p+".source", ver.Source)
		case s.Source == "":
			v.fail(p+".source", "is required when spec.source is not set")
		}
		for j, img := range ver.Images {
			if img.Name == "" {
				v.fail(fmt.Sprintf("%s.images[%d].name", p, j), "is required")
			}
			if img.NewName == "" && img.NewTag == "" && img.Digest == "" {
				v.fail(fmt.Sprintf("%s.images[%d]", p, j), "set newName, newTag or digest")
			}
		}
		for name := range ver.Env {
			if msgs := validation.IsEnvVarName(name); len(msgs) > 0 {
				v.fail(p+".env."+name, "%q is not a valid environment variable name: %s", name, strings.Join(msgs, "; "))
			}
		}
		if ver.Replicas != nil && *ver.Replicas < 0 {
			v.fail(p+".replicas", "must not be negative")
		}
		for j, patch := range ver.Patches {
			if strings.TrimSpace(patch.Patch) == "" {
				v.fail(fmt.Sprintf("%s.patches[%d].patch", p, j), "is required")
			}
		}
	}
	switch {
	case s.Stable == "":
		v.fail("spec.stable", "is required: name the version that serves traffic now")
	case !versions[s.Stable]:
		v.fail("spec.stable", "version %q is not in spec.versions", s.Stable)
	}
	if s.Candidate != "" {
		switch {
		case !versions[s.Candidate]:
			v.fail("spec.candidate", "version %q is not in spec.versions", s.Candidate)
		case s.Candidate == s.Stable:
			v.fail("spec.candidate", "is the stable version %q; leave it out when nothing is being released", s.Stable)
		}
	}

	routes := map[string]bool{}
	if len(s.Routes) == 0 {
		v.fail("spec.routes", "list at least one routing context, e.g. {name: mesh, gateways: [mesh], hosts: [%s]}", r.ServiceName())
	}
	for i, rt := range s.Routes {
		p := fmt.Sprintf("spec.routes[%d]", i)
		v.dnsLabel(p+".name", rt.Name)
		if routes[rt.Name] {
			v.fail(p+".name", "route %q is defined twice", rt.Name)
		}
		routes[rt.Name] = true
		if len(rt.Gateways) == 0 {
			v.fail(p+".gateways", "is required: use [mesh] for traffic inside the mesh, or name the ingress gateways")
		}
		for j, g := range rt.Gateways {
			if g == "" {
				v.fail(fmt.Sprintf("%s.gateways[%d]", p, j), "must not be empty")
			}
		}
		if len(rt.Hosts) == 0 {
			v.fail(p+".hosts", "is required")
		}
		for j, h := range rt.Hosts {
			if h == "" {
				v.fail(fmt.Sprintf("%s.hosts[%d]", p, j), "must not be empty")
			}
		}
	}

	v.routing()

	v.analysis("spec.analysis", s.Analysis.Interval, s.Analysis.Iterations, s.Analysis.Metrics)
	v.webhooks("spec.analysis.webhooks", s.Analysis.Webhooks, s.Analysis.Metrics)
	if s.Analysis.Threshold < 0 {
		v.fail("spec.analysis.threshold", "must be at least 1, got %d", s.Analysis.Threshold)
	}
	if s.Analysis.NoData != "" && s.Analysis.NoData != NoDataFail && s.Analysis.NoData != NoDataHold {
		v.fail("spec.analysis.noData", "must be %q or %q, got %q", NoDataHold, NoDataFail, s.Analysis.NoData)
	}
	if d := s.Analysis.Drain; d != nil && d.Duration < 0 {
		v.fail("spec.analysis.drain", "must not be negative, got %s", d.Duration)
	}

	v.stages()

	if w := s.Window; w != nil {
		if w.Duration.Duration <= 0 {
			v.fail("spec.window.duration", "must be longer than zero")
		}
		tzOK := true
		if w.TimeZone != "" {
			if _, err := time.LoadLocation(w.TimeZone); err != nil {
				tzOK = false
				v.fail("spec.window.timeZone", "%q is not an IANA time zone such as Europe/Paris or America/New_York", w.TimeZone)
			}
		}
		// A bad zone is the zone's error alone, not the schedule's too.
		if tzOK {
			if _, err := w.Parse(); err != nil {
				v.fail("spec.window.schedule", "%v", err)
			}
		}
	}
	stageNames := map[string]bool{}
	for _, st := range s.Stages {
		stageNames[st.Name] = true
	}
	for i, a := range s.Approvals {
		p := fmt.Sprintf("spec.approvals[%d]", i)
		if !stageNames[a.Stage] {
			v.fail(p+".stage", "stage %q is not in spec.stages", a.Stage)
		}
		if !versions[a.Candidate] {
			v.fail(p+".candidate", "version %q is not in spec.versions", a.Candidate)
		}
	}
}

func (v *validator) stages() {
	s := &v.r.Spec
	if len(s.Stages) == 0 {
		v.fail("spec.stages", "list the stages, ending with promote")
		return
	}
	names := map[string]bool{}
	for i, st := range s.Stages {
		p := fmt.Sprintf("spec.stages[%d]", i)
		v.dnsLabel(p+".name", st.Name)
		if names[st.Name] {
			v.fail(p+".name", "stage %q is defined twice", st.Name)
		}
		names[st.Name] = true
		kinds := st.kinds()
		switch len(kinds) {
		case 0:
			v.fail(p, "set one of deploy, darkLaunch, weighted, mirror or promote")
		case 1:
		default:
			v.fail(p, "sets %s; a stage is exactly one of them", strings.Join(kinds, " and "))
		}
		last := i == len(s.Stages)-1
		switch {
		case st.Deploy != nil && i != 0:
			v.fail(p+".deploy", "deploy must be the first stage")
		case st.Promote != nil && !last:
			v.fail(p+".promote", "promote must be the last stage")
		case last && st.Promote == nil && len(kinds) == 1:
			v.fail(p, "the last stage must be promote")
		}
		if d := st.DarkLaunch; d != nil {
			if len(d.Match) == 0 {
				v.fail(p+".darkLaunch.match", "list the requests that reach the candidate")
			}
			v.matches(p+".darkLaunch.match", d.Match)
		}
		if w := st.Weighted; w != nil {
			v.weighted(p+".weighted", w)
		}
		if m := st.Mirror; m != nil && (m.Percent <= 0 || m.Percent > 100) {
			v.fail(p+".mirror.percent", "must be more than 0 and at most 100, got %g", m.Percent)
		}
		if a := st.Analysis; a != nil {
			v.analysis(p+".analysis", a.Interval, a.Iterations, a.Metrics)
			if a.SkipMetrics && len(a.Metrics) > 0 {
				v.fail(p+".analysis.skipMetrics", "cannot be combined with metrics")
			}
			metrics := s.Analysis.Metrics
			if len(a.Metrics) > 0 {
				metrics = a.Metrics
			}
			v.webhooks(p+".analysis.webhooks", a.Webhooks, metrics)
			if a.SkipMetrics && slices.ContainsFunc(a.Webhooks, func(w Webhook) bool { return w.Type == WebhookCheck }) {
				v.fail(p+".analysis.skipMetrics", "cannot be combined with check webhooks")
			}
		}
		if st.Approval != "" && st.Approval != ApprovalManual && st.Approval != ApprovalPullRequest {
			v.fail(p+".approval", "must be %q or %q, got %q", ApprovalManual, ApprovalPullRequest, st.Approval)
		}
		if st.Approval != "" && st.Deploy != nil {
			v.fail(p+".approval", "the deploy stage is the first step and cannot wait for an approval")
		}
	}
}

func (st Stage) kinds() []string {
	var k []string
	if st.Deploy != nil {
		k = append(k, "deploy")
	}
	if st.DarkLaunch != nil {
		k = append(k, "darkLaunch")
	}
	if st.Weighted != nil {
		k = append(k, "weighted")
	}
	if st.Mirror != nil {
		k = append(k, "mirror")
	}
	if st.Promote != nil {
		k = append(k, "promote")
	}
	return k
}

func (v *validator) weighted(p string, w *WeightedStage) {
	hasList := len(w.Weights) > 0
	hasStep := w.StepWeight != 0 || w.MaxWeight != 0
	switch {
	case hasList && hasStep:
		v.fail(p, "set either weights or stepWeight with maxWeight, not both")
	case !hasList && !hasStep:
		v.fail(p, "set weights (e.g. [10, 25, 50]) or stepWeight with maxWeight")
	case hasList:
		for i, wt := range w.Weights {
			wp := fmt.Sprintf("%s.weights[%d]", p, i)
			if wt <= 0 || wt > 100 {
				v.fail(wp, "must be more than 0 and at most 100, got %d", wt)
			} else if i > 0 && wt <= w.Weights[i-1] {
				v.fail(wp, "weights must increase strictly: %d follows %d", wt, w.Weights[i-1])
			}
		}
	default:
		if w.StepWeight <= 0 || w.StepWeight > 100 {
			v.fail(p+".stepWeight", "must be more than 0 and at most 100, got %d", w.StepWeight)
		}
		switch {
		case w.MaxWeight == 0:
			v.fail(p+".maxWeight", "is required with stepWeight")
		case w.MaxWeight > 100:
			v.fail(p+".maxWeight", "must be at most 100, got %d", w.MaxWeight)
		case w.MaxWeight < w.StepWeight:
			v.fail(p+".maxWeight", "must be at least stepWeight (%d), got %d", w.StepWeight, w.MaxWeight)
		}
	}
	v.matches(p+".match", w.Match)
}

func (v *validator) matches(p string, ms []Match) {
	for i, m := range ms {
		mp := fmt.Sprintf("%s[%d]", p, i)
		if len(m.Headers) == 0 && m.Cookie == nil && len(m.SourceLabels) == 0 {
			v.fail(mp, "set headers, cookie or sourceLabels")
		}
		for name, sm := range m.Headers {
			hp := mp + ".headers." + name
			if name != strings.ToLower(name) || strings.ContainsAny(name, " :") {
				v.fail(hp, "header names must be lowercase without spaces or colons (Istio matches them lowercased)")
			}
			set := 0
			for _, s := range []string{sm.Exact, sm.Prefix, sm.Regex} {
				if s != "" {
					set++
				}
			}
			if set != 1 {
				v.fail(hp, "set exactly one of exact, prefix or regex")
			}
			if sm.Regex != "" {
				if _, err := regexp.Compile(sm.Regex); err != nil {
					v.fail(hp+".regex", "is not a valid RE2 expression: %v", err)
				}
			}
			if name == "cookie" && m.Cookie != nil {
				v.fail(hp, "cannot be combined with a cookie match")
			}
		}
		if c := m.Cookie; c != nil {
			if c.Name == "" || strings.ContainsAny(c.Name, "=; ") {
				v.fail(mp+".cookie.name", "must be a cookie name without '=', ';' or spaces")
			}
			if c.Value == "" || strings.ContainsAny(c.Value, "; ") {
				v.fail(mp+".cookie.value", "must be a value without ';' or spaces")
			}
		}
		for k, val := range m.SourceLabels {
			lp := mp + ".sourceLabels." + k
			if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
				v.fail(lp, "%q is not a valid label key: %s", k, strings.Join(msgs, "; "))
			}
			if msgs := validation.IsValidLabelValue(val); len(msgs) > 0 {
				v.fail(lp, "%q is not a valid label value: %s", val, strings.Join(msgs, "; "))
			}
		}
	}
}

func (v *validator) analysis(p string, interval Duration, iterations int, metrics []Metric) {
	if interval.Duration < 0 {
		v.fail(p+".interval", "must be longer than zero")
	}
	if iterations < 0 {
		v.fail(p+".iterations", "must be at least 1, got %d", iterations)
	}
	names := map[string]bool{}
	for i, m := range metrics {
		mp := fmt.Sprintf("%s.metrics[%d]", p, i)
		v.dnsLabel(mp+".name", m.Name)
		if names[m.Name] {
			v.fail(mp+".name", "metric %q is listed twice", m.Name)
		}
		names[m.Name] = true
		builtin := m.Name == MetricRequestSuccessRate || m.Name == MetricRequestDuration
		if !builtin && strings.TrimSpace(m.Query) == "" {
			v.fail(mp+".query", "is required: %q is not a builtin metric (%s, %s)", m.Name, MetricRequestSuccessRate, MetricRequestDuration)
		}
		if strings.TrimSpace(m.Query) != "" {
			if err := CheckQuery(m, v.sampleVars(m)); err != nil {
				v.fail(mp+".query", "%v", err)
			}
		}
		tr := m.ThresholdRange
		switch {
		case tr.Min == nil && tr.Max == nil:
			v.fail(mp+".thresholdRange", "set min, max or both")
		case tr.Min != nil && tr.Max != nil && *tr.Min > *tr.Max:
			v.fail(mp+".thresholdRange", "min (%g) is greater than max (%g)", *tr.Min, *tr.Max)
		}
		if m.Name == MetricRequestSuccessRate {
			for _, b := range []struct {
				name string
				v    *float64
			}{{"min", tr.Min}, {"max", tr.Max}} {
				if b.v != nil && (*b.v < 0 || *b.v > 100) {
					v.fail(mp+".thresholdRange."+b.name, "a success rate is a percentage from 0 to 100, got %g", *b.v)
				}
			}
		}
		if m.Name == MetricRequestDuration && tr.Max != nil && *tr.Max <= 0 {
			v.fail(mp+".thresholdRange.max", "a duration in milliseconds must be more than 0, got %g", *tr.Max)
		}
		if m.Interval.Duration < 0 {
			v.fail(mp+".interval", "must be longer than zero")
		}
	}
}

// webhooks checks a list of webhook gates.
func (v *validator) webhooks(p string, hooks []Webhook, metrics []Metric) {
	names := map[string]bool{}
	for i, w := range hooks {
		wp := fmt.Sprintf("%s[%d]", p, i)
		v.dnsLabel(wp+".name", w.Name)
		if names[w.Name] {
			v.fail(wp+".name", "webhook %q is listed twice", w.Name)
		}
		if slices.ContainsFunc(metrics, func(m Metric) bool { return m.Name == w.Name }) {
			// Gate values, in the status and on the dashboard, are told
			// apart by name.
			v.fail(wp+".name", "%q is also a metric's name; give the webhook its own", w.Name)
		}
		names[w.Name] = true
		switch w.Type {
		case WebhookPreStep, WebhookCheck, WebhookLoad:
		case "":
			v.fail(wp+".type", "is required: %s, %s or %s", WebhookPreStep, WebhookCheck, WebhookLoad)
		default:
			v.fail(wp+".type", "must be %s, %s or %s, got %q", WebhookPreStep, WebhookCheck, WebhookLoad, w.Type)
		}
		if u, err := url.Parse(w.URL); w.URL == "" {
			v.fail(wp+".url", "is required")
		} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.fail(wp+".url", "must be an http:// or https:// URL with a host")
		} else if u.User != nil {
			// The spec is in Git: a credential has no place in it.
			v.fail(wp+".url", "must not hold a user name or password; receivers check the request's signature (X-Sluice-Signature)")
		}
		if d := w.Timeout.Duration; d < 0 || d > MaxWebhookTimeout {
			v.fail(wp+".timeout", "must be more than 0 and at most %s, got %s", MaxWebhookTimeout, w.Timeout)
		}
		if r := w.Retries; r != nil && (*r < 0 || *r > MaxWebhookRetries) {
			v.fail(wp+".retries", "must be from 0 to %d, got %d", MaxWebhookRetries, *r)
		}
	}
}

// remoteRef matches what kustomize would fetch over the network.
var remoteRef = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]*://|git@|[^/]*\.(com|org|io|net|dev)/)`)

// sourcePath refuses anything that could leave the repository.
func (v *validator) sourcePath(p, src string) {
	if err := CheckRepoPath(src); err != nil {
		v.fail(p, "%v", err)
	}
}

// CheckRepoPath refuses a path that is absolute, escapes the repository with
// "..", or names a remote kustomize base.
func CheckRepoPath(src string) error {
	switch {
	case remoteRef.MatchString(src):
		return fmt.Errorf("%q is a remote base; Sluice renders only from the repository", src)
	case path.IsAbs(src) || strings.HasPrefix(src, `\`):
		return fmt.Errorf("%q is absolute; give a path relative to the repository root", src)
	case path.Clean(src) == ".." || strings.HasPrefix(path.Clean(src), "../"):
		return fmt.Errorf("%q leaves the repository", src)
	}
	return nil
}

// Parse returns the window's cron schedule, in its time zone.
func (w *Window) Parse() (cron.Schedule, error) {
	expr := w.Schedule
	if w.TimeZone != "" {
		if _, err := time.LoadLocation(w.TimeZone); err != nil {
			return nil, fmt.Errorf("time zone %q: %w", w.TimeZone, err)
		}
		expr = "CRON_TZ=" + w.TimeZone + " " + expr
	}
	sched, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, fmt.Errorf("%q is not a cron schedule (minute hour day-of-month month day-of-week): %w", w.Schedule, err)
	}
	return sched, nil
}

// Open reports whether the window is open at t, and when it next opens.
func (w *Window) Open(t time.Time) (bool, time.Time, error) {
	sched, err := w.Parse()
	if err != nil {
		return false, time.Time{}, err
	}
	// The window opened at the last firing within Duration before t, if any.
	// Cron schedules only look forward, so start from t-Duration.
	start := sched.Next(t.Add(-w.Duration.Duration - time.Second))
	if !start.After(t) {
		return true, start, nil
	}
	return false, start, nil
}

// ServiceName is the Service that fronts the release: spec.service.name or the release name.
func (r *Release) ServiceName() string {
	if r.Spec.Service.Name != "" {
		return r.Spec.Service.Name
	}
	return r.Metadata.Name
}

// Version returns the named version, or nil.
func (r *Release) Version(name string) *Version {
	for i := range r.Spec.Versions {
		if r.Spec.Versions[i].Name == name {
			return &r.Spec.Versions[i]
		}
	}
	return nil
}

// SourceOf is the kustomize directory a version is built from.
func (r *Release) SourceOf(v *Version) string {
	if v.Source != "" {
		return path.Clean(v.Source)
	}
	return path.Clean(r.Spec.Source)
}

// Approved reports whether a person approved the stage for the current candidate.
func (r *Release) Approved(stage string) bool {
	for _, a := range r.Spec.Approvals {
		if a.Stage == stage && a.Candidate == r.Spec.Candidate {
			return true
		}
	}
	return false
}

// clusters checks spec.clusters: names as --cluster takes them (DNS
// labels, since each names a status directory), each once.
func (v *validator) clusters(names []string) {
	seen := map[string]bool{}
	for i, c := range names {
		p := fmt.Sprintf("spec.clusters[%d]", i)
		v.dnsLabel(p, c)
		if seen[c] {
			v.fail(p, "cluster %q is named twice", c)
		}
		seen[c] = true
	}
}
