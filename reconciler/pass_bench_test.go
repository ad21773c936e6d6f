package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"sluice.dev/sluice/cluster"
	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/internal/gitserver"
)

// passReleases is the size of the repository BenchmarkNoChangePass
// reconciles: sluice-bench's layout, smaller so its cold start (one
// status commit per release) stays short.
const passReleases = 200

// okCluster applies anything and finds every Deployment available.
type okCluster struct{}

func (okCluster) Apply(context.Context, cluster.Set, cluster.ApplyOptions) (*cluster.Result, error) {
	return &cluster.Result{}, nil
}

func (okCluster) Available(context.Context, string, string) (bool, string, error) {
	return true, "", nil
}

// passRepoFiles lays out n steady releases as sluice-bench does: a spec
// and an app with a base and two overlays each, over ten namespaces.
func passRepoFiles(n int) (map[string]string, []string) {
	files := map[string]string{"README.md": "bench\n"}
	var ids []string
	for i := range n {
		ns, name := fmt.Sprintf("bench-%02d", i%10), fmt.Sprintf("app-%05d", i)
		app := "apps/" + ns + "/" + name
		files[app+"/base/kustomization.yaml"] = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - service.yaml\n  - deployment.yaml\n"
		files[app+"/base/service.yaml"] = fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: %[1]s\n  labels:\n    app: %[1]s\nspec:\n  selector:\n    app: %[1]s\n  ports:\n    - name: http\n      port: 80\n      targetPort: 8080\n", name)
		files[app+"/base/deployment.yaml"] = fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %[1]s\n  labels:\n    app: %[1]s\nspec:\n  replicas: 0\n  selector:\n    matchLabels:\n      app: %[1]s\n  template:\n    metadata:\n      labels:\n        app: %[1]s\n    spec:\n      containers:\n        - name: app\n          image: registry.example.com/%[1]s:1.0.0\n", name)
		for _, v := range []string{"1", "2"} {
			files[app+"/overlays/v"+v+"/kustomization.yaml"] = fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../base\nimages:\n  - name: registry.example.com/%s\n    newTag: %s.0.0\n", name, v)
		}
		files["releases/"+ns+"/"+name+".yaml"] = fmt.Sprintf(`apiVersion: sluice.dev/v1alpha1
kind: Release
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  service:
    name: %[1]s
    port: 80
  versions:
    - name: v1
      source: %[3]s/overlays/v1
    - name: v2
      source: %[3]s/overlays/v2
  stable: v1
  routes:
    - name: mesh
      gateways: [mesh]
      hosts: [%[1]s]
  stages:
    - name: deploy
      deploy: {}
    - name: canary
      weighted:
        stepWeight: 50
        maxWeight: 50
    - name: promote
      promote: {}
`, name, ns, app)
		ids = append(ids, ns+"/"+name)
	}
	return files, ids
}

// BenchmarkNoChangePass is sluice-bench's no-change pass in process: a
// commit that changes no release, then every release reconciled once, all
// of them steady and applied. One op is one pass over passReleases.
func BenchmarkNoChangePass(b *testing.B) {
	files, ids := passRepoFiles(passReleases)
	bare := gitserver.NewBare(b, b.TempDir(), "releases", "main", files)
	ctx := context.Background()
	repo, err := gitsync.Open(ctx, gitsync.Config{URL: "file://" + bare, Author: gitsync.Signature{Name: "Sluice", Email: "sluice@example.com"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := repo.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	r, err := New(Config{Repo: repo, Cluster: okCluster{}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	pass := func() {
		for _, id := range ids {
			if _, err := r.reconcile(ctx, id); err != nil {
				b.Fatalf("reconcile %s: %v", id, err)
			}
		}
	}
	pass() // cold: each release recorded and applied
	note := 0
	commit := func() {
		note++
		if _, err := repo.Commit(ctx, gitsync.Change{Message: "README", Files: map[string][]byte{"README.md": fmt.Appendf(nil, "note %d\n", note)}}); err != nil {
			b.Fatal(err)
		}
	}
	commit()
	pass() // the first pass after the cold start renders what it applied
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		commit()
		b.StartTimer()
		pass()
	}
}
