// Package dashboard is the read-only web dashboard of releases, from the Git
// record and Prometheus.
//
// It serves, under /ui/, the releases page (every release's phase, step,
// weight, reason and release window, filtered by namespace and phase) and a
// page per release (the plan as a row of steps, the weight Sluice set
// against the split Prometheus observes, one chart per gate with each
// recorded check, the timeline of commits, the release window and the past
// releases of the service), plus the same data as JSON under /ui/api/. Pages
// are rendered on the server with html/template; a little JavaScript, served
// from the embedded assets, refreshes them and draws the charts with the
// vendored uPlot. Nothing is written anywhere: Git is read through Source,
// Prometheus through Metrics.
package dashboard
