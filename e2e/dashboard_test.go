package e2e

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/record"
)

var screenshots = flag.String("dashboard-screenshots", "", "write the dashboard's screenshots into this directory (docs/img)")

// chromium finds Debian's chromium. Without it the test skips, except in
// CI (CI set), where a missing browser is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (hack/browser-test-deps.sh installs it)")
	}
	t.Skip("chromium is not installed (hack/browser-test-deps.sh installs it)")
	return ""
}

// browser is a headless chromium tab; console errors, uncaught exceptions
// and the browser's own errors (a script the Content-Security-Policy
// refused, say) are kept.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T, exe string) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{ctx: ctx}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.errors = append(b.errors, m.String())
				b.mu.Unlock()
			}
		}
	}()
	return b
}

func (b *browser) do(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// evalJS evaluates a JavaScript expression.
func evalJS[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitJS waits until a JavaScript expression is true.
func (b *browser) waitJS(t *testing.T, timeout time.Duration, what, expr string) {
	t.Helper()
	err := stack.WaitFor(b.ctx, timeout, 250*time.Millisecond, what, func(ctx context.Context) (bool, error) {
		return chromedp.Run(b.ctx, chromedp.Evaluate[bool](expr))
	})
	if err != nil {
		html, _ := chromedp.Run(b.ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("%v\n%s", err, html)
	}
}

// screenshot saves the whole page as name in -dashboard-screenshots.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	if *screenshots == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*screenshots, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// TestDashboardInBrowser drives the dashboard in headless chromium while
// real releases run: a bad v2 rolled back, then a good v3 in progress. The
// pages show the right step, charts with data and thresholds, the Git
// timeline in order with links, and update live without a reload.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("drives real releases in a browser")
	}
	exe := chromium(t)
	t.Parallel()
	const forge = "https://git.example.com/platform/releases/commit/"
	s := startStack(t, stack.Options{Namespace: "e2e-dashboard", SluiceArgs: []string{"--dashboard-commit-url", forge + "{commit}"}})
	if err := s.StartSluice(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, s, record.PhaseSteady, time.Minute)
	ui := s.AdminURL(stack.DefaultReplica) + "/ui/"
	page := ui + "releases/e2e-dashboard/catalog"
	b := newBrowser(t, exe)

	// A bad v2, rolled back: the failed step is marked and the success
	// rate chart has the failed checks under its threshold.
	if err := s.Mesh.SetVersion("v2", 0.10, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	pushCandidate(t, s, "v2")
	rolled := waitPhase(t, s, record.PhaseRolledBack, releaseTimeout)
	b.do(t, chromedp.Navigate(page))
	b.waitJS(t, 30*time.Second, "charts drawn", `!!document.querySelector("#charts[data-loaded]")`)
	failedStep := evalJS[string](t, b, `document.querySelector('.plan [data-state="failed"]')?.dataset.step || ""`)
	if failedStep == "" || failedStep == "rollback" {
		t.Errorf("no step of the plan is marked as the one rolled back at (status %+v)", rolled)
	}
	failedDots := evalJS[int](t, b, `Number(document.getElementById("chart-gate-request-success-rate").dataset.failed)`)
	thresholds := evalJS[int](t, b, `Number(document.getElementById("chart-gate-request-success-rate").dataset.thresholds)`)
	if failedDots < 4 || thresholds != 1 {
		t.Errorf("success rate chart: %d failed checks drawn, %d threshold lines; want at least 4 and 1", failedDots, thresholds)
	}
	b.screenshot(t, "dashboard-release-rolled-back.png")

	// A good v3: in progress.
	if _, err := s.AddVersion(t.Context(), "v3"); err != nil {
		t.Fatal(err)
	}
	pushCandidate(t, s, "v3")
	waitStatus(t, s, releaseTimeout, "v3 at canary-10", func(st *record.Status) bool { return st.Candidate == "v3" && st.StepIndex >= 2 })
	b.do(t, chromedp.Navigate(page))
	b.waitJS(t, 30*time.Second, "charts drawn", `!!document.querySelector("#charts[data-loaded]")`)
	evalJS[bool](t, b, `window.__notReloaded = true`)

	// The current step is the recorded one; when the record moves on, the
	// page follows without a reload.
	st, err := status(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	seen := st.Step
	b.waitJS(t, 20*time.Second, "a current step", `!!document.querySelector('.plan [data-state="current"]')`)
	next := waitStatus(t, s, releaseTimeout, "a step after "+seen, func(st *record.Status) bool {
		return st.Candidate == "v3" && st.Step != seen && st.Phase == record.PhaseProgressing
	})
	b.waitJS(t, 30*time.Second, "the page shows a step after "+seen,
		`(document.querySelector('.plan [data-state="current"]')?.dataset.step || "") !== `+strconv.Quote(seen)+` && window.__notReloaded === true`)
	current := evalJS[string](t, b, `document.querySelector('.plan [data-state="current"]').dataset.step`)
	if now, err := status(t.Context(), s); err != nil || (current != next.Step && current != now.Step) {
		t.Errorf("the page's current step is %s; the record says %s then %v", current, next.Step, now)
	}

	// Charts: traffic observed and set, gates with points, a threshold
	// line and recorded checks.
	b.waitJS(t, 30*time.Second, "traffic chart with data",
		`Number(document.getElementById("chart-traffic").dataset.points) > 0 && Number(document.getElementById("chart-traffic").dataset.set) > 0`)
	for _, gate := range []string{"request-success-rate", "request-duration"} {
		b.waitJS(t, 30*time.Second, gate+" chart with data",
			`(function(d){return Number(d.points) > 0 && Number(d.thresholds) === 1 && Number(d.checks) > 0})(document.getElementById("chart-gate-`+gate+`").dataset)`)
	}
	canvases := evalJS[int](t, b, `document.querySelectorAll("#charts canvas").length`)
	if canvases < 3 {
		t.Errorf("%d chart canvases, want 3", canvases)
	}

	// The timeline lists the run's commits, newest first, linked to the forge.
	type row struct{ Commit, Href, Text string }
	rows := evalJS[[]row](t, b, `[...document.querySelectorAll("#timeline tbody tr")].map(r => ({Commit: r.dataset.commit, Href: r.querySelector("a.commit")?.href || "", Text: r.cells[1].textContent.trim()}))`)
	if _, err := s.Git(t.Context(), "fetch", "-q", "origin"); err != nil {
		t.Fatal(err)
	}
	log, err := s.Git(t.Context(), "log", "--format=%H %s", "origin/main")
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{} // the release's commits, newest first
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		h, subj, _ := strings.Cut(l, " ")
		if strings.HasPrefix(subj, "catalog: ") {
			pos[h] = len(pos)
		}
	}
	if len(rows) < 3 || !strings.HasPrefix(rows[len(rows)-1].Text, "catalog: start v1 -> v3") {
		t.Fatalf("the timeline does not go back to v3's start: %+v", rows)
	}
	for i, r := range rows {
		if r.Href != forge+r.Commit {
			t.Errorf("row %d links %q, want %q", i, r.Href, forge+r.Commit)
		}
		p, ok := pos[r.Commit]
		if !ok {
			t.Errorf("row %d: commit %s is not one of the release's commits", i, r.Commit)
		} else if i > 0 && p != pos[rows[i-1].Commit]+1 {
			t.Errorf("row %d: commit %s is not the one after %s in the log", i, r.Commit, rows[i-1].Commit)
		}
	}
	pastOutcome := evalJS[string](t, b, `document.querySelector("#runs tbody tr:nth-child(2) .outcome")?.textContent || ""`)
	if pastOutcome != "rolled back" {
		t.Errorf("past releases: v2's outcome is %q, want rolled back", pastOutcome)
	}
	b.screenshot(t, "dashboard-release.png")

	// The releases page lists it with its phase and step, and follows it.
	b.do(t, chromedp.Navigate(ui))
	b.waitJS(t, 10*time.Second, "the release row", `!!document.getElementById("row-e2e-dashboard-catalog")`)
	phase := evalJS[string](t, b, `document.getElementById("row-e2e-dashboard-catalog").dataset.phase`)
	if phase != string(record.PhaseProgressing) && phase != string(record.PhasePromoted) {
		t.Errorf("releases page: phase %s", phase)
	}
	evalJS[bool](t, b, `window.__notReloaded = true`)
	final := waitPhase(t, s, record.PhasePromoted, releaseTimeout)
	b.waitJS(t, 30*time.Second, "the releases page shows the promotion",
		`document.getElementById("row-e2e-dashboard-catalog").dataset.phase === "Promoted" && window.__notReloaded === true`)
	b.screenshot(t, "dashboard-releases.png")
	_ = final
	if errs := b.consoleErrors(); len(errs) > 0 {
		t.Errorf("the browser reported errors:\n%s", strings.Join(errs, "\n"))
	}
}
