package gitserver

import (
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// HTTPServer is git's smart HTTP protocol served by git-http-backend through
// net/http/cgi on a loopback port.
type HTTPServer struct {
	// URL is the base URL; repositories are at URL + "/" + name + ".git".
	URL string
	// CAFile is a PEM file with the server's certificate (TLS only).
	CAFile string
	// Requests counts requests, Refused counts those refused for auth.
	Requests atomic.Int64
	Refused  atomic.Int64
}

// RequireHTTPBackend skips the test when git-http-backend is absent.
func RequireHTTPBackend(t testing.TB) {
	t.Helper()
	RequireGit(t)
	if _, err := os.Stat(HTTPBackend); err != nil {
		t.Skipf("%s not installed (apt-get install git): smart HTTP tests need it", HTTPBackend)
	}
}

// StartHTTP serves the bare repositories under root. With user set, every
// request needs basic auth user:pass. With useTLS, the server uses a
// self-signed certificate whose PEM is written to CAFile.
func StartHTTP(t testing.TB, root, user, pass string, useTLS bool) *HTTPServer {
	t.Helper()
	RequireHTTPBackend(t)
	s := &HTTPServer{}
	backend := Handler(root, user, pass, &s.Refused)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Requests.Add(1)
		backend.ServeHTTP(w, r)
	})
	srv := httptest.NewUnstartedServer(h)
	// Refused TLS handshakes are expected in tests; keep them off stderr.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if useTLS {
		srv.StartTLS()
		ca := filepath.Join(t.TempDir(), "ca.pem")
		block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		if err := os.WriteFile(ca, block, 0o644); err != nil {
			t.Fatal(err)
		}
		s.CAFile = ca
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Proxy is a forward HTTP proxy on a loopback port that sends every request
// to one upstream server, whatever host the client asked for. Seen counts
// proxied requests.
type Proxy struct {
	URL  string
	Seen atomic.Int64
}

// StartProxy starts a forward proxy to upstream (a base URL).
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	up, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(up)
		pr.Out.URL.Path = pr.In.URL.Path
		pr.Out.URL.RawPath = pr.In.URL.RawPath
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.IsAbs() {
			http.Error(w, "not a proxy request", http.StatusBadRequest)
			return
		}
		p.Seen.Add(1)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}
