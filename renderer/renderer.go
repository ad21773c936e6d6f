// Package renderer turns a release and one of its steps into the Kubernetes
// and Istio manifests of that step, with a kustomize build.
package renderer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io/fs"
	"maps"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"weak"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/specs"
)

// LabelVersion is the label DestinationRule subsets select by.
const LabelVersion = "version"

// Owner is the set of labels that marks an object as rendered by Sluice for a release.
func Owner(rel *specs.Release) map[string]string {
	return OwnerOf(rel.Metadata.Namespace, rel.Metadata.Name)
}

// OwnerOf is Owner of the release namespace/name.
func OwnerOf(namespace, name string) map[string]string {
	return map[string]string{
		specs.LabelManagedBy:        specs.ManagedByValue,
		specs.LabelRelease:          name,
		specs.LabelReleaseNamespace: namespace,
	}
}

// Output is the rendered manifests of one step.
type Output struct {
	Release string
	Step    specs.Step
	// Objects in kustomize's order (namespaces, then by kind and name).
	Objects []*unstructured.Unstructured
	// Owner are the labels every object carries.
	Owner map[string]string
	// Workloads maps each live version to the name of its Deployment.
	Workloads map[string]string
	// Revisions maps each live version to its content revision.
	Revisions map[string]string
	// Routes names the step's Gateway API HTTPRoutes, whose controllers
	// must accept them before the step counts as applied.
	Routes []string
	// Key identifies everything the render depends on (the release's
	// definition, the step, the content its versions read): renders with
	// equal keys are equal.
	Key string

	// digest memoizes Digest.
	digest *digestMemo
}

type digestMemo struct {
	once sync.Once
	sum  string
	err  error
}

// Digest is a hash of the step's objects, in order: equal digests mean
// equal manifests. It is computed once per Output, and only compared in
// memory (whether a render was applied already), never recorded.
func (o *Output) Digest() (string, error) {
	if o.digest == nil {
		return o.computeDigest()
	}
	o.digest.once.Do(func() { o.digest.sum, o.digest.err = o.computeDigest() })
	return o.digest.sum, o.digest.err
}

// computeDigest hashes the objects' JSON (encoding/json sorts map keys, so
// equal objects encode alike), one line each, streamed into the hash. The
// YAML of the step is made from that JSON (sigs.k8s.io/yaml converts it
// with a YAML parse and print), which cost a release's reconciles more
// than a tenth of their CPU for the same answer.
func (o *Output) computeDigest() (string, error) {
	h := sha256.New()
	enc := json.NewEncoder(h)
	enc.SetEscapeHTML(false)
	for _, obj := range o.Objects {
		if err := enc.Encode(obj.Object); err != nil {
			return "", fmt.Errorf("digest %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// YAML is the step as multi-document YAML.
func (o *Output) YAML() ([]byte, error) {
	var buf bytes.Buffer
	for i, obj := range o.Objects {
		if i > 0 {
			buf.WriteString("---\n")
		}
		b, err := yaml.Marshal(obj.Object)
		if err != nil {
			return nil, fmt.Errorf("marshal %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// versionScoped kinds are copied per version (and renamed with the version
// as suffix); every other kind is shared by all versions of the release.
var versionScoped = map[string]bool{
	"Deployment":              true,
	"ConfigMap":               true,
	"Secret":                  true,
	"HorizontalPodAutoscaler": true,
}

// Renderer renders steps. It remembers what each version's source builds
// to, keyed by the content it read, so rendering the next step of a release
// does not rebuild its sources twice, and Fingerprint tells without a build
// whether a step would render differently; and, while a release
// progresses, each version's part of its steps (parts.go). It is safe for
// concurrent use.
type Renderer struct {
	mu  sync.Mutex
	inv map[string]*inventory // release ID + version + version spec -> last inventory
	// specs are the memos of the releases rendered, by weak pointer.
	specs map[weak.Pointer[specs.Release]]*specMemo
	// builds holds one token per kustomize build running.
	builds chan struct{}
	// parts holds the versions' parts of the steps of releases in progress.
	parts *partCache
	// counts is what the renders did, for tests and benchmarks.
	counts renderCounts
}

// renderCounts counts kustomize builds of whole steps and of versions'
// parts, and steps composed from parts without a build.
type renderCounts struct {
	steps, parts, composed atomic.Int64
}

// New returns a Renderer with an empty cache.
func New() *Renderer {
	return &Renderer{
		inv:    map[string]*inventory{},
		specs:  map[weak.Pointer[specs.Release]]*specMemo{},
		builds: make(chan struct{}, runtime.GOMAXPROCS(0)),
		parts:  newPartCache(maxPartReleases),
	}
}

// Render builds the manifests of a step with a fresh Renderer; see Renderer.Render.
func Render(ctx context.Context, repo fs.FS, rel *specs.Release, step specs.Step) (*Output, error) {
	return New().Render(ctx, repo, rel, step)
}

// Revision computes a version's content revision with a fresh Renderer; see Renderer.Revision.
func Revision(ctx context.Context, repo fs.FS, rel *specs.Release, version string) (string, error) {
	return New().Revision(ctx, repo, rel, version)
}

// Render builds the manifests of a step. repo is the repository the
// release's source paths are relative to: a directory (an os.Root's FS) or
// a Git tree.
//
// The step is what one kustomize build of a generated kustomization
// composing, per live version, the version's own source with its images,
// env and patches, its version-scoped resources (Deployment, ConfigMaps,
// ...) renamed with the version as suffix and its Deployment labelled with
// the version; the shared resources (Service, ServiceAccount, ...) of the
// primary version; and Sluice's DestinationRule and VirtualServices
// outputs. The release namespace and the ownership labels apply to all of
// it. Routes with Gateway API routing then add a Service per version and
// their HTTPRoutes to the build's output (see gatewayAPI). Between the
// steps of a release only the routing changes, so the Renderer reuses
// each version's part of the build (see parts.go).
func (rd *Renderer) Render(ctx context.Context, repo fs.FS, rel *specs.Release, step specs.Step) (*Output, error) {
	lfs := newLayeredFS(repo)
	out, invs, err := rd.prepare(ctx, lfs, rel, step)
	if err != nil {
		return nil, err
	}
	p, err := planStep(rel, step, invs, out.Owner)
	if err != nil {
		return nil, fmt.Errorf("render %s step %s: %w", rel.ID(), step.Name, err)
	}
	if out.Objects, err = rd.objects(ctx, lfs, rel, step, p); err != nil {
		return nil, err
	}
	for _, rt := range p.routers {
		if out.Objects, err = rt.finish(rel, step, p.subsets, out.Objects, out.Owner); err != nil {
			return nil, fmt.Errorf("render %s step %s: %w", rel.ID(), step.Name, err)
		}
	}
	leaveReplicasToAutoscalers(out.Objects)
	return out, nil
}

// stepPlan is what a step's build composes: the generated kustomization
// of each live version, the routing documents, and the root's namespace,
// labels and annotations.
type stepPlan struct {
	base    string
	subsets []string
	// root is the step's kustomization without its resources.
	root     *types.Kustomization
	versions []versionPlan
	routers  []router
	// routing is the routers' generated documents (istio.yaml).
	routing [][]byte
}

// versionPlan is one live version's generated kustomization.
type versionPlan struct {
	name string
	k    *types.Kustomization
	// revision is the version's inventory revision: the content of every
	// file its source reads.
	revision string
}

// planStep generates the kustomizations of a step: per live version, the
// version's own source with its images, env and patches, its
// version-scoped resources renamed with the version as suffix and its
// Deployment labelled with the version (shared resources come from the
// primary version alone); and the routers' documents.
func planStep(rel *specs.Release, step specs.Step, invs []*inventory, owner map[string]string) (*stepPlan, error) {
	live := step.Versions
	primary := live[0]
	if step.Kind == specs.KindPromote {
		primary = rel.Spec.Candidate
	}
	p := &stepPlan{base: path.Join(genDir, rel.Metadata.Namespace, rel.Metadata.Name)}
	// During promote and rollback the version leaving keeps its subset (or
	// its Service), so no route ever names a backend that was already
	// removed; the next steady state drops it.
	p.subsets = append([]string(nil), live...)
	if (step.Kind == specs.KindPromote || step.Kind == specs.KindRollback) && rel.Spec.Candidate != "" {
		p.subsets = []string{rel.Spec.Stable, rel.Spec.Candidate}
	}
	p.root = &types.Kustomization{
		TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
		Namespace: rel.Metadata.Namespace,
		Labels:    []types.Label{{Pairs: owner}},
	}
	if v, ok := rel.Metadata.Annotations[specs.AnnotationOnDelete]; ok {
		// On the objects themselves, so that the choice is known when the
		// spec that made it is gone.
		p.root.CommonAnnotations = map[string]string{specs.AnnotationOnDelete: v}
	}
	for i, v := range live {
		ver, inv := rel.Version(v), invs[i]
		k := versionKustomization(p.base+"/version-"+v, rel, ver)
		if v != primary {
			// Shared resources come from the primary version alone.
			for _, id := range inv.resources {
				if !versionScoped[id.kind] {
					k.Patches = append(k.Patches, deletePatch(id))
				}
			}
		}
		if ep := envPatch(inv, ver); ep != nil {
			k.Patches = append(k.Patches, *ep)
		}
		if r := ver.Replicas; r != nil {
			// prepare refused replicas next to an autoscaler.
			k.Replicas = []types.Replica{{Name: inv.deployment, Count: int64(*r)}}
		}
		k.Transformers = versionTransformers(v)
		p.versions = append(p.versions, versionPlan{name: v, k: k, revision: inv.revision})
	}
	p.routers = routersOf(rel)
	for _, rt := range p.routers {
		d, err := rt.generate(rel, step, p.subsets)
		if err != nil {
			return nil, err
		}
		p.routing = append(p.routing, d...)
	}
	return p, nil
}

// buildStep is the step as one kustomize build of a generated
// kustomization composing every live version's and the routing documents,
// with the release namespace and the ownership labels on all of it.
func (rd *Renderer) buildStep(ctx context.Context, lfs *layeredFS, rel *specs.Release, step specs.Step, p *stepPlan) ([]*unstructured.Unstructured, error) {
	root := *p.root
	for _, vp := range p.versions {
		if err := addKustomization(lfs, p.base+"/version-"+vp.name, vp.k); err != nil {
			return nil, err
		}
		root.Resources = append(root.Resources, "version-"+vp.name)
	}
	if len(p.routing) > 0 {
		lfs.addGenerated(p.base+"/istio.yaml", bytes.Join(p.routing, []byte("---\n")))
		root.Resources = append(root.Resources, "istio.yaml")
	}
	if err := addKustomization(lfs, p.base, &root); err != nil {
		return nil, err
	}
	rd.counts.steps.Add(1)
	rm, err := rd.build(ctx, lfs, p.base)
	if err != nil {
		return nil, fmt.Errorf("render %s step %s: %w", rel.ID(), step.Name, err)
	}
	objs, err := objectsOf(rm)
	if err != nil {
		return nil, fmt.Errorf("render %s step %s: %w", rel.ID(), step.Name, err)
	}
	return objs, nil
}

// objectsOf converts a build's resources to unstructured objects.
func objectsOf(rm resmap.ResMap) ([]*unstructured.Unstructured, error) {
	objs := make([]*unstructured.Unstructured, 0, rm.Size())
	for _, r := range rm.Resources() {
		// Through JSON, numbers become the int64 and float64 that
		// unstructured objects hold.
		b, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// leaveReplicasToAutoscalers drops spec.replicas from every Deployment a
// HorizontalPodAutoscaler of the step scales. Server-side apply then does
// not own the field, so applying the step again neither reverts the
// autoscaler's count nor reports it as drift; a new Deployment starts at
// the API server's default of 1 until the autoscaler scales it.
func leaveReplicasToAutoscalers(objs []*unstructured.Unstructured) {
	scaled := map[string]bool{}
	for _, o := range objs {
		if target, ok := autoscalerTarget(o); ok {
			scaled[o.GetNamespace()+"/"+target] = true
		}
	}
	for _, o := range objs {
		if o.GetKind() == "Deployment" && scaled[o.GetNamespace()+"/"+o.GetName()] {
			unstructured.RemoveNestedField(o.Object, "spec", "replicas")
		}
	}
}

// autoscalerTarget is the name of the Deployment o scales, when o is a
// HorizontalPodAutoscaler (autoscaling/v1 or v2) that scales one.
func autoscalerTarget(o *unstructured.Unstructured) (string, bool) {
	gvk := o.GroupVersionKind()
	if gvk.Group != "autoscaling" || gvk.Kind != "HorizontalPodAutoscaler" {
		return "", false
	}
	ref, _, _ := unstructured.NestedMap(o.Object, "spec", "scaleTargetRef")
	kind, _ := ref["kind"].(string)
	name, _ := ref["name"].(string)
	apiVersion, _ := ref["apiVersion"].(string)
	if kind != "Deployment" || name == "" || (apiVersion != "" && !strings.HasPrefix(apiVersion, "apps/")) {
		return "", false
	}
	return name, true
}

// Fingerprint is what Render would return, without the objects and
// without a kustomize build: Key, Workloads and Revisions are set. Equal
// keys mean equal renders, so a caller that remembers the key of what it
// applied need not render an unchanged step again; keeping no rendered
// objects keeps memory flat however many releases there are.
func (rd *Renderer) Fingerprint(ctx context.Context, repo fs.FS, rel *specs.Release, step specs.Step) (*Output, error) {
	out, _, err := rd.prepare(ctx, newLayeredFS(repo), rel, step)
	return out, err
}

// prepare takes the inventory of each live version and the step's key.
func (rd *Renderer) prepare(ctx context.Context, lfs *layeredFS, rel *specs.Release, step specs.Step) (*Output, []*inventory, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	base := path.Join(genDir, rel.Metadata.Namespace, rel.Metadata.Name)
	live := step.Versions
	if len(live) == 0 {
		return nil, nil, fmt.Errorf("render %s step %s: the step has no versions", rel.ID(), step.Name)
	}
	out := &Output{
		Release:   rel.ID(),
		Step:      step,
		Owner:     Owner(rel),
		Workloads: map[string]string{},
		Revisions: map[string]string{},
		Routes:    HTTPRouteNames(rel),
		digest:    &digestMemo{},
	}
	memo := rd.memoOf(rel)
	invs := make([]*inventory, len(live))
	for i, v := range live {
		ver := rel.Version(v)
		if ver == nil {
			return nil, nil, fmt.Errorf("render %s step %s: version %q is not in spec.versions", rel.ID(), step.Name, v)
		}
		inv, err := rd.inventory(ctx, lfs, base, rel, memo, ver)
		if err != nil {
			return nil, nil, fmt.Errorf("render %s version %s: %w", rel.ID(), v, err)
		}
		if ver.Replicas != nil && inv.autoscaler != "" {
			return nil, nil, fmt.Errorf("render %s version %s: replicas is set, but the source's HorizontalPodAutoscaler %s scales Deployment %s; remove one of them",
				rel.ID(), v, inv.autoscaler, inv.deployment)
		}
		invs[i] = inv
		out.Workloads[v] = inv.deployment + "-" + v
		out.Revisions[v] = inv.revision
	}
	h, err := memo.definition(rel)
	if err != nil {
		return nil, nil, fmt.Errorf("render %s step %s: render key: %w", rel.ID(), step.Name, err)
	}
	key, err := renderKey(h, step, invs)
	if err != nil {
		return nil, nil, fmt.Errorf("render %s step %s: %w", rel.ID(), step.Name, err)
	}
	out.Key = key
	return out, invs, nil
}

// renderKey identifies everything a step's render depends on: the
// release's definition, the step, and the content its versions read
// (their inventories' revisions). h has hashed the release's definition
// (specMemo.definition).
func renderKey(h hash.Hash, step specs.Step, invs []*inventory) (string, error) {
	if err := json.NewEncoder(h).Encode(step); err != nil {
		return "", fmt.Errorf("render key: %w", err)
	}
	for _, inv := range invs {
		fmt.Fprintf(h, "%s\x00", inv.revision)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Revision is the content revision of a version: a hash of its definition in
// the spec and of every repository file its build reads. Sluice's own
// commits change neither, so they never look like a new candidate.
func (rd *Renderer) Revision(ctx context.Context, repo fs.FS, rel *specs.Release, version string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	ver := rel.Version(version)
	if ver == nil {
		return "", fmt.Errorf("revision of %s: version %q is not in spec.versions", rel.ID(), version)
	}
	inv, err := rd.inventory(ctx, newLayeredFS(repo), path.Join(genDir, rel.Metadata.Namespace, rel.Metadata.Name), rel, rd.memoOf(rel), ver)
	if err != nil {
		return "", fmt.Errorf("revision of %s version %s: %w", rel.ID(), version, err)
	}
	return inv.revision, nil
}

// versionTransformers rename a version's own resources with the version as
// suffix and label its Deployment (selector and pods too) with the version,
// leaving the shared resources as the source wrote them.
func versionTransformers(v string) []string {
	var names, labels strings.Builder
	for _, k := range slices.Sorted(maps.Keys(versionScoped)) {
		fmt.Fprintf(&names, "- {kind: %s, path: metadata/name}\n", k)
	}
	for _, p := range []string{"metadata/labels", "spec/selector/matchLabels", "spec/template/metadata/labels"} {
		fmt.Fprintf(&labels, "- {kind: Deployment, path: %s, create: true}\n", p)
	}
	return []string{
		"apiVersion: builtin\nkind: PrefixSuffixTransformer\nmetadata: {name: sluice-version-suffix}\nsuffix: -" + v + "\nfieldSpecs:\n" + names.String(),
		"apiVersion: builtin\nkind: LabelTransformer\nmetadata: {name: sluice-version-label}\nlabels: {" + LabelVersion + ": " + v + "}\nfieldSpecs:\n" + labels.String(),
	}
}

// inventory is what a version's source builds to, on its own: which
// resources it has (so a step can split shared from per-version ones),
// its Deployment and containers, and the files it read (its revision). A
// cached inventory is reused while every file it read is unchanged.
func (rd *Renderer) inventory(ctx context.Context, lfs *layeredFS, base string, rel *specs.Release, memo *specMemo, ver *specs.Version) (*inventory, error) {
	// Keyed by the version's JSON, which its YAML (in the revision) is
	// made from: marshalling YAML on every look-up cost more than the
	// look-up.
	vk, err := memo.version(rel, ver)
	if err != nil {
		return nil, err
	}
	key := vk.key
	rd.mu.Lock()
	cached := rd.inv[key]
	rd.mu.Unlock()
	if cached != nil && cached.current(lfs) {
		return cached, nil
	}
	spec, err := yaml.JSONToYAML(vk.json()) // what yaml.Marshal(ver) is
	if err != nil {
		return nil, fmt.Errorf("marshal version: %w", err)
	}
	inv, err := rd.takeInventory(ctx, lfs, base, rel, ver, spec)
	if err != nil {
		return nil, err
	}
	rd.mu.Lock()
	rd.inv[key] = inv
	rd.mu.Unlock()
	return inv, nil
}

type resID struct{ group, version, kind, name string }

type inventory struct {
	resources  []resID
	deployment string
	// autoscaler names the HorizontalPodAutoscaler that scales the
	// Deployment, if the source has one.
	autoscaler string
	containers []string
	revision   string
	files      map[string][sha256.Size]byte
	// paths are the files' names, sorted: what the content ID is asked
	// of at every check, kept rather than gathered from files each time.
	paths []string
	// contentID names the files read by their Git object hashes, when the
	// repository is a Git tree: checking it reads no file.
	contentID string
}

// contentIDer is a repository that identifies files' content without
// reading it, as gitsync.Tree does with Git object hashes.
type contentIDer interface {
	ContentID(paths ...string) (string, error)
}

// contentIDOf is the content ID of paths, "" when the repository has none.
func contentIDOf(lfs *layeredFS, paths []string) string {
	ider, ok := lfs.repo.(contentIDer)
	if !ok || len(paths) == 0 {
		return ""
	}
	id, err := ider.ContentID(paths...)
	if err != nil {
		return ""
	}
	return id
}

func (inv *inventory) current(lfs *layeredFS) bool {
	if inv.contentID != "" {
		return contentIDOf(lfs, inv.paths) == inv.contentID
	}
	for f, sum := range inv.files {
		data, err := lfs.ReadFile("/" + f)
		if err != nil || sha256.Sum256(data) != sum {
			return false
		}
	}
	return true
}

func (rd *Renderer) takeInventory(ctx context.Context, lfs *layeredFS, base string, rel *specs.Release, ver *specs.Version, spec []byte) (*inventory, error) {
	src := rel.SourceOf(ver)
	if err := checkSources(lfs, src); err != nil {
		return nil, err
	}
	dir := base + "/inventory-" + ver.Name
	if err := addKustomization(lfs, dir, versionKustomization(dir, rel, ver)); err != nil {
		return nil, err
	}
	lfs.resetRead()
	rm, err := rd.build(ctx, lfs, dir)
	if err != nil {
		return nil, err
	}
	inv := &inventory{files: map[string][sha256.Size]byte{}}
	h := sha256.New()
	fmt.Fprintf(h, "version\x00%s\x00", spec)
	for _, f := range lfs.filesRead() {
		data, err := lfs.ReadFile("/" + f)
		if err != nil {
			return nil, err
		}
		inv.files[f] = sha256.Sum256(data)
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(data))
		h.Write(data)
	}
	inv.revision = hex.EncodeToString(h.Sum(nil))[:16]
	inv.paths = slices.Sorted(maps.Keys(inv.files))
	inv.contentID = contentIDOf(lfs, inv.paths)

	var deployments []string
	targets := map[string]string{} // Deployment -> the autoscaler scaling it
	for _, r := range rm.Resources() {
		gvk := r.GetGvk()
		inv.resources = append(inv.resources, resID{gvk.Group, gvk.Version, gvk.Kind, r.GetName()})
		if gvk.Group == "autoscaling" && gvk.Kind == "HorizontalPodAutoscaler" {
			m, err := r.Map()
			if err != nil {
				return nil, err
			}
			if target, ok := autoscalerTarget(&unstructured.Unstructured{Object: m}); ok {
				targets[target] = r.GetName()
			}
		}
		if gvk.Kind == "Deployment" {
			deployments = append(deployments, r.GetName())
			if len(deployments) == 1 {
				m, err := r.Map()
				if err != nil {
					return nil, err
				}
				for _, c := range containersOf(m) {
					if cm, ok := c.(map[string]any); ok {
						name, _ := cm["name"].(string)
						inv.containers = append(inv.containers, name)
					}
				}
			}
		}
	}
	if len(deployments) != 1 {
		return nil, fmt.Errorf("source %s builds %d Deployments (%s); a release manages exactly one workload per version",
			src, len(deployments), strings.Join(deployments, ", "))
	}
	inv.deployment = deployments[0]
	inv.autoscaler = targets[inv.deployment]
	return inv, nil
}

// versionKustomization composes a version's source with its images and patches.
func versionKustomization(dir string, rel *specs.Release, ver *specs.Version) *types.Kustomization {
	k := &types.Kustomization{
		TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
		Resources: []string{relPath(dir, "/"+rel.SourceOf(ver))},
	}
	for _, img := range ver.Images {
		k.Images = append(k.Images, types.Image{Name: img.Name, NewName: img.NewName, NewTag: img.NewTag, Digest: img.Digest})
	}
	for _, p := range ver.Patches {
		kp := types.Patch{Patch: p.Patch}
		if t := p.Target; t != nil {
			kp.Target = &types.Selector{
				ResId:              resIDSelector(t),
				LabelSelector:      t.LabelSelector,
				AnnotationSelector: t.AnnotationSelector,
			}
		}
		k.Patches = append(k.Patches, kp)
	}
	return k
}

func deletePatch(id resID) types.Patch {
	apiVersion := id.version
	if id.group != "" {
		apiVersion = id.group + "/" + id.version
	}
	return types.Patch{Patch: fmt.Sprintf("$patch: delete\napiVersion: %s\nkind: %s\nmetadata:\n  name: %s\n", apiVersion, id.kind, id.name)}
}

// envPatch sets the version's env on every container of its Deployment; a
// strategic merge patch keeps the variables the source already sets.
func envPatch(inv *inventory, ver *specs.Version) *types.Patch {
	if len(ver.Env) == 0 {
		return nil
	}
	names := slices.Sorted(maps.Keys(ver.Env))
	env := make([]any, len(names))
	for i, n := range names {
		env[i] = map[string]any{"name": n, "value": ver.Env[n]}
	}
	containers := make([]any, len(inv.containers))
	for i, c := range inv.containers {
		containers[i] = map[string]any{"name": c, "env": env}
	}
	patch := map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata":   map[string]any{"name": inv.deployment},
		"spec":       map[string]any{"template": map[string]any{"spec": map[string]any{"containers": containers}}},
	}
	b, _ := yaml.Marshal(patch) // plain maps of strings always marshal
	return &types.Patch{Patch: string(b)}
}

func addKustomization(lfs *layeredFS, dir string, k *types.Kustomization) error {
	b, err := yaml.Marshal(k)
	if err != nil {
		return fmt.Errorf("marshal kustomization %s: %w", dir, err)
	}
	lfs.addGenerated(dir+"/kustomization.yaml", b)
	return nil
}

// build runs kustomize. Builds are CPU-bound and allocate a lot: running
// more at once than there are CPUs only adds memory, so they queue for one.
func (rd *Renderer) build(ctx context.Context, lfs *layeredFS, dir string) (resmap.ResMap, error) {
	select {
	case rd.builds <- struct{}{}:
		defer func() { <-rd.builds }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	opts.PluginConfig = types.DisabledPluginConfig()
	rm, err := krusty.MakeKustomizer(opts).Run(lfs, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build: %s", strings.ReplaceAll(err.Error(), genDir+"/", ""))
	}
	return rm, nil
}

// relPath is target relative to dir, both absolute.
func relPath(dir, target string) string {
	d := strings.Split(strings.Trim(path.Clean(dir), "/"), "/")
	t := strings.Split(strings.Trim(path.Clean(target), "/"), "/")
	if len(t) == 1 && t[0] == "" {
		t = nil
	}
	i := 0
	for i < len(d) && i < len(t) && d[i] == t[i] {
		i++
	}
	parts := make([]string, 0, len(d)-i+len(t)-i)
	for range d[i:] {
		parts = append(parts, "..")
	}
	parts = append(parts, t[i:]...)
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}

func containersOf(deployment map[string]any) []any {
	cur := any(deployment)
	for _, k := range []string{"spec", "template", "spec", "containers"} {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	cs, _ := cur.([]any)
	return cs
}
