package specs

// Labels on everything Sluice renders for a release: they mark it as
// Sluice's and name the release, so an apply can prune exactly what Sluice
// owns for that release and never touch anything else.
const (
	LabelManagedBy        = "app.kubernetes.io/managed-by"
	ManagedByValue        = "sluice"
	LabelRelease          = "sluice.dev/release"
	LabelReleaseNamespace = "sluice.dev/release-namespace"
)
