package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/record"
)

// gitWork is a local clone whose main branch holds release specs and
// status files, committed with the git command as a person would.
type gitWork struct {
	t   *testing.T
	dir string
	env []string
	n   int
}

func newGitWork(t *testing.T) *gitWork {
	t.Helper()
	home := t.TempDir()
	w := &gitWork{t: t, dir: filepath.Join(home, "releases"),
		env: append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=Sluice", "GIT_AUTHOR_EMAIL=sluice@localhost",
			"GIT_COMMITTER_NAME=Sluice", "GIT_COMMITTER_EMAIL=sluice@localhost")}
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w.git("init", "-q", "--initial-branch=main")
	for name, f := range statusSpecs(t) {
		w.write(name, f.Data)
	}
	return w
}

func (w *gitWork) git(args ...string) {
	w.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = w.dir
	// Fixed dates: the same commits, the same hashes, at every run.
	when := time.Date(2026, 11, 25, 10, w.n, 0, 0, time.UTC).Format(time.RFC3339)
	cmd.Env = append(w.env, "GIT_AUTHOR_DATE="+when, "GIT_COMMITTER_DATE="+when)
	if out, err := cmd.CombinedOutput(); err != nil {
		w.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func (w *gitWork) write(name string, data []byte) {
	w.t.Helper()
	p := filepath.Join(w.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// record commits st as Sluice records a transition.
func (w *gitWork) record(st *record.Status, action record.Action, subject string) {
	w.t.Helper()
	data, err := st.Marshal()
	if err != nil {
		w.t.Fatal(err)
	}
	ns, name, _ := strings.Cut(st.Release, "/")
	w.write(record.StatusPath(record.DefaultStatusDir, ns, name), data)
	w.n++
	w.git("add", "-A")
	w.git("commit", "-q", "-m", subject, "-m", fmt.Sprintf("%s: %s\n%s: %s\n%s: %s",
		record.TrailerRelease, st.Release, record.TrailerAction, action, record.TrailerStep, st.Step))
}

// waitingCatalog is the catalog after its dark launch passed, waiting for
// the canary's approval; approvedCatalog the same at canary-10 once
// approved.
func waitingCatalog() *record.Status { return statusFixtures()[0] }

func approvedCatalog() *record.Status {
	st := statusFixtures()[0]
	st.Phase, st.Step, st.StepIndex, st.Weight, st.Message = record.PhaseProgressing, "canary-10", 2, 10, ""
	st.Since = st.Since.Add(2 * time.Minute)
	return st
}

// TestStatusCommand reads a local clone: the table, one release in detail,
// and -o json and -o yaml with the same fields.
func TestStatusCommand(t *testing.T) {
	ctx := t.Context()
	w := newGitWork(t)
	w.record(statusFixtures()[0], record.ActionWait, "catalog: dark-launch passed; canary-10 waits for approval")
	w.record(statusFixtures()[4], record.ActionRollback, "web: rolled back at 20% (success-rate 80 < 99, 5/5 checks failed)")

	out, _, err := sluice(ctx, "status", w.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dark: x-istio-cohort=internal", "approval needed for canary-10: sluice approve istioinaction/catalog", "rolled back at canary-20: success-rate 80 < 99"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out, _, err = sluice(ctx, "status", "catalog", w.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"  >  1  dark-launch", "request-success-rate  99.9   >= 99      pass", "wait    dark-launch  catalog: dark-launch passed"} {
		if !strings.Contains(out, want) {
			t.Errorf("status catalog lacks %q:\n%s", want, out)
		}
	}
	var fromJSON, fromYAML map[string]any
	out, _, err = sluice(ctx, "status", "istioinaction/catalog", w.dir, "-o", "json")
	if err != nil || json.Unmarshal([]byte(out), &fromJSON) != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	out, _, err = sluice(ctx, "status", "istioinaction/catalog", w.dir, "-o", "yaml")
	if err != nil || yaml.Unmarshal([]byte(out), &fromYAML) != nil {
		t.Fatalf("-o yaml: %v\n%s", err, out)
	}
	if fmt.Sprint(fromJSON) != fmt.Sprint(fromYAML) {
		t.Errorf("-o json and -o yaml differ:\n%v\n%v", fromJSON, fromYAML)
	}
	for _, k := range []string{"reason", "traffic", "plan", "transitions", "gates", "threshold"} {
		if _, ok := fromJSON[k]; !ok {
			t.Errorf("-o json lacks %q", k)
		}
	}
	if _, _, err := sluice(ctx, "status", "nope", w.dir); err == nil || !strings.Contains(err.Error(), `no release "nope"`) {
		t.Errorf("unknown release: %v", err)
	}
	if _, _, err := sluice(ctx, "status", w.dir, "-o", "xml"); err == nil {
		t.Error("-o xml accepted")
	}
}

// syncBuffer is a bytes.Buffer safe to read while the command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStatusWatchAppends: --watch into a pipe prints the status once, then
// again at each commit, and ends on Ctrl-C (the context) without an error:
// as a table under a line naming the commit, or as a stream of JSON
// documents.
func TestStatusWatchAppends(t *testing.T) {
	for _, tc := range []struct {
		output  string
		release string
		frames  func(string) int
		check   func(t *testing.T, first, second string)
	}{
		{"table", "", func(s string) int { return strings.Count(s, "RELEASE ") }, func(t *testing.T, first, second string) {
			if !strings.Contains(first, "approval needed for canary-10") || !strings.HasPrefix(first, "file://") {
				t.Errorf("the first status:\n%s", first)
			}
			if strings.Contains(second, "Waiting") || !strings.Contains(second, "Progressing") || !strings.Contains(second, "canary-10  10%") ||
				!strings.HasPrefix(second, "\nfile://") || !strings.Contains(second, " at main, ") {
				t.Errorf("the second status:\n%s", second)
			}
		}},
		{"detail", "catalog", func(s string) int { return strings.Count(s, "Release: ") }, func(t *testing.T, first, second string) {
			if !strings.Contains(first, "  >  1  dark-launch") || !strings.Contains(second, "  >  2  canary-10") ||
				!strings.Contains(second, "advance  canary-10    catalog: dark-launch -> 10%") {
				t.Errorf("the release before and after the commit:\n%s\n%s", first, second)
			}
		}},
		{"json", "", func(s string) int { return strings.Count(s, "\n]\n") }, func(t *testing.T, first, second string) {
			dec := json.NewDecoder(strings.NewReader(first + second))
			var phases []string
			for dec.More() {
				var list []map[string]any
				if err := dec.Decode(&list); err != nil {
					t.Fatalf("not a stream of JSON documents: %v\n%s", err, first+second)
				}
				phases = append(phases, fmt.Sprint(list[0]["phase"]))
			}
			if strings.Join(phases, " ") != "Waiting Progressing" {
				t.Errorf("phases %v, want Waiting then Progressing", phases)
			}
		}},
	} {
		t.Run(tc.output, func(t *testing.T) {
			w := newGitWork(t)
			w.record(waitingCatalog(), record.ActionWait, "catalog: dark-launch passed; canary-10 waits for approval")
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var out syncBuffer
			done := make(chan error, 1)
			go func() {
				cmd := newRootCommand()
				output := tc.output
				if tc.release != "" {
					output = "table"
				}
				cmd.SetArgs(append([]string{"status", "--watch", "--interval", "100ms", "-o", output}, strings.Fields(tc.release+" "+w.dir)...))
				cmd.SetOut(&out)
				cmd.SetErr(&out)
				done <- cmd.ExecuteContext(ctx)
			}()
			waitFor(t, "the first status", func() bool { return tc.frames(out.String()) == 1 })
			first := out.String()
			w.record(approvedCatalog(), record.ActionAdvance, "catalog: dark-launch -> 10% (success-rate 99.9 >= 99)")
			waitFor(t, "the status of the new commit", func() bool { return tc.frames(out.String()) == 2 })
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("--watch ended with %v", err)
			}
			got := out.String()
			if !strings.HasPrefix(got, first) {
				t.Fatalf("the first status was not kept (appended, not redrawn):\n%s", got)
			}
			tc.check(t, first, strings.TrimPrefix(got, first))
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStatusWatchTerminal runs `sluice status --watch` in a real terminal
// (tmux): it draws the status, redraws it in place when a commit lands,
// and ends on Ctrl-C with exit status 0.
func TestStatusWatchTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the --watch terminal test runs sluice in tmux; run it without -short")
	}
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed (.ci/run installs it): the --watch terminal test needs it")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w := newGitWork(t)
	w.record(waitingCatalog(), record.ActionWait, "catalog: dark-launch passed; canary-10 waits for approval")
	w.record(statusFixtures()[4], record.ActionRollback, "web: rolled back at 20% (success-rate 80 < 99, 5/5 checks failed)")

	sock := filepath.Join(t.TempDir(), "tmux")
	tmux := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("tmux", append([]string{"-S", sock}, args...)...)
		cmd.Env = append(os.Environ(), "TERM=xterm-256color")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	// The shell stays after sluice ends, to show its exit status.
	script := fmt.Sprintf("trap : INT; %s=1 %q status --watch --interval 200ms %q; echo \"exit status $?\"; sleep 600", runMainEnv, self, w.dir)
	tmux("new-session", "-d", "-s", "watch", "-x", "320", "-y", "24", "sh", "-c", script)
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", sock, "kill-server").Run() })
	pane := func() string { return tmux("capture-pane", "-p", "-t", "watch") }

	var first string
	waitFor(t, "the status on the terminal", func() bool {
		first = pane()
		return strings.Contains(first, "dark: x-istio-cohort=internal") && strings.Contains(first, "approval needed for canary-10") && strings.Contains(first, "shop/web")
	})
	t.Logf("the terminal:\n%s", first)
	w.record(approvedCatalog(), record.ActionAdvance, "catalog: dark-launch -> 10% (success-rate 99.9 >= 99)")
	var last string
	waitFor(t, "the redraw after the commit", func() bool {
		last = pane()
		return strings.Contains(last, "Progressing") && !strings.Contains(last, "Waiting")
	})
	t.Logf("the terminal after the commit:\n%s", last)
	if n := strings.Count(last, "RELEASE "); n != 1 {
		t.Errorf("the status was not redrawn in place (%d headers):\n%s", n, last)
	}
	for _, want := range []string{"at main, ", "istioinaction/catalog  Progressing  v1 -> v2  canary-10", "shop/web"} {
		if !strings.Contains(last, want) {
			t.Errorf("the terminal lacks %q:\n%s", want, last)
		}
	}
	tmux("send-keys", "-t", "watch", "C-c")
	waitFor(t, "sluice to end on Ctrl-C", func() bool { return strings.Contains(pane(), "exit status 0") })
}
