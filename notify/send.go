package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries a webhook body's HMAC-SHA256 with secretFile.
const SignatureHeader = "X-Sluice-Signature-256"

// deliver posts m to c, retrying what may pass later, and counts the
// outcome.
func (n *Notifier) deliver(ctx context.Context, c *channel, m *message) {
	name := c.spec.Name
	body, ctype, err := payload(c.spec.Type, n.opts.Source, m)
	if err != nil {
		n.fail(c, m, 0, err)
		return
	}
	for attempt := 1; ; attempt++ {
		retryAfter, err := n.post(ctx, c, body, ctype)
		if err == nil {
			n.total.WithLabelValues(name, ResultSent).Inc()
			n.log.Debug("notification sent", "channel", name, "release", m.Release, "event", m.Event, "commit", m.ShortCommit(), "attempts", attempt)
			return
		}
		var p permanent
		if errors.As(err, &p) || attempt >= n.opts.MaxAttempts || ctx.Err() != nil {
			n.fail(c, m, attempt, err)
			return
		}
		wait := n.backoff(attempt)
		if retryAfter > 0 {
			if retryAfter > n.opts.MaxRetryAfter {
				n.fail(c, m, attempt, fmt.Errorf("%w; asked to retry after %s, more than %s", err, retryAfter, n.opts.MaxRetryAfter))
				return
			}
			wait = retryAfter
		}
		n.log.Debug("notification not sent; retrying", "channel", name, "release", m.Release, "attempt", attempt, "in", wait, "err", err)
		if err := n.sleep(ctx, wait); err != nil {
			n.fail(c, m, attempt, err)
			return
		}
	}
}

func (n *Notifier) fail(c *channel, m *message, attempts int, err error) {
	n.total.WithLabelValues(c.spec.Name, ResultFailed).Inc()
	n.log.Warn("notification not sent", "channel", c.spec.Name, "type", c.spec.Type, "release", m.Release,
		"event", m.Event, "commit", m.ShortCommit(), "attempts", attempts, "err", err)
}

// backoff is the wait after a failed attempt: doubling, bounded.
func (n *Notifier) backoff(attempt int) time.Duration {
	d := n.opts.MinBackoff
	for i := 1; i < attempt && d < n.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, n.opts.MaxBackoff)
}

// permanent marks an error that another attempt would repeat.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// post makes one attempt. Its errors never hold the URL or a token: the
// URL of a chat webhook is its secret.
func (n *Notifier) post(ctx context.Context, c *channel, body []byte, ctype string) (retryAfter time.Duration, err error) {
	// Read at every attempt, so a rotated Secret takes effect at once.
	raw, err := c.url()
	if err != nil {
		return 0, err
	}
	var token, key string
	if c.spec.TokenFile != "" {
		if token, err = readSecret(c.spec.TokenFile); err != nil {
			return 0, err
		}
	}
	if c.spec.SecretFile != "" {
		if key, err = readSecret(c.spec.SecretFile); err != nil {
			return 0, err
		}
	}
	secrets := []string{raw, token, key}
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, raw, bytes.NewReader(body))
	if err != nil {
		return 0, permanent{fmt.Errorf("request to %s: %s", redactURL(raw), redact(err.Error(), secrets))}
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", n.opts.UserAgent)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write(body)
		req.Header.Set(SignatureHeader, "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // *url.Error's text holds the URL
		}
		return 0, fmt.Errorf("post to %s: %s", redactURL(raw), redact(err.Error(), secrets))
	}
	defer func() { _ = resp.Body.Close() }()
	// A little of the answer says why (Slack: "invalid_payload").
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, nil
	}
	err = fmt.Errorf("post to %s: %s: %s", redactURL(raw), resp.Status, redact(strings.TrimSpace(string(snippet)), secrets))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout,
		resp.StatusCode >= 500:
		return parseRetryAfter(resp.Header.Get("Retry-After"), n.now()), err
	}
	return 0, permanent{err}
}

// url is the channel's URL, from its file or its configuration.
func (c *channel) url() (string, error) {
	raw := c.spec.URL
	if c.spec.URLFile != "" {
		var err error
		if raw, err = readSecret(c.spec.URLFile); err != nil {
			return "", err
		}
	}
	if err := checkURL(raw); err != nil {
		return "", permanent{fmt.Errorf("URL of channel %s: %w", c.spec.Name, err)}
	}
	return raw, nil
}

// checkURL accepts an absolute http(s) URL; its errors never quote it.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return errors.New("not an http:// or https:// URL")
	}
	return nil
}

// readSecret reads a secret file; its errors name the file, never what
// it holds.
func readSecret(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err) // the path, never the content
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", file)
	}
	return s, nil
}

// redactURL keeps a URL's scheme and host, which say which service it is,
// and drops its path and query, where chat webhooks keep their secret.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "[redacted URL]"
	}
	return u.Scheme + "://" + u.Host + "/[redacted]"
}

// redact removes every secret, as written and as URL-escaped, from s.
func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		s = strings.ReplaceAll(s, sec, "[redacted]")
		if q := url.QueryEscape(sec); q != sec {
			s = strings.ReplaceAll(s, q, "[redacted]")
		}
		if u, err := url.Parse(sec); err == nil && u.Host != "" {
			// Pieces of the URL, as a server might echo them.
			for _, part := range []string{u.EscapedPath(), u.RawQuery} {
				if len(part) > 8 {
					s = strings.ReplaceAll(s, part, "[redacted]")
				}
			}
		}
	}
	return s
}

// parseRetryAfter reads Retry-After: seconds, or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
