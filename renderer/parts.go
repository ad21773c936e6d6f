package renderer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/specs"
)

// A step's build composes each live version's source and the routing
// documents. Between the steps of a release only the routing changes (the
// weights, the step's annotation): each version's part of the build is
// the same. So the Renderer builds each version's part on its own, once
// (a kustomize build of the version's kustomization with the step's
// namespace, labels and annotations), keeps it while the release
// progresses, and composes a step from the parts and the routing objects
// as kustomize would: the same transformations, in the build's order.
//
// kustomize resolves name references across the whole build, though (a
// version's Deployment may name a ConfigMap only another version's source
// has), so a composition of parts equals the full build only when no part
// reaches into another. The first step of each composition (which
// versions, with which roles and content) is therefore built whole as
// before, and kept; the second builds the parts and composes the first
// step from them: only a composition that gives the first step's full
// build is composed then and for the next steps, one that does not is
// built whole every time. A composition rendered once (a promote) costs
// the one build it always did. Steady steps (one version, rendered once
// per change) are always built whole and drop the release's parts.

// maxPartReleases bounds the releases whose parts are kept: a release's
// parts are a few rendered objects per live version, kept while it
// progresses (its steady step drops them). Beyond the bound the release
// used least recently loses its parts.
const maxPartReleases = 64

type compState int

const (
	compUnknown compState = iota // not compared with a full build yet
	compEqual                    // composing the parts gives the full build
	compDiffers                  // the full build differs: build whole
)

// partCache holds, per release, the parts of its current composition.
type partCache struct {
	mu   sync.Mutex
	max  int
	tick uint64
	rels map[string]*releaseParts
}

type releaseParts struct {
	// comp identifies the composition: the live versions' part keys in order.
	comp  string
	state compState
	// parts holds each version's built part by its key; never changed
	// once stored (callers copy).
	parts map[string][]*unstructured.Unstructured
	// first is the composition's first step, built whole, while the
	// composition is not compared with it yet.
	first *builtStep
	used  uint64
}

// builtStep is a step's full build and the routing documents it had.
type builtStep struct {
	objs    []*unstructured.Unstructured
	routing [][]byte
}

func newPartCache(maxReleases int) *partCache {
	return &partCache{max: maxReleases, rels: map[string]*releaseParts{}}
}

// lookup returns the state of a release's composition, the parts it
// holds for keys (nil where none) and the composition's first step, if
// it is not compared yet.
func (c *partCache) lookup(release, comp string, keys []string) (compState, [][]*unstructured.Unstructured, *builtStep) {
	c.mu.Lock()
	defer c.mu.Unlock()
	parts := make([][]*unstructured.Unstructured, len(keys))
	rp := c.rels[release]
	if rp == nil {
		return compUnknown, parts, nil
	}
	c.tick++
	rp.used = c.tick
	for i, k := range keys {
		parts[i] = rp.parts[k]
	}
	if rp.comp != comp {
		return compUnknown, parts, nil
	}
	return rp.state, parts, rp.first
}

// store keeps a release's composition, its parts and its first step,
// dropping any other parts of the release, and the least recently used
// release's beyond the bound.
func (c *partCache) store(release, comp string, state compState, keys []string, parts [][]*unstructured.Unstructured, first *builtStep) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick++
	rp := &releaseParts{comp: comp, state: state, parts: make(map[string][]*unstructured.Unstructured, len(keys)), first: first, used: c.tick}
	for i, part := range parts {
		if part != nil {
			rp.parts[keys[i]] = part
		}
	}
	c.rels[release] = rp
	for len(c.rels) > c.max {
		oldest, at := "", uint64(0)
		for id, r := range c.rels {
			if oldest == "" || r.used < at {
				oldest, at = id, r.used
			}
		}
		delete(c.rels, oldest)
	}
}

// forget drops a release's parts.
func (c *partCache) forget(release string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.rels, release)
}

// size is the number of releases with parts.
func (c *partCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rels)
}

// objects renders a step's objects (before the routers finish them):
// composed from the versions' parts when the release's composition is
// known to compose, else with the full build.
func (rd *Renderer) objects(ctx context.Context, lfs *layeredFS, rel *specs.Release, step specs.Step, p *stepPlan) ([]*unstructured.Unstructured, error) {
	if step.Kind == specs.KindStable {
		rd.parts.forget(rel.ID())
		return rd.buildStep(ctx, lfs, rel, step, p)
	}
	keys := make([]string, len(p.versions))
	for i, vp := range p.versions {
		k, err := partKey(p, vp)
		if err != nil {
			return nil, fmt.Errorf("render %s step %s: %w", rel.ID(), step.Name, err)
		}
		keys[i] = k
	}
	comp := strings.Join(keys, ",")
	state, parts, first := rd.parts.lookup(rel.ID(), comp, keys)
	if state == compDiffers || (state == compUnknown && first == nil) {
		full, err := rd.buildStep(ctx, lfs, rel, step, p)
		if err != nil {
			rd.parts.forget(rel.ID())
			return nil, err
		}
		if state == compUnknown {
			// Kept unchanged: the routers and leaveReplicasToAutoscalers
			// change the objects returned.
			first = &builtStep{objs: deepCopies(full), routing: p.routing}
		}
		rd.parts.store(rel.ID(), comp, state, keys, parts, first)
		return full, nil
	}
	for i, vp := range p.versions {
		if parts[i] != nil {
			continue
		}
		part, err := rd.buildPart(ctx, lfs, p, vp)
		if err != nil {
			// The full build reports it as it always did.
			rd.parts.forget(rel.ID())
			return rd.buildStep(ctx, lfs, rel, step, p)
		}
		parts[i] = part
	}
	if state == compUnknown {
		state = compDiffers
		again, ok, err := compose(p.root, first.routing, parts)
		if err != nil {
			return nil, fmt.Errorf("render %s step %s: %w", rel.ID(), step.Name, err)
		}
		if ok && equalObjects(again, first.objs) {
			state = compEqual
		}
	}
	composed, ok, err := compose(p.root, p.routing, parts)
	if err != nil {
		return nil, fmt.Errorf("render %s step %s: %w", rel.ID(), step.Name, err)
	}
	if !ok || state != compEqual {
		rd.parts.store(rel.ID(), comp, compDiffers, keys, nil, nil)
		return rd.buildStep(ctx, lfs, rel, step, p)
	}
	rd.counts.composed.Add(1)
	rd.parts.store(rel.ID(), comp, compEqual, keys, parts, nil)
	return composed, nil
}

func deepCopies(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		out[i] = o.DeepCopy()
	}
	return out
}

// partKey identifies a version's part: its kustomization, the content its
// source reads, and the step's namespace, labels and annotations.
// JSON, not the YAML the build reads (made from the JSON), is cheaper.
func partKey(p *stepPlan, vp versionPlan) (string, error) {
	k, err := json.Marshal(vp.k)
	if err != nil {
		return "", fmt.Errorf("marshal kustomization of %s: %w", vp.name, err)
	}
	w, err := json.Marshal(partKustomization(p, vp))
	if err != nil {
		return "", fmt.Errorf("marshal kustomization of %s: %w", vp.name, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00", vp.name, vp.revision, len(k))
	h.Write(k)
	h.Write(w)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// partKustomization applies the step's namespace, labels and annotations
// to the version's kustomization alone.
func partKustomization(p *stepPlan, vp versionPlan) *types.Kustomization {
	k := *p.root
	k.Resources = []string{"../version-" + vp.name}
	return &k
}

// buildPart builds one version's part of a step.
func (rd *Renderer) buildPart(ctx context.Context, lfs *layeredFS, p *stepPlan, vp versionPlan) ([]*unstructured.Unstructured, error) {
	if err := addKustomization(lfs, p.base+"/version-"+vp.name, vp.k); err != nil {
		return nil, err
	}
	dir := p.base + "/part-" + vp.name
	if err := addKustomization(lfs, dir, partKustomization(p, vp)); err != nil {
		return nil, err
	}
	rd.counts.parts.Add(1)
	rm, err := rd.build(ctx, lfs, dir)
	if err != nil {
		return nil, err
	}
	return objectsOf(rm)
}

// compose is the step's objects from copies of the versions' parts and the
// routing documents, with the root's namespace, labels and annotations
// applied to the latter as kustomize applies them, in the order the
// build accumulates them (the build does not sort). ok is false when two objects have the same ID (the full build
// refuses them).
func compose(root *types.Kustomization, routing [][]byte, parts [][]*unstructured.Unstructured) ([]*unstructured.Unstructured, bool, error) {
	var objs []*unstructured.Unstructured
	for _, part := range parts {
		for _, o := range part {
			objs = append(objs, o.DeepCopy())
		}
	}
	for _, doc := range routing {
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, false, fmt.Errorf("routing object: %w", err)
		}
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(j); err != nil {
			return nil, false, fmt.Errorf("routing object: %w", err)
		}
		if ns := root.Namespace; ns != "" {
			o.SetNamespace(ns)
		}
		for _, l := range root.Labels {
			labels := o.GetLabels()
			if labels == nil {
				labels = map[string]string{}
			}
			for k, v := range l.Pairs {
				labels[k] = v
			}
			o.SetLabels(labels)
		}
		if len(root.CommonAnnotations) > 0 {
			ann := o.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			for k, v := range root.CommonAnnotations {
				ann[k] = v
			}
			o.SetAnnotations(ann)
		}
		objs = append(objs, o)
	}
	ids := make([]resid.ResId, len(objs))
	for i, o := range objs {
		g, v := resid.ParseGroupVersion(o.GetAPIVersion())
		ids[i] = resid.NewResIdWithNamespace(resid.NewGvk(g, v, o.GetKind()), o.GetName(), o.GetNamespace())
		for _, prev := range ids[:i] {
			if prev.Equals(ids[i]) {
				return nil, false, nil
			}
		}
	}
	return objs, true, nil
}

// equalObjects tells whether two renders hold the same objects in the same order.
func equalObjects(a, b []*unstructured.Unstructured) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !reflect.DeepEqual(a[i].Object, b[i].Object) {
			return false
		}
	}
	return true
}
