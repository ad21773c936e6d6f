package gitsync

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// userinfoRE matches the userinfo part of any URL inside free text, so a URL
// that a library prints into an error loses its credentials.
var userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s"']+@`)

const redacted = "[REDACTED]"

// redactText strips URL userinfo and every known secret value from s.
func redactText(s string, secrets []string) string {
	s = userinfoRE.ReplaceAllString(s, "${1}")
	for _, sec := range secrets {
		// Very short secrets would blank out ordinary words; they are
		// still never printed by this package on purpose.
		if len(sec) < 4 {
			continue
		}
		s = strings.ReplaceAll(s, sec, redacted)
	}
	return s
}

// RedactURL returns u without its userinfo (user name and password), for
// printing. Input that does not parse as a URL is returned with any
// "scheme://user:pass@" prefix removed.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return redactText(u, nil)
	}
	p.User = nil
	return p.String()
}

// safeError carries a redacted message while keeping the original error in
// the chain, so errors.Is works for callers (context.Canceled, transport
// sentinels) but printing never shows a credential.
type safeError struct {
	msg string
	err error
}

func (e *safeError) Error() string { return e.msg }
func (e *safeError) Unwrap() error { return e.err }

// wrapErr returns "op: err" with secrets and URL userinfo removed.
func wrapErr(op string, err error, secrets []string) error {
	if err == nil {
		return nil
	}
	// One line per error: servers put response bodies with newlines in
	// them, which would split a log line.
	msg := redactText(op+": "+err.Error(), secrets)
	return &safeError{msg: strings.Join(strings.Fields(msg), " "), err: err}
}

// errorsIsAny reports whether err matches any of targets.
func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
