package stack

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"syscall"

	"sluice.dev/sluice/internal/meshsim"
	"sluice.dev/sluice/internal/testenv"
)

// AddCluster makes another test cluster a target of the stack's
// repository, as a second cluster fed from the same Git remote: it creates
// the stack's namespace there and runs a mesh simulator of its own,
// scraped by that cluster's Prometheus. A Sluice runs on it with
// StartReplicaOn.
func (s *Stack) AddCluster(ctx context.Context, env *testenv.Env) error {
	if err := env.CreateNamespace(ctx, s.Namespace); err != nil {
		return err
	}
	mesh, err := meshsim.Start(ctx, meshsim.Config{
		RESTConfig:  env.RESTConfig(),
		Namespace:   s.Namespace,
		Service:     "catalog",
		RPS:         cmp.Or(s.opts.RPS, 50),
		CohortShare: s.opts.CohortShare,
		Jitter:      0.2,
		Seed:        2,
		Logger:      s.opts.Log.With("component", "meshsim", "cluster", env.Dir()),
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.meshes = append(s.meshes, mesh)
	s.mu.Unlock()
	return env.AddScrapeTarget(ctx, "meshsim-"+s.Namespace, mesh.Addr())
}

// StartReplicaOn runs one `sluice run` named name against env (its API
// server and Prometheus) rather than the stack's own cluster, with extra
// arguments (--cluster, --release-selector).
func (s *Stack) StartReplicaOn(ctx context.Context, name string, env *testenv.Env, extra ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replicas[name] != nil {
		return fmt.Errorf("sluice %s is already running", name)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	args, err := s.sluiceArgs(addr)
	if err != nil {
		return err
	}
	// The later of a repeated flag wins.
	args = append(args, "--kubeconfig", env.KubeconfigPath(), "--prometheus-url", env.PrometheusURL())
	args = append(args, extra...)
	logFile, err := os.OpenFile(s.logPath(name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, s.opts.Sluice, slices.Clip(args)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "POD_NAME="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start sluice: %w", err)
	}
	r := &replica{cmd: cmd, log: logFile, adminAddr: addr, waitErr: make(chan error, 1)}
	go func() { r.waitErr <- cmd.Wait() }()
	s.replicas[name] = r
	return nil
}
