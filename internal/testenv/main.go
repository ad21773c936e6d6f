package testenv

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"
)

// MainStartTimeout bounds a test binary's start of the env. A warm start
// takes seconds; the margin is for slow, loaded CI machines.
const MainStartTimeout = 3 * time.Minute

// SkipIfShort skips a test under `go test -short`, the inner loop that runs
// on any machine: what needs names what the test needs that hack/testenv-tools.sh
// installs (the local cluster, Prometheus, Gitea, ...).
func SkipIfShort(tb testing.TB, what string) {
	tb.Helper()
	if testing.Short() {
		tb.Skipf("needs %s (hack/testenv-tools.sh); skipped under -short", what)
	}
}

// Shared is one Env for a whole test binary, started by the first test that
// asks for it, so a package's tests that need no cluster neither wait for
// one nor need its tools. Use it from a test package:
//
//	var testEnv = testenv.NewShared(testenv.Options{})
//
//	func TestMain(m *testing.M) { os.Exit(testEnv.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		env := testEnv.Env(t) // skipped under -short
//		...
//	}
type Shared struct {
	opts Options

	once sync.Once
	env  *Env  // set by once, nil if the start failed or never ran
	err  error // the start's error, reported to every test that asks
}

// NewShared returns a Shared that starts an Env with opts when first asked.
func NewShared(opts Options) *Shared { return &Shared{opts: opts} }

// Env returns the running env, starting it on the first call; concurrent
// callers wait for that start. Under -short the test is skipped. When the
// start failed, every caller fails with its error (the components' logs
// were printed once, at the failure).
func (s *Shared) Env(tb testing.TB) *Env {
	tb.Helper()
	SkipIfShort(tb, "the local test cluster")
	s.once.Do(s.start)
	if s.err != nil {
		tb.Fatal(s.err)
	}
	return s.env
}

func (s *Shared) start() {
	// Ctrl-C while starting stops what was started instead of leaving the
	// temp dir behind. Afterwards the default behaviour applies, and the
	// kernel kills the components with the test binary (Pdeathsig).
	sigCtx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	// Not the first test's context: the env outlives that test.
	ctx, cancel := context.WithTimeout(sigCtx, MainStartTimeout)
	defer cancel()
	e, err := start(ctx, s.opts)
	if err != nil {
		if e != nil {
			e.DumpLogs(os.Stderr)
			e.MarkFailed()
			if stopErr := e.Stop(); stopErr != nil {
				fmt.Fprintln(os.Stderr, stopErr)
			}
			err = fmt.Errorf("%w (logs kept in %s)", err, e.dir)
		}
		s.err = err // says "testenv: ..." already
		return
	}
	s.env = e
}

// Main runs the tests and then, if one of them started the env, stops it;
// when tests failed it first prints every component's log and keeps them on
// disk. Call it from TestMain.
func (s *Shared) Main(m *testing.M) int {
	code := m.Run()
	// Every test has returned: no start can be under way, and none may
	// begin now.
	s.once.Do(func() {})
	return s.stop(code)
}

// stop ends a started env after the tests, turning a failed stop into a
// failed run.
func (s *Shared) stop(code int) int {
	e := s.env
	if e == nil {
		return code
	}
	if code != 0 {
		e.MarkFailed()
		e.DumpExitedLogs(os.Stderr)
	}
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
