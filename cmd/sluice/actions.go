package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

const actionLong = `

The action is an edit of the release spec, committed as you (--author, else
your Git identity) to the watched branch, or proposed in a pull request with
--pull-request; Sluice reacts to it at its next sync. --dry-run prints the
commit instead. RELEASE is namespace/name, or a name only one namespace has.
The repository is --git-url, else the origin of the clone in --repo (default
the current directory).`

func newApproveCommand() *cobra.Command {
	var step string
	return actionCommand("approve RELEASE", "Approve the step a release waits for",
		`Approve adds {stage, candidate, by} to spec.approvals: the step that waits
for a person's approval (manual or by pull request) goes on. --step approves
the stage of another step ahead of time.`+actionLong,
		`  sluice approve istioinaction/catalog
  sluice approve catalog --step canary-10 --dry-run`,
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&step, "step", "", "the step whose stage to approve (default: the step the release waits for)")
		},
		func(t *target, who string) (*request, error) {
			rel, st := t.rel, t.status
			if rel.Spec.Candidate == "" {
				return nil, errors.New("no candidate to approve: spec.candidate is empty")
			}
			waiting := st != nil && st.Phase == record.PhaseWaiting && st.Candidate == rel.Spec.Candidate
			var s *specs.Step
			switch {
			case step != "":
				for i := range t.plan {
					if t.plan[i].Name == step {
						s = &t.plan[i]
					}
				}
				if s == nil {
					return nil, fmt.Errorf("no step %q in the plan (sluice plan lists them)", step)
				}
			case waiting && st.StepIndex+1 < len(t.plan):
				s = &t.plan[st.StepIndex+1]
			default:
				at := 0
				if st != nil && st.Candidate == rel.Spec.Candidate {
					at = st.StepIndex
				}
				for i := at; i < len(t.plan); i++ {
					if t.plan[i].Approval != "" && !rel.Approved(t.plan[i].Stage) {
						s = &t.plan[i]
						break
					}
				}
				if s == nil {
					return nil, errors.New("nothing waits for an approval, and no stage ahead needs one")
				}
			}
			if s.Approval == "" {
				return nil, fmt.Errorf("step %s needs no approval (its stage %s has none)", s.Name, s.Stage)
			}
			subject := fmt.Sprintf("%s: approved stage %s for %s (by %s)", t.id.Name, s.Stage, rel.Spec.Candidate, who)
			if waiting && s.Index == st.StepIndex+1 {
				subject = fmt.Sprintf("%s: approved %s -> %s (by %s)", t.id.Name, st.Step, s.Name, who)
			}
			return &request{verb: "approve", subject: subject,
				edit: specs.ApproveEdit(t.id.Namespace, t.id.Name, specs.Approval{Stage: s.Stage, Candidate: rel.Spec.Candidate, By: who})}, nil
		})
}

// running reports whether the release's candidate is on its way (neither
// promoted nor rolled back), as far as the record says.
func running(t *target) bool {
	st := t.status
	if st == nil || st.Candidate != t.rel.Spec.Candidate {
		return true // not recorded yet: it is about to start
	}
	switch st.Phase {
	case record.PhasePromoted, record.PhaseRolledBack, record.PhaseSteady:
		return false
	}
	return true
}

func at(t *target) string {
	if t.status == nil || t.status.Step == "" {
		return "its first step"
	}
	return t.status.Step
}

func newAbortCommand() *cobra.Command {
	return actionCommand("abort RELEASE", "Roll a release back now",
		`Abort sets spec.abort to the candidate: Sluice rolls the release back at
once, as if its gates had failed. sluice retry releases it again.`+actionLong,
		`  sluice abort istioinaction/catalog`, nil,
		func(t *target, who string) (*request, error) {
			c := t.rel.Spec.Candidate
			if c == "" {
				return nil, errors.New("no candidate to abort: spec.candidate is empty")
			}
			if !running(t) {
				return nil, fmt.Errorf("%s is not in progress (%s)", c, t.status.Phase)
			}
			return &request{verb: "abort", subject: fmt.Sprintf("%s: abort %s at %s (by %s)", t.id.Name, c, at(t), who),
				edit: specs.SetFieldEdit(t.id.Namespace, t.id.Name, c, "abort", c)}, nil
		})
}

func newRetryCommand() *cobra.Command {
	return actionCommand("retry RELEASE", "Release a rolled-back candidate again",
		`Retry sets spec.retry to the time now (and removes spec.abort): Sluice
starts the rolled-back candidate again from its first step.`+actionLong,
		`  sluice retry istioinaction/catalog`, nil,
		func(t *target, who string) (*request, error) {
			c, st := t.rel.Spec.Candidate, t.status
			if c == "" {
				return nil, errors.New("no candidate to retry: spec.candidate is empty")
			}
			if st == nil || st.Phase != record.PhaseRolledBack || st.Candidate != c {
				phase := "not recorded yet"
				if st != nil {
					phase = string(st.Phase)
				}
				return nil, fmt.Errorf("only a rolled-back candidate is retried; %s is %s", c, phase)
			}
			stamp := time.Now().UTC().Format(time.RFC3339)
			set := specs.SetFieldEdit(t.id.Namespace, t.id.Name, c, "retry", stamp)
			unabort := specs.RemoveFieldEdit(t.id.Namespace, t.id.Name, c, "abort")
			return &request{verb: "retry", subject: fmt.Sprintf("%s: retry %s (by %s)", t.id.Name, c, who),
				edit: func(old []byte) ([]byte, error) {
					b, err := unabort(old)
					if err != nil {
						return nil, err
					}
					return set(b)
				}}, nil
		})
}

func newPauseCommand() *cobra.Command {
	return actionCommand("pause RELEASE", "Hold a release at its step",
		`Pause sets spec.paused: the release holds its step (still applied), its
gates are not checked and its deadlines do not run, until sluice resume.`+actionLong,
		`  sluice pause istioinaction/catalog`, nil, pauseRequest)
}

func pauseRequest(t *target, who string) (*request, error) {
	c := t.rel.Spec.Candidate
	if c == "" || !running(t) {
		return nil, errors.New("no release in progress to pause")
	}
	if t.rel.Spec.Paused {
		return nil, errors.New("already paused (spec.paused is true)")
	}
	return &request{verb: "pause", subject: fmt.Sprintf("%s: pause at %s (by %s)", t.id.Name, at(t), who),
		edit: specs.SetFieldEdit(t.id.Namespace, t.id.Name, c, "paused", true)}, nil
}

func newResumeCommand() *cobra.Command {
	return actionCommand("resume RELEASE", "Go on with a paused release",
		`Resume removes spec.paused: the release goes on at its step, whose checks
start over.`+actionLong,
		`  sluice resume istioinaction/catalog`, nil,
		func(t *target, who string) (*request, error) {
			if !t.rel.Spec.Paused {
				return nil, errors.New("not paused (spec.paused is not set)")
			}
			return &request{verb: "resume", subject: fmt.Sprintf("%s: resume at %s (by %s)", t.id.Name, at(t), who),
				edit: specs.RemoveFieldEdit(t.id.Namespace, t.id.Name, t.rel.Spec.Candidate, "paused")}, nil
		})
}

func newPromoteCommand() *cobra.Command {
	var skip bool
	return actionCommand("promote RELEASE --skip-analysis", "Promote a candidate now, without further analysis",
		`Promote --skip-analysis sets spec.skipAnalysis to the candidate: Sluice
sends it straight to its promote step, without further checks, approvals or
release window, and says so in the record. To let a step that waits for an
approval go on, use sluice approve.`+actionLong,
		`  sluice promote istioinaction/catalog --skip-analysis`,
		func(cmd *cobra.Command) {
			cmd.Flags().BoolVar(&skip, "skip-analysis", false, "skip the rest of the analysis: straight to promotion")
		},
		func(t *target, who string) (*request, error) {
			if !skip {
				return nil, errors.New("promote needs --skip-analysis (to let a waiting step go on, use sluice approve)")
			}
			c := t.rel.Spec.Candidate
			if c == "" || !running(t) {
				return nil, errors.New("no candidate in progress to promote")
			}
			return &request{verb: "promote", subject: fmt.Sprintf("%s: promote %s now, skipping analysis at %s (by %s)", t.id.Name, c, at(t), who),
				edit: specs.SetFieldEdit(t.id.Namespace, t.id.Name, c, "skipAnalysis", c)}, nil
		})
}
