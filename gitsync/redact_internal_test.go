package gitsync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestWrapErrRedacts(t *testing.T) {
	const secret = "tok_abcdef123456"
	inner := fmt.Errorf("dial https://bot:%s@git.example.com/r.git: %w", secret, context.DeadlineExceeded)
	err := wrapErr("fetch main", fmt.Errorf("server said\n%s was wrong: %w", secret, inner), []string{secret})
	msg := err.Error()
	if strings.Contains(msg, secret) || strings.Contains(msg, "bot:") {
		t.Fatalf("secret leaked: %s", msg)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message spans lines: %q", msg)
	}
	if !strings.Contains(msg, redacted) || !strings.Contains(msg, "https://git.example.com/r.git") {
		t.Errorf("message lost its context: %s", msg)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Error("wrapping broke errors.Is")
	}
	if wrapErr("x", nil, nil) != nil {
		t.Error("wrapErr(nil) != nil")
	}
}

func TestRedactTextSkipsTinySecrets(t *testing.T) {
	// A one-letter "secret" must not blank out ordinary text.
	if got := redactText("a branch", []string{"a"}); got != "a branch" {
		t.Errorf("redactText = %q", got)
	}
}

func TestBackoffBounds(t *testing.T) {
	const base = 10 * time.Millisecond
	for attempt := 1; attempt <= 20; attempt++ {
		hi := min(base<<min(attempt-1, 10), 30*base)
		for range 50 {
			if d := backoff(base, attempt); d < hi/2 || d > hi {
				t.Fatalf("backoff(%v, %d) = %v, want within [%v, %v]", base, attempt, d, hi/2, hi)
			}
		}
	}
}
