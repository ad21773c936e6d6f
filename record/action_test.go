package record

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestReason(t *testing.T) {
	tests := []struct{ action, reason, typ string }{
		{"start", "Started", corev1.EventTypeNormal},
		{"advance", "Advanced", corev1.EventTypeNormal},
		{"check", "CheckFailed", corev1.EventTypeWarning},
		{"rollback", "RolledBack", corev1.EventTypeWarning},
		{"promote", "Promoted", corev1.EventTypeNormal},
		{"wait", "Waiting", corev1.EventTypeNormal},
		{"invalid", "Invalid", corev1.EventTypeWarning},
		{"abandon", "Abandoned", corev1.EventTypeNormal},
		{"something-new", "Transition", corev1.EventTypeNormal},
	}
	for _, tc := range tests {
		if r, typ := Action(tc.action).Reason(); r != tc.reason || typ != tc.typ {
			t.Errorf("Reason(%q) = %s %s, want %s %s", tc.action, r, typ, tc.reason, tc.typ)
		}
	}
}

// Every action has its own reason, in the table.
func TestEveryActionHasAReason(t *testing.T) {
	seen := map[string]Action{}
	for _, a := range Actions() {
		r, typ := a.Reason()
		if r == "Transition" || (typ != corev1.EventTypeNormal && typ != corev1.EventTypeWarning) {
			t.Errorf("%s: reason %q type %q", a, r, typ)
		}
		if other, dup := seen[r]; dup {
			t.Errorf("%s and %s share the reason %s", a, other, r)
		}
		seen[r] = a
	}
	if len(seen) != len(actions) {
		t.Errorf("Actions() lists %d actions, the table has %d", len(seen), len(actions))
	}
}
