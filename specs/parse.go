package specs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FieldError is one problem in a release file, located by line and field path.
type FieldError struct {
	File   string
	Line   int
	Path   string
	Reason string
}

func (e FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Path != "" {
		b.WriteString(": " + e.Path)
	}
	b.WriteString(": " + e.Reason)
	return b.String()
}

// ErrorList is every problem found in one or more files, in file and line order.
type ErrorList []FieldError

func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Sort orders the list by file, line and path so output is stable.
func (l ErrorList) Sort() {
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].File != l[j].File {
			return l[i].File < l[j].File
		}
		if l[i].Line != l[j].Line {
			return l[i].Line < l[j].Line
		}
		return l[i].Path < l[j].Path
	})
}

// AsErrorList returns the FieldErrors inside err, or one error wrapping it.
func AsErrorList(err error, file string) ErrorList {
	var l ErrorList
	if errors.As(err, &l) {
		return l
	}
	var fe FieldError
	if errors.As(err, &fe) {
		return ErrorList{fe}
	}
	return ErrorList{{File: file, Reason: err.Error()}}
}

// LoadFile reads and validates every Release in a file on disk.
func LoadFile(path string) ([]*Release, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read release file: %w", err)
	}
	return Parse(path, data)
}

// LoadFS reads and validates every Release in a file of fsys.
func LoadFS(fsys fs.FS, path string) ([]*Release, error) {
	data, err := fs.ReadFile(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("read release file: %w", err)
	}
	return Parse(path, data)
}

// IsRelease reports whether a YAML document declares kind Release of
// Sluice's API group, so callers can skip other manifests in a directory.
func IsRelease(data []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var head struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
		}
		err := dec.Decode(&head)
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			// A broken file that claims to be ours is still ours to report.
			return bytes.Contains(data, []byte("sluice.dev/"))
		}
		if head.Kind == Kind && strings.HasPrefix(head.APIVersion, "sluice.dev/") {
			return true
		}
	}
}

// Parse decodes every YAML document of a file as a Release, strictly:
// unknown fields, wrong types and invalid values are all reported together
// as an ErrorList naming the file, line, field path and reason.
func Parse(file string, data []byte) ([]*Release, error) {
	var (
		releases []*Release
		errs     ErrorList
	)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for doc := 0; ; doc++ {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, yamlSyntaxError(file, err))
			break
		}
		if len(root.Content) == 0 || root.Content[0].Kind == 0 ||
			(root.Content[0].Kind == yaml.ScalarNode && root.Content[0].Tag == "!!null") {
			continue // an empty document between separators
		}
		rel, docErrs := parseDocument(file, doc, &root)
		errs = append(errs, docErrs...)
		if rel != nil && len(docErrs) == 0 {
			releases = append(releases, rel)
		}
	}
	if len(releases) == 0 && len(errs) == 0 {
		errs = append(errs, FieldError{File: file, Reason: "no Release document found"})
	}
	if len(errs) > 0 {
		errs.Sort()
		return releases, errs
	}
	return releases, nil
}

func parseDocument(file string, doc int, root *yaml.Node) (*Release, ErrorList) {
	w := walker{file: file, lines: map[string]int{}}
	body := root.Content[0]
	w.walk(body, reflect.TypeOf(Release{}), "")
	rel := &Release{}
	if err := body.Decode(rel); err != nil && len(w.errs) == 0 {
		// The walker checks what decoding needs; this is a safety net.
		return nil, ErrorList{{File: file, Line: body.Line, Reason: err.Error()}}
	}
	rel.Origin = Origin{File: file, Doc: doc, lines: w.lines}
	// Validate even what failed to decode, so every problem of the file is
	// reported at once; a value the walker already rejected is not
	// reported again.
	errs := w.errs
	for _, e := range Validate(rel) {
		if !coveredBy(e.Path, w.errs) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	return rel, nil
}

func coveredBy(path string, errs ErrorList) bool {
	for _, e := range errs {
		if e.Path == path || strings.HasPrefix(path, e.Path+".") || strings.HasPrefix(path, e.Path+"[") ||
			strings.HasPrefix(e.Path, path+".") || strings.HasPrefix(e.Path, path+"[") {
			return true
		}
	}
	return false
}

func yamlSyntaxError(file string, err error) FieldError {
	msg := err.Error()
	line := 0
	// yaml.v3 says "yaml: line 12: did not find expected key".
	if _, scanErr := fmt.Sscanf(strings.TrimPrefix(msg, "yaml: "), "line %d:", &line); scanErr == nil {
		if i := strings.Index(msg, ": "); i >= 0 {
			rest := msg[i+2:]
			if j := strings.Index(rest, ": "); j >= 0 {
				msg = rest[j+2:]
			}
		}
	}
	// yaml.v3 numbers the lines of errors that carry a context (an unclosed
	// flow collection, say) from zero.
	if line > 0 && strings.Contains(msg, "did not find expected") {
		line++
	}
	return FieldError{File: file, Line: line, Reason: "invalid YAML: " + msg}
}

// walker checks a YAML node tree against the Go types before decoding, so
// every unknown field and every wrongly typed value is reported with its
// path and line, not just the first.
type walker struct {
	file  string
	lines map[string]int
	errs  ErrorList
}

var durationType = reflect.TypeOf(Duration{})

func (w *walker) fail(n *yaml.Node, path, format string, args ...any) {
	w.errs = append(w.errs, FieldError{File: w.file, Line: n.Line, Path: path, Reason: fmt.Sprintf(format, args...)})
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		if _, seen := w.lines[path]; !seen {
			w.lines[path] = n.Line
		}
	}
	isNull := n.Kind == yaml.ScalarNode && n.Tag == "!!null"
	if t.Kind() == reflect.Pointer {
		if isNull && t.Elem().Kind() == reflect.Struct {
			// "deploy:" with nothing after it means an empty stage, as {} does.
			n.Kind, n.Tag, n.Value = yaml.MappingNode, "!!map", ""
			isNull = false
		}
		t = t.Elem()
	}
	if t == durationType {
		if n.Kind != yaml.ScalarNode {
			w.fail(n, path, "must be a duration such as 45s or 1m")
			return
		}
		if _, err := parseDuration(n.Value); err != nil {
			w.fail(n, path, "%v", err)
		}
		return
	}
	if isNull && (t.Kind() == reflect.Struct || t.Kind() == reflect.Map || t.Kind() == reflect.Slice) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "must be a mapping of fields, not %s", describe(n))
			return
		}
		fields := yamlFields(t)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			child := joinPath(path, k.Value)
			if seen[k.Value] {
				w.fail(k, child, "field is set twice")
				continue
			}
			seen[k.Value] = true
			w.lines[child] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				w.fail(k, child, "unknown field%s", suggest(k.Value, fields))
				continue
			}
			w.walk(v, ft, child)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "must be a mapping, not %s", describe(n))
			return
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			child := joinPath(path, k.Value)
			if k.Kind != yaml.ScalarNode {
				w.fail(k, path, "keys must be strings")
				continue
			}
			if seen[k.Value] {
				w.fail(k, child, "key is set twice")
				continue
			}
			seen[k.Value] = true
			w.lines[child] = k.Line
			w.walk(v, t.Elem(), child)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n, path, "must be a list, not %s", describe(n))
			return
		}
		for i, item := range n.Content {
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode || isNull {
			w.fail(n, path, "must be a string, not %s", describe(n))
		}
	case reflect.Int, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			w.fail(n, path, "must be a whole number, not %s", describe(n))
		}
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
			w.fail(n, path, "must be a number, not %s", describe(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			w.fail(n, path, "must be true or false, not %s", describe(n))
		}
	}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.ShortTag() {
	case "!!null":
		return "empty"
	case "!!str":
		return fmt.Sprintf("the string %q", n.Value)
	}
	return fmt.Sprintf("%q", n.Value)
}

func joinPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// suggest names the known field closest to a mistyped one.
func suggest(got string, fields map[string]reflect.Type) string {
	best, bestDist := "", 3
	for name := range fields {
		if d := editDistance(strings.ToLower(got), strings.ToLower(name)); d < bestDist || (d == bestDist && best != "" && name < best) {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return " (known fields: " + strings.Join(slices.Sorted(maps.Keys(fields)), ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
