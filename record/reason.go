package record

import (
	"fmt"
	"strings"
	"time"
)

// Reason says in one line why the release is where it is: what it waits
// for, why it was rolled back or is invalid, the checks holding without
// data, the versions still draining. Empty when there is nothing to say.
func (s *Status) Reason() string {
	var parts []string
	switch s.Phase {
	case PhaseWaiting, PhaseRolledBack, PhaseInvalid, PhaseBlocked, PhasePaused:
		if msg, _, _ := strings.Cut(s.Message, "\n"); msg != "" {
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
