package gitsync_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"syscall"
	"testing"
	"time"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/internal/gitserver"
)

const (
	benchCommits = 10_000
	benchFiles   = 5_000
)

// heapPeak samples the live heap while a measured section runs; the
// sampling goroutine is a measuring instrument, not part of the result.
type heapPeak struct {
	stop chan struct{}
	done sync.WaitGroup
	peak uint64
}

func startHeapPeak() *heapPeak {
	runtime.GC()
	h := &heapPeak{stop: make(chan struct{})}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(sample)
		if v := sample[0].Value.Uint64(); v > h.peak {
			h.peak = v
		}
	}
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			read()
			select {
			case <-h.stop:
				read()
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapPeak) end() float64 {
	close(h.stop)
	h.done.Wait()
	return float64(h.peak) / (1 << 20)
}

func maxRSSMB(who int) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // kilobytes on Linux
}

// BenchmarkSync measures, on a repository of 10,000 commits and 5,000
// files: a cold shallow clone, and an incremental Sync after one new
// commit (goal: under 200 ms). Metrics: peak-heap-MB is the largest live
// Go heap seen during the timed work; maxrss-MB is this process's peak
// RSS and git-maxrss-MB the largest git child's (upload-pack), both over
// the whole run.
func BenchmarkSync(b *testing.B) {
	start := time.Now()
	bare := gitserver.GenerateRepo(b, b.TempDir(), "big", benchCommits, benchFiles)
	b.Logf("generated %d commits x %d files in %v", benchCommits, benchFiles, time.Since(start))
	ctx := context.Background()

	remotes := map[string]string{"file": fileURL(bare)}
	var httpBare string
	if _, err := filepath.Abs(gitserver.HTTPBackend); err == nil {
		root := filepath.Dir(bare)
		srv := gitserver.StartHTTP(b, root, "", "", false)
		remotes["http"] = srv.URL + "/big.git"
		httpBare = bare
	}
	_ = httpBare

	for _, proto := range []string{"file", "http"} {
		url, ok := remotes[proto]
		if !ok {
			continue
		}
		b.Run("cold-shallow-clone/"+proto, func(b *testing.B) {
			var peak float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				r, _ := openRepo(b, gitsync.Config{URL: url, Dir: filepath.Join(b.TempDir(), "cache")})
				h := startHeapPeak()
				b.StartTimer()
				if _, err := r.Sync(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				peak = max(peak, h.end())
			}
			b.ReportMetric(peak, "peak-heap-MB")
			b.ReportMetric(maxRSSMB(syscall.RUSAGE_SELF), "maxrss-MB")
			b.ReportMetric(maxRSSMB(syscall.RUSAGE_CHILDREN), "git-maxrss-MB")
		})

		b.Run("incremental-sync/"+proto, func(b *testing.B) {
			r, _ := openRepo(b, gitsync.Config{URL: url, Dir: filepath.Join(b.TempDir(), "cache")})
			if _, err := r.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			var peak float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if err := gitserver.AddCommit(ctx, bare, i+int(time.Now().UnixNano()%1_000_000)); err != nil {
					b.Fatal(err)
				}
				h := startHeapPeak()
				b.StartTimer()
				res, err := r.Sync(ctx)
				b.StopTimer()
				peak = max(peak, h.end())
				if err != nil {
					b.Fatal(err)
				}
				if !res.Changed {
					b.Fatal("Sync missed the new commit")
				}
			}
			b.ReportMetric(peak, "peak-heap-MB")
			b.ReportMetric(maxRSSMB(syscall.RUSAGE_SELF), "maxrss-MB")
		})

		b.Run("status-commit-push/"+proto, func(b *testing.B) {
			r, _ := openRepo(b, gitsync.Config{URL: url, Dir: filepath.Join(b.TempDir(), "cache")})
			if _, err := r.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				res, err := r.Commit(ctx, gitsync.Change{
					Message: fmt.Sprint("sluice: status ", i),
					Files:   map[string][]byte{".sluice/status.yaml": []byte(fmt.Sprintf("n: %d-%d\n", i, time.Now().UnixNano()))},
				})
				if err != nil || !res.Pushed {
					b.Fatalf("Commit = %+v, %v", res, err)
				}
			}
		})
	}
}
