package renderer

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"

	networking "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/specs"
)

// AnnotationStep names the step an Istio object was rendered for.
const AnnotationStep = "sluice.dev/step"

// istioObjects renders the DestinationRule and one VirtualService per route
// context of a step, with Istio's own Go types.
func istioObjects(rel *specs.Release, step specs.Step, subsets []string) ([][]byte, error) {
	host := rel.ServiceName()
	ann := map[string]string{AnnotationStep: step.Name}

	dr := &istionet.DestinationRule{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "DestinationRule"},
		// No step annotation here: the subsets change far less often than
		// the step, and an unchanged object costs no write.
		ObjectMeta: metav1.ObjectMeta{Name: rel.Metadata.Name},
	}
	dr.Spec.Host = host
	for _, v := range subsets {
		dr.Spec.Subsets = append(dr.Spec.Subsets, &networking.Subset{Name: v, Labels: map[string]string{LabelVersion: v}})
	}
	out := make([][]byte, 0, 1+len(rel.Spec.Routes))
	b, err := marshalIstio(dr)
	if err != nil {
		return nil, fmt.Errorf("marshal DestinationRule: %w", err)
	}
	out = append(out, b)

	for _, rt := range rel.Spec.Routes {
		vs := &istionet.VirtualService{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "VirtualService"},
			ObjectMeta: metav1.ObjectMeta{Name: rel.Metadata.Name + "-" + rt.Name, Annotations: ann},
		}
		vs.Spec.Hosts = append([]string(nil), rt.Hosts...)
		vs.Spec.Gateways = append([]string(nil), rt.Gateways...)
		vs.Spec.Http = httpRoutes(rel, step, rt)
		b, err := marshalIstio(vs)
		if err != nil {
			return nil, fmt.Errorf("marshal VirtualService %s: %w", vs.Name, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func httpRoutes(rel *specs.Release, step specs.Step, rt specs.Route) []*networking.HTTPRoute {
	host := rel.ServiceName()
	stable, candidate := rel.Spec.Stable, rel.Spec.Candidate
	dest := func(subset string, weight int32) *networking.HTTPRouteDestination {
		return &networking.HTTPRouteDestination{
			Destination: &networking.Destination{Host: host, Subset: subset},
			Weight:      weight,
		}
	}
	split := func(w int32) []*networking.HTTPRouteDestination {
		switch {
		case w <= 0:
			return []*networking.HTTPRouteDestination{dest(stable, 100)}
		case w >= 100:
			return []*networking.HTTPRouteDestination{dest(candidate, 100)}
		}
		return []*networking.HTTPRouteDestination{dest(stable, 100-w), dest(candidate, w)}
	}
	toStable := &networking.HTTPRoute{Name: "stable", Route: split(0)}

	switch step.Kind {
	case specs.KindPromote:
		return []*networking.HTTPRoute{{Name: "candidate", Route: split(100)}}
	case specs.KindDarkLaunch, specs.KindWeighted:
		if len(step.Match) == 0 {
			return []*networking.HTTPRoute{{Name: "canary", Route: split(step.Weight)}}
		}
		matches := istioMatches(step.Match, rt.IsMesh())
		if len(matches) == 0 {
			// Only sourceLabels were given, and they mean nothing at a
			// gateway: requests there stay on stable.
			return []*networking.HTTPRoute{toStable}
		}
		name := "canary"
		if step.Kind == specs.KindDarkLaunch {
			name = "dark-launch"
		}
		return []*networking.HTTPRoute{{Name: name, Match: matches, Route: split(step.Weight)}, toStable}
	case specs.KindMirror:
		r := &networking.HTTPRoute{
			Name:             "mirror",
			Route:            split(0),
			Mirror:           &networking.Destination{Host: host, Subset: candidate},
			MirrorPercentage: &networking.Percent{Value: step.MirrorPercent},
		}
		return []*networking.HTTPRoute{r}
	}
	// stable, deploy and rollback: the candidate gets no request.
	return []*networking.HTTPRoute{toStable}
}

func istioMatches(ms []specs.Match, mesh bool) []*networking.HTTPMatchRequest {
	var out []*networking.HTTPMatchRequest
	for _, m := range ms {
		r := &networking.HTTPMatchRequest{}
		if len(m.Headers) > 0 || m.Cookie != nil {
			r.Headers = map[string]*networking.StringMatch{}
		}
		for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
			r.Headers[k] = stringMatch(m.Headers[k])
		}
		if c := m.Cookie; c != nil {
			r.Headers["cookie"] = &networking.StringMatch{MatchType: &networking.StringMatch_Regex{
				Regex: "^(.*?;\\s*)?(" + regexp.QuoteMeta(c.Name) + "=" + regexp.QuoteMeta(c.Value) + ")(;.*)?$",
			}}
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

func stringMatch(s specs.StringMatch) *networking.StringMatch {
	switch {
	case s.Exact != "":
		return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s.Exact}}
	case s.Prefix != "":
		return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: s.Prefix}}
	}
	return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: s.Regex}}
}

// marshalIstio writes an Istio object as YAML without its empty status,
// which is the mesh's to fill in, not Sluice's.
func marshalIstio(obj any) ([]byte, error) {
	j, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	return yaml.Marshal(m)
}
