package specs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSizeLimitBeforeReading: a file over the limit is refused from its
// size alone. The file here is sparse and unreadable, so any read would
// fail with a different error.
func TestSizeLimitBeforeReading(t *testing.T) {
	file := filepath.Join(t.TempDir(), "huge.yaml")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(50 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, tc := range []struct {
		limit int64
		want  string
	}{
		{DefaultMaxSpecSize, file + ": file is 50 MiB, over the 1 MiB limit for a release spec file (--max-spec-size); split it into several files"},
		{10 << 20, file + ": file is 50 MiB, over the 10 MiB limit for a release spec file (--max-spec-size); split it into several files"},
	} {
		_, err := LoadFileContext(t.Context(), file, tc.limit)
		var se *SizeError
		if !errors.As(err, &se) || err.Error() != tc.want {
			t.Errorf("limit %d: %v, want %s", tc.limit, err, tc.want)
		}
	}
	if err := os.WriteFile(file, []byte(validRelease), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFileContext(t.Context(), file, int64(len(validRelease))); err != nil {
		t.Errorf("a file at the limit: %v", err)
	}
	if _, err := LoadFileContext(t.Context(), file, int64(len(validRelease))-1); err == nil {
		t.Error("a file one byte over the limit was read")
	}
}

// TestAliasBomb: aliases cannot make the walk much larger than the text:
// a thousand stages that each name the same thousand matches would be a
// million values.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString(strings.Replace(validRelease, "  stages:\n", "  stages:\n    - name: s0\n      darkLaunch:\n        match: &m\n", 1))
	doc := b.String()
	b.Reset()
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&b, "          - headers: {x-n: {exact: \"%d\"}}\n", i)
	}
	for i := 1; i < 1000; i++ {
		fmt.Fprintf(&b, "    - {name: s%d, darkLaunch: {match: *m}}\n", i)
	}
	doc = strings.Replace(doc, "        match: &m\n", "        match: &m\n"+b.String(), 1)
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), "expands to far more values than its text holds") {
		t.Fatalf("Parse: %.500v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestParseCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ParseContext(ctx, "r.yaml", []byte(validRelease)); !errors.Is(err, context.Canceled) {
		t.Errorf("ParseContext with a cancelled context: %v", err)
	}
}

func TestDuplicates(t *testing.T) {
	a, err := Parse("a.yaml", []byte(validRelease+"---\n"+validRelease))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("b.yaml", []byte(validRelease))
	if err != nil {
		t.Fatal(err)
	}
	got := Duplicates(append(a, b...)).Error()
	want := strings.Join([]string{
		`a.yaml:48: metadata.name: release istioinaction/catalog is also defined at a.yaml:4; a release must be defined once`,
		`b.yaml:4: metadata.name: release istioinaction/catalog is also defined at a.yaml:4; a release must be defined once`,
	}, "\n")
	if got != want {
		t.Errorf("Duplicates:\n%s\nwant:\n%s", got, want)
	}
}

func TestIsReleaseKinds(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want bool
	}{
		{"apiVersion: sluice.dev/v1alpha1\nkind: release\n", true},
		{"apiVersion: sluice.dev/v1alpha1\nkind: Relase\n", true},
		{"apiVersion: v1\nkind: ConfigMap\n---\napiVersion: sluice.dev/v1alpha1\nkind: Release\n", true},
		{"apiVersion: v1\nkind: Release\n", false},
		{"apiVersion: [sluice.dev/v1]\n", false},
	} {
		if got := IsRelease([]byte(tc.doc)); got != tc.want {
			t.Errorf("IsRelease(%q) = %v, want %v", tc.doc, got, tc.want)
		}
	}
}

// bigRelease is a valid release of about size bytes: a long list of
// approvals and a large env map, the shapes that made parsing quadratic.
func bigRelease(size int) []byte {
	var b strings.Builder
	b.WriteString(strings.Replace(validRelease, "      source: apps/catalog/overlays/v2\n", "      source: apps/catalog/overlays/v2\n      env:\n", 1))
	head := b.String()
	b.Reset()
	i := 0
	for b.Len() < size/2 {
		fmt.Fprintf(&b, "        VAR_%d: value-%d\n", i, i)
		i++
	}
	env := b.String()
	b.Reset()
	b.WriteString(strings.Replace(head, "      env:\n", "      env:\n"+env, 1))
	b.WriteString("  approvals:\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "    - {stage: canary, candidate: v2, by: person-%d}\n", i)
	}
	return []byte(b.String())
}

// BenchmarkParse shows parsing is linear in the file's size: ns/op over
// MB (the MB/s column) stays flat from 64 KiB to 4 MiB.
func BenchmarkParse(b *testing.B) {
	for _, size := range []int{64 << 10, 256 << 10, 1 << 20, 4 << 20} {
		data := bigRelease(size)
		if _, err := Parse("big.yaml", data); err != nil {
			b.Fatal(err)
		}
		b.Run(FormatSize(int64(size)), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := Parse("big.yaml", data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoadOverLimit is a 50 MB file refused by its size.
func BenchmarkLoadOverLimit(b *testing.B) {
	file := filepath.Join(b.TempDir(), "huge.yaml")
	if err := os.WriteFile(file, bigRelease(50<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := LoadFileContext(context.Background(), file, DefaultMaxSpecSize); err == nil {
			b.Fatal("accepted")
		}
	}
}

// TestScalarsAsYAMLReadsThem: the decoding shortcuts read numbers as
// yaml.v3 does.
func TestScalarsAsYAMLReadsThem(t *testing.T) {
	for _, tc := range []struct {
		port string
		want int32
	}{{"80", 80}, {"+80", 80}, {"0x50", 80}, {"0o120", 80}, {"0120", 80}, {"8_0", 80}} {
		rels, err := Parse("r.yaml", []byte(strings.Replace(validRelease, "port: 80", "port: "+tc.port, 1)))
		if err != nil {
			t.Errorf("port: %s: %v", tc.port, err)
			continue
		}
		if got := rels[0].Spec.Service.Port; got != tc.want {
			t.Errorf("port: %s read as %d, want %d", tc.port, got, tc.want)
		}
	}
}
