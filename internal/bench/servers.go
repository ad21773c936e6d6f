package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"

	"sluice.dev/sluice/internal/gitserver"
)

// gitServer serves the bare repositories under a root over smart HTTP and
// counts what Sluice asks of it.
type gitServer struct {
	URL     string
	srv     *http.Server
	fetches atomic.Int64 // ref advertisements for upload-pack: one per fetch
	packs   atomic.Int64 // upload-pack requests: fetches that transferred objects
	pushes  atomic.Int64 // receive-pack requests
}

func startGitServer(root string) (*gitServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("git server: listen: %w", err)
	}
	g := &gitServer{URL: "http://" + ln.Addr().String()}
	backend := gitserver.Handler(root, "", "", nil)
	g.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/info/refs") && r.URL.Query().Get("service") == "git-upload-pack":
			g.fetches.Add(1)
		case strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
			g.packs.Add(1)
		case strings.HasSuffix(r.URL.Path, "/git-receive-pack"):
			g.pushes.Add(1)
		}
		backend.ServeHTTP(w, r)
	})}
	go func() { _ = g.srv.Serve(ln) }()
	return g, nil
}

func (g *gitServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return g.srv.Shutdown(ctx)
}

// apiCounts are the requests Sluice sent the API server.
type apiCounts struct {
	Total   int64          `json:"total"`
	Writes  int64          `json:"writes"`
	DryRuns int64          `json:"dry_runs"`
	ByVerb  map[string]int `json:"by_verb,omitempty"`
	// Leases are the requests for Leases (leader election and shards),
	// counted apart and in none of the above: replicas renew them every
	// few seconds whatever else they do.
	Leases int64 `json:"lease_requests,omitempty"`
}

// apiProxy stands between Sluice and the API server on loopback, without
// TLS or credentials of its own, and counts Sluice's requests exactly: the
// API server's own metrics would mix them with the controllers' and kwok's.
type apiProxy struct {
	URL string
	srv *http.Server

	mu     sync.Mutex
	counts apiCounts
}

func startAPIProxy(cfg *rest.Config) (*apiProxy, error) {
	target, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("api proxy: %w", err)
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("api proxy: transport: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("api proxy: listen: %w", err)
	}
	p := &apiProxy{URL: "http://" + ln.Addr().String()}
	p.counts.ByVerb = map[string]int{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
		},
		Transport:     rt,
		FlushInterval: -1, // watches stream
	}
	p.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.count(r)
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *apiProxy) count(r *http.Request) {
	verb := r.Method
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodGet && q.Get("watch") == "true":
		verb = "WATCH"
	case r.Method == http.MethodGet && isCollection(r.URL.Path):
		verb = "LIST"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/apis/coordination.k8s.io/") {
		p.counts.Leases++
		return
	}
	p.counts.Total++
	p.counts.ByVerb[verb]++
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		if q.Has("dryRun") {
			p.counts.DryRuns++
		} else {
			p.counts.Writes++
		}
	}
}

// isCollection tells a LIST from a GET of one object by the path's shape:
// /api/v1/namespaces/ns/services (list) vs .../services/name (get).
func isCollection(path string) bool {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var rest []string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		rest = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		rest = parts[3:]
	default:
		return false
	}
	if len(rest) >= 2 && rest[0] == "namespaces" && len(rest) != 2 {
		rest = rest[2:]
	}
	return len(rest) == 1
}

func (p *apiProxy) snapshot() apiCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts
	c.ByVerb = make(map[string]int, len(p.counts.ByVerb))
	for k, v := range p.counts.ByVerb {
		c.ByVerb[k] = v
	}
	return c
}

// add is c and o together.
func (c apiCounts) add(o apiCounts) apiCounts {
	s := apiCounts{Total: c.Total + o.Total, Writes: c.Writes + o.Writes, DryRuns: c.DryRuns + o.DryRuns, Leases: c.Leases + o.Leases, ByVerb: map[string]int{}}
	for _, m := range []map[string]int{c.ByVerb, o.ByVerb} {
		for k, v := range m {
			s.ByVerb[k] += v
		}
	}
	return s
}

func (c apiCounts) sub(before apiCounts) apiCounts {
	d := apiCounts{Total: c.Total - before.Total, Writes: c.Writes - before.Writes, DryRuns: c.DryRuns - before.DryRuns, Leases: c.Leases - before.Leases, ByVerb: map[string]int{}}
	for k, v := range c.ByVerb {
		if n := v - before.ByVerb[k]; n != 0 {
			d.ByVerb[k] = n
		}
	}
	return d
}

func (p *apiProxy) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		// Open watches keep Shutdown waiting; they end with the process.
		return p.srv.Close()
	}
	return err
}
