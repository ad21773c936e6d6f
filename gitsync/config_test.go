package gitsync_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"sluice.dev/sluice/gitsync"
)

func TestOpenRejectsBadConfig(t *testing.T) {
	ok := gitsync.Config{URL: "https://git.example.com/org/releases.git", Author: sluiceSig}
	tests := []struct {
		name   string
		mutate func(*gitsync.Config)
		want   string
		secret string // must not appear in the error
	}{
		{"empty URL", func(c *gitsync.Config) { c.URL = "" }, "remote URL is empty", ""},
		{"password in URL", func(c *gitsync.Config) { c.URL = "https://bot:s3cr3t-t0ken@git.example.com/r.git" }, "embeds a password", "s3cr3t-t0ken"},
		{"password in ssh URL", func(c *gitsync.Config) { c.URL = "ssh://git:hunter22@git.example.com/r.git" }, "embeds a password", "hunter22"},
		{"unsupported scheme", func(c *gitsync.Config) { c.URL = "ftp://git.example.com/r.git" }, `unsupported scheme "ftp"`, ""},
		{"full ref as branch", func(c *gitsync.Config) { c.Branch = "refs/heads/main" }, "without refs/", ""},
		{"invalid branch", func(c *gitsync.Config) { c.Branch = "bad..name" }, "not a valid git branch name", ""},
		{"invalid push branch", func(c *gitsync.Config) { c.PushBranch = "has space" }, "not a valid git branch name", ""},
		{"no author", func(c *gitsync.Config) { c.Author = gitsync.Signature{} }, "Author needs a name and an e-mail", ""},
		{"half committer", func(c *gitsync.Config) { c.Committer = gitsync.Signature{Name: "x"} }, "Committer needs", ""},
		{"negative depth", func(c *gitsync.Config) { c.Depth = -5 }, "depth -5", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mutate(&cfg)
			_, err := gitsync.Open(context.Background(), cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open err = %v, want it to mention %q", err, tc.want)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
	if _, err := gitsync.Open(context.Background(), ok, nil); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

func TestOpenURLForms(t *testing.T) {
	tests := []struct {
		url, display string
	}{
		{"https://git.example.com/org/r.git", "https://git.example.com/org/r.git"},
		{"https://bot@git.example.com/org/r.git", "https://git.example.com/org/r.git"},
		{"ssh://git@git.example.com:2222/org/r.git", "ssh://git.example.com:2222/org/r.git"},
		{"git@git.example.com:org/r.git", "ssh://git.example.com/org/r.git"},
		{"/srv/git/r.git", "file:///srv/git/r.git"},
		{"file:///srv/git/r.git", "file:///srv/git/r.git"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			r, err := gitsync.Open(context.Background(), gitsync.Config{URL: tc.url, Author: sluiceSig}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.URL() != tc.display {
				t.Errorf("URL() = %q, want %q", r.URL(), tc.display)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://user:pass@host/x.git", "https://host/x.git"},
		{"https://host/x.git", "https://host/x.git"},
		{"ssh://git@host:22/x", "ssh://host:22/x"},
		{"%%not a url https://a:b@h/p", "%%not a url https://h/p"},
	}
	for _, tc := range tests {
		if got := gitsync.RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestOpenHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := gitsync.Open(ctx, gitsync.Config{URL: "https://h/r.git", Author: sluiceSig}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with a cancelled context: %v", err)
	}
}
