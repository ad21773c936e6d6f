package specs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// PromoteEdit returns the edit that makes a release spec name its candidate
// as the stable version and drop the candidate. It changes those two lines
// in place, so comments, layout and everything a person wrote elsewhere in
// the file stay as they are, and the diff is exactly the promotion.
func PromoteEdit(namespace, name, candidate string) func(old []byte) ([]byte, error) {
	return func(old []byte) ([]byte, error) {
		spec, err := FindSpecNode(old, namespace, name)
		if err != nil {
			return nil, err
		}
		var stable, cand *yaml.Node
		var candKey *yaml.Node
		for i := 0; i+1 < len(spec.Content); i += 2 {
			switch spec.Content[i].Value {
			case "stable":
				stable = spec.Content[i+1]
			case "candidate":
				candKey, cand = spec.Content[i], spec.Content[i+1]
			}
		}
		if stable == nil || stable.Kind != yaml.ScalarNode {
			return nil, errors.New("spec.stable is not a plain value")
		}
		if cand == nil {
			if stable.Value == candidate {
				return old, nil // already promoted
			}
			return nil, errors.New("spec.candidate is missing")
		}
		if cand.Value != candidate {
			// Someone named another candidate meanwhile: theirs wins, and
			// the new candidate will start its own release.
			return old, nil
		}
		lines := strings.SplitAfter(string(old), "\n")
		if stable.Line-1 >= len(lines) || candKey.Line-1 >= len(lines) || cand.Line != candKey.Line {
			return nil, errors.New("spec.candidate is not on one line")
		}
		l := lines[stable.Line-1]
		start := stable.Column - 1
		end := start
		for end < len(l) && !strings.ContainsRune(" \t\r\n#", rune(l[end])) {
			end++
		}
		lines[stable.Line-1] = l[:start] + candidate + l[end:]
		lines = append(lines[:candKey.Line-1], lines[candKey.Line:]...)
		return []byte(strings.Join(lines, "")), nil
	}
}

// FindSpecNode returns the spec mapping of the Release document named
// namespace/name in a possibly multi-document file.
func FindSpecNode(data []byte, namespace, name string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("no Release %s/%s in the file", namespace, name)
		}
		if err != nil {
			return nil, err
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			continue
		}
		root := doc.Content[0]
		meta, spec := child(root, "metadata"), child(root, "spec")
		if meta == nil || spec == nil {
			continue
		}
		if n, ns := child(meta, "name"), child(meta, "namespace"); n != nil && ns != nil && n.Value == name && ns.Value == namespace {
			if spec.Kind != yaml.MappingNode {
				return nil, errors.New("spec is not a mapping")
			}
			return spec, nil
		}
	}
}

func child(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// ID names a release: its namespace and name.
type ID struct{ Namespace, Name string }

// String is namespace/name.
func (id ID) String() string { return id.Namespace + "/" + id.Name }

// Identify reads, leniently, the metadata of every Release document of a
// file (and of every document of Sluice's API group, so that a misspelt
// kind is still reported on the release it names), even when the file
// does not parse as a valid release.
func Identify(data []byte) []ID {
	var ids []ID
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Metadata   struct {
				Name      string `yaml:"name"`
				Namespace string `yaml:"namespace"`
			} `yaml:"metadata"`
		}
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return ids
		}
		if err != nil {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return ids
			}
		}
		sluice := doc.Kind == Kind || strings.HasPrefix(doc.APIVersion, "sluice.dev/")
		if sluice && doc.Metadata.Name != "" && doc.Metadata.Namespace != "" {
			ids = append(ids, ID{Namespace: doc.Metadata.Namespace, Name: doc.Metadata.Name})
		}
	}
}
