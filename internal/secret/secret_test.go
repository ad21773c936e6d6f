package secret_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sluice.dev/sluice/internal/secret"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if got, err := secret.ReadFile("token", write("ok", "  tok-123\r\n")); err != nil || got != "tok-123" {
		t.Errorf("ReadFile = %q, %v; want tok-123", got, err)
	}
	for _, tc := range []struct {
		path, want string
	}{
		{filepath.Join(dir, "missing"), "read token file " + filepath.Join(dir, "missing") + ": "},
		{write("empty", " \n"), "is empty"},
		{write("two", "tok-123\nX-Injected: yes\n"), "holds more than one line"},
	} {
		_, err := secret.ReadFile("token", tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadFile(%s) = %v, want an error with %q", tc.path, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "tok-123") {
			t.Errorf("error shows the content: %v", err)
		}
	}
	if _, err := secret.ReadFile("token", filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

var errSentinel = errors.New("sentinel")

// leaky is a library error that holds a credential beyond its message.
type leaky struct{ header string }

func (e *leaky) Error() string { return "request refused" }

func TestErrorDropsTheChain(t *testing.T) {
	const tok = "tok_abcdef123456"
	inner := &leaky{header: "Bearer " + tok}
	err := secret.Error("get pull request", fmt.Errorf("https://bot:%s@git.example.com said\n%s is wrong: %w: %w",
		tok, tok, inner, errSentinel), []string{tok}, errSentinel)
	msg := err.Error()
	if strings.Contains(msg, tok) || strings.Contains(msg, "bot:") || strings.Contains(msg, "\n") {
		t.Errorf("message %q leaks or spans lines", msg)
	}
	if !strings.HasPrefix(msg, "get pull request: https://git.example.com said "+secret.Redacted) {
		t.Errorf("message %q lost its context", msg)
	}
	var l *leaky
	if errors.As(err, &l) || errors.Unwrap(err) != nil {
		t.Error("the redacted error unwraps to the secret-bearing one")
	}
	if !errors.Is(err, errSentinel) {
		t.Error("the named sentinel no longer matches")
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, fs.ErrNotExist) {
		t.Error("matches a sentinel the original did not")
	}
	if !errors.Is(secret.Error("", fmt.Errorf("x: %w", context.DeadlineExceeded), nil), context.DeadlineExceeded) {
		t.Error("context.DeadlineExceeded is always kept")
	}
	if secret.Error("x", nil, nil) != nil {
		t.Error("Error(nil) != nil")
	}
}

func TestTextAndURL(t *testing.T) {
	if got := secret.Text("a branch", []string{"a"}); got != "a branch" {
		t.Errorf("a one-letter secret blanked text: %q", got)
	}
	for in, want := range map[string]string{
		"https://me:hunter2@git.example.com/r.git": "https://git.example.com/r.git",
		"https://git.example.com/r.git":            "https://git.example.com/r.git",
		"ht tp://me:hunter2@host/%zz":              "ht tp://host/%zz",
	} {
		if got := secret.URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}
