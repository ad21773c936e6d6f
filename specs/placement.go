package specs

import (
	"bytes"
	"errors"
	"io"
	"slices"

	"go.yaml.in/yaml/v3"
)

// Placement is what decides which Sluice reconciles a release: its
// metadata.labels (sluice run --release-selector) and spec.clusters
// (sluice run --cluster).
type Placement struct {
	Labels   map[string]string
	Clusters []string
}

// PlacementOf is a valid release's placement.
func PlacementOf(r *Release) Placement {
	return Placement{Labels: r.Metadata.Labels, Clusters: r.Spec.Clusters}
}

// Targets reports whether a release placed so runs on cluster: one naming
// no clusters runs on every cluster; one naming some runs only on those,
// and never on a Sluice started without a cluster name.
func (p Placement) Targets(cluster string) bool {
	if len(p.Clusters) == 0 {
		return true
	}
	return cluster != "" && slices.Contains(p.Clusters, cluster)
}

// Placements reads, leniently as Identify does, the placement of every
// release a file names, by namespace/name, even when the file does not
// parse as valid releases: an invalid release is still reported by the
// Sluice it belongs to. A field of the wrong type reads as absent.
func Placements(data []byte) map[string]Placement {
	out := map[string]Placement{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) || err != nil {
			return out
		}
		var doc struct {
			Metadata struct {
				Name      string `yaml:"name"`
				Namespace string `yaml:"namespace"`
			} `yaml:"metadata"`
		}
		if node.Decode(&doc) != nil || doc.Metadata.Name == "" || doc.Metadata.Namespace == "" {
			continue
		}
		var p Placement
		var meta struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
		}
		if node.Decode(&meta) == nil {
			p.Labels = meta.Metadata.Labels
		}
		var spec struct {
			Spec struct {
				Clusters []string `yaml:"clusters"`
			} `yaml:"spec"`
		}
		if node.Decode(&spec) == nil {
			p.Clusters = spec.Spec.Clusters
		}
		out[doc.Metadata.Namespace+"/"+doc.Metadata.Name] = p
	}
}
