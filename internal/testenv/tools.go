package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
)

// KwokVersion is the kwok release hack/testenv-tools.sh installs; the script
// reads it from this line.
const KwokVersion = "v0.8.0"

const installHint = "run hack/testenv-tools.sh"

// tools are the executables the environment runs.
type tools struct {
	k8sVersion        string // e.g. v1.37.2
	etcd              string
	prometheus        string
	apiserver         string
	controllerManager string
	scheduler         string
	kwok              string
}

// lookPathFunc is exec.LookPath, replaceable in tests.
type lookPathFunc func(string) (string, error)

// K8sVersion is the Kubernetes release matching the k8s.io/client-go that
// Sluice builds with: client-go v0.X.Y ships with Kubernetes v1.X.Y.
func K8sVersion(ctx context.Context) (string, error) {
	mods, err := moduleVersions(ctx, "k8s.io/client-go")
	if err != nil {
		return "", fmt.Errorf("kubernetes version: %w", err)
	}
	return k8sVersionOf(mods["k8s.io/client-go"].Version)
}

func k8sVersionOf(clientGo string) (string, error) {
	rest, ok := strings.CutPrefix(clientGo, "v0.")
	if !ok {
		return "", fmt.Errorf("kubernetes version: k8s.io/client-go %q is not v0.X.Y", clientGo)
	}
	return "v1." + rest, nil
}

// module is a dependency's resolved version and, when known, its directory
// in the module cache.
type module struct {
	Path    string
	Version string
	Dir     string
	Replace *module
}

// moduleVersions resolves the versions of the given dependencies. A normal
// binary (go run, go build) records them in its build info; test binaries do
// not, so then `go list -m` asks the module the test runs in.
func moduleVersions(ctx context.Context, paths ...string) (map[string]module, error) {
	if info, ok := debug.ReadBuildInfo(); ok {
		if mods := versionsFromBuildInfo(info, paths); len(mods) == len(paths) {
			return mods, nil
		}
	}
	args := append([]string{"list", "-m", "-json"}, paths...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("binary records no module versions, and go list -m %s failed: %w: %s",
			strings.Join(paths, " "), err, strings.TrimSpace(stderr.String()))
	}
	mods := map[string]module{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var m module
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("parse go list -m output: %w", err)
		}
		if m.Replace != nil && m.Replace.Version != "" {
			m = module{Path: m.Path, Version: m.Replace.Version, Dir: m.Replace.Dir}
		}
		mods[m.Path] = m
	}
	for _, p := range paths {
		if mods[p].Version == "" {
			return nil, fmt.Errorf("module %s is not a dependency", p)
		}
	}
	return mods, nil
}

func versionsFromBuildInfo(info *debug.BuildInfo, paths []string) map[string]module {
	mods := map[string]module{}
	for _, dep := range info.Deps {
		if !slices.Contains(paths, dep.Path) {
			continue
		}
		v := dep.Version
		if dep.Replace != nil {
			v = dep.Replace.Version
		}
		mods[dep.Path] = module{Path: dep.Path, Version: v}
	}
	return mods
}

// CacheDir is where hack/testenv-tools.sh puts the binaries it builds:
// ${XDG_CACHE_HOME:-$HOME/.cache}/sluice.
func CacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locate cache dir: %w", err)
	}
	return filepath.Join(dir, "sluice"), nil
}

// findTools locates every executable, reporting all that are missing in one
// line that says how to get them.
func findTools(cacheDir, k8sVersion string, prometheus bool, lookPath lookPathFunc) (tools, error) {
	t := tools{k8sVersion: k8sVersion}
	var missing []string

	fromPath := func(name, pkg string) string {
		p, err := lookPath(name)
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s not found in PATH (apt-get install %s)", name, pkg))
			return ""
		}
		return p
	}
	t.etcd = fromPath("etcd", "etcd-server")
	if prometheus {
		t.prometheus = fromPath("prometheus", "prometheus")
	}

	k8sDir := filepath.Join(cacheDir, "k8s", k8sVersion)
	var k8sMissing []string
	fromCache := func(dir, name string, list *[]string) string {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			*list = append(*list, name)
			return ""
		}
		return p
	}
	t.apiserver = fromCache(k8sDir, "kube-apiserver", &k8sMissing)
	t.controllerManager = fromCache(k8sDir, "kube-controller-manager", &k8sMissing)
	t.scheduler = fromCache(k8sDir, "kube-scheduler", &k8sMissing)
	if len(k8sMissing) > 0 {
		missing = append(missing, fmt.Sprintf("%s %s not found in %s", strings.Join(k8sMissing, ", "), k8sVersion, k8sDir))
	}
	kwokDir := filepath.Join(cacheDir, "kwok", KwokVersion)
	var kwokMissing []string
	t.kwok = fromCache(kwokDir, "kwok", &kwokMissing)
	if len(kwokMissing) > 0 {
		missing = append(missing, fmt.Sprintf("kwok %s not found in %s", KwokVersion, kwokDir))
	}

	if len(missing) > 0 {
		return tools{}, fmt.Errorf("testenv: missing prerequisites: %s: %s", strings.Join(missing, "; "), installHint)
	}
	return t, nil
}

// istioCRDPath finds kubernetes/customresourcedefinitions.gen.yaml of the
// istio.io/api version Sluice builds with, in the module cache (downloading
// the module if the cache was cleaned). Reading it from there keeps the CRDs
// exactly in step with the Go types Sluice compiles against.
func istioCRDPath(ctx context.Context) (string, error) {
	mods, err := moduleVersions(ctx, "istio.io/api")
	if err != nil {
		return "", fmt.Errorf("istio CRDs: %w", err)
	}
	mod := mods["istio.io/api"]
	if mod.Dir == "" {
		if mod.Dir, err = downloadModule(ctx, mod.Path, mod.Version); err != nil {
			return "", fmt.Errorf("istio CRDs: %w", err)
		}
	}
	path := filepath.Join(mod.Dir, "kubernetes", "customresourcedefinitions.gen.yaml")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("istio CRDs: %w", err)
	}
	return path, nil
}

// downloadModule returns the module cache directory of path@version,
// downloading it if needed.
func downloadModule(ctx context.Context, path, version string) (string, error) {
	// Run outside any module so the command cannot touch a go.mod or go.sum.
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", path+"@"+version)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); jerr == nil && mod.Error != "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", path, version, mod.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w: %s", path, version, err, strings.TrimSpace(stderr.String()))
	}
	if mod.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: no directory in output", path, version)
	}
	return mod.Dir, nil
}

// gatewayAPICRDPaths finds the Gateway API's standard channel CRDs
// (config/crd/standard) in the sigs.k8s.io/gateway-api module, the
// version go.mod requires, downloading it if needed. The channel's
// ValidatingAdmissionPolicy (safe upgrades) is left out: only CRDs.
func gatewayAPICRDPaths(ctx context.Context) ([]string, error) {
	const path = "sigs.k8s.io/gateway-api"
	mods, err := moduleVersions(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("gateway API CRDs: %w", err)
	}
	mod := mods[path]
	if mod.Dir == "" {
		if mod.Dir, err = downloadModule(ctx, mod.Path, mod.Version); err != nil {
			return nil, fmt.Errorf("gateway API CRDs: %w", err)
		}
	}
	files, err := filepath.Glob(filepath.Join(mod.Dir, "config", "crd", "standard", "gateway.networking.k8s.io_*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("gateway API CRDs: %w", err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return strings.Contains(filepath.Base(f), "_vap_") })
	if len(files) == 0 {
		return nil, fmt.Errorf("gateway API CRDs: none in %s", filepath.Join(mod.Dir, "config", "crd", "standard"))
	}
	return files, nil
}

// crdPaths are the files of every CRD the test cluster installs: Istio's
// and the Gateway API's standard channel.
func crdPaths(ctx context.Context) ([]string, error) {
	istio, err := istioCRDPath(ctx)
	if err != nil {
		return nil, err
	}
	gw, err := gatewayAPICRDPaths(ctx)
	if err != nil {
		return nil, err
	}
	return append([]string{istio}, gw...), nil
}
