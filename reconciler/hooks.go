package reconciler

// Webhook gates (spec.analysis.webhooks, a stage's analysis.webhooks):
//
//   - pre-step hooks run once before a step takes traffic: when the step
//     before it has passed (after its approval and the release window,
//     before an approval pull request is opened), or, for the first step,
//     once its workloads are up. Any failure rolls the release back;
//   - check hooks run at every check beside the metric gates (check in
//     execute.go): a failure is a failed check, counted against the
//     threshold like a metric's;
//   - load hooks are posted in the background when a step's checks begin
//     and at each check, for a load generator; their outcome is logged and
//     never holds or fails a step.
//
// A hook's outcome is a record.GateValue (WebhookValue): in the status
// file, the commit subject ("webhook smoke-test 200"), sluice status and
// the dashboard like a metric's.

import (
	"context"
	"fmt"
	"time"

	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
	"sluice.dev/sluice/webhook"
)

// HookCheck is the outcome of a step's pre-step webhooks.
type HookCheck struct {
	// Step is the step whose hooks ran.
	Step   string
	Values []record.GateValue
}

// preStepGate holds the move to step until its pre-step webhooks have
// passed. held is set when Decide must stop at the returned decision: the
// hooks are to be run (NeedHooks), or they failed (a rollback). Otherwise
// the move goes on with d and the hooks' values, for its record.
func preStepGate(in Input, d Decision, step specs.Step) (out Decision, values []record.GateValue, held bool) {
	if len(step.Gates.Hooks(specs.WebhookPreStep)) == 0 {
		return d, nil, false
	}
	if d.Memo.PreStep == step.Name {
		return d, d.Memo.PreStepValues, false
	}
	h := in.Hooks
	if h == nil || h.Step != step.Name {
		d.Need, d.PreStep = NeedHooks, &step
		d.Memo = in.Memo // decided again with the hooks' outcome
		return d, nil, true
	}
	if len(record.Failing(h.Values)) > 0 {
		return rollback(in, d, step, h.Values, fmt.Sprintf("pre-step failed, %s took no traffic", stepLabel(step))), nil, true
	}
	d.Memo.PreStep, d.Memo.PreStepValues = step.Name, h.Values
	return d, h.Values, false
}

// preStep runs step's pre-step webhooks, one after the other.
func (rc *run) preStep(ctx context.Context, in Input, step specs.Step) *HookCheck {
	return &HookCheck{Step: step.Name, Values: rc.callHooks(ctx, in, step, specs.WebhookPreStep)}
}

// checkHooks runs the current step's check webhooks.
func (rc *run) checkHooks(ctx context.Context, in Input, step specs.Step) []record.GateValue {
	return rc.callHooks(ctx, in, step, specs.WebhookCheck)
}

// callHooks posts step's webhooks of type typ and waits for each.
func (rc *run) callHooks(ctx context.Context, in Input, step specs.Step, typ string) []record.GateValue {
	var out []record.GateValue
	for _, h := range step.Gates.Hooks(typ) {
		body, err := rc.hookPayload(in, step, h).Marshal()
		if err != nil {
			out = append(out, record.WebhookValue(h.Name, typ, 0, false, "error"))
			continue
		}
		res := rc.r.hooks.Call(ctx, hookTarget(h), body)
		rc.logHook(in, step, h, res)
		out = append(out, record.WebhookValue(h.Name, typ, res.Code, res.Passed(), res.Reason()))
	}
	return out
}

// startLoad posts the load webhooks of the step the release is checking,
// in the background, when this reconcile began its checks or made one.
func (rc *run) startLoad(ctx context.Context, in Input, d Decision) {
	st := in.Status
	if st == nil || in.Spec == nil || (st.Phase != record.PhaseProgressing && st.Phase != record.PhaseWaiting) ||
		st.StepIndex < 0 || st.StepIndex >= len(in.Plan) || !d.Memo.LastCheck.Equal(in.Now) {
		return
	}
	step := in.Plan[st.StepIndex]
	for _, h := range step.Gates.Hooks(specs.WebhookLoad) {
		body, err := rc.hookPayload(in, step, h).Marshal()
		if err != nil {
			continue
		}
		// Not ctx: it ends when this reconcile returns.
		bctx, done := rc.bg.context(ctx)
		rc.r.hooks.Go(bctx, hookTarget(h), body, func(res webhook.Result) {
			done()
			rc.logHook(in, step, h, res)
		})
	}
}

func hookTarget(h specs.Webhook) webhook.Target {
	return webhook.Target{Name: h.Name, Type: h.Type, URL: h.URL, Timeout: h.TimeoutOrDefault(), Attempts: h.Attempts()}
}

func (rc *run) logHook(in Input, step specs.Step, h specs.Webhook, res webhook.Result) {
	args := []any{"release", in.Release, "step", step.Name, "webhook", h.Name, "type", h.Type, "code", res.Code, "attempts", res.Attempts}
	if res.Passed() {
		rc.r.log.Debug("webhook passed", args...)
		return
	}
	what := "webhook failed"
	if h.Type == specs.WebhookLoad {
		what = "load webhook failed; the step goes on"
	}
	rc.r.log.Warn(what, append(args, "err", res.Err)...)
}

// hookPayload is what a webhook of step is told.
func (rc *run) hookPayload(in Input, step specs.Step, h specs.Webhook) webhook.Payload {
	rel := in.Spec
	p := webhook.Payload{
		Type: h.Type, Webhook: h.Name,
		Release: in.Release, Namespace: in.Namespace, Name: in.Name,
		Step: step.Name, StepIndex: step.Index, Stage: step.Stage,
		Weights: webhook.Weights{Candidate: step.Weight, Stable: 100 - step.Weight},
		Stable:  rel.Spec.Stable, Candidate: rel.Spec.Candidate, Revision: in.Revision,
		Service:  rel.ServiceName(),
		Interval: specs.Duration{Duration: step.Gates.Interval}.String(),
		Metadata: h.Metadata, Labels: rel.Metadata.Labels, Annotations: rel.Metadata.Annotations,
		SentAt: in.Now.UTC().Truncate(time.Second),
	}
	if rc.out != nil {
		p.Workload = rc.out.Workloads[rel.Spec.Candidate]
	}
	return p
}
