package notify

import (
	"fmt"
	"strings"
	"time"

	"sluice.dev/sluice/reconciler"
	"sluice.dev/sluice/record"
)

// Event is the kind of a notification: what a channel subscribes to. Each
// transition's action maps to one event.
type Event string

// Events.
const (
	EventStarted    Event = "started"    // start, abandon (a newer candidate started), retry
	EventWaiting    Event = "waiting"    // wait: for an approval or the release window
	EventRolledBack Event = "rolledback" // rollback
	EventPromoted   Event = "promoted"   // promote
	EventInvalid    Event = "invalid"    // invalid: the spec cannot run, the release is blocked
	EventAdvanced   Event = "advanced"   // advance
	EventCheck      Event = "check"      // a failed check under the threshold
	EventNoData     Event = "nodata"     // a check without data held the step
	EventSteady     Event = "steady"     // steady
	EventResumed    Event = "resumed"    // resume: the spec is valid again
	EventRetired    Event = "retired"    // retire: a drained version was removed
	EventBlocked    Event = "blocked"    // block: the reconcile keeps failing for one reason
	EventPaused     Event = "paused"     // pause: spec.paused holds the release
	EventDeleted    Event = "deleted"    // delete: the release spec was deleted, its objects removed
)

// eventAll in a configuration subscribes to every event.
const eventAll = "all"

// DefaultEvents are the events a channel gets when it names none: what
// people act on. Advances, failed checks and no-data holds repeat while a
// release runs or flaps, so they are opt-in.
var defaultEvents = []Event{EventStarted, EventWaiting, EventRolledBack, EventPromoted, EventInvalid, EventBlocked}

// DefaultEvents returns the events a channel gets when it names none.
func DefaultEvents() []Event { return append([]Event(nil), defaultEvents...) }

// allEvents lists every event, in the order a release usually meets them.
var allEvents = []Event{EventStarted, EventAdvanced, EventCheck, EventNoData, EventWaiting,
	EventRolledBack, EventPromoted, EventSteady, EventInvalid, EventBlocked, EventPaused, EventResumed, EventRetired, EventDeleted}

// EventOf maps an action to its event; an unknown action (from a newer
// Sluice) has none.
func EventOf(a record.Action) (Event, bool) {
	switch a {
	case record.ActionStart, record.ActionAbandon, record.ActionRetry:
		return EventStarted, true
	case record.ActionWait:
		return EventWaiting, true
	case record.ActionRollback:
		return EventRolledBack, true
	case record.ActionPromote:
		return EventPromoted, true
	case record.ActionInvalid:
		return EventInvalid, true
	case record.ActionAdvance:
		return EventAdvanced, true
	case record.ActionCheck:
		return EventCheck, true
	case record.ActionNoData:
		return EventNoData, true
	case record.ActionSteady:
		return EventSteady, true
	case record.ActionResume:
		return EventResumed, true
	case record.ActionRetire:
		return EventRetired, true
	case record.ActionBlock:
		return EventBlocked, true
	case record.ActionPause:
		return EventPaused, true
	case record.ActionDelete:
		return EventDeleted, true
	}
	return "", false
}

// parseEvents reads event names ("rolledback", "blocked", "all"); nil
// names give nil.
func parseEvents(names []string) (map[Event]bool, error) {
	if names == nil {
		return nil, nil
	}
	set := map[Event]bool{}
	for _, raw := range names {
		name := strings.ToLower(strings.TrimSpace(raw))
		switch name {
		case "":
			continue
		case eventAll:
			for _, e := range allEvents {
				set[e] = true
			}
			continue
		case string(EventBlocked):
			// An invalid spec blocks its release too.
			set[EventInvalid] = true
		}
		known := false
		for _, e := range allEvents {
			if string(e) == name {
				set[e], known = true, true
			}
		}
		if !known {
			return nil, fmt.Errorf("unknown event %q (want %s or %s)", raw, joinEvents(allEvents), eventAll)
		}
	}
	return set, nil
}

func joinEvents(es []Event) string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = string(e)
	}
	return strings.Join(s, ", ")
}

// message is what every payload is made from: a copy of the transition's
// facts, taken when it is reported, since the worker formats it later and
// an Observer must not hold on to what it is given.
type message struct {
	// ID is the message's identity: the commit and the release.
	ID                       string
	Event                    Event
	Action                   record.Action
	Release, Namespace, Name string
	Subject                  string
	Commit, CommitURL        string
	PullRequestURL           string
	PullRequestNumber        int64
	Phase, Step              string
	Weight                   int32
	Stable, Candidate        string
	Reason                   string
	Gates                    []record.GateValue
	Time                     time.Time
}

// newMessage copies what the payloads need from t.
func newMessage(t reconciler.Transition, e Event, commitURL string, now time.Time) *message {
	m := &message{
		ID:    t.Commit + "/" + t.Release,
		Event: e, Action: t.Action,
		Release: t.Release, Namespace: t.Namespace, Name: t.Name,
		Subject: t.Subject, Commit: t.Commit, Time: now.UTC(),
	}
	if commitURL != "" && t.Commit != "" {
		m.CommitURL = strings.ReplaceAll(commitURL, "{commit}", t.Commit)
	}
	if st := t.Status; st != nil {
		m.Phase, m.Step, m.Weight = string(st.Phase), st.Step, st.Weight
		m.Stable, m.Candidate = st.Stable, st.Candidate
		m.Reason = st.Reason()
		m.Gates = append([]record.GateValue(nil), st.Gates...)
		if pr := st.PullRequest; pr != nil {
			m.PullRequestURL, m.PullRequestNumber = pr.URL, pr.Number
		}
	}
	return m
}

// Title says what happened, in a few words: the head of every message.
func (m *message) Title() string {
	switch m.Event {
	case EventStarted:
		if m.Candidate != "" {
			return fmt.Sprintf("%s started %s", m.Release, m.Candidate)
		}
		return m.Release + " started"
	case EventWaiting:
		switch {
		case m.PullRequestNumber != 0 || strings.Contains(m.Reason, "approval"):
			return m.Release + " is waiting for approval"
		case strings.Contains(m.Reason, "window"):
			return m.Release + " is waiting for the release window"
		}
		return m.Release + " is waiting"
	case EventRolledBack:
		if m.Candidate != "" {
			return fmt.Sprintf("%s rolled back %s", m.Release, m.Candidate)
		}
		return m.Release + " rolled back"
	case EventPromoted:
		// After a promotion the recorded stable version is the candidate.
		if m.Stable != "" {
			return fmt.Sprintf("%s promoted %s", m.Release, m.Stable)
		}
		return m.Release + " promoted"
	case EventInvalid:
		return m.Release + " is blocked: invalid release spec"
	case EventAdvanced:
		return m.Release + " advanced"
	case EventCheck:
		return m.Release + ": a check failed"
	case EventNoData:
		return m.Release + ": a check had no data"
	case EventSteady:
		return m.Release + " is steady"
	case EventResumed:
		return m.Release + " resumed"
	case EventRetired:
		return m.Release + " retired a version"
	case EventBlocked:
		return m.Release + " is blocked"
	case EventPaused:
		return m.Release + " is paused"
	case EventDeleted:
		return m.Release + " was deleted"
	}
	return m.Release + ": " + string(m.Action)
}

// ShortCommit is the commit as `git log --oneline` shows it.
func (m *message) ShortCommit() string {
	if len(m.Commit) > 7 {
		return m.Commit[:7]
	}
	return m.Commit
}

// StepLabel is the step and, while traffic is split, its weight.
func (m *message) StepLabel() string {
	if m.Step == "" {
		return ""
	}
	if m.Weight > 0 && m.Weight < 100 {
		return fmt.Sprintf("%s (%d%%)", m.Step, m.Weight)
	}
	return m.Step
}

// fact is one labelled value of a message.
type fact struct{ Title, Value string }

// Facts are the release's state after the transition, those known.
func (m *message) Facts() []fact {
	var fs []fact
	add := func(title, v string) {
		if v != "" {
			fs = append(fs, fact{title, v})
		}
	}
	add("Phase", m.Phase)
	add("Step", m.StepLabel())
	add("Stable", m.Stable)
	add("Candidate", m.Candidate)
	return fs
}

// severity sorts events for colours: good news, bad news, or neither.
func (m *message) severity() int {
	switch m.Event {
	case EventPromoted:
		return 1
	case EventRolledBack, EventInvalid, EventBlocked, EventCheck, EventNoData:
		return -1
	}
	return 0
}
