package main

import (
	"context"
	"sync/atomic"
	"testing"
)

// TestCoalesce: calls made while the function runs come to one more run,
// however many; a call made after that run returned runs it again.
func TestCoalesce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runs atomic.Int32
	started, release, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
	call := coalesce(ctx, func(context.Context) {
		runs.Add(1)
		started <- struct{}{}
		<-release
		returned <- struct{}{}
	})
	call(ctx)
	<-started // the first run is under way
	for range 100 {
		call(ctx)
	}
	release <- struct{}{}
	<-returned
	<-started // one run for the hundred calls
	release <- struct{}{}
	<-returned
	if got := runs.Load(); got != 2 {
		t.Fatalf("%d runs after a hundred calls during the first, want 2", got)
	}
	call(ctx)
	<-started
	release <- struct{}{}
	<-returned
	if got := runs.Load(); got != 3 {
		t.Errorf("%d runs, want 3", got)
	}
}
