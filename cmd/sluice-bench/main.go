// Command sluice-bench measures Sluice at scale: for each N it generates a
// Git repository of N releases, starts the local test cluster and
// Prometheus, runs the sluice binary and measures cold start, no-change
// passes, single changed releases, memory and commits. It prints a table
// and writes the results as JSON (and, with -markdown, a Markdown table).
//
//	go build -o bin/sluice ./cmd/sluice
//	go run ./cmd/sluice-bench -n 100,1000,5000 -json bench.json
//
// With -release-timing it times one good and one bad release of
// examples/catalog instead; with -flagger and -flagger-crd too, the same
// releases run by a Flagger binary, for comparison (make
// bench-release-flagger; Flagger is not a dependency of Sluice).
//
// With -replicas R (and -shards S), R sluice processes share the releases
// as replicas of one Deployment would: the figures add each replica's
// CPU, memory, API requests and push retries, the time until a SIGKILLed
// replica's releases are applied again by the others, and a check of the
// Git history for transitions committed twice.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"sluice.dev/sluice/internal/bench"
	"sluice.dev/sluice/leader"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		sizes      = flag.String("n", "100,1000,5000", "comma-separated release counts to measure")
		sluice     = flag.String("sluice", "bin/sluice", "the sluice binary")
		jsonOut    = flag.String("json", "bench-results.json", "write the results here as JSON")
		markdown   = flag.String("markdown", "", "also write the results as a Markdown table here")
		namespaces = flag.Int("namespaces", 10, "namespaces the releases are spread over")
		appReplica = flag.Int("app-replicas", 0, "replicas of each app's Deployment")
		replicas   = flag.Int("replicas", 1, "sluice processes sharing the releases; with more than one (or -shards above 1) they run with --leader-elect, and one is SIGKILLed at the end to time the takeover")
		shards     = flag.Int("shards", 1, "sluice's --shards (1: no sharding; with several replicas one leads and the others stand by)")
		takeover   = flag.Duration("takeover-timeout", 0, "give up on the takeover of a killed replica's releases after this long (0: 2 minutes)")
		workers    = flag.Int("workers", 0, "sluice's --workers (0: its default)")
		passes     = flag.Int("passes", 3, "no-change passes and changed releases measured per size")
		dir        = flag.String("dir", "", "working directory (default: a new temporary one, removed at the end)")
		keep       = flag.Bool("keep", false, "keep the working directory")
		extra      = flag.String("sluice-args", "", "extra space-separated arguments for `sluice run`")
		timing     = flag.Bool("release-timing", false, "instead of the scale runs, time one good and one bad release of examples/catalog (interval 10s, threshold 2, 10% to 50%, 50 requests/s, no dark launch)")
		example    = flag.String("example", "examples/catalog", "the catalog example, for -release-timing")
		coldLimit  = flag.Duration("cold-timeout", 0, "give up on a cold start after this long (0: 2 minutes plus 100 ms per release; more on a loaded machine)")
		gitInMem   = flag.Bool("git-in-memory", false, "keep each sluice's clone in memory instead of on disk (--git-cache-dir) as deploy/ does")
		extraEnv   = flag.String("sluice-env", "", "space-separated KEY=VALUE added to sluice's environment only, e.g. GOMEMLIMIT=440MiB as deploy/ sets it")
		flagger    = flag.String("flagger", "", "with -release-timing: time the same releases run by this flagger binary instead of sluice (needs -flagger-crd)")
		flaggerCRD = flag.String("flagger-crd", "", "Flagger's CRDs, artifacts/flagger/crd.yaml of the flagger binary's release, for -flagger")
		runs       = flag.Int("runs", 1, "with -flagger: how many good and how many bad releases to time")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if *flagger != "" {
		if !*timing || *flaggerCRD == "" {
			return errors.New("-flagger: use it with -release-timing and -flagger-crd")
		}
		return runFlagger(ctx, log, *flagger, *flaggerCRD, *example, *dir, *keep, *runs, *jsonOut)
	}
	var ns []int
	for s := range strings.SplitSeq(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("-n %q: want positive release counts such as 100,1000", *sizes)
		}
		ns = append(ns, n)
	}
	bin, err := filepath.Abs(*sluice)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("-sluice %s: %w (build it with `make build`)", *sluice, err)
	}
	root := *dir
	if root == "" {
		if root, err = os.MkdirTemp("", "sluice-bench-"); err != nil {
			return err
		}
		if !*keep {
			defer os.RemoveAll(root)
		}
	}

	if *timing {
		ex, err := filepath.Abs(*example)
		if err != nil {
			return err
		}
		list, err := bench.ReleaseTiming(ctx, bench.TimingConfig{Sluice: bin, Example: ex, Dir: root,
			SluiceArgs: strings.Fields(*extra), SluiceEnv: strings.Fields(*extraEnv), Log: log})
		if len(list) > 0 {
			fmt.Println()
			if err := bench.WriteTimingTable(os.Stdout, list); err != nil {
				return err
			}
			data, jerr := json.MarshalIndent(list, "", "  ")
			if jerr != nil {
				return jerr
			}
			if werr := os.WriteFile(*jsonOut, append(data, '\n'), 0o644); werr != nil {
				return werr
			}
		}
		return err
	}
	var results []*bench.Result
	var errs []error
	for _, n := range ns {
		d := filepath.Join(root, fmt.Sprintf("n%d", n))
		log.Info("measuring", "releases", n, "dir", d)
		res, err := bench.Run(ctx, bench.Config{
			RepoSpec:    bench.RepoSpec{Releases: n, Namespaces: *namespaces, Replicas: *appReplica},
			Sluice:      bin,
			Dir:         d,
			Workers:     *workers,
			Passes:      *passes,
			SluiceArgs:  strings.Fields(*extra),
			SluiceEnv:   strings.Fields(*extraEnv),
			GitInMemory: *gitInMem,
			ColdTimeout: *coldLimit,

			SluiceReplicas:  *replicas,
			Shards:          *shards,
			TakeoverTimeout: *takeover,
			ShardOf:         leader.ShardOf,
			Log:             log,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%d releases: %w", n, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		results = append(results, res)
	}
	if len(results) > 0 {
		fmt.Println()
		if err := bench.WriteTable(os.Stdout, results); err != nil {
			return err
		}
		if err := bench.WriteShared(os.Stdout, results); err != nil {
			return err
		}
		data, err := json.MarshalIndent(results, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, append(data, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Println("\nresults written to", *jsonOut)
		if *markdown != "" {
			f, err := os.Create(*markdown)
			if err != nil {
				return err
			}
			bench.WriteMarkdown(f, results)
			if err := f.Close(); err != nil {
				return err
			}
		}
	}
	return errors.Join(errs...)
}

// runFlagger times Flagger's good and bad releases (bench.FlaggerReleaseTiming)
// and writes them as a table and as JSON.
func runFlagger(ctx context.Context, log *slog.Logger, flagger, crd, example, dir string, keep bool, runs int, jsonOut string) error {
	paths := map[string]*string{"-flagger": &flagger, "-flagger-crd": &crd, "-example": &example}
	for _, name := range []string{"-flagger", "-flagger-crd", "-example"} {
		abs, err := filepath.Abs(*paths[name])
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		*paths[name] = abs
	}
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "sluice-bench-flagger-"); err != nil {
			return err
		}
		if !keep {
			defer os.RemoveAll(dir)
		}
	}
	list, err := bench.FlaggerReleaseTiming(ctx, bench.FlaggerConfig{Flagger: flagger, CRD: crd, Example: example, Dir: dir, Runs: runs, Log: log})
	if len(list) > 0 {
		fmt.Printf("\n%s (%s)\n", list[0].Flagger, list[0].Build)
		if werr := bench.WriteFlaggerTable(os.Stdout, list); werr != nil {
			return errors.Join(err, werr)
		}
		data, jerr := json.MarshalIndent(list, "", "  ")
		if jerr != nil {
			return errors.Join(err, jerr)
		}
		if werr := os.WriteFile(jsonOut, append(data, '\n'), 0o644); werr != nil {
			return errors.Join(err, werr)
		}
		fmt.Println("\nresults written to", jsonOut)
	}
	return err
}
