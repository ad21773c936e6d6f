package reconciler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/leader"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
	"sluice.dev/sluice/webhook"
)

// fakeShards holds the shards a test says, each with a context that
// ends when the test takes the shard away.
type fakeShards struct {
	n    int
	mu   sync.Mutex
	held map[int]context.CancelFunc
	ctxs map[int]context.Context
}

func newFakeShards(n int, held ...int) *fakeShards {
	f := &fakeShards{n: n, held: map[int]context.CancelFunc{}, ctxs: map[int]context.Context{}}
	for _, i := range held {
		f.gain(i)
	}
	return f
}

func (f *fakeShards) gain(i int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	f.held[i], f.ctxs[i] = cancel, ctx
}

func (f *fakeShards) lose(i int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cancel := f.held[i]; cancel != nil {
		cancel()
	}
	delete(f.held, i)
}

func (f *fakeShards) Of(id string) int { return leader.ShardOf(id, f.n) }

func (f *fakeShards) Holds(i int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[i] != nil
}

func (f *fakeShards) Hold(i int) (context.Context, func(), bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held[i] == nil {
		return nil, nil, false
	}
	return f.ctxs[i], func() {}, true
}

// TestShards: replicas holding disjoint shards split the releases by
// shard, none reconciling or deleting another's; a shard gained queues
// its releases with nothing remembered of them; a shard lost drops them.
func TestShards(t *testing.T) {
	repo, _ := batchRepo(t)
	ctx := t.Context()
	const shards = 3
	files := map[string][]byte{}
	var ids []string
	for i := range 9 {
		name := fmt.Sprintf("app-%d", i)
		files["releases/"+name+".yaml"] = []byte(releaseDoc("shop", name))
		ids = append(ids, "shop/"+name)
	}
	// gone was deleted from Git; its status file remains.
	files[".sluice/status/shop/gone.yaml"] = statusDoc(t, "shop/gone", "releases/gone.yaml", nil)
	if _, err := repo.Commit(ctx, gitsync.Change{Message: "test", Files: files}); err != nil {
		t.Fatal(err)
	}
	byShard := map[int][]string{}
	for _, id := range append(slices.Clone(ids), "shop/gone") {
		byShard[leader.ShardOf(id, shards)] = append(byShard[leader.ShardOf(id, shards)], id)
	}
	for i := range shards {
		slices.Sort(byShard[i])
	}
	goneShard := leader.ShardOf("shop/gone", shards)

	newR := func(sh *fakeShards) *Reconciler {
		t.Helper()
		r, err := New(Config{Repo: repo, Cluster: nopCluster{}, Shards: sh, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name string
		held []int
	}{
		{"none", nil},
		{"one", []int{0}},
		{"two", []int{1, 2}},
		{"all", []int{0, 1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newR(newFakeShards(shards, tc.held...))
			snap, err := r.refresh(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, i := range tc.held {
				want = append(want, byShard[i]...)
			}
			slices.Sort(want)
			if got := r.assigned(snap); !slices.Equal(got, want) {
				t.Errorf("assigned %v, want %v", got, want)
			}
			// Releases of shards not held, gone included, are not touched:
			// nopCluster would fail an apply or a delete.
			head, _, _ := repo.Head()
			for i := range shards {
				if slices.Contains(tc.held, i) {
					continue
				}
				for _, id := range byShard[i] {
					if _, err := r.reconcile(ctx, id); err != nil {
						t.Errorf("reconcile %s, of shard %d not held: %v", id, i, err)
					}
				}
			}
			if now, _, _ := repo.Head(); now != head {
				t.Error("reconciling releases of shards not held committed")
			}
		})
	}

	// Gaining a shard queues its releases, forgetting what was kept of
	// them; losing it forgets them.
	sh := newFakeShards(shards)
	r := newR(sh)
	if _, err := r.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	stale := byShard[goneShard][0]
	r.memoFor(stale).applied = "stale"
	sh.gain(goneShard)
	r.ShardGained(goneShard)
	// Nothing of the shard is reconciled before Git is synced: the
	// previous holder may have recorded transitions since.
	if got := r.queue.Len(); got != 0 {
		t.Errorf("queue holds %d releases before the sync that follows a gain, want none", got)
	}
	if _, err := r.reconcile(ctx, stale); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	_, early := r.memo[stale]
	r.mu.Unlock()
	if early {
		t.Errorf("%s was reconciled before the sync that follows the gain", stale)
	}
	if err := r.syncOnce(ctx, false); err != nil {
		t.Fatal(err)
	}
	if got, want := r.queue.Len(), len(byShard[goneShard]); got != want {
		t.Errorf("queue holds %d releases after gaining shard %d and syncing, want its %d", got, goneShard, want)
	}
	r.mu.Lock()
	_, kept := r.memo[stale]
	r.mu.Unlock()
	if kept {
		t.Errorf("%s's memory from an earlier holding survived a new gain", stale)
	}
	r.memoFor(stale).applied = "x"
	sh.lose(goneShard)
	r.ShardLost(goneShard)
	r.mu.Lock()
	_, kept = r.memo[stale]
	r.mu.Unlock()
	if kept {
		t.Errorf("%s's memory survived losing its shard", stale)
	}
	r.queue.ShutDown()
}

// TestShardLostMidReconcile: a reconcile whose shard is lost while it
// runs stops acting (its context ends) and reports nothing as failed.
func TestShardLostMidReconcile(t *testing.T) {
	repo, _ := batchRepo(t)
	ctx := t.Context()
	if _, err := repo.Commit(ctx, gitsync.Change{Message: "test", Files: map[string][]byte{
		"releases/a.yaml":           []byte(releaseDoc("shop", "a")),
		"apps/x/kustomization.yaml": []byte("resources: [deployment.yaml]\n"),
		"apps/x/deployment.yaml":    []byte(xDeployment),
	}}); err != nil {
		t.Fatal(err)
	}
	shard := leader.ShardOf("shop/a", 2)
	sh := newFakeShards(2, shard)
	cl := &blockingCluster{started: make(chan struct{}, 1)}
	r, err := New(Config{Repo: repo, Cluster: cl, Shards: sh, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		err error
	}
	done := make(chan result, 1)
	go func() {
		_, err := r.reconcile(ctx, "shop/a")
		done <- result{err}
	}()
	select {
	case <-cl.started:
	case res := <-done:
		t.Fatalf("reconcile returned %v before it applied", res.err)
	}
	head, _, _ := repo.Head()
	sh.lose(shard)
	res := <-done
	if res.err != nil {
		t.Errorf("reconcile after the shard was lost: %v, want nil (stopped, not failed)", res.err)
	}
	if now, _, _ := repo.Head(); now != head {
		t.Error("a reconcile committed after its shard was lost")
	}
}

// blockingCluster's Apply waits until its context ends.
type blockingCluster struct{ started chan struct{} }

func (c *blockingCluster) Apply(ctx context.Context, _ cluster.Set, _ cluster.ApplyOptions) (*cluster.Result, error) {
	select {
	case c.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (c *blockingCluster) Available(context.Context, string, string) (bool, string, error) {
	return false, "blocked", nil
}

const xDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
spec:
  selector:
    matchLabels: {app: x}
  template:
    metadata:
      labels: {app: x}
    spec:
      containers: [{name: x, image: x}]
`

// TestShardLoadHooksOutliveReconcile: a load webhook is posted in the
// background; with shards it must not end when the reconcile that
// started it returns (its own context), only when the shard is lost.
func TestShardLoadHooksOutliveReconcile(t *testing.T) {
	tests := []struct {
		name      string
		shards    bool
		loseShard bool
		want      string
	}{
		{name: "no shards", want: "served"},
		{name: "shard held", shards: true, want: "served"},
		{name: "shard lost", shards: true, loseShard: true, want: "cancelled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arrived, release := make(chan struct{}, 1), make(chan struct{})
			outcome := make(chan string, 4)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				// Read the body: only then does the server see the
				// client go away.
				_, _ = io.Copy(io.Discard, req.Body)
				arrived <- struct{}{}
				select {
				case <-release:
					w.WriteHeader(http.StatusOK)
					outcome <- "served"
				case <-req.Context().Done():
					outcome <- "cancelled"
				}
			}))
			defer srv.Close()
			defer close(release)

			worker, stopWorker := context.WithCancel(t.Context())
			defer stopWorker()
			sh := newFakeShards(1, 0)
			bg := background{work: worker}
			if tt.shards {
				bg.shard, _, _ = sh.Hold(0)
			}
			hooks := webhook.New(webhook.Options{})
			logs := &messageLog{}
			rc := &run{r: &Reconciler{hooks: hooks, log: slog.New(logs)}, bg: bg}
			now := time.Now().UTC().Truncate(time.Second)
			in := Input{
				Now: now, Release: "shop/a", Namespace: "shop", Name: "a",
				Spec:   &specs.Release{},
				Status: &record.Status{Phase: record.PhaseProgressing},
				Plan: []specs.Step{{Name: "canary-10", Gates: specs.Gates{Webhooks: []specs.Webhook{
					{Name: "load", Type: specs.WebhookLoad, URL: srv.URL, Retries: new(int)}}}}},
			}
			// The reconcile's own context, ended as the reconcile returns.
			ctx, cancel := context.WithCancel(worker)
			rc.startLoad(ctx, in, Decision{Memo: Memo{LastCheck: now}})
			<-arrived
			cancel()
			if tt.loseShard {
				sh.lose(0)
			} else {
				release <- struct{}{}
			}
			if got := <-outcome; got != tt.want {
				t.Errorf("server: load webhook %s, want %s", got, tt.want)
			}
			hooks.Wait()
			// What the poster saw: an answer, or its context's end.
			if got, want := logs.messages(), map[bool]string{true: "webhook passed", false: "load webhook failed; the step goes on"}[tt.want == "served"]; !slices.Equal(got, []string{want}) {
				t.Errorf("logged %q, want %q", got, want)
			}
		})
	}
}

// messageLog is a slog.Handler that keeps the messages logged.
type messageLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *messageLog) Enabled(context.Context, slog.Level) bool { return true }

func (l *messageLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

func (l *messageLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *messageLog) WithGroup(string) slog.Handler      { return l }

func (l *messageLog) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.msgs)
}
