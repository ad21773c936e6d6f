package dashboard

import (
	"context"
	"net/http/httptest"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// BenchmarkReleasesPageInBrowser measures, in headless chromium, how long
// the releases page of 1,000 releases takes to show: the first contentful
// paint and the load event, from the navigation's start, with the server's
// index warm (a head already seen). It skips without chromium
// (hack/browser-test-deps.sh installs it).
func BenchmarkReleasesPageInBrowser(b *testing.B) {
	exe := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		b.Skip("chromium is not installed (hack/browser-test-deps.sh installs it)")
	}
	d := newTestDashboard(b, manyReleases(b, 1000), nil)
	srv := httptest.NewServer(d)
	b.Cleanup(srv.Close)
	get(b, d, "/ui/")

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(b.TempDir()), chromedp.WindowSize(1280, 900))
	ctx, cancel := chromedp.NewContext(actx)
	b.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		b.Fatalf("start chromium: %v", err)
	}
	var paints, loads []float64
	for b.Loop() {
		tctx, tcancel := context.WithTimeout(ctx, time.Minute)
		// A fresh document each time: about:blank between loads.
		if err := chromedp.Do(tctx, chromedp.Navigate("about:blank"), chromedp.Navigate(srv.URL+"/ui/")); err != nil {
			tcancel()
			b.Fatal(err)
		}
		fcp, err := chromedp.Run(tctx, chromedp.Evaluate[float64](`new Promise(r => { const f = () => { const e = performance.getEntriesByName('first-contentful-paint')[0]; e ? r(e.startTime) : setTimeout(f, 10) }; f() })`, chromedp.EvalAwaitPromise))
		if err != nil {
			tcancel()
			b.Fatal(err)
		}
		load, err := chromedp.Run(tctx, chromedp.Evaluate[float64](`performance.getEntriesByType('navigation')[0].loadEventEnd`))
		tcancel()
		if err != nil {
			b.Fatal(err)
		}
		paints, loads = append(paints, fcp), append(loads, load)
	}
	b.ReportMetric(median(paints), "ms-first-paint")
	b.ReportMetric(median(loads), "ms-loaded")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
