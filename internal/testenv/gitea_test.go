package testenv_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/internal/testenv"
)

func TestGiteaMissingBinary(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	_, err := testenv.StartGitea(context.Background(), t.TempDir())
	if err == nil {
		t.Fatal("StartGitea succeeded without a binary")
	}
	if msg := err.Error(); !strings.Contains(msg, "run hack/testenv-tools.sh") || strings.Contains(msg, "\n") {
		t.Errorf("error = %q, want one line that says to run hack/testenv-tools.sh", msg)
	}
}

func TestGiteaStartStop(t *testing.T) {
	testenv.SkipIfShort(t, "Gitea")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := testenv.StartGitea(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := c.ServerVersion()
	if err != nil || v != strings.TrimPrefix(testenv.GiteaVersion, "v") {
		t.Errorf("server version = %q, %v; want %s", v, err, testenv.GiteaVersion)
	}
	me, _, err := c.GetMyUserInfo()
	if err != nil || me.UserName != testenv.GiteaAdmin || !me.IsAdmin {
		t.Errorf("token belongs to %+v, %v; want the admin %s", me, err, testenv.GiteaAdmin)
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ServerVersion(); err == nil {
		t.Error("API still answers after Stop")
	}
}

// BenchmarkGiteaStart measures a fresh Gitea to a working API: app.ini,
// migrate, admin user and token, web up.
func BenchmarkGiteaStart(b *testing.B) {
	testenv.SkipIfShort(b, "Gitea")
	ctx := context.Background()
	for b.Loop() {
		g, err := testenv.StartGitea(ctx, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := g.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
