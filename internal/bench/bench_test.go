package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice.dev/sluice/renderer"
	"sluice.dev/sluice/specs"
)

// TestGenerate writes a small repository and checks that every release in
// it is a valid spec whose steady step and candidate's first step render.
func TestGenerate(t *testing.T) {
	ctx := context.Background()
	spec := RepoSpec{Releases: 7, Namespaces: 3}
	bare := filepath.Join(t.TempDir(), "remote.git")
	if err := Generate(ctx, bare, spec); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(t.TempDir(), "work")
	if out, err := exec.Command("git", "clone", "-q", bare, work).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	root, err := os.OpenRoot(work)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	list := spec.List()
	if len(list) != 7 || list[4].Namespace != "bench-01" || list[4].Name != "app-00004" {
		t.Fatalf("List() = %v, want 7 releases, the fifth bench-01/app-00004", list)
	}
	for _, r := range list {
		for _, candidate := range []string{"", "v2"} {
			data := []byte(ReleaseSpec(r, candidate))
			if candidate == "" {
				var err error
				if data, err = os.ReadFile(filepath.Join(work, r.File)); err != nil {
					t.Fatal(err)
				}
			}
			rels, err := specs.Parse(r.File, data)
			if err != nil {
				t.Fatalf("%s (candidate %q): %v", r.File, candidate, err)
			}
			steps, err := specs.Plan(rels[0])
			if err != nil {
				t.Fatal(err)
			}
			out, err := renderer.Render(ctx, root.FS(), rels[0], steps[0])
			if err != nil {
				t.Fatalf("%s (candidate %q): render %s: %v", r.File, candidate, steps[0].Name, err)
			}
			if want := r.Name + "-v1"; out.Workloads["v1"] != want {
				t.Errorf("%s: v1 workload %q, want %q", r.ID(), out.Workloads["v1"], want)
			}
		}
	}
	n, err := CommitCount(ctx, bare)
	if err != nil || n != 1 {
		t.Fatalf("CommitCount = %d, %v; want 1", n, err)
	}
	head, err := Commit(ctx, bare, "a note", map[string][]byte{"NOTE.md": []byte("hello\n"), "README.md": nil})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := CommitCount(ctx, bare); n != 2 {
		t.Errorf("after Commit: %d commits, want 2", n)
	}
	out, err := exec.Command("git", "-C", bare, "ls-tree", "--name-only", head).CombinedOutput()
	if err != nil {
		t.Fatalf("git ls-tree: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); strings.Join(got, " ") != "NOTE.md apps releases" {
		t.Errorf("top of the tree after Commit = %v, want NOTE.md apps releases", got)
	}
}

// buildSluice builds the sluice binary into a new temporary directory and
// returns both.
func buildSluice(t *testing.T) (dir, bin string) {
	t.Helper()
	dir = t.TempDir()
	bin = filepath.Join(dir, "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/sluice").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir, bin
}

// TestRunSmall runs the whole harness on a few releases: the real sluice
// binary against a fresh test cluster. It checks the harness measures
// what it claims and that Sluice's no-change pass writes nothing.
func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a test cluster and builds sluice")
	}
	dir, bin := buildSluice(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	const n = 20
	res, err := Run(ctx, Config{RepoSpec: RepoSpec{Releases: n, Namespaces: 4}, Sluice: bin, Dir: filepath.Join(dir, "run"), Passes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Cold.WallMillis <= 0 || res.Cold.Commits < 1 || res.Cold.Commits > n {
		t.Errorf("cold start: %.0f ms, %d commits; want a time and 1 to %d commits", res.Cold.WallMillis, res.Cold.Commits, n)
	}
	if res.Cold.API.Writes < int64(n) {
		t.Errorf("cold start: %d API writes, want at least one per release", res.Cold.API.Writes)
	}
	if len(res.Steady) != 1 || len(res.Changed) != 1 {
		t.Fatalf("%d no-change passes and %d changed releases measured, want 1 each", len(res.Steady), len(res.Changed))
	}
	p := res.Steady[0]
	if p.API.Writes != 0 || p.GitPushes != 0 || p.GitFetches < 1 {
		t.Errorf("no-change pass: %d API writes, %d pushes, %d fetches; want no write, no push, a fetch", p.API.Writes, p.GitPushes, p.GitFetches)
	}
	if c := res.Changed[0]; c.GitPushes < 1 || c.API.Writes < 1 {
		t.Errorf("changed release: %d pushes, %d API writes; want its record pushed and its step applied", c.GitPushes, c.API.Writes)
	}
	if res.PeakRSSMiB <= 0 || res.Machine.CPUs <= 0 {
		t.Errorf("peak RSS %.0f MiB, %d CPUs; want both measured", res.PeakRSSMiB, res.Machine.CPUs)
	}
	if _, err := json.Marshal(res); err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	if err := WriteTable(&table, []*Result{res}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), fmt.Sprint(n)) {
		t.Errorf("table does not show the run:\n%s", table.String())
	}
	t.Logf("\n%s", table.String())
}

// TestRunShared runs the harness with three replicas on a few releases:
// one leads, the others stand by, and the leader is killed.
func TestRunShared(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a test cluster and builds sluice")
	}
	dir, bin := buildSluice(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	const n = 12
	res, err := Run(ctx, Config{RepoSpec: RepoSpec{Releases: n, Namespaces: 3}, Sluice: bin, Dir: filepath.Join(dir, "run"), Passes: 1,
		SluiceReplicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	sh := res.Shared
	if sh == nil || len(sh.PerReplica) != 3 {
		t.Fatalf("shared figures %+v, want three replicas'", sh)
	}
	leaders, killed := 0, 0
	for _, p := range sh.PerReplica {
		if p.LeaderAfterCold {
			leaders++
		}
		if p.Killed {
			killed++
			if !p.LeaderAfterCold {
				t.Errorf("%s killed, but it did not lead", p.Name)
			}
		}
		if p.PeakRSSMiB <= 0 {
			t.Errorf("%s: no peak RSS", p.Name)
		}
	}
	if leaders != 1 || killed != 1 {
		t.Errorf("%d leaders and %d killed, want one of each", leaders, killed)
	}
	tk := sh.Takeover
	if tk.Error != "" || tk.Applied != tk.Changed || tk.KilledReleases != tk.Changed || tk.KilledMillis < tk.LeasesTakenMillis || tk.LeasesTakenMillis <= 0 {
		t.Errorf("takeover %+v: want every changed release applied after the Lease was taken", tk)
	}
	if h := sh.History; h.Releases != n || h.CommittedTwice != 0 {
		t.Errorf("history %+v: want every release recorded, none twice", h)
	}
	var table strings.Builder
	if err := WriteShared(&table, []*Result{res}); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
}

// BenchmarkGenerate writes a repository of 1,000 releases.
func BenchmarkGenerate(b *testing.B) {
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		if err := Generate(ctx, filepath.Join(b.TempDir(), fmt.Sprint(i)), RepoSpec{Releases: 1000}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCheckLog counts a transition committed twice in a row for one
// release, in single and batched commits alike, and nothing else.
func TestCheckLog(t *testing.T) {
	entry := func(hash, msg string) string { return hash + "\x00" + msg + "\n\x1e\n" }
	log := entry("a1", "1000 benchmark releases") +
		entry("b2", "sluice: 2 releases (2 steady)\n\n- a steady\n- b steady\n\n"+
			"Sluice-Release: ns/a\nSluice-Action: steady\nSluice-Step: stable\nSluice-Revision: v1\nSluice-Subject: a steady\n"+
			"Sluice-Release: ns/b\nSluice-Action: steady\nSluice-Step: stable\nSluice-Revision: v1\nSluice-Subject: b steady") +
		entry("c3", "README: note 0") +
		entry("d4", "b steady\n\nSluice-Release: ns/b\nSluice-Action: steady\nSluice-Step: stable\nSluice-Revision: v1") +
		entry("e5", "a starts v2\n\nSluice-Release: ns/a\nSluice-Action: start\nSluice-Step: deploy\nSluice-Revision: v2") +
		entry("f6", "a steady\n\nSluice-Release: ns/a\nSluice-Action: steady\nSluice-Step: stable\nSluice-Revision: v1")
	h, err := checkLog(log)
	if err != nil {
		t.Fatal(err)
	}
	if h.Commits != 6 || h.Transitions != 5 || h.Releases != 2 || h.CommittedTwice != 1 {
		t.Fatalf("checkLog = %+v; want 6 commits, 5 transitions of 2 releases, 1 committed twice", h)
	}
	if len(h.Examples) != 1 || !strings.HasPrefix(h.Examples[0], "ns/b: steady stable v1 in b2") {
		t.Errorf("examples %q, want ns/b's steady in b2 and d4", h.Examples)
	}
}

// TestCheckHistory reads the trailers of a real repository's history.
func TestCheckHistory(t *testing.T) {
	ctx := context.Background()
	bare := filepath.Join(t.TempDir(), "remote.git")
	if err := Generate(ctx, bare, RepoSpec{Releases: 2}); err != nil {
		t.Fatal(err)
	}
	for i, msg := range []string{
		"a steady\n\nSluice-Release: bench-00/app-00000\nSluice-Action: steady\nSluice-Step: stable\nSluice-Revision: v1",
		"a steady\n\nSluice-Release: bench-00/app-00000\nSluice-Action: steady\nSluice-Step: stable\nSluice-Revision: v1",
	} {
		if _, err := Commit(ctx, bare, msg, map[string][]byte{"NOTE.md": fmt.Appendf(nil, "%d\n", i)}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := CheckHistory(ctx, bare)
	if err != nil {
		t.Fatal(err)
	}
	if h.Commits != 3 || h.Transitions != 2 || h.Releases != 1 || h.CommittedTwice != 1 {
		t.Errorf("CheckHistory = %+v; want 3 commits, 2 transitions of 1 release, 1 committed twice", h)
	}
}
