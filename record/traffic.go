package record

import "sluice.dev/sluice/specs"

// StepTraffic is what the step the status records gives the candidate,
// read from the release's plan, which knows a dark launch's match: the
// status file's weight is the candidate's share of the requests the step
// routes to it, which for a dark launch is 100 (of the matching ones).
// Without the step in the plan (no plan, stable, rollback, or a plan that
// changed under the record) it is the recorded weight, of all requests.
func StepTraffic(st *Status, plan []specs.Step) specs.Traffic {
	if st == nil {
		return specs.Traffic{}
	}
	i := st.StepIndex
	if st.Phase == PhaseRolledBack || i < 0 || i >= len(plan) || plan[i].Name != st.Step {
		return specs.Traffic{Weight: st.Weight}
	}
	return plan[i].Traffic()
}
