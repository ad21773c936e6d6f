package gitsync

import (
	"fmt"
	"regexp"
	"strings"
)

// Trailer is one "Key: Value" line at the end of a commit message, in the
// format `git interpret-trailers` reads.
type Trailer struct {
	Key   string
	Value string
}

// Standard trailer keys on Sluice's commits.
const (
	TrailerRelease = "Sluice-Release"
	TrailerStep    = "Sluice-Step"
	TrailerAction  = "Sluice-Action"
	// TrailerSubject carries one release's own subject line in a commit
	// that records several releases at once.
	TrailerSubject = "Sluice-Subject"
)

var trailerKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]*$`)

func (t Trailer) validate() error {
	if !trailerKeyRE.MatchString(t.Key) {
		return fmt.Errorf("trailer key %q: want letters, digits and '-'", t.Key)
	}
	if strings.TrimSpace(t.Value) == "" {
		return fmt.Errorf("trailer %q has an empty value", t.Key)
	}
	if strings.ContainsAny(t.Value, "\r\n") {
		return fmt.Errorf("trailer %q: value must be one line", t.Key)
	}
	return nil
}

// FormatMessage joins a message and its trailers the way git expects: the
// trailers form the last paragraph, after one blank line.
func FormatMessage(message string, trailers []Trailer) (string, error) {
	msg := strings.TrimRight(message, " \t\r\n")
	if msg == "" {
		return "", fmt.Errorf("commit message is empty")
	}
	var b strings.Builder
	b.WriteString(msg)
	b.WriteString("\n")
	if len(trailers) > 0 {
		b.WriteString("\n")
		for _, t := range trailers {
			if err := t.validate(); err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "%s: %s\n", t.Key, strings.TrimSpace(t.Value))
		}
	}
	return b.String(), nil
}

// ParseTrailers returns the trailers of a commit message: the lines of its
// last paragraph, when that paragraph is not the subject and every line in
// it is "Key: Value" (or an indented continuation of one). This is the
// strict subset of `git interpret-trailers --parse` that Sluice writes.
func ParseTrailers(message string) []Trailer {
	lines := strings.Split(strings.ReplaceAll(message, "\r\n", "\n"), "\n")
	// Drop trailing blank lines, then find the start of the last paragraph.
	end := len(lines)
	for end > 0 && strings.TrimSpace(lines[end-1]) == "" {
		end--
	}
	start := end
	for start > 0 && strings.TrimSpace(lines[start-1]) != "" {
		start--
	}
	if start == 0 {
		// The first paragraph is the subject; it never holds trailers.
		return nil
	}
	var out []Trailer
	for _, l := range lines[start:end] {
		if l[0] == ' ' || l[0] == '\t' {
			if len(out) == 0 {
				return nil
			}
			out[len(out)-1].Value += " " + strings.TrimSpace(l)
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		k = strings.TrimRight(k, " \t")
		if !ok || !trailerKeyRE.MatchString(k) {
			return nil
		}
		out = append(out, Trailer{Key: k, Value: strings.TrimSpace(v)})
	}
	return out
}

// TrailerValue returns the value of the last trailer named key
// (case-insensitive, as git compares keys), or "".
func TrailerValue(trailers []Trailer, key string) string {
	v := ""
	for _, t := range trailers {
		if strings.EqualFold(t.Key, key) {
			v = t.Value
		}
	}
	return v
}

// TrailerGroups splits trailers into groups that each start at a trailer
// named key (case-insensitive); trailers before the first such one are
// dropped. A commit recording several releases carries one group per
// release, each starting with its Sluice-Release trailer; read each group
// with TrailerValue.
func TrailerGroups(trailers []Trailer, key string) [][]Trailer {
	var out [][]Trailer
	for _, t := range trailers {
		if strings.EqualFold(t.Key, key) {
			out = append(out, []Trailer{t})
			continue
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], t)
		}
	}
	return out
}
