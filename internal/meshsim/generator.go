package meshsim

import (
	"math/rand/v2"
	"strconv"
	"time"
)

// Behavior is how one version of the service answers.
type Behavior struct {
	// ErrorRate is the share of requests answered with a 500, 0 to 1.
	ErrorRate float64 `json:"errorRate"`
	// Latency is the base time a request takes; Config.Jitter varies it.
	Latency time.Duration `json:"latency"`
}

// generator decides what happens to each simulated request. Shares
// (weights, error rates, mirror and cohort percentages) are spread exactly
// rather than drawn at random: after n requests every share is within one
// request of n times its value, so short test windows read the configured
// numbers instead of sampling noise. Only latency jitter is random, from a
// seeded PRNG. Not safe for concurrent use; the Simulator serialises it.
type generator struct {
	src       Source
	behaviors map[string]Behavior // by version label
	def       Behavior
	jitter    float64
	rng       *rand.Rand
	m         *metrics

	swrr map[string][]int   // smooth weighted round-robin state by key
	acc  map[string]float64 // share accumulators by key
}

func newGenerator(src Source, def Behavior, behaviors map[string]Behavior, jitter float64, seed uint64, m *metrics) *generator {
	b := make(map[string]Behavior, len(behaviors))
	for k, v := range behaviors {
		b[k] = v
	}
	return &generator{
		src:       src,
		behaviors: b,
		def:       def,
		jitter:    jitter,
		rng:       rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		m:         m,
		swrr:      map[string][]int{},
		acc:       map[string]float64{},
	}
}

// take reports whether this request falls in a share p (0 to 1) of the
// stream named key. The accumulator starts half a request in, so the count
// after n requests is n*p rounded.
func (g *generator) take(key string, p float64) bool {
	if p <= 0 {
		return false
	}
	a := g.acc[key] + p
	if a >= 0.5 {
		g.acc[key] = a - 1
		return true
	}
	g.acc[key] = a
	return false
}

// pick chooses an index by weight with nginx's smooth weighted round-robin,
// which interleaves picks evenly and is exact over every cycle of
// sum(weights) picks. It returns -1 when every weight is zero.
func (g *generator) pick(key string, weights []int) int {
	cur := g.swrr[key]
	if len(cur) != len(weights) {
		cur = make([]int, len(weights))
		g.swrr[key] = cur
	}
	total, best := 0, -1
	for i, w := range weights {
		if w <= 0 {
			continue
		}
		cur[i] += w
		total += w
		if best < 0 || cur[i] > cur[best] {
			best = i
		}
	}
	if best >= 0 {
		cur[best] -= total
	}
	return best
}

// prune forgets the state of routes and endpoint sets no longer in use.
func (g *generator) prune(keep map[string]bool) {
	for k := range g.swrr {
		if !keep[k] {
			delete(g.swrr, k)
		}
	}
	for k := range g.acc {
		if k != cohortKey && !keep[k] && !isErrorKey(k) {
			delete(g.acc, k)
		}
	}
}

const cohortKey = "cohort"

func errorKey(version string) string { return "errors|" + version }

func isErrorKey(k string) bool { return len(k) > 7 && k[:7] == "errors|" }

// serve runs one request through the table and records what the
// destination sidecars would report. It returns the request's outcome.
func (g *generator) serve(t *table, req *Request) string {
	ep := t.defaultRoute
	if t.vs != "" {
		r := t.find(req, &g.src)
		if r == nil {
			return OutcomeNoRoute
		}
		if r.terminal != "" {
			return r.terminal
		}
		if r.abortPercent >= 0 && g.take("abort|"+r.key, r.abortPercent/100) {
			return OutcomeAborted
		}
		// Envoy shadows the request whatever becomes of the original.
		for i := range r.mirrors {
			m := &r.mirrors[i]
			if g.take(m.key, m.percent/100) && m.endpoints.outcome == OutcomeServed {
				g.record(t, m.endpoints, g.endpoint(m.endpoints))
			}
		}
		weights := make([]int, len(r.dests))
		for i, d := range r.dests {
			weights[i] = d.weight
		}
		i := g.pick(r.key, weights)
		if i < 0 {
			return OutcomeNoRoute
		}
		ep = r.dests[i].endpoints
	}
	if ep.outcome != OutcomeServed {
		return ep.outcome
	}
	g.record(t, ep, g.endpoint(ep))
	return OutcomeServed
}

func (g *generator) endpoint(ep *endpoints) *workload {
	if len(ep.workloads) == 1 {
		return ep.workloads[0]
	}
	return ep.workloads[g.pick(ep.key, ep.weights)]
}

// record counts one request answered by w, one of ep's workloads, as w's
// sidecar reports it: for the Service ep names (a Gateway API backend),
// else the simulated one.
func (g *generator) record(t *table, ep *endpoints, w *workload) {
	svc := &t.service
	if ep.svc != nil {
		svc = ep.svc
	}
	b, ok := g.behaviors[w.version]
	if !ok {
		b = g.def
	}
	code := 200
	if g.take(errorKey(w.version), b.ErrorRate) {
		code = 500
	}
	ms := float64(b.Latency) / float64(time.Millisecond)
	if g.jitter > 0 {
		ms *= 1 + g.jitter*(2*g.rng.Float64()-1)
	}
	g.m.observe(&g.src, svc, w, strconv.Itoa(code), ms)
}
