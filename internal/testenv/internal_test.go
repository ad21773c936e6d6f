package testenv

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func TestFindTools(t *testing.T) {
	const version = "v1.37.2"
	mkExec := func(t *testing.T, path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	inPath := func(names ...string) lookPathFunc {
		return func(name string) (string, error) {
			for _, n := range names {
				if n == name {
					return "/usr/bin/" + name, nil
				}
			}
			return "", errors.New("not found")
		}
	}
	tests := []struct {
		name       string
		prometheus bool
		lookPath   lookPathFunc
		cached     []string // files under the cache dir
		want       []string // substrings of the error; nil = success
	}{
		{
			name:       "all present",
			prometheus: true,
			lookPath:   inPath("etcd", "prometheus"),
			cached:     []string{"k8s/v1.37.2/kube-apiserver", "k8s/v1.37.2/kube-controller-manager", "k8s/v1.37.2/kube-scheduler", "kwok/" + KwokVersion + "/kwok"},
		},
		{
			name:     "prometheus not needed",
			lookPath: inPath("etcd"),
			cached:   []string{"k8s/v1.37.2/kube-apiserver", "k8s/v1.37.2/kube-controller-manager", "k8s/v1.37.2/kube-scheduler", "kwok/" + KwokVersion + "/kwok"},
		},
		{
			name:       "nothing installed",
			prometheus: true,
			lookPath:   inPath(),
			want: []string{
				"etcd not found in PATH (apt-get install etcd-server)",
				"prometheus not found in PATH (apt-get install prometheus)",
				"kube-apiserver, kube-controller-manager, kube-scheduler v1.37.2 not found in ",
				"kwok " + KwokVersion + " not found in ",
				"run hack/testenv-tools.sh",
			},
		},
		{
			name:     "kwok missing",
			lookPath: inPath("etcd"),
			cached:   []string{"k8s/v1.37.2/kube-apiserver", "k8s/v1.37.2/kube-controller-manager", "k8s/v1.37.2/kube-scheduler"},
			want:     []string{"kwok " + KwokVersion + " not found in ", "run hack/testenv-tools.sh"},
		},
		{
			name:     "binaries of another version",
			lookPath: inPath("etcd"),
			cached:   []string{"k8s/v1.36.0/kube-apiserver", "k8s/v1.36.0/kube-controller-manager", "k8s/v1.36.0/kube-scheduler", "kwok/" + KwokVersion + "/kwok"},
			want:     []string{"kube-apiserver, kube-controller-manager, kube-scheduler v1.37.2 not found in "},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			for _, f := range tc.cached {
				mkExec(t, filepath.Join(cache, f))
			}
			got, err := findTools(cache, version, tc.prometheus, tc.lookPath)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("findTools: %v", err)
				}
				if got.apiserver != filepath.Join(cache, "k8s", version, "kube-apiserver") || got.etcd != "/usr/bin/etcd" {
					t.Errorf("findTools = %+v", got)
				}
				return
			}
			if err == nil {
				t.Fatal("findTools succeeded, want an error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestK8sVersionOf(t *testing.T) {
	tests := []struct {
		clientGo string
		want     string
		wantErr  bool
	}{
		{"v0.37.2", "v1.37.2", false},
		{"v0.38.0-rc.1", "v1.38.0-rc.1", false},
		{"v11.0.0+incompatible", "", true},
		{"", "", true},
	}
	for _, tc := range tests {
		got, err := k8sVersionOf(tc.clientGo)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("k8sVersionOf(%q) = %q, %v; want %q, error %v", tc.clientGo, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestVersionsFromBuildInfo(t *testing.T) {
	info := &debug.BuildInfo{Deps: []*debug.Module{
		{Path: "k8s.io/client-go", Version: "v0.30.0", Replace: &debug.Module{Path: "k8s.io/client-go", Version: "v0.37.1"}},
		{Path: "istio.io/api", Version: "v1.31.4"},
		{Path: "example.com/other", Version: "v1.0.0"},
	}}
	got := versionsFromBuildInfo(info, []string{"k8s.io/client-go", "istio.io/api", "absent.example/x"})
	if len(got) != 2 || got["k8s.io/client-go"].Version != "v0.37.1" || got["istio.io/api"].Version != "v1.31.4" {
		t.Errorf("versionsFromBuildInfo = %+v", got)
	}
}

// In a test binary the versions come from go list -m, i.e. from go.mod.
func TestModuleVersionsInTest(t *testing.T) {
	mods, err := moduleVersions(t.Context(), "k8s.io/client-go", "istio.io/api")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"k8s.io/client-go", "istio.io/api"} {
		if !strings.HasPrefix(mods[p].Version, "v") {
			t.Errorf("%s version = %q", p, mods[p].Version)
		}
	}
}

func TestRenderPromConfigGolden(t *testing.T) {
	tests := []struct {
		name string
		jobs []scrapeJob
	}{
		{"empty", nil},
		{"two-jobs", []scrapeJob{
			{name: "catalog", targets: []string{"127.0.0.1:8080", "127.0.0.1:8081"}},
			{name: "sluice", targets: []string{"localhost:9090"}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := renderPromConfig(19090, tc.jobs)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "prometheus-"+tc.name+".yml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if string(got) != string(want) {
				t.Errorf("config differs from %s:\n%s", golden, got)
			}
		})
	}
}

func TestReadCRDs(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    int
		wantErr string
	}{
		{"two", "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: a.example.com\n---\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: b.example.com\n", 2, ""},
		{"other kind", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n", 0, `ConfigMap "x"`},
		{"empty", "", 0, "no CustomResourceDefinition"},
		{"broken", "kind: [", 0, "decode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "crds.yaml")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			crds, err := readCRDs(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(crds) != tc.want {
				t.Fatalf("got %d CRDs, %v; want %d", len(crds), err, tc.want)
			}
		})
	}
}

// The embedded stages must keep the label in step with NeverReadyLabel.
func TestKwokStagesUseNeverReadyLabel(t *testing.T) {
	if n := strings.Count(string(kwokStages), `.metadata.labels["`+NeverReadyLabel+`"]`); n != 2 {
		t.Errorf("kwok-stages.yaml mentions %s in %d selectors, want 2 (pod-ready excludes it, pod-never-ready selects it)", NeverReadyLabel, n)
	}
}

func TestRemoveStaleEtcdDirs(t *testing.T) {
	parent := t.TempDir()
	self := strconv.Itoa(os.Getpid())
	tests := []struct {
		name     string
		wantGone bool
	}{
		{etcdDirPrefix + "999999999-1", true}, // beyond pid_max: owner is gone
		{etcdDirPrefix + self + "-2", false},  // owner alive
		{etcdDirPrefix + "notapid-3", false},
		{etcdDirPrefix + "12345", false}, // not our naming scheme
		{"other-999999999-4", false},
	}
	for _, tc := range tests {
		if err := os.Mkdir(filepath.Join(parent, tc.name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	removeStaleEtcdDirs(parent)
	for _, tc := range tests {
		_, err := os.Stat(filepath.Join(parent, tc.name))
		if gone := os.IsNotExist(err); gone != tc.wantGone {
			t.Errorf("%s: removed = %v, want %v", tc.name, gone, tc.wantGone)
		}
	}
}
