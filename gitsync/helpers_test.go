package gitsync_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/internal/gitserver"
)

// seedFiles is a small release repository: a spec and the sources it
// renders, in the shape of the catalog example.
var seedFiles = map[string]string{
	"releases/catalog.yaml":           "apiVersion: sluice.dev/v1alpha1\nkind: Release\nmetadata:\n  name: catalog\n  namespace: istioinaction\n  owner: team-a\nspec:\n  source: apps/catalog\n  steps: [10, 20, 50, 100]\n  version: v1\n",
	"apps/catalog/kustomization.yaml": "resources:\n- deployment.yaml\n- service.yaml\n",
	"apps/catalog/deployment.yaml":    "kind: Deployment\nmetadata:\n  name: catalog\n",
	"apps/catalog/service.yaml":       "kind: Service\nmetadata:\n  name: catalog\n",
	"README.md":                       "release repo\n",
}

var sluiceSig = gitsync.Signature{Name: "Sluice", Email: "sluice@sluice.dev"}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// logBuffer collects every log line so tests can check them for secrets.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger(buf *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openRepo opens a Repo with test defaults; fill only what a test cares
// about in cfg.
func openRepo(t testing.TB, cfg gitsync.Config) (*gitsync.Repo, *logBuffer) {
	t.Helper()
	if cfg.Branch == "" {
		cfg.Branch = "main"
	}
	if cfg.Author == (gitsync.Signature{}) {
		cfg.Author = sluiceSig
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = 5 * time.Millisecond
	}
	logs := &logBuffer{}
	r, err := gitsync.Open(testCtx(t), cfg, newLogger(logs))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gitsync log:\n%s", logs.String())
		}
	})
	return r, logs
}

// newRemote creates a bare repository seeded with seedFiles.
func newRemote(t testing.TB) string {
	t.Helper()
	return gitserver.NewBare(t, t.TempDir(), "releases", "main", seedFiles)
}

func fileURL(bare string) string { return "file://" + bare }

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
