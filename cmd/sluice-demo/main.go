// Command sluice-demo runs the catalog release of examples/catalog end to
// end on the local test cluster: it starts the cluster and Prometheus, a
// Git remote seeded with the example at v1, the mesh simulator and sluice,
// then pushes v2 as a person would and shows the release progressing, one
// commit per transition, to promotion (or, with --bad, to a rollback).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"sluice.dev/sluice/internal/stack"
	"sluice.dev/sluice/internal/testenv"
	"sluice.dev/sluice/record"
)

func main() {
	var (
		bad      = flag.Bool("bad", false, "make v2 fail 10% of its requests, so the release rolls back")
		sluice   = flag.String("sluice", "bin/sluice", "the sluice binary to run")
		example  = flag.String("example", "examples/catalog", "the example repository layout")
		interval = flag.Duration("interval", 5*time.Second, "analysis interval (the example says 45s; the demo is in a hurry)")
		window   = flag.Duration("window", 20*time.Second, "metric window (the example says 1m and 30s)")
		keep     = flag.Bool("keep", false, "keep everything running after the release until Ctrl-C")
	)
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: sluice-demo [flags]\n\nRuns a real release of examples/catalog on the local test cluster.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *sluice, *example, *interval, *window, *bad, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, sluice, example string, interval, window time.Duration, bad, keep bool) error {
	if _, err := os.Stat(sluice); err != nil {
		return fmt.Errorf("%s: %w (run `make build` first)", sluice, err)
	}
	sluice, _ = filepath.Abs(sluice)
	dir, err := os.MkdirTemp("", "sluice-demo-")
	if err != nil {
		return err
	}
	say("starting the local test cluster (etcd, kube-apiserver, controller-manager, scheduler, kwok) and Prometheus")
	env, err := testenv.Start(ctx, testenv.Options{Prometheus: true})
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			say("stopping the test cluster: %v", err)
		}
	}()
	say("cluster up in %s; kubeconfig %s; Prometheus %s", env.StartupDuration().Round(time.Second), env.KubeconfigPath(), env.PrometheusURL())

	s, err := stack.Start(ctx, dir, stack.Options{
		Env: env, Sluice: sluice, Example: example,
		Interval: interval, Window: window, CohortShare: 0.2,
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	defer s.Close()
	say("Git remote %s seeded with examples/catalog at v1; a person's clone is %s", s.Remote, s.Person)
	if err := s.StartSluice(ctx); err != nil {
		return err
	}
	say("sluice is running (log: %s)", filepath.Join(dir, "sluice.log"))

	seen := 0
	if _, err := waitRecord(ctx, s, &seen, func(st *record.Status) bool { return st.Phase == record.PhaseSteady }); err != nil {
		return err
	}
	if bad {
		if err := s.Mesh.SetVersion("v2", 0.10, 20*time.Millisecond); err != nil {
			return err
		}
		say("the mesh simulator makes v2 fail 10%% of its requests")
	}
	say("a person pushes v2: spec.candidate: v2 in %s", stack.ReleaseFile)
	if _, err := s.PushCandidate(ctx, "v2"); err != nil {
		return err
	}
	if err := s.TriggerSync(ctx); err != nil {
		return err
	}
	final, err := waitRecord(ctx, s, &seen, func(st *record.Status) bool {
		return st.Candidate == "v2" && (st.Phase == record.PhasePromoted || st.Phase == record.PhaseRolledBack)
	})
	if err != nil {
		return err
	}
	say("release %s: %s", final.Release, final.Phase)
	fmt.Println()
	fmt.Println("git log --oneline of the remote:")
	out, _ := exec.CommandContext(ctx, "git", "-C", s.Bare, "log", "--oneline", "main").CombinedOutput()
	fmt.Print(indent(string(out)))
	fmt.Println()
	fmt.Println("sluice status:")
	out, _ = exec.CommandContext(ctx, sluice, "status", s.Remote).CombinedOutput()
	fmt.Print(indent(string(out)))
	if keep {
		say("everything keeps running; kubeconfig %s; Ctrl-C to stop", env.KubeconfigPath())
		<-ctx.Done()
	}
	return nil
}

// waitRecord prints Sluice's commits as they land, with the mesh's split,
// until the release's status satisfies done.
func waitRecord(ctx context.Context, s *stack.Stack, seen *int, done func(*record.Status) bool) (*record.Status, error) {
	var final *record.Status
	lastRouting := ""
	err := stack.WaitFor(ctx, 15*time.Minute, 500*time.Millisecond, "the release", func(ctx context.Context) (bool, error) {
		log, err := s.Log(ctx)
		if err != nil {
			return false, err
		}
		for _, l := range log[min(*seen, len(log)):] {
			hash, rest, _ := strings.Cut(l, " ")
			if subj, ok := strings.CutPrefix(rest, "Sluice: "); ok {
				say("commit %s  %s", hash[:8], subj)
			} else {
				who, subj, _ := strings.Cut(rest, ": ")
				say("commit %s  %s (by %s)", hash[:8], subj, who)
			}
		}
		*seen = len(log)
		if r := s.Mesh.Routing(); r != lastRouting {
			say("mesh: %s", r)
			lastRouting = r
		}
		data, err := s.ReadRemote(ctx, record.StatusPath(record.DefaultStatusDir, s.Namespace, "catalog"))
		if err != nil {
			return false, nil // not recorded yet
		}
		st, err := record.ParseStatus([]byte(data))
		if err != nil {
			return false, err
		}
		final = st
		return done(st), nil
	})
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return nil, errors.New("interrupted")
	}
	return final, err
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}
