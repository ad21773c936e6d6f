package specs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The edits a person's command makes to a release spec (sluice approve,
// abort, retry, pause, resume, promote --skip-analysis). Like PromoteEdit,
// each changes only the lines it must, so comments and layout stay and the
// diff is the action; and each checks its result by decoding the file
// before and after, so that a layout it does not understand is refused
// rather than mangled. Each is a pure function of the file's content, as
// gitsync.Edit requires: it is applied again on a newer head when a push
// loses a race.

// ErrMoved is returned (wrapped) by an edit whose release no longer has
// the candidate the person acted on: someone or Sluice moved it on.
var ErrMoved = errors.New("the release moved on")

// SetFieldEdit sets spec.<key> to value (a scalar) in the release
// namespace/name, adding the field when it is missing. candidate, when
// set, must still be the release's candidate.
func SetFieldEdit(namespace, name, candidate, key string, value any) func([]byte) ([]byte, error) {
	return func(old []byte) ([]byte, error) {
		text, err := scalarText(value)
		if err != nil {
			return nil, err
		}
		return editSpec(old, namespace, name, candidate, func(spec map[string]any) { spec[key] = value },
			func(lines []string, spec *yaml.Node) ([]string, error) {
				if k, v := field(spec, key); v != nil {
					return replaceScalar(lines, k, v, text)
				}
				return insertField(lines, spec, key+": "+text)
			})
	}
}

// RemoveFieldEdit removes spec.<key> (a scalar) from the release
// namespace/name; a missing field is left missing.
func RemoveFieldEdit(namespace, name, candidate string, keys ...string) func([]byte) ([]byte, error) {
	return func(old []byte) ([]byte, error) {
		return editSpec(old, namespace, name, candidate, func(spec map[string]any) {
			for _, k := range keys {
				delete(spec, k)
			}
		}, func(lines []string, spec *yaml.Node) ([]string, error) {
			var drop []int
			for _, key := range keys {
				k, v := field(spec, key)
				if v == nil {
					continue
				}
				if v.Kind != yaml.ScalarNode || v.Line != k.Line {
					return nil, fmt.Errorf("spec.%s is not a plain value on one line", key)
				}
				drop = append(drop, k.Line-1)
			}
			return dropLines(lines, drop), nil
		})
	}
}

// ApproveEdit adds {stage, candidate, by} to spec.approvals of the release
// namespace/name, unless the stage is already approved for the candidate.
func ApproveEdit(namespace, name string, a Approval) func([]byte) ([]byte, error) {
	return func(old []byte) ([]byte, error) {
		item := map[string]any{"stage": a.Stage, "candidate": a.Candidate}
		if a.By != "" {
			item["by"] = a.By
		}
		text, err := flowMapping([][2]string{{"stage", a.Stage}, {"candidate", a.Candidate}, {"by", a.By}})
		if err != nil {
			return nil, err
		}
		already, err := approved(old, namespace, name, a)
		if err != nil {
			return nil, err
		}
		if already {
			return old, nil
		}
		return editSpec(old, namespace, name, a.Candidate, func(spec map[string]any) {
			list, _ := spec["approvals"].([]any)
			spec["approvals"] = append(list, item)
		}, func(lines []string, spec *yaml.Node) ([]string, error) {
			k, v := field(spec, "approvals")
			switch {
			case v == nil:
				return insertField(lines, spec, "approvals:", "  - "+text)
			case v.Kind == yaml.ScalarNode && v.Tag == "!!null" && v.Line == k.Line:
				// "approvals:" with nothing (or ~, null) after it.
				l := lines[k.Line-1]
				colon := strings.Index(l[k.Column-1:], ":") + k.Column
				indent := strings.Repeat(" ", k.Column-1)
				lines[k.Line-1] = l[:colon] + "\n"
				return insertLines(lines, k.Line, indent+"  - "+text), nil
			case v.Kind != yaml.SequenceNode:
				return nil, errors.New("spec.approvals is not a list")
			case v.Style&yaml.FlowStyle != 0:
				if v.Line != k.Line || maxLine(v) != v.Line {
					return nil, errors.New("spec.approvals is a flow list over several lines")
				}
				l := lines[v.Line-1]
				open := v.Column - 1
				end := strings.LastIndex(l, "]")
				if end < open {
					return nil, errors.New("spec.approvals: cannot find the end of the list")
				}
				sep := ", "
				if len(v.Content) == 0 {
					sep = ""
				}
				lines[v.Line-1] = l[:end] + sep + text + l[end:]
				return lines, nil
			default:
				if len(v.Content) == 0 {
					return nil, errors.New("spec.approvals is an empty block list")
				}
				at := maxLine(v)
				dash := strings.Repeat(" ", v.Column-1)
				return insertLines(lines, at, dash+"- "+text), nil
			}
		})
	}
}

// approved reports whether spec.approvals already approves a's stage for
// its candidate.
func approved(data []byte, namespace, name string, a Approval) (bool, error) {
	docs, err := decodeDocs(data)
	if err != nil {
		return false, err
	}
	for _, d := range docs {
		if !isRelease(d, namespace, name) {
			continue
		}
		spec, _ := d["spec"].(map[string]any)
		list, _ := spec["approvals"].([]any)
		for _, x := range list {
			if m, ok := x.(map[string]any); ok && m["stage"] == a.Stage && m["candidate"] == a.Candidate {
				return true, nil
			}
		}
	}
	return false, nil
}

// editSpec applies a line edit to the release namespace/name and checks
// that the file decodes to exactly what mutate makes of the old one.
func editSpec(old []byte, namespace, name, candidate string, mutate func(map[string]any),
	edit func(lines []string, spec *yaml.Node) ([]string, error)) ([]byte, error) {
	spec, err := FindSpecNode(old, namespace, name)
	if err != nil {
		return nil, err
	}
	if spec.Style&yaml.FlowStyle != 0 {
		return nil, errors.New("spec is a flow mapping ({...}); edit it by hand")
	}
	if candidate != "" {
		if _, c := field(spec, "candidate"); c == nil || c.Value != candidate {
			now := "none"
			if c != nil {
				now = c.Value
			}
			return nil, fmt.Errorf("%w: its candidate is %s, not %s", ErrMoved, now, candidate)
		}
	}
	lines := strings.SplitAfter(string(old), "\n")
	lines, err = edit(lines, spec)
	if err != nil {
		return nil, err
	}
	out := []byte(strings.Join(lines, ""))
	want, err := decodeDocs(old)
	if err != nil {
		return nil, err
	}
	for _, d := range want {
		if isRelease(d, namespace, name) {
			if s, ok := d["spec"].(map[string]any); ok {
				mutate(s)
			}
		}
	}
	got, err := decodeDocs(out)
	if err != nil {
		return nil, fmt.Errorf("the edit broke the file: %w", err)
	}
	if !reflect.DeepEqual(got, want) {
		return nil, errors.New("the file's layout is not one this edit understands; edit it by hand")
	}
	return out, nil
}

func decodeDocs(data []byte) ([]map[string]any, error) {
	var out []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
}

func isRelease(d map[string]any, namespace, name string) bool {
	m, _ := d["metadata"].(map[string]any)
	return m != nil && m["name"] == name && m["namespace"] == namespace
}

// field is the key and value nodes of key in a mapping; nil when missing.
func field(m *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

// replaceScalar replaces the scalar v (on the line of its key k) with
// text, keeping a trailing comment.
func replaceScalar(lines []string, k, v *yaml.Node, text string) ([]string, error) {
	if v.Kind != yaml.ScalarNode || v.Line != k.Line || v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return nil, fmt.Errorf("spec.%s is not a plain value on one line", k.Value)
	}
	l := lines[v.Line-1]
	start := v.Column - 1
	if start >= len(l) || start <= k.Column-1 {
		return nil, fmt.Errorf("spec.%s: cannot find its value", k.Value)
	}
	end := valueEnd(l, start, v.Style)
	nl := ""
	if strings.HasSuffix(l, "\n") && end >= len(strings.TrimRight(l, "\r\n")) {
		nl = l[len(strings.TrimRight(l, "\r\n")):]
		end = len(l) - len(nl)
	}
	lines[v.Line-1] = l[:start] + text + l[end:] + nl
	return lines, nil
}

// valueEnd is where the scalar starting at start on line l ends.
func valueEnd(l string, start int, style yaml.Style) int {
	switch {
	case style&yaml.DoubleQuotedStyle != 0:
		for i := start + 1; i < len(l); i++ {
			if l[i] == '\\' {
				i++
				continue
			}
			if l[i] == '"' {
				return i + 1
			}
		}
	case style&yaml.SingleQuotedStyle != 0:
		for i := start + 1; i < len(l); i++ {
			if l[i] == '\'' {
				if i+1 < len(l) && l[i+1] == '\'' {
					i++
					continue
				}
				return i + 1
			}
		}
	}
	if i := strings.Index(l[start:], " #"); i >= 0 {
		return start + len(strings.TrimRight(l[start:start+i], " \t"))
	}
	return start + len(strings.TrimRight(l[start:], " \t\r\n"))
}

// insertField adds lines (the first "key: value", the rest indented
// under it) to a block mapping, after its candidate (or stable) line, at
// the mapping's indentation.
func insertField(lines []string, spec *yaml.Node, first string, more ...string) ([]string, error) {
	if len(spec.Content) == 0 {
		return nil, errors.New("spec is empty")
	}
	at := -1
	for _, key := range []string{"candidate", "stable"} {
		if k, v := field(spec, key); k != nil && v.Kind == yaml.ScalarNode && v.Line == k.Line {
			at = k.Line
			break
		}
	}
	if at < 0 {
		at = maxLine(spec)
	}
	indent := strings.Repeat(" ", spec.Content[0].Column-1)
	add := []string{indent + first}
	for _, m := range more {
		add = append(add, indent+m)
	}
	return insertLines(lines, at, add...), nil
}

// insertLines puts add after line number at (1-based).
func insertLines(lines []string, at int, add ...string) []string {
	if at > 0 && at <= len(lines) && !strings.HasSuffix(lines[at-1], "\n") {
		lines[at-1] += "\n"
	}
	ins := make([]string, len(add))
	for i, a := range add {
		ins[i] = a + "\n"
	}
	out := append([]string{}, lines[:at]...)
	out = append(out, ins...)
	return append(out, lines[at:]...)
}

func dropLines(lines []string, idx []int) []string {
	drop := map[int]bool{}
	for _, i := range idx {
		drop[i] = true
	}
	out := lines[:0:0]
	for i, l := range lines {
		if !drop[i] {
			out = append(out, l)
		}
	}
	return out
}

// maxLine is the last line a node spans.
func maxLine(n *yaml.Node) int {
	m := n.Line
	for _, c := range n.Content {
		if l := maxLine(c); l > m {
			m = l
		}
	}
	return m
}

// scalarText is value as a YAML scalar on one line, quoted when needed.
func scalarText(value any) (string, error) {
	b, err := yaml.Marshal(value)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(string(b), "\n")
	if strings.Contains(s, "\n") {
		return "", fmt.Errorf("value %v does not fit on one line", value)
	}
	return s, nil
}

// flowMapping is {k: v, ...} of the pairs with a value.
func flowMapping(pairs [][2]string) (string, error) {
	var parts []string
	for _, p := range pairs {
		if p[1] == "" {
			continue
		}
		v, err := scalarText(p[1])
		if err != nil {
			return "", err
		}
		parts = append(parts, p[0]+": "+v)
	}
	return "{" + strings.Join(parts, ", ") + "}", nil
}
