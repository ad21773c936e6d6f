package record

import (
	"fmt"
	"strings"
	"time"
)

// Reason says in one line why the release is where it is, for a person
// who has to act on it:
//
//   - waiting for the window: "waiting for the window until
//     2026-11-26T09:00:00Z (0 9 * * 1-5 for 8h) to start canary-10";
//   - approval needed: the exact command and the spec edit ("approval
//     needed for canary-10: sluice approve istioinaction/catalog, or add
//     {stage: canary, candidate: v2} to spec.approvals in
//     releases/catalog.yaml"), or the pull request to merge;
//   - checks without data: "no data: held 2 of 5 checks since T";
//   - blocked (or any phase this Sluice does not know): "blocked: " and
//     the error, from the record's message;
//   - paused: where, and the command that resumes it;
//   - rolled back: the step, the failing gate and its value ("rolled back
//     at canary-20: success-rate 80 < 99, 5/5 checks failed");
//   - invalid: the first error;
//   - the versions still draining.
//
// Empty when there is nothing to say.
func (s *Status) Reason() string {
	var parts []string
	msg, _, _ := strings.Cut(s.Message, "\n")
	msg = strings.TrimSpace(msg)
	switch s.Phase {
	case PhaseWaiting:
		if r := s.waitReason(msg); r != "" {
			parts = append(parts, r)
		}
	case PhaseRolledBack:
		switch {
		case strings.HasPrefix(msg, "rolled back"):
			parts = append(parts, msg)
		case msg != "":
			parts = append(parts, "rolled back: "+msg)
		default:
			if f := Summary(Failing(s.Gates)); f != "" {
				parts = append(parts, "rolled back: "+f)
			}
		}
	case PhaseInvalid:
		if msg != "" {
			parts = append(parts, "invalid: "+msg)
		}
	case PhasePaused:
		// "paused at canary-10 by spec.paused; remove it (sluice resume
		// shop/web) to go on"
		if msg != "" {
			parts = append(parts, msg)
		}
	case PhaseSteady, PhaseProgressing, PhasePromoted, "":
	default:
		// Blocked (the error that keeps failing the reconcile), or a phase
		// of a newer Sluice: its message says why.
		if msg != "" {
			if phase := strings.ToLower(string(s.Phase)); !strings.HasPrefix(strings.ToLower(msg), phase) {
				msg = phase + ": " + msg
			}
			parts = append(parts, msg)
		}
	}
	if nd := s.NoData; nd != nil {
		parts = append(parts, fmt.Sprintf("no data: held %d of %d checks since %s", nd.Checks, nd.Allowed, nd.Since.UTC().Format(time.RFC3339)))
	}
	for _, d := range s.Draining {
		parts = append(parts, fmt.Sprintf("%s draining until %s", d.Version, d.Until.UTC().Format(time.RFC3339)))
	}
	return strings.Join(parts, "; ")
}

// The messages Sluice records while a release waits, which waitReason
// turns into what to do. reconciler's tests hold the machine to them.
const (
	windowWait = " waits for the release window "
	windowNext = ", next open at "
	manualWait = " waits for approval: add "
	prWait     = " waits for approval: merge pull request "
)

// waitReason is what a waiting release waits for, and how to end the wait.
func (s *Status) waitReason(msg string) string {
	if pr := s.PullRequest; pr != nil {
		where := pr.URL
		if where == "" {
			where = "branch " + pr.Branch
		}
		return fmt.Sprintf("approval needed for %s: merge pull request #%d %s", pr.Step, pr.Number, where)
	}
	if step, rest, ok := strings.Cut(msg, windowWait); ok {
		// "canary-10 waits for the release window (0 9 * * 1-5 for 8h),
		// next open at 2026-11-26T09:00:00Z"
		if window, until, ok := strings.Cut(rest, windowNext); ok {
			return fmt.Sprintf("waiting for the window until %s %s to start %s", until, window, step)
		}
		return "waiting for the release window: " + msg
	}
	if step, edit, ok := strings.Cut(msg, manualWait); ok {
		// "canary-10 waits for approval: add {stage: canary, candidate:
		// v2} to spec.approvals in releases/catalog.yaml"
		return fmt.Sprintf("approval needed for %s: sluice approve %s, or add %s", step, s.Release, edit)
	}
	if step, rest, ok := strings.Cut(msg, prWait); ok {
		return fmt.Sprintf("approval needed for %s: merge pull request %s", step, rest)
	}
	return msg
}
