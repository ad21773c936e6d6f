// Command testenv starts Sluice's local test cluster (see package
// sluice.dev/sluice/testenv), prints how to reach it, and keeps it running
// until interrupted.
//
//	go run ./internal/testenv/cmd/testenv [-prometheus=false] [-nodes 3] [-debug]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"sluice.dev/sluice/internal/testenv"
)

func main() {
	prometheus := flag.Bool("prometheus", true, "also start Prometheus")
	nodes := flag.Int("nodes", 1, "number of kwok fake nodes")
	timeout := flag.Duration("start-timeout", testenv.MainStartTimeout, "give up starting after this long")
	debug := flag.Bool("debug", false, "log each component's start and stop")
	flag.Parse()
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	if err := run(*prometheus, *nodes, *timeout, level); err != nil {
		fmt.Fprintln(os.Stderr, err) // already says "testenv: ..."
		os.Exit(1)
	}
}

func run(prometheus bool, nodes int, timeout time.Duration, level slog.Level) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	startCtx, cancel := context.WithTimeout(ctx, timeout)
	env, err := testenv.Start(startCtx, testenv.Options{Prometheus: prometheus, Nodes: nodes, Logger: logger})
	cancel()
	if err != nil {
		return err
	}
	fmt.Printf("Kubernetes API: %s\n", env.RESTConfig().Host)
	fmt.Printf("export KUBECONFIG=%s\n", env.KubeconfigPath())
	if url := env.PrometheusURL(); url != "" {
		fmt.Printf("Prometheus:     %s\n", url)
	}
	fmt.Printf("Logs:           %s/logs\n", env.Dir())
	fmt.Printf("Started in %s. Press Ctrl-C to stop.\n", env.StartupDuration().Round(time.Millisecond))

	<-ctx.Done()
	fmt.Println("stopping")
	return env.Stop()
}
