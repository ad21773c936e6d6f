// Package gitsync reads Sluice's release specs from Git and records
// Sluice's progress back into Git, with go-git.
//
// A Repo keeps a worktree-less (bare) clone of one branch in a cache
// directory (or in memory): shallow at first (depth 1 by default), then
// updated incrementally, so a Sync after one new commit transfers only that
// commit's new objects. Tree reads files at a commit without a checkout and
// gives their git object hashes: these identify content independently of
// commit SHAs, so Sluice's own status commits do not look like new releases
// (see Tree.Hash and Tree.ContentID).
//
// Commit writes Sluice's files as one commit with trailers that tools can
// parse (see ParseTrailers) and pushes it as a compare-and-swap from the head
// it was built on, which can only fast-forward the branch: when someone else
// pushed first, Commit fetches, re-creates the change on top of the new head
// and retries with jittered backoff. Nothing is ever force-pushed, so no
// person's commit is lost or rewritten.
//
// Remotes are file://, http(s):// or ssh://. Credentials come from files
// (a mounted Kubernetes Secret) read at every use; SSH host keys are always
// checked against a known_hosts file; an HTTP(S) proxy is taken from the
// environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY). Credentials never appear
// in errors or logs: URLs with a password are refused, and every error from
// the transport is scrubbed of URL userinfo and of the secret values.
//
// Methods of a Repo are safe for concurrent use (one mutex serialises
// them); a Log callback must not call back into the Repo.
package gitsync
