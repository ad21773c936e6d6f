// Package server is Sluice's HTTP endpoint: liveness (/healthz), readiness
// (/readyz), Prometheus metrics (/metrics), the on-demand sync (POST /sync)
// and Git push webhooks (POST /hooks/git) from GitHub, GitLab and Gitea.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	secretfile "sluice.dev/sluice/internal/secret" // named apart from the tests' secret constant
)

// DefaultMaxBodyBytes bounds a webhook delivery's body.
const DefaultMaxBodyBytes = 1 << 20

// RelayedHeader marks a sync request one replica forwarded to another, so
// that it is never forwarded again.
const RelayedHeader = "X-Sluice-Relayed"

// Syncer is what the endpoints drive: the reconciler.
type Syncer interface {
	// Ready reports whether Git has been synced.
	Ready() bool
	// Trigger asks for a Git sync now.
	Trigger()
}

// Options configure the server.
type Options struct {
	// Addr is the listen address, e.g. ":8080".
	Addr   string
	Syncer Syncer
	// Metrics is served on /metrics; nil serves no /metrics.
	Metrics prometheus.Gatherer
	// WebhookSecretFile holds the webhooks' shared secret, read at every
	// delivery so a rotated Secret takes effect at once. Empty: POST
	// /hooks/git is not served.
	WebhookSecretFile string
	// MaxBodyBytes bounds a delivery's body; default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Relay, when set, forwards a sync request (of /sync or a webhook) to
	// the replica that leads; it is not called for a request that was
	// itself relayed.
	Relay func(ctx context.Context)
	// Dashboard, when set, is served under /ui/: read-only pages.
	Dashboard http.Handler
	Log       *slog.Logger
}

// Server serves the endpoints until Close.
type Server struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

// Handler returns the endpoints' handler. A webhook secret file that cannot
// be read, or is empty, is an error: deliveries could never be checked.
func Handler(opts Options) (http.Handler, error) {
	if opts.Syncer == nil {
		return nil, errors.New("server: Syncer is required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !opts.Syncer.Ready() {
			http.Error(w, "waiting for the first Git sync", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	sync := func(r *http.Request) {
		opts.Syncer.Trigger()
		if opts.Relay != nil && r.Header.Get(RelayedHeader) == "" {
			// The request's context ends with the response; the relay must
			// not, nor hold the response up.
			go opts.Relay(context.WithoutCancel(r.Context()))
		}
	}
	// /sync only makes Sluice fetch Git sooner: it changes nothing that Git
	// does not say, and repeated calls coalesce into one fetch.
	mux.HandleFunc("POST /sync", func(w http.ResponseWriter, r *http.Request) {
		sync(r)
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, "sync triggered")
	})
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Metrics, promhttp.HandlerOpts{}))
	}
	if opts.Dashboard != nil {
		mux.Handle("/ui/", opts.Dashboard)
		mux.Handle("/ui", opts.Dashboard)
	}
	if opts.WebhookSecretFile != "" {
		if _, err := readSecret(opts.WebhookSecretFile); err != nil {
			return nil, err
		}
		mux.Handle("POST /hooks/git", &webhook{
			secretFile: opts.WebhookSecretFile,
			maxBody:    opts.MaxBodyBytes,
			log:        opts.Log,
			sync:       sync,
		})
	}
	return mux, nil
}

// Start listens on opts.Addr and serves until Close or ctx's end.
func Start(ctx context.Context, opts Options) (*Server, error) {
	h, err := Handler(opts)
	if err != nil {
		return nil, err
	}
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", opts.Addr, err)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			BaseContext:       func(net.Listener) context.Context { return ctx },
		},
		addr: strings.TrimPrefix(ln.Addr().String(), "[::]"),
		done: make(chan struct{}),
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on (":8080" or "127.0.0.1:41234").
func (s *Server) Addr() string { return s.addr }

// Close stops the server, letting requests in flight finish for a while.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

// readSecret reads the webhook secret file; errors name the file, never its
// content.
func readSecret(path string) ([]byte, error) {
	s, err := secretfile.ReadFile("webhook secret", path)
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}
