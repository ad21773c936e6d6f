package renderer

import (
	"fmt"
	"io/fs"
	"path"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/specs"
)

var kustomizationNames = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// CheckSources walks the kustomizations reachable from a source directory
// and refuses remote bases, absolute paths and paths that leave the
// repository before kustomize would act on them (kustomize itself would
// clone a remote base with git).
func CheckSources(repo fs.FS, src string) error {
	return checkSources(newLayeredFS(repo), src)
}

func checkSources(lfs *layeredFS, src string) error {
	return checkKustomization(lfs, path.Clean(src), map[string]bool{})
}

func checkKustomization(lfs *layeredFS, dir string, seen map[string]bool) error {
	if seen[dir] {
		return nil
	}
	seen[dir] = true
	if !lfs.IsDir("/" + dir) {
		return fmt.Errorf("source %s: directory not found in the repository", dir)
	}
	var data []byte
	found := ""
	for _, n := range kustomizationNames {
		if b, err := lfs.ReadFile("/" + path.Join(dir, n)); err == nil {
			data, found = b, n
			break
		}
	}
	if found == "" {
		return fmt.Errorf("source %s: no kustomization.yaml in the directory", dir)
	}
	var k struct {
		Resources  []string `json:"resources"`
		Bases      []string `json:"bases"`
		Components []string `json:"components"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		return fmt.Errorf("%s: %w", path.Join(dir, found), err)
	}
	for _, list := range [][]string{k.Resources, k.Bases, k.Components} {
		for _, ref := range list {
			file := path.Join(dir, found)
			if err := specs.CheckRepoPath(ref); err != nil && !strings.Contains(err.Error(), "leaves the repository") {
				return fmt.Errorf("%s: resource %v", file, err)
			}
			target := path.Join(dir, ref)
			if target == ".." || strings.HasPrefix(target, "../") {
				return fmt.Errorf("%s: resource %q leaves the repository", file, ref)
			}
			if lfs.IsDir("/" + target) {
				if err := checkKustomization(lfs, target, seen); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func resIDSelector(t *specs.PatchTarget) resid.ResId {
	return resid.ResId{
		Gvk:       resid.Gvk{Group: t.Group, Version: t.Version, Kind: t.Kind},
		Name:      t.Name,
		Namespace: t.Namespace,
	}
}
