// Package webhook posts a release step's webhook gates: one JSON body to
// one URL, signed with HMAC-SHA256, within a timeout per attempt and a
// bounded number of attempts. Any 2xx answer passes; what a gate does with
// the outcome is the reconciler's business.
//
// The signing key is read from its file at every call (a rotated Secret
// takes effect at once) and never appears in errors; neither does the
// userinfo of a URL.
package webhook

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
	"strings"
	"sync"
	"time"

	"sluice.dev/sluice/internal/secret"
)

// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>", keyed
// with the secret file's content, when Sluice has one.
const SignatureHeader = "X-Sluice-Signature"

// TypeHeader carries the hook's type (pre-step, check, load), so a
// receiver can route before it parses the body.
const TypeHeader = "X-Sluice-Webhook-Type"

// Defaults of a Target and of Options.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultAttempts   = 3
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 10 * time.Second
	// maxBody bounds what is read of an answer: a little of it says why.
	maxBody = 256
)

// Options tune a Client.
type Options struct {
	// SecretFile holds the HMAC key; empty: requests are not signed.
	SecretFile string
	// Client sends the requests (default: one that follows no redirects,
	// so a body never goes to a host the spec did not name).
	Client *http.Client
	// UserAgent of the requests (default "sluice").
	UserAgent string
	// MinBackoff and MaxBackoff bound the wait between attempts, doubling.
	MinBackoff, MaxBackoff time.Duration
	// Sleep waits between attempts (tests make it instant); default a
	// timer that ends with ctx.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Client posts webhooks. It is safe for concurrent use.
type Client struct {
	opts Options
	wg   sync.WaitGroup
}

// New returns a Client.
func New(opts Options) *Client {
	if opts.Client == nil {
		opts.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "sluice"
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	return &Client{opts: opts}
}

// Target is one webhook.
type Target struct {
	// Name and Type identify it in errors and in TypeHeader.
	Name, Type string
	URL        string
	// Timeout bounds each attempt (DefaultTimeout); Attempts bounds the
	// attempts (DefaultAttempts).
	Timeout  time.Duration
	Attempts int
}

// Result is the outcome of a call.
type Result struct {
	// Code is the last answer's HTTP status; 0 when none came.
	Code int
	// Attempts made.
	Attempts int
	// Err says why the call did not pass: no answer, or an answer other
	// than 2xx. It never holds the signing key or the URL's userinfo.
	Err error
}

// Passed reports a 2xx answer.
func (r Result) Passed() bool { return r.Err == nil && r.Code >= 200 && r.Code < 300 }

// Reason is a short word for the outcome, for commit subjects: the status
// code, or "timeout", "unreachable" or "error" when no answer came.
func (r Result) Reason() string {
	switch {
	case r.Code != 0:
		return fmt.Sprint(r.Code)
	case errors.Is(r.Err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(r.Err, errUnreachable):
		return "unreachable"
	}
	return "error"
}

var errUnreachable = errors.New("unreachable")

// Sign is the SignatureHeader value of body under key.
func Sign(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether header is body's SignatureHeader under key,
// comparing in constant time. Receivers may use it.
func Verify(key, body []byte, header string) bool {
	return hmac.Equal([]byte(header), []byte(Sign(key, body)))
}

// Call posts body to t and retries what may pass later (no answer, a 5xx,
// 408 or 429) with a doubling backoff, up to t.Attempts. It returns when
// the call passed, failed for good, or ctx ended.
func (c *Client) Call(ctx context.Context, t Target, body []byte) Result {
	attempts := t.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var res Result
	backoff := c.opts.MinBackoff
	for res.Attempts < attempts {
		res.Attempts++
		var retry bool
		res.Code, retry, res.Err = c.post(ctx, t, timeout, body)
		if res.Err == nil || !retry || res.Attempts >= attempts || ctx.Err() != nil {
			break
		}
		if err := c.opts.Sleep(ctx, backoff); err != nil {
			break
		}
		backoff = min(2*backoff, c.opts.MaxBackoff)
	}
	return res
}

// Go calls t in the background (a load hook: nobody waits on it) and
// hands the result to done, if set. Wait waits for every such call.
func (c *Client) Go(ctx context.Context, t Target, body []byte, done func(Result)) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		res := c.Call(ctx, t, body)
		if done != nil {
			done(res)
		}
	}()
}

// Wait waits for the calls started with Go.
func (c *Client) Wait() { c.wg.Wait() }

// post makes one attempt; retry says whether another may pass.
func (c *Client) post(ctx context.Context, t Target, timeout time.Duration, body []byte) (code int, retry bool, err error) {
	var key string
	if c.opts.SecretFile != "" {
		if key, err = secret.ReadFile("webhook signing key", c.opts.SecretFile); err != nil {
			return 0, false, fmt.Errorf("webhook %s: %w", t.Name, err)
		}
	}
	where := secret.URL(t.URL)
	secrets := []string{key}
	if u, perr := url.Parse(t.URL); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			secrets = append(secrets, p)
		}
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return 0, false, fmt.Errorf("webhook %s: request to %s: %w", t.Name, where, secret.Error("", err, secrets))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", c.opts.UserAgent)
	if t.Type != "" {
		req.Header.Set(TypeHeader, t.Type)
	}
	if key != "" {
		req.Header.Set(SignatureHeader, Sign([]byte(key), body))
	}
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL
		}
		if actx.Err() != nil && ctx.Err() == nil {
			return 0, true, fmt.Errorf("webhook %s: post to %s: no answer within %s: %w", t.Name, where, timeout, context.DeadlineExceeded)
		}
		if ctx.Err() != nil {
			return 0, false, fmt.Errorf("webhook %s: post to %s: %w", t.Name, where, context.Cause(ctx))
		}
		return 0, true, fmt.Errorf("webhook %s: post to %s: %w: %w", t.Name, where, errUnreachable, secret.Error("", err, secrets))
	}
	defer func() { _ = resp.Body.Close() }()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, false, nil
	}
	err = fmt.Errorf("webhook %s: post to %s: %s", t.Name, where, resp.Status)
	if s := strings.Join(strings.Fields(secret.Text(string(snippet), secrets)), " "); s != "" {
		err = fmt.Errorf("%w: %s", err, s)
	}
	retry = resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests
	return resp.StatusCode, retry, err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
