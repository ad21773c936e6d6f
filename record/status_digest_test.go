package record

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An approval pull request's record and a newer record on the watched
// branch, both made from the same base, must conflict when merged (git's
// own three-way merge), never mix line by line into a record neither side
// wrote. The digest line is what guarantees it.
func TestStatusRecordsConflictInsteadOfMixing(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	v := 99.5
	// The base: the release progresses at dark-launch.
	base := &Status{Release: "ns/catalog", SpecFile: "releases/catalog.yaml", Phase: PhaseProgressing,
		Since: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC), Stable: "v1", Candidate: "v2", Revision: "abc",
		Step: "dark-launch", StepIndex: 1, Gates: []GateValue{{Metric: "request-success-rate", Value: &v, Passed: true}}}
	// The branch: the advance to canary-10 (the step lines).
	branch := *base
	branch.Step, branch.StepIndex, branch.Weight = "canary-10", 2, 10
	// The watched branch meanwhile: the release waits on the pull request
	// (the phase line, and lines at the end), far from the step lines.
	main := *base
	main.Phase, main.Message = PhaseWaiting, "canary-10 waits for approval: merge pull request #1"
	main.PullRequest = &PullRequestRef{Number: 1, Branch: "sluice/ns/catalog/canary-10", Step: "canary-10"}

	dir := t.TempDir()
	write := func(name string, s *Status) string {
		data, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(strings.Split(string(data), "\n")[2], "# record ") {
			t.Fatalf("third line is not the record digest:\n%s", data)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ours, old, theirs := write("main.yaml", &main), write("base.yaml", base), write("branch.yaml", &branch)
	out, err := exec.Command("git", "merge-file", "-p", ours, old, theirs).CombinedOutput()
	if err == nil {
		t.Fatalf("the two records merged without a conflict:\n%s", out)
	}
	if !strings.Contains(string(out), "<<<<<<<") {
		t.Fatalf("git merge-file failed without a conflict: %v\n%s", err, out)
	}

	// The same record on both sides merges cleanly.
	same := write("same.yaml", &branch)
	if out, err := exec.Command("git", "merge-file", "-p", same, old, theirs).CombinedOutput(); err != nil {
		t.Fatalf("identical records conflict: %v\n%s", err, out)
	}
}
