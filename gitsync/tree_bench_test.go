package gitsync_test

import (
	"fmt"
	"io/fs"
	"testing"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/internal/gitserver"
)

// benchReleases lays out a repository as sluice-bench does: per release a
// spec, a status file and an app with a base and two overlays, over ten
// namespaces.
const benchReleases = 1000

func releaseLayout(n int) (files map[string]string, reads [][]string) {
	files = map[string]string{}
	for i := range n {
		ns, name := fmt.Sprintf("bench-%02d", i%10), fmt.Sprintf("app-%05d", i)
		app := "apps/" + ns + "/" + name
		spec := "releases/" + ns + "/" + name + ".yaml"
		status := ".sluice/status/" + ns + "/" + name + ".yaml"
		own := []string{spec, status, app + "/base/kustomization.yaml", app + "/base/service.yaml",
			app + "/base/deployment.yaml", app + "/overlays/v1/kustomization.yaml", app + "/overlays/v2/kustomization.yaml"}
		for _, f := range own {
			files[f] = "name: " + f + "\n"
		}
		reads = append(reads, own)
	}
	return files, reads
}

// BenchmarkTreePass is what one pass over benchReleases releases asks of
// a tree when nothing changed: per release, the content ID of its spec and
// sources (the renderer's check that its inventory is current) and the
// read of its status file.
func BenchmarkTreePass(b *testing.B) {
	files, reads := releaseLayout(benchReleases)
	bare := gitserver.NewBare(b, b.TempDir(), "releases", "main", files)
	r, _ := openRepo(b, gitsync.Config{URL: fileURL(bare)})
	ctx := testCtx(b)
	res, err := r.Sync(ctx)
	if err != nil {
		b.Fatal(err)
	}
	tree, err := r.Tree(ctx, res.Head)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, own := range reads {
			if _, err := tree.ContentID(own[0], own[2], own[3], own[4], own[5]); err != nil {
				b.Fatal(err)
			}
			if _, err := fs.ReadFile(tree, own[1]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
