package gitsync

import (
	"errors"

	"github.com/go-git/go-git/v5/plumbing/transport"

	"sluice.dev/sluice/internal/secret"
)

const redacted = secret.Redacted

// redactText strips URL userinfo and every known secret value from s.
func redactText(s string, secrets []string) string { return secret.Text(s, secrets) }

// RedactURL returns u without its userinfo (user name and password), for
// printing. Input that does not parse as a URL is returned with any
// "scheme://user:pass@" prefix removed.
func RedactURL(u string) string { return secret.URL(u) }

// sentinels are the errors callers tell apart with errors.Is after a Git
// operation failed; a redacted error keeps matching them (see secret.Error).
var sentinels = []error{
	ErrUnknownHostKey, ErrHostKeyMismatch,
	transport.ErrAuthenticationRequired, transport.ErrAuthorizationFailed,
	transport.ErrRepositoryNotFound, transport.ErrEmptyRemoteRepository,
}

// wrapErr returns "op: err" with secrets and URL userinfo removed, by the
// policy forge and gates share: the result does not unwrap to err, whose
// chain may hold a credential, but still matches context errors and
// sentinels with errors.Is.
func wrapErr(op string, err error, secrets []string) error {
	return secret.Error(op, err, secrets, sentinels...)
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
