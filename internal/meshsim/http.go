package meshsim

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// versionJSON is a Behavior as the HTTP endpoints show it.
type versionJSON struct {
	ErrorRate float64 `json:"errorRate"`
	LatencyMs float64 `json:"latencyMs"`
}

func toJSON(b Behavior) versionJSON {
	return versionJSON{ErrorRate: b.ErrorRate, LatencyMs: float64(b.Latency) / float64(time.Millisecond)}
}

func (s *Simulator) getVersions(w http.ResponseWriter, _ *http.Request) {
	vs := s.Versions()
	out := make(map[string]versionJSON, len(vs))
	for _, k := range sortedKeys(vs) {
		out[k] = toJSON(vs[k])
	}
	writeJSON(w, http.StatusOK, out)
}

// postVersion handles POST /versions/{version}?errorRate=0.1&latencyMs=300;
// a parameter left out keeps its current value.
func (s *Simulator) postVersion(w http.ResponseWriter, r *http.Request) {
	version := r.PathValue("version")
	cur, ok := s.Versions()[version]
	if !ok {
		cur = s.Versions()["*"]
	}
	q := r.URL.Query()
	for _, p := range []struct {
		name string
		set  func(float64)
	}{
		{"errorRate", func(v float64) { cur.ErrorRate = v }},
		// Clamped before converting so an absurd value fails validation
		// instead of overflowing.
		{"latencyMs", func(v float64) {
			cur.Latency = time.Duration(min(max(v, -1), 2*float64(time.Hour/time.Millisecond)) * float64(time.Millisecond))
		}},
	} {
		raw := q.Get(p.name)
		if raw == "" {
			continue
		}
		v, err := strconv.ParseFloat(raw, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			http.Error(w, fmt.Sprintf("%s=%q is not a number", p.name, raw), http.StatusBadRequest)
			return
		}
		p.set(v)
	}
	if err := s.SetVersion(version, cur.ErrorRate, cur.Latency); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, http.StatusOK, map[string]versionJSON{version: toJSON(cur)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
