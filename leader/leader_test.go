package leader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/internal/testenv"
)

// testEnv holds the Leases, started by the first test that needs it.
var testEnv = testenv.NewShared(testenv.Options{})

func TestMain(m *testing.M) { os.Exit(testEnv.Main(m)) }

// Short settings keep the tests quick; they satisfy client-go's rules.
const (
	testLease = 3 * time.Second
	testRenew = 2 * time.Second
	testRetry = 500 * time.Millisecond
)

// term is one replica's time as leader.
type term struct {
	who        string
	start, end time.Time
}

// replica runs Run in the background and records its terms. When its
// lead function's context ends, it signals stopping and, when hold is set,
// keeps "working" until hold is closed.
type replica struct {
	name     string
	cancel   context.CancelFunc
	done     chan error
	stopping chan struct{}
	hold     chan struct{}
}

type terms struct {
	mu   sync.Mutex
	list []term
	now  map[string]bool
}

func (ts *terms) leading(who string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.now[who]
}

func startReplica(t *testing.T, ts *terms, ns, name string, hold chan struct{}) *replica {
	t.Helper()
	env := testEnv.Env(t)
	ctx, cancel := context.WithCancel(t.Context())
	r := &replica{name: name, cancel: cancel, done: make(chan error, 1), stopping: make(chan struct{}), hold: hold}
	cfg := Config{
		Client:    NewLeases(dynamic.NewForConfigOrDie(env.RESTConfig())),
		Namespace: ns, Name: "sluice", Identity: NewIdentity(name, ""),
		LeaseDuration: testLease, RenewDeadline: testRenew, RetryPeriod: testRetry,
	}
	go func() {
		r.done <- Run(ctx, cfg, func(ctx context.Context) error {
			ts.mu.Lock()
			ts.now[name] = true
			ts.list = append(ts.list, term{who: name, start: time.Now()})
			i := len(ts.list) - 1
			ts.mu.Unlock()
			<-ctx.Done()
			close(r.stopping)
			if r.hold != nil {
				<-r.hold
			}
			ts.mu.Lock()
			ts.now[name] = false
			ts.list[i].end = time.Now()
			ts.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func newNamespace(t *testing.T) string {
	t.Helper()
	env := testEnv.Env(t)
	ns := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if err := env.CreateNamespace(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	return ns
}

// TestHandOver: of two replicas one leads; when it stops (a rolling
// update), it finishes its work, releases the Lease, and the other leads
// at once, without waiting for the Lease to expire. Terms never overlap.
func TestHandOver(t *testing.T) {
	env := testEnv.Env(t)
	ns := newNamespace(t)
	ts := &terms{now: map[string]bool{}}
	hold := make(chan struct{})
	a := startReplica(t, ts, ns, "a", hold)
	waitFor(t, "a to lead", func() bool { return ts.leading("a") })
	startReplica(t, ts, ns, "b", nil)
	leases := kubernetes.NewForConfigOrDie(env.RESTConfig()).CoordinationV1().Leases(ns)
	holder := func() string {
		t.Helper()
		lease, err := leases.Get(t.Context(), "sluice", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if lease.Spec.HolderIdentity == nil {
			return ""
		}
		return *lease.Spec.HolderIdentity
	}
	if h := holder(); !strings.HasPrefix(h, "a_") {
		t.Errorf("Lease holder %q, want a_...", h)
	}

	// a is asked to stop but is still finishing its work: it must keep
	// the Lease meanwhile, and b must not lead.
	a.cancel()
	<-a.stopping
	if h := holder(); !strings.HasPrefix(h, "a_") {
		t.Errorf("Lease holder %q while a finishes its work, want a_...", h)
	}
	if ts.leading("b") {
		t.Error("b leads while a still works")
	}
	stopped := time.Now()
	close(hold)
	if err := <-a.done; err != nil {
		t.Errorf("a's Run: %v, want nil after a stop", err)
	}
	a.done <- nil // for the cleanup
	waitFor(t, "b to lead", func() bool { return ts.leading("b") })
	t.Logf("hand-over took %s (lease duration %s)", time.Since(stopped).Round(time.Millisecond), testLease)

	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.list) != 2 || ts.list[0].who != "a" || ts.list[1].who != "b" {
		t.Fatalf("terms %+v, want a then b", ts.list)
	}
	if !ts.list[1].start.After(ts.list[0].end) {
		t.Errorf("b led from %s, before a's term ended at %s", ts.list[1].start, ts.list[0].end)
	}
}

// TestLost: a leader that cannot renew the Lease (another holder took it)
// stops leading, and Run says so with ErrLost.
func TestLost(t *testing.T) {
	env := testEnv.Env(t)
	ns := newNamespace(t)
	ts := &terms{now: map[string]bool{}}
	a := startReplica(t, ts, ns, "a", nil)
	waitFor(t, "a to lead", func() bool { return ts.leading("a") })

	leases := kubernetes.NewForConfigOrDie(env.RESTConfig()).CoordinationV1().Leases(ns)
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := leases.Get(ctx, "sluice", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		thief := "thief"
		now := metav1.NewMicroTime(time.Now())
		secs := int32(3600)
		l.Spec.HolderIdentity, l.Spec.RenewTime, l.Spec.AcquireTime, l.Spec.LeaseDurationSeconds = &thief, &now, &now, &secs
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err == nil, nil // a conflict with a's renewal: try again
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.done:
		if !errors.Is(err, ErrLost) {
			t.Errorf("Run: %v, want ErrLost", err)
		}
		a.done <- nil
	case <-time.After(time.Minute):
		t.Fatal("a still runs after losing the Lease")
	}
	if ts.leading("a") {
		t.Error("a's lead function did not return")
	}
}

func TestConfig(t *testing.T) {
	env := testEnv.Env(t)
	client := NewLeases(dynamic.NewForConfigOrDie(env.RESTConfig()))
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no client", Config{Namespace: "n", Name: "l", Identity: "i"}, "no client"},
		{"no namespace", Config{Client: client, Name: "l", Identity: "i"}, `namespace ""`},
		{"lease not above renew", Config{Client: client, Namespace: "n", Name: "l", Identity: "i", LeaseDuration: 5 * time.Second, RenewDeadline: 5 * time.Second}, "must be longer than the renew deadline"},
		{"renew too short for retry", Config{Client: client, Namespace: "n", Name: "l", Identity: "i", LeaseDuration: 15 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 2 * time.Second}, "must be longer than 1.2 times the retry period"},
		{"defaults", Config{Client: client, Namespace: "n", Name: "l", Identity: "i"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.validate()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	tests := []struct {
		host, advertise, wantPrefix, wantAddr string
	}{
		{"sluice-7d9f-x2k4q", "", "sluice-7d9f-x2k4q_", ""},
		{"sluice-7d9f-x2k4q", "10.0.0.7:8080", "sluice-7d9f-x2k4q_", "10.0.0.7:8080"},
		{"host", "[fd00::7]:8080", "host_", "[fd00::7]:8080"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.host, tc.advertise), func(t *testing.T) {
			a, b := NewIdentity(tc.host, tc.advertise), NewIdentity(tc.host, tc.advertise)
			if a == b {
				t.Errorf("two identities are both %q: a restarted process would take the Lease for its own", a)
			}
			if !strings.HasPrefix(a, tc.wantPrefix) {
				t.Errorf("identity %q, want prefix %q", a, tc.wantPrefix)
			}
			if got := Address(a); got != tc.wantAddr {
				t.Errorf("Address(%q) = %q, want %q", a, got, tc.wantAddr)
			}
		})
	}
}
