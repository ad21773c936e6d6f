// Package secret is Sluice's one reader of credential files and its one
// policy for keeping credentials out of errors and logs, shared by gitsync,
// forge, gates and server. It is product code, not test support.
//
// The policy: an error that went through Error never unwraps. A library's
// error may hold a credential anywhere in its chain (an echoed response body,
// a request with its Authorization header), so only the redacted message
// survives, and errors.Is still matches the sentinel errors the caller
// names: a sentinel's text is fixed, so it cannot carry a secret.
package secret

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Redacted replaces a secret value in text.
const Redacted = "[REDACTED]"

// minLen is the shortest secret Text replaces: shorter ones would blank out
// ordinary words. Such secrets are still never printed on purpose.
const minLen = 4

// userinfoRE matches the userinfo part of any URL inside free text, so a URL
// that a library prints into an error loses its credentials.
var userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s"']+@`)

// ReadFile reads a credential from a mounted file (a Kubernetes Secret), at
// each use so a rotated Secret takes effect without a restart. what names it
// in errors ("forge token"), which name the file and never its content.
// Surrounding whitespace is not part of the secret; an empty file, and one
// of more than one line (which would smuggle a header into an HTTP request),
// are errors.
func ReadFile(what, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		// The path is fine to show; keep only the errno of a PathError so
		// errors.Is(err, fs.ErrNotExist) works.
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("read %s file %s: %w", what, path, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s file %s is empty", what, path)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s file %s holds more than one line", what, path)
	}
	return s, nil
}

// Text returns s with the userinfo of every URL in it and every secret value
// (of at least 4 bytes) replaced.
func Text(s string, secrets []string) string {
	s = userinfoRE.ReplaceAllString(s, "${1}")
	for _, sec := range secrets {
		if len(sec) < minLen {
			continue
		}
		s = strings.ReplaceAll(s, sec, Redacted)
	}
	return s
}

// URL returns u without its userinfo (user name and password), for
// printing. Input that does not parse as a URL loses any
// "scheme://user:pass@" prefix instead.
func URL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return Text(u, nil)
	}
	p.User = nil
	return p.String()
}

// alwaysKept are the sentinels every redacted error keeps: whether the
// caller gave up is never a secret.
var alwaysKept = []error{context.Canceled, context.DeadlineExceeded}

// Error returns "op: err" (err's message alone when op is empty) with URL
// userinfo and the secrets removed, on one line (servers put response bodies
// with newlines in errors, which would split a log line). The result does not
// unwrap to err; errors.Is matches context.Canceled, context.DeadlineExceeded
// and those of sentinels that err matched. Error(op, nil, ...) is nil.
func Error(op string, err error, secrets []string, sentinels ...error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if op != "" {
		msg = op + ": " + msg
	}
	r := &redactedError{msg: strings.Join(strings.Fields(Text(msg, secrets)), " ")}
	for _, s := range slices.Concat(alwaysKept, sentinels) {
		if errors.Is(err, s) {
			r.is = append(r.is, s)
		}
	}
	return r
}

// redactedError is a message without its chain; see Error.
type redactedError struct {
	msg string
	is  []error // sentinels the original matched
}

func (e *redactedError) Error() string { return e.msg }

func (e *redactedError) Is(target error) bool {
	for _, s := range e.is {
		if s == target { //nolint:errorlint // identity is what a sentinel match means
			return true
		}
	}
	return false
}
