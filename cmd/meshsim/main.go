// Command meshsim simulates an Istio mesh's traffic to one service and
// serves Istio's standard metrics for Prometheus, for Sluice's demo and
// end-to-end tests. See package sluice.dev/sluice/meshsim.
//
//	meshsim --kubeconfig kc --service istioinaction/catalog --rps 50 \
//	    --cohort-share 0.1 --version v2:0.1:300ms --listen 127.0.0.1:9464
//
// The first line on standard output is "meshsim listening on HOST:PORT".
// Change a version while it runs:
//
//	curl -X POST 'http://HOST:PORT/versions/v2?errorRate=0.1&latencyMs=300'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"sluice.dev/sluice/internal/meshsim"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "meshsim:", err)
		os.Exit(1)
	}
}

// versionsFlag collects repeated --version VERSION:ERRORRATE:LATENCY.
type versionsFlag map[string]meshsim.Behavior

func (v versionsFlag) String() string { return "" }

func (v versionsFlag) Set(s string) error {
	parts := strings.Split(s, ":")
	if len(parts) != 3 || parts[0] == "" {
		return fmt.Errorf("%q: want VERSION:ERRORRATE:LATENCY, e.g. v2:0.1:300ms", s)
	}
	rate, err := strconv.ParseFloat(parts[1], 64)
	if err != nil {
		return fmt.Errorf("%q: error rate %q is not a number", s, parts[1])
	}
	lat, err := time.ParseDuration(parts[2])
	if err != nil {
		return fmt.Errorf("%q: latency %q is not a duration such as 300ms", s, parts[2])
	}
	v[parts[0]] = meshsim.Behavior{ErrorRate: rate, Latency: lat}
	return nil
}

// labelsFlag reads k=v,k=v.
type labelsFlag map[string]string

func (l labelsFlag) String() string { return "" }

func (l labelsFlag) Set(s string) error {
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("%q: want key=value[,key=value]", kv)
		}
		l[k] = v
	}
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("meshsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg         meshsim.Config
		kubeconfig  = fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
		service     = fs.String("service", "", "the service, NAMESPACE/NAME or NAME with --namespace (required)")
		cohort      = fs.String("cohort-header", meshsim.DefaultCohortHeader+":"+meshsim.DefaultCohortValue, "the dark-launch header as NAME:VALUE")
		versions    = versionsFlag{}
		srcLabels   = labelsFlag{}
		defaultLat  = fs.Duration("default-latency", meshsim.DefaultLatency, "latency of versions without --version")
		logLevel    = fs.String("log-level", "info", "debug, info, warn or error")
		sourceLabel = "source workload's labels for sourceLabels matches, k=v,k=v (default app=<source-workload>)"
	)
	fs.StringVar(&cfg.Namespace, "namespace", "", "the service's namespace, if --service has none")
	fs.StringVar(&cfg.VirtualService, "virtual-service", "", "VirtualService to follow (default <service>-mesh)")
	fs.Float64Var(&cfg.RPS, "rps", meshsim.DefaultRPS, "requests per second")
	fs.Float64Var(&cfg.CohortShare, "cohort-share", 0, "share of requests (0-1) carrying the dark-launch header")
	fs.StringVar(&cfg.Path, "path", meshsim.DefaultPath, "request path, for uri matches")
	fs.StringVar(&cfg.Source.Workload, "source-workload", meshsim.DefaultSource, "the simulated client workload")
	fs.StringVar(&cfg.Source.Namespace, "source-namespace", "", "the client's namespace (default the service's)")
	fs.StringVar(&cfg.Source.Gateway, "gateway", "mesh", `gateway the client comes through: "mesh" for sidecars`)
	fs.Var(srcLabels, "source-labels", sourceLabel)
	fs.Var(versions, "version", "a version's behaviour as VERSION:ERRORRATE:LATENCY, e.g. v2:0.1:300ms (repeatable)")
	fs.Float64Var(&cfg.Jitter, "jitter", 0.1, "latency varies by up to this share either way")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the latency jitter")
	fs.DurationVar(&cfg.Tick, "tick", meshsim.DefaultTick, "how often a batch of requests is generated")
	fs.DurationVar(&cfg.PollInterval, "poll", meshsim.DefaultPollInterval, "how often routing is read from the API server")
	fs.StringVar(&cfg.ListenAddress, "listen", meshsim.DefaultListen, "address serving /metrics and /versions")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", *logLevel, err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	switch ns, name, ok := strings.Cut(*service, "/"); {
	case *service == "":
		return errors.New("--service is required, e.g. --service istioinaction/catalog")
	case ok && cfg.Namespace != "" && cfg.Namespace != ns:
		return fmt.Errorf("--service %s and --namespace %s disagree", *service, cfg.Namespace)
	case ok:
		cfg.Namespace, cfg.Service = ns, name
	default:
		cfg.Service = name
	}
	if cfg.Namespace == "" {
		return errors.New("the service's namespace is missing: use --service NAMESPACE/NAME")
	}
	name, value, ok := strings.Cut(*cohort, ":")
	if !ok || name == "" || value == "" {
		return fmt.Errorf("--cohort-header %q: want NAME:VALUE", *cohort)
	}
	cfg.CohortHeader, cfg.CohortValue = name, value
	cfg.Versions = versions
	cfg.Default.Latency = *defaultLat
	if len(srcLabels) > 0 {
		cfg.Source.Labels = srcLabels
	}

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = *kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.RESTConfig = rc

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	sim, err := meshsim.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "meshsim listening on %s\n", sim.Addr())
	<-sim.Done()
	return sim.Close()
}
