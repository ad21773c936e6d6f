// Command sluice is a GitOps reconciler for progressive delivery on Istio.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	_ "time/tzdata" // release windows name time zones; a minimal image has no zoneinfo
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		var exit exitError
		if !errors.As(err, &exit) {
			fmt.Fprintln(os.Stderr, "Error:", err)
		}
		code := 1
		var c exitCode
		if errors.As(err, &c) {
			code = c.code
		}
		os.Exit(code)
	}
}

// exitError is an error the command already reported in full.
type exitError struct{ error }

// exitCode is an error that ends the command with its own exit status
// (sluice diff exits 1 on differences and 2 on errors, as kubectl diff).
type exitCode struct {
	error
	code int
}

func (e exitCode) Unwrap() error { return e.error }
