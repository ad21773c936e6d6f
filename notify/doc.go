// Package notify sends messages about release transitions to chat and
// webhooks: Slack, Microsoft Teams, Discord and Google Chat incoming
// webhooks, and any HTTP endpoint as CloudEvents.
//
// A Notifier implements reconciler.Observer. Transition only filters and
// enqueues: each channel has a bounded queue and one worker that posts,
// with a timeout per request and bounded retries, so a chat service that
// is slow or down never holds a release; what does not fit is dropped,
// logged and counted (sluice_notifications_total{result="dropped"}).
//
// A message's identity is its transition's commit and release: the
// reconciler reports each pushed commit once, a restarted Sluice does not
// push old commits again, and the Notifier drops a repeated identity, so
// a transition is announced at most once. Webhook URLs and tokens are read
// from files at every send (a rotated Secret takes effect at once) and
// never appear in logs, errors or metrics.
package notify
