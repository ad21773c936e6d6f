package specs

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/invopop/jsonschema"
	schemavalidator "github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

const schemaFile = "release.schema.json"

// releaseSchema generates the JSON Schema of a Release from the Go types and
// their comments.
func releaseSchema(t *testing.T) []byte {
	t.Helper()
	r := &jsonschema.Reflector{
		ExpandedStruct: true,
		DoNotReference: true,
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			if t == reflect.TypeOf(Duration{}) {
				return &jsonschema.Schema{Type: "string", Pattern: `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`, Description: "A duration such as 45s, 1m or 1h30m."}
			}
			return nil
		},
	}
	if err := r.AddGoComments("sluice.dev/sluice/specs", "./"); err != nil {
		t.Fatal(err)
	}
	s := r.Reflect(&Release{})
	s.ID = "https://sluice.dev/schemas/release-v1alpha1.json"
	s.Title = "Sluice Release"
	s.Properties.Set("apiVersion", &jsonschema.Schema{Type: "string", Const: APIVersion})
	s.Properties.Set("kind", &jsonschema.Schema{Type: "string", Const: Kind})
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestSchemaUpToDate keeps specs/release.schema.json in step with the types
// (go test ./specs -run Schema -update rewrites it).
func TestSchemaUpToDate(t *testing.T) {
	got := releaseSchema(t)
	if *updateSchema {
		if err := os.WriteFile(schemaFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date: run go test ./specs -run Schema -update", schemaFile)
	}
}

// TestSchemaAcceptsExampleAndRejectsTypos checks the published schema
// against the example and a misspelled field.
func TestSchemaAcceptsExampleAndRejectsTypos(t *testing.T) {
	c := schemavalidator.NewCompiler()
	sch, err := c.Compile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../examples/catalog/releases/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	toJSON := func(doc string) any {
		var v any
		if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		inst, err := schemavalidator.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return inst
	}
	if err := sch.Validate(toJSON(string(data))); err != nil {
		t.Errorf("the example fails the schema: %v", err)
	}
	bad := strings.Replace(string(data), "stepWeight:", "stepWieght:", 1)
	if err := sch.Validate(toJSON(bad)); err == nil {
		t.Error("the schema accepts a misspelled field")
	}
}
