// smart HTTP: serves bare Git repositories over git's smart HTTP
// protocol with Debian's git-http-backend, for tests and the demo.
package gitserver

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"sync/atomic"
	"time"
)

// Backend is where Debian's git package installs git-http-backend.
const Backend = "/usr/lib/git-core/git-http-backend"

// Handler serves the bare repositories under root. With user set, every
// request needs basic auth user:pass; refused counts the requests turned
// away (it may be nil).
func Handler(root, user, pass string, refused *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remoteUser := "anonymous"
		if user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(pass)) != 1 {
				if refused != nil {
					refused.Add(1)
				}
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
			remoteUser = u
		}
		// The credentials must not reach the CGI environment.
		r.Header.Del("Authorization")
		(&cgi.Handler{
			Path: Backend,
			Root: "/",
			Env: []string{
				"GIT_PROJECT_ROOT=" + root,
				"GIT_HTTP_EXPORT_ALL=1",
				"GIT_HTTP_RECEIVE_PACK=1",
				"REMOTE_USER=" + remoteUser,
				"GIT_CONFIG_NOSYSTEM=1",
			},
		}).ServeHTTP(w, r)
	})
}

// Server is a smart HTTP Git server on a loopback port.
type Server struct {
	// URL is the base URL: repository dir/name.git is at URL/name.git.
	URL string
	srv *http.Server
}

// Start serves the bare repositories under root on 127.0.0.1 until Close.
func Start(root string) (*Server, error) {
	if _, err := os.Stat(Backend); err != nil {
		return nil, fmt.Errorf("%s not found: apt-get install git", Backend)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &Server{URL: "http://" + ln.Addr().String(), srv: &http.Server{Handler: Handler(root, "", "", nil), ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "gitserve:", err)
		}
	}()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
