package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// TestRunEnv: every flag of `sluice run` reads SLUICE_<FLAG> when it is
// not on the command line.
func TestRunEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		check   func(*testing.T, *runFlags)
		wantErr string
	}{
		{
			name: "env sets flags",
			env: map[string]string{
				"SLUICE_GIT_URL": "https://git.example.com/r.git", "SLUICE_GIT_BRANCH": "release",
				"SLUICE_INTERVAL": "5s", "SLUICE_ALLOWED_NAMESPACES": "shop,istioinaction", "SLUICE_PATH": "releases,more",
				"SLUICE_PROMETHEUS_URL": "http://prometheus:9090", "SLUICE_LEADER_ELECT": "true",
				"SLUICE_LEADER_ELECTION_LEASE_DURATION": "30s", "SLUICE_WEBHOOK_SECRET_FILE": "/etc/sluice/webhook/secret",
				"SLUICE_GIT_PASSWORD_FILE": "/etc/sluice/git/password", "SLUICE_WORKERS": "8",
			},
			check: func(t *testing.T, fl *runFlags) {
				got := []any{fl.git.url, fl.git.branch, fl.interval, strings.Join(fl.namespaces, "|"), strings.Join(fl.paths, "|"),
					fl.promURL, fl.leaderElect, fl.leaseDuration, fl.webhookSecretFile, fl.git.auth.PasswordFile, fl.workers}
				want := []any{"https://git.example.com/r.git", "release", 5 * time.Second, "shop|istioinaction", "releases|more",
					"http://prometheus:9090", true, 30 * time.Second, "/etc/sluice/webhook/secret", "/etc/sluice/git/password", 8}
				for i := range want {
					if got[i] != want[i] {
						t.Errorf("value %d = %v, want %v", i, got[i], want[i])
					}
				}
			},
		},
		{
			name: "command line wins",
			env:  map[string]string{"SLUICE_INTERVAL": "5s", "SLUICE_ALLOWED_NAMESPACES": "shop"},
			args: []string{"--interval", "7s", "--allowed-namespaces", "a", "--allowed-namespaces", "b"},
			check: func(t *testing.T, fl *runFlags) {
				if fl.interval != 7*time.Second || strings.Join(fl.namespaces, ",") != "a,b" {
					t.Errorf("interval %s, namespaces %v", fl.interval, fl.namespaces)
				}
			},
		},
		{
			name: "defaults without env",
			check: func(t *testing.T, fl *runFlags) {
				if fl.interval != time.Minute || fl.listen != ":8080" || fl.leaseID != "sluice" || len(fl.namespaces) != 0 {
					t.Errorf("defaults: %+v", fl)
				}
			},
		},
		{
			name:    "bad value names the variable",
			env:     map[string]string{"SLUICE_INTERVAL": "soon", "SLUICE_WORKERS": "many"},
			wantErr: "environment variable SLUICE_INTERVAL (--interval)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBERNETES_SERVICE_HOST", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fl := &runFlags{}
			cmd := runCommand(fl, func(*cobra.Command, *runFlags) error { return nil })
			cmd.SetArgs(tc.args)
			err := cmd.ExecuteContext(t.Context())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "SLUICE_WORKERS") {
					t.Fatalf("err = %v, want %q and SLUICE_WORKERS", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, fl)
		})
	}
}

func TestRunHelpNamesEnv(t *testing.T) {
	cmd := newRunCommand()
	var missing []string
	for _, name := range []string{"git-url", "git-branch", "path", "interval", "prometheus-url", "allowed-namespaces", "webhook-secret-file", "leader-elect"} {
		f := cmd.Flags().Lookup(name)
		if f == nil || !strings.Contains(f.Usage, "(env "+envName(name)+")") {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Errorf("flags whose help does not name their variable: %v", missing)
	}
}

// TestShardsFlag: --shards must be at least 1, and above 1 needs
// --leader-elect; both are refused before anything starts.
func TestShardsFlag(t *testing.T) {
	tests := []struct {
		name        string
		shards      int
		leaderElect bool
		wantErr     string
	}{
		{"zero", 0, true, "--shards 0: want at least 1"},
		{"negative", -2, true, "--shards -2: want at least 1"},
		{"without leader election", 6, false, "--shards 6 needs --leader-elect"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fl := &runFlags{git: gitFlags{url: "file:///nonexistent"}, shards: tc.shards, leaderElect: tc.leaderElect, logFormat: "text", logLevel: "info"}
			err := runController(t.Context(), io.Discard, fl)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestRelayTargets: a sync request is passed on to the leader when
// another replica leads, and with shards to every other holder.
func TestRelayTargets(t *testing.T) {
	tests := []struct {
		name   string
		cur    string
		others []string
		want   []string
	}{
		{name: "no leader yet"},
		{name: "this replica leads", cur: "self"},
		{name: "another leads", cur: "a@10.0.0.1:8080", want: []string{"a@10.0.0.1:8080"}},
		{name: "shards: every other holder", cur: "ignored", others: []string{"a@10.0.0.1:8080", "b@10.0.0.2:8080"},
			want: []string{"a@10.0.0.1:8080", "b@10.0.0.2:8080"}},
		{name: "shards: no other holder", others: []string{}, want: []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lt := &leaderTracker{self: "self"}
			if tc.others != nil {
				lt.others = func() []string { return tc.others }
			}
			lt.set(tc.cur)
			if got := lt.targets(); !slices.Equal(got, tc.want) {
				t.Errorf("targets = %v, want %v", got, tc.want)
			}
		})
	}
}
