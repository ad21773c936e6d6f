package cluster

import (
	"maps"
	"net/http"
	"sync"

	"k8s.io/client-go/rest"
)

// RequestCounter counts the requests a rest.Config's clients send, by HTTP
// method. It is safe for concurrent use.
type RequestCounter struct {
	mu       sync.Mutex
	byMethod map[string]int
	dryRuns  int
}

// CountingConfig returns a copy of cfg whose clients count their requests
// in the returned counter.
func CountingConfig(cfg *rest.Config) (*rest.Config, *RequestCounter) {
	c := &RequestCounter{byMethod: map[string]int{}}
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			c.add(req)
			return rt.RoundTrip(req)
		})
	})
	return cfg, c
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func (c *RequestCounter) add(req *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byMethod[req.Method]++
	if req.URL.Query().Has("dryRun") {
		c.dryRuns++
	}
}

// Count returns the requests sent with method (GET, PATCH, ...).
func (c *RequestCounter) Count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byMethod[method]
}

// Total returns all requests sent.
func (c *RequestCounter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.byMethod {
		n += v
	}
	return n
}

// Writes returns the POST, PUT, PATCH and DELETE requests sent, dry runs
// included: they pass admission too.
func (c *RequestCounter) Writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byMethod[http.MethodPost] + c.byMethod[http.MethodPut] + c.byMethod[http.MethodPatch] + c.byMethod[http.MethodDelete]
}

// DryRuns returns the requests sent with a dryRun parameter.
func (c *RequestCounter) DryRuns() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dryRuns
}

// Snapshot returns the counts by method.
func (c *RequestCounter) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.byMethod)
}

// Reset sets every count to zero.
func (c *RequestCounter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.byMethod)
	c.dryRuns = 0
}
