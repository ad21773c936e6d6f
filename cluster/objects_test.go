package cluster

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/golden")

// TestPrepare pins what Sluice sends: objects in dependency order
// whatever the input order, owner labels stamped, server-owned fields
// dropped, and the hash annotation.
func TestPrepare(t *testing.T) {
	objs := readObjects(t, "shop/vs-canary.yaml", "shop/destinationrule.yaml", "shop/deployment-v2.yaml", "shop/shared.yaml", "shop/deployment-v1.yaml")
	for _, o := range objs {
		o.SetNamespace("shop")
	}
	// Server-owned fields a caller might pass along from a read.
	objs[0].SetResourceVersion("42")
	objs[0].Object["status"] = map[string]any{}
	items, err := prepare(Set{Owner: owner("shop", "shop"), Objects: objs}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for _, it := range items {
		b, err := yaml.Marshal(it.obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		got.WriteString("---\n")
		got.Write(b)
	}
	golden := filepath.Join("testdata", "golden", "prepared-shop.yaml")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestPrepare -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("prepared objects differ from %s (rerun with -update if intended):\n%s", golden, got.String())
	}

	// The same set prepares to the same hashes.
	again, err := prepare(Set{Owner: owner("shop", "shop"), Objects: objs}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range items {
		if items[i].hash != again[i].hash {
			t.Errorf("%s: hash %s then %s", items[i].ref, items[i].hash, again[i].hash)
		}
	}
}
