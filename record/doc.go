// Package record owns Sluice's record of releases in Git: the status file
// of each release, the actions that change it and the commit trailers that
// name them, and the code that writes and reads them. The reconciler writes
// the record; `sluice status` and `sluice history` read it.
package record
