package renderer

import (
	"crypto/sha256"
	"encoding"
	"encoding/json"
	"fmt"
	"hash"
	"runtime"
	"sync"
	"weak"

	"sluice.dev/sluice/specs"
)

// specMemo is what the Renderer derives from one parsed release and reuses
// while it is handed the same *specs.Release: the JSON that render keys
// and inventory keys are made of, which cost more to encode, at every
// reconcile of an unchanged release, than the rest of a fingerprint. The
// reconciler parses a spec file again only when its blob changes and
// never changes a parsed release, so the pointer stands for the content;
// callers of the Renderer must not change a release they rendered.
type specMemo struct {
	mu sync.Mutex
	// def is the state of a SHA-256 that has hashed rel.Metadata and
	// rel.Spec, each as json.Encoder writes it: about 100 bytes where the
	// JSON is kilobytes.
	def []byte
	// versions are the inventory keys of rel's versions.
	versions map[*specs.Version]versionKey
}

// versionKey is a version's inventory key; its JSON is the key's tail
// from jsonAt.
type versionKey struct {
	key    string
	jsonAt int
}

func (vk versionKey) json() []byte { return []byte(vk.key[vk.jsonAt:]) }

// memoOf returns the memo of rel. Memos are held by weak pointer and
// dropped once rel is garbage: the Renderer keeps one per live release,
// however many specs come and go.
func (rd *Renderer) memoOf(rel *specs.Release) *specMemo {
	wp := weak.Make(rel)
	rd.mu.Lock()
	defer rd.mu.Unlock()
	m := rd.specs[wp]
	if m == nil {
		m = &specMemo{}
		rd.specs[wp] = m
		runtime.AddCleanup(rel, rd.dropMemo, wp)
	}
	return m
}

func (rd *Renderer) dropMemo(wp weak.Pointer[specs.Release]) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	delete(rd.specs, wp)
}

// definition returns a SHA-256 that has hashed rel.Metadata and rel.Spec
// as renderKey hashes them, restored from the memo.
func (m *specMemo) definition(rel *specs.Release) (hash.Hash, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := sha256.New()
	if m.def == nil {
		enc := json.NewEncoder(h)
		for _, v := range []any{rel.Metadata, rel.Spec} {
			if err := enc.Encode(v); err != nil {
				return nil, err
			}
		}
		state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return nil, err
		}
		m.def = state
		return h, nil
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(m.def); err != nil {
		return nil, err
	}
	return h, nil
}

// version returns the inventory key of ver, one of rel's versions: the
// release, the version's source and its JSON, from which its YAML (in
// the revision) is made.
func (m *specMemo) version(rel *specs.Release, ver *specs.Version) (versionKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if vk, ok := m.versions[ver]; ok {
		return vk, nil
	}
	js, err := json.Marshal(ver)
	if err != nil {
		return versionKey{}, fmt.Errorf("marshal version: %w", err)
	}
	prefix := rel.ID() + "\x00" + rel.SourceOf(ver) + "\x00"
	vk := versionKey{key: prefix + string(js), jsonAt: len(prefix)}
	if m.versions == nil {
		m.versions = map[*specs.Version]versionKey{}
	}
	m.versions[ver] = vk
	return vk, nil
}
