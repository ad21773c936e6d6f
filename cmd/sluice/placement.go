package main

import (
	"fmt"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// clusterStatusDir is where a Sluice started with --cluster keeps its
// status files: a directory of its own under --status-dir, so that one
// repository records each release once per cluster. Without --cluster it
// is --status-dir itself, as before clusters existed.
func clusterStatusDir(statusDir, cluster string) (string, error) {
	if cluster == "" {
		return statusDir, nil
	}
	if msgs := validation.IsDNS1123Label(cluster); len(msgs) > 0 {
		return "", fmt.Errorf("--cluster %q: %s", cluster, strings.Join(msgs, "; "))
	}
	return path.Join(statusDir, cluster), nil
}

// releaseSelector parses --release-selector; nil when empty (every release).
func releaseSelector(s string) (labels.Selector, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	sel, err := labels.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--release-selector %q: %w", s, err)
	}
	return sel, nil
}
