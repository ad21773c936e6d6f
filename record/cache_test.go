package record

import (
	"crypto/sha1"
	"fmt"
	"io/fs"
	"reflect"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// fill sets every field reachable from v to a non-zero value: each
// pointer, map and slice gets its own memory, recursive types (Resume)
// down to depth levels.
func fill(t *testing.T, v reflect.Value, depth int) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprint("s", depth))
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(int64(7 + depth))
	case reflect.Float64:
		v.SetFloat(1.5)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		if depth == 0 {
			return
		}
		p := reflect.New(v.Type().Elem())
		fill(t, p.Elem(), depth-1)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(t, s.Index(i), depth)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(t, k, depth)
		fill(t, e, depth)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2026, 11, 26, 8, 0, depth, 0, time.UTC)))
			return
		}
		for i := range v.NumField() {
			fill(t, v.Field(i), depth)
		}
	default:
		t.Fatalf("fill: add kind %s (%s) to the test and to DeepCopy", v.Kind(), v.Type())
	}
}

// shares reports the first pointer, map or slice a and b have in common.
func shares(a, b reflect.Value, at string) string {
	switch a.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice:
		if !a.IsNil() && a.Pointer() == b.Pointer() {
			return at
		}
	}
	switch a.Kind() {
	case reflect.Pointer:
		if !a.IsNil() {
			return shares(a.Elem(), b.Elem(), at)
		}
	case reflect.Slice:
		for i := range a.Len() {
			if s := shares(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", at, i)); s != "" {
				return s
			}
		}
	case reflect.Struct:
		if a.Type() == reflect.TypeFor[time.Time]() {
			return "" // a value; its *Location is shared and never changed
		}
		for i := range a.NumField() {
			if s := shares(a.Field(i), b.Field(i), at+"."+a.Type().Field(i).Name); s != "" {
				return s
			}
		}
	}
	return ""
}

// TestStatusDeepCopy fills every field of a Status by reflection, so a
// field added later is covered: the copy must be equal and share nothing.
func TestStatusDeepCopy(t *testing.T) {
	for _, depth := range []int{1, 3} {
		t.Run(fmt.Sprint("depth ", depth), func(t *testing.T) {
			var s Status
			fill(t, reflect.ValueOf(&s).Elem(), depth)
			c := s.DeepCopy()
			if !reflect.DeepEqual(&s, c) {
				t.Fatalf("copy differs:\n%+v\n%+v", s, *c)
			}
			if at := shares(reflect.ValueOf(&s).Elem(), reflect.ValueOf(c).Elem(), "Status"); at != "" {
				t.Errorf("copy shares %s with the original", at)
			}
		})
	}
	if (*Status)(nil).DeepCopy() != nil {
		t.Error("nil copied to non-nil")
	}
}

// hashFS is a MapFS whose hashes are its files' content digests, as Git's
// blob hashes are; reads counts ReadFile calls.
type hashFS struct {
	fstest.MapFS
	reads int
}

func (h *hashFS) Hash(name string) (plumbing.Hash, error) {
	f, ok := h.MapFS[name]
	if !ok {
		return plumbing.ZeroHash, &fs.PathError{Op: "hash", Path: name, Err: fs.ErrNotExist}
	}
	return plumbing.Hash(sha1.Sum(f.Data)), nil
}

func (h *hashFS) ReadFile(name string) ([]byte, error) {
	h.reads++
	return h.MapFS.ReadFile(name)
}

func statusFile(t *testing.T, step string) *fstest.MapFile {
	t.Helper()
	data, err := (&Status{Release: "ns/app", SpecFile: "app.yaml", Phase: PhaseProgressing, Step: step,
		Labels: map[string]string{"team": "a"}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return &fstest.MapFile{Data: data}
}

// TestStatusCache: a status file is parsed again only when its blob
// changed; what Read returns is the caller's to change; a deleted file
// reads as none and leaves nothing cached.
func TestStatusCache(t *testing.T) {
	p := StatusPath(DefaultStatusDir, "ns", "app")
	fsys := &hashFS{MapFS: fstest.MapFS{p: statusFile(t, "canary-10")}}
	c := NewStatusCache()
	steps := []struct {
		name      string
		change    func()
		wantStep  string // "" for no status
		wantReads int    // file reads so far
		wantLen   int
	}{
		{"first read parses", func() {}, "canary-10", 1, 1},
		{"same blob, no read", func() {}, "canary-10", 1, 1},
		{"new blob parsed", func() { fsys.MapFS[p] = statusFile(t, "canary-20") }, "canary-20", 2, 1},
		{"unchanged again", func() {}, "canary-20", 2, 1},
		{"forgotten, read again", func() { c.Forget("ns", "app") }, "canary-20", 3, 1},
		{"deleted", func() { delete(fsys.MapFS, p) }, "", 3, 0},
	}
	for _, s := range steps {
		s.change()
		st, err := c.Read(fsys, DefaultStatusDir, "ns", "app")
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := ""; st != nil {
			got = st.Step
			// The caller's copy: changing it changes no later read.
			st.Step, st.Labels["team"] = "mutated", "mutated"
			if got != s.wantStep {
				t.Errorf("%s: step %q, want %q", s.name, got, s.wantStep)
			}
		} else if s.wantStep != "" {
			t.Errorf("%s: no status, want step %q", s.name, s.wantStep)
		}
		if fsys.reads != s.wantReads || c.Len() != s.wantLen {
			t.Errorf("%s: %d reads, %d cached; want %d, %d", s.name, fsys.reads, c.Len(), s.wantReads, s.wantLen)
		}
	}
	again, err := c.Read(fsys, DefaultStatusDir, "ns", "other")
	if again != nil || err != nil {
		t.Errorf("Read of a release without a status = %v, %v; want nil, nil", again, err)
	}
}

// TestStatusCacheMatchesRead: a cached status reads as a fresh parse does.
func TestStatusCacheMatchesRead(t *testing.T) {
	p := StatusPath("st", "ns", "app")
	fsys := &hashFS{MapFS: fstest.MapFS{p: statusFile(t, "canary-10")}}
	c := NewStatusCache()
	for i := range 2 {
		got, err := c.Read(fsys, "st", "ns", "app")
		if err != nil {
			t.Fatal(err)
		}
		want, err := Read(fsys.MapFS, "st", "ns", "app")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("read %d: cached %+v, fresh %+v", i, got, want)
		}
	}
	fsys.MapFS[p] = &fstest.MapFile{Data: []byte("kind: Other\n")}
	if _, err := c.Read(fsys, "st", "ns", "app"); err == nil {
		t.Error("a file that is not a status read without error")
	}
}

// BenchmarkStatusRead reads an unchanged status file as a pass does:
// parsed every time (Read) or through the cache.
func BenchmarkStatusRead(b *testing.B) {
	v := 99.5
	data, err := (&Status{Release: "ns/app", SpecFile: "releases/ns/app.yaml", Phase: PhaseSteady, Stable: "v1",
		Since: time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC), Labels: map[string]string{"team": "a"},
		Gates: []GateValue{{Metric: "request-success-rate", Value: &v, Min: &v, Passed: true}}}).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	fsys := &hashFS{MapFS: fstest.MapFS{StatusPath(DefaultStatusDir, "ns", "app"): {Data: data}}}
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Read(fsys, DefaultStatusDir, "ns", "app"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		c := NewStatusCache()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Read(fsys, DefaultStatusDir, "ns", "app"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestStatusCacheConcurrent reads, changes and forgets at once (run with
// -race): each reader gets a status of one of the blobs, never a mixture.
func TestStatusCacheConcurrent(t *testing.T) {
	p := StatusPath(DefaultStatusDir, "ns", "app")
	files := []*fstest.MapFile{statusFile(t, "canary-10"), statusFile(t, "canary-20")}
	c := NewStatusCache()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				fsys := &hashFS{MapFS: fstest.MapFS{p: files[(g+i)%2]}}
				st, err := c.Read(fsys, DefaultStatusDir, "ns", "app")
				if err != nil {
					t.Error(err)
					return
				}
				if want := []string{"canary-10", "canary-20"}[(g+i)%2]; st.Step != want {
					t.Errorf("step %q, want %q", st.Step, want)
					return
				}
				st.Labels["team"] = "mine"
				if i%50 == 0 {
					c.Forget("ns", "app")
				}
			}
		}()
	}
	wg.Wait()
}
