package leader

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// memLeases is an in-memory Lease store with the API server's
// resourceVersion compare-and-swap on Update; getDelay and updateDelay
// (nanoseconds) make its calls slow, as a loaded API server or a
// client-side rate limit does. A delay ends early when the call's
// context does.
type memLeases struct {
	getDelay, updateDelay atomic.Int64

	mu sync.Mutex
	rv int
	m  map[string]*coordinationv1.Lease
}

func newMemLeases() *memLeases { return &memLeases{m: map[string]*coordinationv1.Lease{}} }

func delay(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *memLeases) Get(ctx context.Context, _, name string) (*coordinationv1.Lease, error) {
	if err := delay(ctx, time.Duration(s.getDelay.Load())); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.m[name]
	if !ok {
		return nil, apierrors.NewNotFound(coordinationv1.Resource("leases"), name)
	}
	return l.DeepCopy(), nil
}

func (s *memLeases) List(ctx context.Context, _ string) ([]coordinationv1.Lease, error) {
	if err := delay(ctx, time.Duration(s.getDelay.Load())); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]coordinationv1.Lease, 0, len(s.m))
	for _, name := range slices.Sorted(maps.Keys(s.m)) {
		out = append(out, *s.m[name].DeepCopy())
	}
	return out, nil
}

func (s *memLeases) Create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[l.Name]; ok {
		return nil, apierrors.NewAlreadyExists(coordinationv1.Resource("leases"), l.Name)
	}
	return s.storeLocked(l), nil
}

func (s *memLeases) Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if err := delay(ctx, time.Duration(s.updateDelay.Load())); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.m[l.Name]
	if !ok {
		return nil, apierrors.NewNotFound(coordinationv1.Resource("leases"), l.Name)
	}
	if cur.ResourceVersion != l.ResourceVersion {
		return nil, apierrors.NewConflict(coordinationv1.Resource("leases"), l.Name, nil)
	}
	return s.storeLocked(l), nil
}

func (s *memLeases) storeLocked(l *coordinationv1.Lease) *coordinationv1.Lease {
	s.rv++
	c := l.DeepCopy()
	c.ResourceVersion = strconv.Itoa(s.rv)
	s.m[l.Name] = c
	return c.DeepCopy()
}

// put writes a Lease as another client would, whatever its version.
func (s *memLeases) put(l *coordinationv1.Lease) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storeLocked(l)
}

// lease returns the stored Lease name, nil if none.
func (s *memLeases) lease(name string) *coordinationv1.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.m[name]; ok {
		return l.DeepCopy()
	}
	return nil
}
