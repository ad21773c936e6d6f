package specs

import (
	"os"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the parser: it may reject them, but
// never panic, and what it accepts must plan.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"../examples/catalog/releases/catalog.yaml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(validRelease))
	f.Add([]byte("apiVersion: sluice.dev/v1alpha1\nkind: Release\nspec: {stages: [{name: a, weighted: {weights: [1, 2]}}]}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rels, err := Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		for _, r := range rels {
			if _, err := Plan(r); err != nil {
				return
			}
		}
	})
}
