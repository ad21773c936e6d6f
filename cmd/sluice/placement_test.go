package main

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

func TestClusterStatusDir(t *testing.T) {
	cases := []struct {
		dir, cluster, want, err string
	}{
		{".sluice/status", "", ".sluice/status", ""},
		{".sluice/status", "prod", ".sluice/status/prod", ""},
		{"status/", "staging", "status/staging", ""},
		{".sluice/status", "Prod_1", "", `--cluster "Prod_1"`},
		{".sluice/status", "../x", "", `--cluster "../x"`},
	}
	for _, c := range cases {
		got, err := clusterStatusDir(c.dir, c.cluster)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("clusterStatusDir(%q, %q): err %v, want %q", c.dir, c.cluster, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("clusterStatusDir(%q, %q) = %q, %v; want %q", c.dir, c.cluster, got, err, c.want)
		}
	}
}

func TestReleaseSelector(t *testing.T) {
	cases := []struct {
		sel    string
		labels map[string]string
		want   bool
		err    bool
	}{
		{"", map[string]string{"team": "x"}, true, false},
		{"team=x", map[string]string{"team": "x"}, true, false},
		{"team=x", nil, false, false},
		{"team in (x,y),!canary", map[string]string{"team": "y"}, true, false},
		{"team in (x", nil, false, true},
	}
	for _, c := range cases {
		sel, err := releaseSelector(c.sel)
		if c.err {
			if err == nil {
				t.Errorf("releaseSelector(%q): no error", c.sel)
			}
			continue
		}
		if err != nil {
			t.Fatalf("releaseSelector(%q): %v", c.sel, err)
		}
		got := sel == nil || sel.Matches(labels.Set(c.labels))
		if got != c.want {
			t.Errorf("releaseSelector(%q) matches %v = %v, want %v", c.sel, c.labels, got, c.want)
		}
	}
}
