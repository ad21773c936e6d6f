package renderer

import (
	"fmt"
	"maps"
	"regexp"
	"slices"

	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/specs"
)

// AnnotationStep names the step an Istio object was rendered for.
const AnnotationStep = "sluice.dev/step"

// The fields of Istio's networking.istio.io/v1 API that Sluice renders, as
// Istio's JSON names them. Istio's own Go types would link its protobuf
// descriptors, their JSON marshalling and every message of the API into
// the binary for these few fields.
type (
	istioObject struct {
		APIVersion string    `json:"apiVersion"`
		Kind       string    `json:"kind"`
		Metadata   istioMeta `json:"metadata"`
		Spec       any       `json:"spec"`
	}
	istioMeta struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	destinationRule struct {
		Host    string   `json:"host,omitempty"`
		Subsets []subset `json:"subsets,omitempty"`
	}
	subset struct {
		Name   string            `json:"name,omitempty"`
		Labels map[string]string `json:"labels,omitempty"`
	}
	virtualService struct {
		Hosts    []string    `json:"hosts,omitempty"`
		Gateways []string    `json:"gateways,omitempty"`
		HTTP     []httpRoute `json:"http,omitempty"`
	}
	httpRoute struct {
		Name             string             `json:"name,omitempty"`
		Match            []httpMatch        `json:"match,omitempty"`
		Route            []routeDestination `json:"route,omitempty"`
		Mirror           *destination       `json:"mirror,omitempty"`
		MirrorPercentage *percent           `json:"mirrorPercentage,omitempty"`
	}
	httpMatch struct {
		Headers      map[string]stringMatch `json:"headers,omitempty"`
		SourceLabels map[string]string      `json:"sourceLabels,omitempty"`
	}
	// stringMatch is Istio's StringMatch, a oneof: exactly one of exact,
	// prefix and regex is its one key, written even when its value is empty.
	stringMatch      map[string]string
	routeDestination struct {
		Destination destination `json:"destination"`
		Weight      int32       `json:"weight,omitempty"`
	}
	destination struct {
		Host   string `json:"host,omitempty"`
		Subset string `json:"subset,omitempty"`
	}
	percent struct {
		Value float64 `json:"value,omitempty"`
	}
)

// istioObjects renders the DestinationRule and one VirtualService per route
// context of a step that uses Istio routing; nothing when none does.
func istioObjects(rel *specs.Release, step specs.Step, subsets []string) ([][]byte, error) {
	host := rel.ServiceName()
	ann := map[string]string{AnnotationStep: step.Name}

	if !rel.Uses(specs.RoutingIstio) {
		return nil, nil
	}
	drSpec := destinationRule{Host: host}
	for _, v := range subsets {
		drSpec.Subsets = append(drSpec.Subsets, subset{Name: v, Labels: map[string]string{LabelVersion: v}})
	}
	dr := &istioObject{
		APIVersion: "networking.istio.io/v1", Kind: "DestinationRule",
		// No step annotation here: the subsets change far less often than
		// the step, and an unchanged object costs no write.
		Metadata: istioMeta{Name: rel.Metadata.Name},
		Spec:     drSpec,
	}
	out := make([][]byte, 0, 1+len(rel.Spec.Routes))
	b, err := yaml.Marshal(dr)
	if err != nil {
		return nil, fmt.Errorf("marshal DestinationRule: %w", err)
	}
	out = append(out, b)

	for _, rt := range rel.Spec.Routes {
		if rel.RoutingOf(rt) != specs.RoutingIstio {
			continue
		}
		vs := &istioObject{
			APIVersion: "networking.istio.io/v1", Kind: "VirtualService",
			Metadata: istioMeta{Name: rel.Metadata.Name + "-" + rt.Name, Annotations: ann},
			Spec: virtualService{
				Hosts:    append([]string(nil), rt.Hosts...),
				Gateways: append([]string(nil), rt.Gateways...),
				HTTP:     httpRoutes(rel, step, rt),
			},
		}
		b, err := yaml.Marshal(vs)
		if err != nil {
			return nil, fmt.Errorf("marshal VirtualService %s: %w", vs.Metadata.Name, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func httpRoutes(rel *specs.Release, step specs.Step, rt specs.Route) []httpRoute {
	host := rel.ServiceName()
	stable, candidate := rel.Spec.Stable, rel.Spec.Candidate
	dest := func(subset string, weight int32) routeDestination {
		return routeDestination{
			Destination: destination{Host: host, Subset: subset},
			Weight:      weight,
		}
	}
	split := func(w int32) []routeDestination {
		switch {
		case w <= 0:
			return []routeDestination{dest(stable, 100)}
		case w >= 100:
			return []routeDestination{dest(candidate, 100)}
		}
		return []routeDestination{dest(stable, 100-w), dest(candidate, w)}
	}
	toStable := httpRoute{Name: "stable", Route: split(0)}

	switch step.Kind {
	case specs.KindPromote:
		return []httpRoute{{Name: "candidate", Route: split(100)}}
	case specs.KindDarkLaunch, specs.KindWeighted:
		if len(step.Match) == 0 {
			return []httpRoute{{Name: "canary", Route: split(step.Weight)}}
		}
		matches := istioMatches(step.Match, rt.IsMesh())
		if len(matches) == 0 {
			// Only sourceLabels were given, and they mean nothing at a
			// gateway: requests there stay on stable.
			return []httpRoute{toStable}
		}
		name := "canary"
		if step.Kind == specs.KindDarkLaunch {
			name = "dark-launch"
		}
		return []httpRoute{{Name: name, Match: matches, Route: split(step.Weight)}, toStable}
	case specs.KindMirror:
		r := httpRoute{
			Name:             "mirror",
			Route:            split(0),
			Mirror:           &destination{Host: host, Subset: candidate},
			MirrorPercentage: &percent{Value: step.MirrorPercent},
		}
		return []httpRoute{r}
	}
	// stable, deploy and rollback: the candidate gets no request.
	return []httpRoute{toStable}
}

func istioMatches(ms []specs.Match, mesh bool) []httpMatch {
	var out []httpMatch
	for _, m := range ms {
		r := httpMatch{}
		if len(m.Headers) > 0 || m.Cookie != nil {
			r.Headers = map[string]stringMatch{}
		}
		for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
			r.Headers[k] = toStringMatch(m.Headers[k])
		}
		if c := m.Cookie; c != nil {
			r.Headers["cookie"] = stringMatch{"regex": "^(.*?;\\s*)?(" + regexp.QuoteMeta(c.Name) + "=" + regexp.QuoteMeta(c.Value) + ")(;.*)?$"}
		}
		// sourceLabels select sidecar clients; Istio ignores them at a
		// gateway, where they would turn the match into "everything".
		if mesh && len(m.SourceLabels) > 0 {
			r.SourceLabels = map[string]string{}
			for k, v := range m.SourceLabels {
				r.SourceLabels[k] = v
			}
		}
		if len(r.Headers) == 0 && len(r.SourceLabels) == 0 {
			continue
		}
		out = append(out, r)
	}
	return out
}

func toStringMatch(s specs.StringMatch) stringMatch {
	switch {
	case s.Exact != "":
		return stringMatch{"exact": s.Exact}
	case s.Prefix != "":
		return stringMatch{"prefix": s.Prefix}
	}
	return stringMatch{"regex": s.Regex}
}
