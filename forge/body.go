package forge

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Summary is where a release stands, for a pull request's body.
type Summary struct {
	Release   string // namespace/name
	Stable    string
	Candidate string
	// Step is the step merging the pull request approves.
	Step  string
	Steps []StepLine
	Gates []GateLine
	// CheckedAt is when the gates were last evaluated; zero when never.
	CheckedAt time.Time
	// FailedChecks and Threshold: how close the release is to a rollback.
	FailedChecks, Threshold int
	// Note is a line added under the title, e.g. why the pull request closed.
	Note string
}

// StepLine is one step of the release's plan.
type StepLine struct {
	Name   string
	Weight int32 // percent of traffic on the candidate
	// Done: the release went past it; Current: the cluster holds it now.
	Done, Current bool
}

// GateLine is one gate's latest value against its thresholds.
type GateLine struct {
	Metric   string
	Value    *float64 // nil: no data
	Min, Max *float64
	Passed   bool
}

// Marker is in every body Sluice writes, so a person can tell (and a tool
// can find) Sluice's pull requests.
const Marker = "<!-- sluice:approval -->"

// PullRequestBody renders s as Markdown: the steps done and to come with
// their weights, and a table of every gate against its thresholds.
func PullRequestBody(s Summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", Marker)
	fmt.Fprintf(&b, "Merge this pull request to approve **%s** of release `%s` (%s -> %s). Close it to stop the release: Sluice rolls it back.\n\n",
		s.Step, s.Release, s.Stable, s.Candidate)
	if s.Note != "" {
		fmt.Fprintf(&b, "> %s\n\n", s.Note)
	}
	b.WriteString("### Steps\n\n| | step | candidate traffic |\n| --- | --- | --- |\n")
	for _, st := range s.Steps {
		mark := "to come"
		switch {
		case st.Current:
			mark = "**now**"
		case st.Done:
			mark = "done"
		case st.Name == s.Step:
			mark = "**this approval**"
		}
		fmt.Fprintf(&b, "| %s | %s | %d%% |\n", mark, st.Name, st.Weight)
	}
	b.WriteString("\n### Gates\n\n")
	if len(s.Gates) == 0 {
		b.WriteString("No metric gates: the step holds on availability alone.\n")
	} else {
		b.WriteString("| metric | value | threshold | result |\n| --- | --- | --- | --- |\n")
		for _, g := range s.Gates {
			val, res := "no data", "no data"
			if g.Value != nil {
				val = num(*g.Value)
				res = "fail"
				if g.Passed {
					res = "pass"
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g.Metric, val, threshold(g.Min, g.Max), res)
		}
	}
	if !s.CheckedAt.IsZero() {
		fmt.Fprintf(&b, "\nLast checked %s", s.CheckedAt.UTC().Format(time.RFC3339))
		if s.Threshold > 0 {
			fmt.Fprintf(&b, "; %d/%d failed checks", s.FailedChecks, s.Threshold)
		}
		b.WriteString(".\n")
	}
	return b.String()
}

func threshold(lo, hi *float64) string {
	switch {
	case lo != nil && hi != nil:
		return num(*lo) + " to " + num(*hi)
	case lo != nil:
		return ">= " + num(*lo)
	case hi != nil:
		return "<= " + num(*hi)
	}
	return "-"
}

// num prints a value the way people write it, to three decimals at most:
// 99.5, 100, 212.346.
func num(v float64) string {
	return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
}
