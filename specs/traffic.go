package specs

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Traffic is what a step gives the candidate, in figures that do not
// mislead: a dark launch routes the requests that match to the candidate
// and weighs none of the others to it, so its Weight is 0 and its Match
// says which requests it takes.
type Traffic struct {
	// Weight is the candidate's share, in percent, of all requests by
	// weight: 0 at a step that routes only matching requests to it.
	Weight int32 `json:"weight"`
	// Match describes the requests a step routes by match
	// ("x-istio-cohort=internal"); empty when the step splits all
	// requests.
	Match string `json:"match,omitempty"`
	// MatchWeight is the candidate's share, in percent, of the requests
	// that match (100 for a dark launch).
	MatchWeight int32 `json:"matchWeight,omitempty"`
	// MirrorPercent is the share of requests shadowed to the candidate;
	// their responses still come from the stable version.
	MirrorPercent float64 `json:"mirrorPercent,omitempty"`
}

// Traffic is what the step gives the candidate.
func (s Step) Traffic() Traffic {
	switch s.Kind {
	case KindStable, KindDeploy, KindRollback:
		return Traffic{}
	case KindMirror:
		return Traffic{MirrorPercent: s.MirrorPercent}
	}
	if len(s.Match) > 0 {
		return Traffic{Match: DescribeMatch(s.Match), MatchWeight: s.Weight}
	}
	return Traffic{Weight: s.Weight}
}

// String reads "20%", "dark: x-istio-cohort=internal" (all matching
// requests, no weighted share), "10% of from app=frontend" (a share of the
// matching requests) or "0% (5% mirrored)".
func (t Traffic) String() string {
	switch {
	case t.Match != "" && t.MatchWeight >= 100:
		return "dark: " + t.Match
	case t.Match != "":
		return fmt.Sprintf("%d%% of %s", t.MatchWeight, t.Match)
	case t.MirrorPercent > 0:
		return fmt.Sprintf("%d%% (%g%% mirrored)", t.Weight, t.MirrorPercent)
	}
	return fmt.Sprintf("%d%%", t.Weight)
}

// DescribeMatch writes matches as people read them: the conditions of one
// match joined by "and", the matches by "or" ("x-istio-cohort=internal",
// "x-user=test* and cookie canary=1", "from app=frontend").
func DescribeMatch(ms []Match) string {
	var parts []string
	for _, m := range ms {
		var conds []string
		for _, n := range slices.Sorted(maps.Keys(m.Headers)) {
			h := m.Headers[n]
			switch {
			case h.Exact != "":
				conds = append(conds, fmt.Sprintf("%s=%s", n, h.Exact))
			case h.Prefix != "":
				conds = append(conds, fmt.Sprintf("%s=%s*", n, h.Prefix))
			default:
				conds = append(conds, fmt.Sprintf("%s~%s", n, h.Regex))
			}
		}
		if m.Cookie != nil {
			conds = append(conds, fmt.Sprintf("cookie %s=%s", m.Cookie.Name, m.Cookie.Value))
		}
		if len(m.SourceLabels) > 0 {
			labels := make([]string, 0, len(m.SourceLabels))
			for _, k := range slices.Sorted(maps.Keys(m.SourceLabels)) {
				labels = append(labels, k+"="+m.SourceLabels[k])
			}
			conds = append(conds, "from "+strings.Join(labels, ","))
		}
		parts = append(parts, strings.Join(conds, " and "))
	}
	return strings.Join(parts, " or ")
}
