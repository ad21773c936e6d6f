package record

import (
	"sluice.dev/sluice/gitsync"
)

// Trailers on Sluice's commits, which `sluice history` and people's tools
// read (`git log --format='%(trailers:key=Sluice-Release)'`).
const (
	TrailerRelease  = "Sluice-Release"
	TrailerAction   = "Sluice-Action"
	TrailerStep     = "Sluice-Step"
	TrailerRevision = "Sluice-Revision"
	// TrailerSubject carries one release's own subject line in a commit
	// that records several releases at once.
	TrailerSubject = "Sluice-Subject"
	// TrailerRequest is on a person's commit made with a Sluice command
	// (approve, abort, retry, pause, resume, promote): the action asked for.
	TrailerRequest = "Sluice-Request"
)

// Entry is one transition to record: the release's new status, what
// happened, and any edit of the release spec that goes with it.
type Entry struct {
	// Release is namespace/name.
	Release   string
	Namespace string
	Name      string
	// Status is the new status; nil removes the status file (ActionDelete).
	Status  *Status
	Action  Action
	Subject string
	Edits   []gitsync.Edit
}

// Change is the commit that records e under statusDir: the status file
// (and edits), with the subject, the status message as body, and the
// trailers.
func Change(statusDir string, e Entry) (gitsync.Change, error) {
	if e.Status == nil {
		return gitsync.Change{
			Message:  e.Subject,
			Trailers: []gitsync.Trailer{{Key: TrailerRelease, Value: e.Release}, {Key: TrailerAction, Value: string(e.Action)}},
			Files:    map[string][]byte{StatusPath(statusDir, e.Namespace, e.Name): nil},
			Edits:    e.Edits,
		}, nil
	}
	data, err := e.Status.Marshal()
	if err != nil {
		return gitsync.Change{}, err
	}
	trailers := []gitsync.Trailer{
		{Key: TrailerRelease, Value: e.Release},
		{Key: TrailerAction, Value: string(e.Action)},
	}
	if e.Status.Step != "" {
		trailers = append(trailers, gitsync.Trailer{Key: TrailerStep, Value: e.Status.Step})
	}
	if e.Status.Revision != "" {
		trailers = append(trailers, gitsync.Trailer{Key: TrailerRevision, Value: e.Status.Revision})
	}
	body := ""
	if e.Status.Message != "" {
		body = "\n\n" + e.Status.Message
	}
	return gitsync.Change{
		Message:  e.Subject + body,
		Trailers: trailers,
		Files:    map[string][]byte{StatusPath(statusDir, e.Namespace, e.Name): data},
		Edits:    e.Edits,
	}, nil
}
