package record

// Action names one kind of transition of a release. It is the
// Sluice-Action trailer of the commit that records it, and it carries the
// Kubernetes Event reason and type that report it: one table, so a new
// action cannot be committed without saying how it is reported.
type Action string

// Actions, in the order a release usually meets them.
const (
	ActionStart    Action = "start"    // a new candidate at its first step
	ActionAbandon  Action = "abandon"  // a newer candidate replaced the one in progress
	ActionRetry    Action = "retry"    // spec.retry changed after a rollback
	ActionAdvance  Action = "advance"  // the step passed; the next one is applied
	ActionCheck    Action = "check"    // a failed check, under the threshold
	ActionWait     Action = "wait"     // the next step waits for an approval or the window
	ActionRollback Action = "rollback" // all traffic back to stable
	ActionPromote  Action = "promote"  // the candidate became stable
	ActionSteady   Action = "steady"   // no candidate: stable takes all traffic
	ActionResume   Action = "resume"   // going on again: the spec is valid again, unpaused, unblocked
	ActionInvalid  Action = "invalid"  // the spec cannot run
	ActionNoData   Action = "nodata"   // a check without data held the step
	ActionRetire   Action = "retire"   // a drained version was removed
	ActionBlock    Action = "block"    // the reconcile keeps failing for one reason
	ActionPause    Action = "pause"    // spec.paused holds the release at its step
	ActionDelete   Action = "delete"   // the release spec is gone: its objects and status file are removed
)

// Event types, as Kubernetes names them (core/v1 EventTypeNormal and
// EventTypeWarning), kept here as plain strings so the record needs no
// Kubernetes API package.
const (
	EventNormal  = "Normal"
	EventWarning = "Warning"
)

type actionInfo struct {
	reason    string
	eventType string
}

// actions is the table of every action: its Event reason and type.
var actions = map[Action]actionInfo{
	ActionStart:    {"Started", EventNormal},
	ActionAbandon:  {"Abandoned", EventNormal},
	ActionRetry:    {"Retried", EventNormal},
	ActionAdvance:  {"Advanced", EventNormal},
	ActionCheck:    {"CheckFailed", EventWarning},
	ActionWait:     {"Waiting", EventNormal},
	ActionRollback: {"RolledBack", EventWarning},
	ActionPromote:  {"Promoted", EventNormal},
	ActionSteady:   {"Steady", EventNormal},
	ActionResume:   {"Resumed", EventNormal},
	ActionInvalid:  {"Invalid", EventWarning},
	ActionNoData:   {"NoData", EventWarning},
	ActionRetire:   {"Retired", EventNormal},
	ActionBlock:    {"Blocked", EventWarning},
	ActionPause:    {"Paused", EventNormal},
	ActionDelete:   {"Deleted", EventNormal},
}

// Actions lists every action.
func Actions() []Action {
	return []Action{ActionStart, ActionAbandon, ActionRetry, ActionAdvance, ActionCheck, ActionWait,
		ActionRollback, ActionPromote, ActionSteady, ActionResume, ActionInvalid, ActionNoData, ActionRetire,
		ActionBlock, ActionPause, ActionDelete}
}

// Reason is the Event reason and type that report the action. An action
// not in the table (read from an older or newer Sluice's commit) is a
// Normal "Transition".
func (a Action) Reason() (reason, eventType string) {
	if i, ok := actions[a]; ok {
		return i.reason, i.eventType
	}
	return "Transition", EventNormal
}
