package specs

// Labels on everything Sluice renders for a release: they mark it as
// Sluice's and name the release, so an apply can prune exactly what Sluice
// owns for that release and never touch anything else.
const (
	LabelManagedBy        = "app.kubernetes.io/managed-by"
	ManagedByValue        = "sluice"
	LabelRelease          = "sluice.dev/release"
	LabelReleaseNamespace = "sluice.dev/release-namespace"
	// LabelShard is set, with sharding on, to the shard of the release
	// under the number of shards ("<i>-of-<n>"), so that each replica
	// watches only its shards' objects. It is not an owner label.
	LabelShard = "sluice.dev/shard"
)

// AnnotationOnDelete, in a release's metadata.annotations, says what
// happens to the release's objects when its spec is deleted from Git:
// OnDeleteOrphan leaves them running (Sluice only forgets them), anything
// else (the default) removes them. Sluice copies it onto every object it
// renders, so the choice survives the spec that made it, and a person may
// set it on one object to keep just that one.
const (
	AnnotationOnDelete = "sluice.dev/on-delete"
	OnDeleteOrphan     = "orphan"
	OnDeleteDelete     = "delete"
)
