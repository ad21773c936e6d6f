package gates

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"sluice.dev/sluice/internal/secret"
)

// newTransport builds the HTTP transport for Prometheus: TLS verified with
// CAFile when given, and the bearer token from BearerTokenFile on every
// request.
func newTransport(opts Options) (http.RoundTripper, error) {
	base := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          10,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", opts.CAFile)
		}
		base.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if opts.BearerTokenFile == "" {
		return base, nil
	}
	// Fail early on a path that cannot work; later reads still happen per
	// request so rotation is picked up.
	if _, err := readToken(opts.BearerTokenFile); err != nil {
		return nil, err
	}
	return &bearerFileTransport{file: opts.BearerTokenFile, next: base}, nil
}

// bearerFileTransport sets Authorization from a token file read at each
// request, as Kubernetes projected tokens rotate on disk.
type bearerFileTransport struct {
	file string
	next http.RoundTripper
}

func (b *bearerFileTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	token, err := readToken(b.file)
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+token)
	return b.next.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the base
// transport.
func (b *bearerFileTransport) CloseIdleConnections() {
	if c, ok := b.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// readToken reads the token; its errors name the file, never its content.
func readToken(file string) (string, error) { return secret.ReadFile("bearer token", file) }
