package testenv

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// MainStartTimeout bounds Start in Main. A warm start takes seconds; the
// margin is for slow, loaded CI machines.
const MainStartTimeout = 3 * time.Minute

// Main starts the env once for a test package, runs the tests, prints every
// component's log if tests failed (or the start did), and stops everything.
// Use it from TestMain:
//
//	var env *testenv.Env
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m, testenv.Options{}, &env)) }
func Main(m *testing.M, opts Options, env **Env) int {
	// Ctrl-C while starting stops what was started instead of leaving the
	// temp dir behind. During m.Run the default behaviour applies, and the
	// kernel kills the components with the test binary (Pdeathsig).
	sigCtx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(sigCtx, MainStartTimeout)
	e, err := start(ctx, opts)
	cancel()
	stopSignals()
	if err != nil {
		fmt.Fprintln(os.Stderr, err) // says "testenv: ..." already
		if e != nil {
			e.DumpLogs(os.Stderr)
			e.MarkFailed()
			if err := e.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
			fmt.Fprintf(os.Stderr, "testenv: logs kept in %s\n", e.dir)
		}
		return 1
	}
	*env = e
	code := m.Run()
	if code != 0 {
		e.MarkFailed()
		e.DumpLogs(os.Stderr)
	}
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
