package cluster

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"

	"sluice.dev/sluice/internal/testenv"
	"sluice.dev/sluice/specs"
)

// testEnv is the real API server the cluster tests run against, started by
// the first test that needs it.
var testEnv = testenv.NewShared(testenv.Options{})

func TestMain(m *testing.M) { os.Exit(testEnv.Main(m)) }

// newNamespace creates a namespace for one test and deletes it after.
func newNamespace(t testing.TB) string {
	t.Helper()
	env := testEnv.Env(t)
	kube := kubernetes.NewForConfigOrDie(env.RESTConfig())
	ns, err := kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: sanitize(t.Name()) + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	name := ns.Name
	t.Cleanup(func() {
		_ = kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// exampleRelease loads the release of examples/<example> into namespace
// ns and opens the example's directory, closed when the test ends.
func exampleRelease(t testing.TB, example, ns string) (*specs.Release, *os.Root) {
	t.Helper()
	dir := "../examples/" + example
	rels, err := specs.LoadFile(dir + "/releases/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rel := rels[0]
	rel.Metadata.Namespace = ns
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return rel, root
}

func sanitize(s string) string {
	s = strings.ToLower(s)
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 40 {
		out = strings.TrimRight(out[:40], "-")
	}
	return out
}

// owner returns the ownership labels of release ns/name.
func owner(ns, name string) map[string]string {
	return map[string]string{LabelManagedBy: "sluice", LabelRelease: name, LabelReleaseNamespace: ns}
}

// readObjects reads the YAML documents of files under testdata.
func readObjects(t testing.TB, files ...string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeObjects(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, objs...)
	}
	return out
}

func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// shopSet is release ns/shop made of testdata/shop files, in namespace ns.
func shopSet(t testing.TB, ns string, files ...string) Set {
	t.Helper()
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = filepath.Join("shop", f)
	}
	objs := readObjects(t, paths...)
	for _, o := range objs {
		o.SetNamespace(ns)
	}
	return Set{Owner: owner(ns, "shop"), Objects: objs}
}

// testLogger sends the applier's log to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newApplier returns an Applier on the admin config whose requests count.
func newApplier(t testing.TB) (*Applier, *RequestCounter) {
	t.Helper()
	env := testEnv.Env(t)
	cfg, counter := CountingConfig(env.RESTConfig())
	a, err := New(cfg, Options{Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return a, counter
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
