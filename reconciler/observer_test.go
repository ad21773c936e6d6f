package reconciler

import (
	"testing"

	"sluice.dev/sluice/specs"
)

type trafficRecorder struct {
	NopObserver
	got map[string]specs.Traffic
}

func (r *trafficRecorder) Traffic(release string, t specs.Traffic) { r.got[release] = t }

// TestObserversTraffic: Observers is a TrafficObserver that tells each of
// its observers that is one, and skips the others.
func TestObserversTraffic(t *testing.T) {
	rec := &trafficRecorder{got: map[string]specs.Traffic{}}
	var o Observer = Observers{NopObserver{}, rec}
	to, ok := o.(TrafficObserver)
	if !ok {
		t.Fatal("Observers is not a TrafficObserver")
	}
	want := specs.Traffic{Match: "x-istio-cohort=internal", MatchWeight: 100}
	to.Traffic("web/shop", want)
	if rec.got["web/shop"] != want {
		t.Errorf("told %+v, want %+v", rec.got, want)
	}
}
