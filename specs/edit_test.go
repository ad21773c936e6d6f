package specs

import (
	"os"
	"strings"
	"testing"
)

func TestPromoteEditChangesOnlyTheVersionLines(t *testing.T) {
	old, err := os.ReadFile("../examples/catalog/releases/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := PromoteEdit("istioinaction", "catalog", "v2")(old)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(strings.Replace(string(old), "  stable: v1\n", "  stable: v2\n", 1), "  candidate: v2\n", "", 1)
	if string(got) != want {
		t.Errorf("promoted spec:\n%s\nwant:\n%s", got, want)
	}
	// Applying it again (a retried push on top of itself) changes nothing.
	again, err := PromoteEdit("istioinaction", "catalog", "v2")(got)
	if err != nil || string(again) != string(got) {
		t.Errorf("second edit: %v, changed=%v", err, string(again) != string(got))
	}
}

func TestPromoteEditKeepsAPersonsNewCandidate(t *testing.T) {
	doc := "apiVersion: sluice.dev/v1alpha1\nkind: Release\nmetadata:\n  name: a\n  namespace: n\nspec:\n  stable: v1 # serving\n  candidate: v3\n"
	got, err := PromoteEdit("n", "a", "v2")([]byte(doc))
	if err != nil || string(got) != doc {
		t.Errorf("got %q, %v; want the file unchanged", got, err)
	}
}

func TestPromoteEditMultiDocument(t *testing.T) {
	doc := "kind: Release\nmetadata: {name: a, namespace: n}\nspec:\n  stable: v1\n  candidate: v2\n---\nkind: Release\nmetadata: {name: b, namespace: n}\nspec:\n  stable: 'v1' # keep me\n  candidate: v2\n  stages: []\n"
	got, err := PromoteEdit("n", "b", "v2")([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := "kind: Release\nmetadata: {name: a, namespace: n}\nspec:\n  stable: v1\n  candidate: v2\n---\nkind: Release\nmetadata: {name: b, namespace: n}\nspec:\n  stable: v2 # keep me\n  stages: []\n"
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestIdentify(t *testing.T) {
	doc := "apiVersion: sluice.dev/v1alpha1\nkind: Release\nmetadata: {name: a, namespace: n}\nspec: {stable: 3}\n---\n" +
		"apiVersion: sluice.dev/v1alpha1\nkind: Relase\nmetadata: {name: b, namespace: n}\n---\n" +
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: n}\n"
	got := Identify([]byte(doc))
	if len(got) != 2 || got[0].String() != "n/a" || got[1].String() != "n/b" {
		t.Errorf("Identify = %v, want n/a and n/b", got)
	}
}
