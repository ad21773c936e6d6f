package specs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FieldError is one problem in a release file, located by line, column
// and field path.
type FieldError struct {
	File   string `json:"file"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	Path   string `json:"field,omitempty"`
	Reason string `json:"message"`
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
	var se *SizeError
	if errors.As(err, &se) {
		return ErrorList{{File: se.File, Reason: se.reason()}}
	}
	return ErrorList{{File: file, Reason: err.Error()}}
}

// DefaultMaxSpecSize bounds a release spec file. Real specs are a few
// kilobytes; the bound keeps one huge file from holding a validate or a
// controller pass.
const DefaultMaxSpecSize int64 = 1 << 20

// SizeError is a spec file over the size limit, found before reading it.
type SizeError struct {
	File        string
	Size, Limit int64
}

func (e *SizeError) Error() string { return e.File + ": " + e.reason() }

func (e *SizeError) reason() string {
	return fmt.Sprintf("file is %s, over the %s limit for a release spec file (--max-spec-size); split it into several files",
		FormatSize(e.Size), FormatSize(e.Limit))
}

// CheckSize refuses a file of size bytes over limit; limit <= 0 means none.
func CheckSize(file string, size, limit int64) error {
	if limit > 0 && size > limit {
		return &SizeError{File: file, Size: size, Limit: limit}
	}
	return nil
}

// FormatSize writes a byte count for people: 1 MiB, 52.4 MiB, 900 bytes.
func FormatSize(n int64) string {
	const (
		kib = 1 << 10
		mib = 1 << 20
	)
	switch {
	case n >= mib:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/mib), ".0") + " MiB"
	case n >= kib:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/kib), ".0") + " KiB"
	}
	return fmt.Sprintf("%d bytes", n)
}

// LoadFile reads and validates every Release in a file on disk, with the
// default size limit.
func LoadFile(path string) ([]*Release, error) {
	return LoadFileContext(context.Background(), path, DefaultMaxSpecSize)
}

// LoadFileContext reads and validates every Release in a file on disk. A
// file over limit bytes (limit <= 0: no limit) is refused from its size,
// before any of it is read.
func LoadFileContext(ctx context.Context, path string, limit int64) ([]*Release, error) {
	data, err := ReadFileLimit(path, limit)
	if err != nil {
		return nil, err
	}
	return ParseContext(ctx, path, data)
}

// ReadFileLimit reads a file of at most limit bytes (limit <= 0: no limit).
// The size is checked before reading, and the read is bounded too, so a
// file that grows meanwhile (or a pipe) cannot get past the limit.
func ReadFileLimit(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read release file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read release file: %w", err)
	}
	if st.Mode().IsRegular() {
		if err := CheckSize(path, st.Size(), limit); err != nil {
			return nil, err
		}
	}
	var r io.Reader = f
	if limit > 0 {
		r = io.LimitReader(f, limit+1)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read release file %s: %w", path, err)
	}
	if err := CheckSize(path, int64(len(data)), limit); err != nil {
		return nil, err
	}
	return data, nil
}

// LoadFS reads and validates every Release in a file of fsys, with the
// default size limit (checked with fs.Stat before reading).
func LoadFS(fsys fs.FS, path string) ([]*Release, error) {
	st, err := fs.Stat(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("read release file: %w", err)
	}
	if err := CheckSize(path, st.Size(), DefaultMaxSpecSize); err != nil {
		return nil, err
	}
	data, err := fs.ReadFile(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("read release file: %w", err)
	}
	return Parse(path, data)
}

// apiGroupPrefix starts the apiVersion of every Sluice document.
const apiGroupPrefix = "sluice.dev/"

// IsRelease reports whether a YAML file is Sluice's: it holds a document of
// Sluice's API group (apiVersion sluice.dev/...), whatever its kind, so
// callers can skip other manifests in a directory while a release whose
// kind is misspelt is still reported rather than skipped.
func IsRelease(data []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var head struct {
			APIVersion any `yaml:"apiVersion"`
		}
		err := dec.Decode(&head)
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			// A broken file that claims to be ours is still ours to report.
			return bytes.Contains(data, []byte(apiGroupPrefix))
		}
		if v, ok := head.APIVersion.(string); ok && strings.HasPrefix(v, apiGroupPrefix) {
			return true
		}
	}
}

// MaybeRelease tells from the start of a file (its first bytes, when the
// file is too large to read) whether it may be Sluice's.
func MaybeRelease(prefix []byte) bool {
	return bytes.Contains(prefix, []byte(apiGroupPrefix))
}

// Parse decodes every YAML document of a file as a Release, strictly:
// unknown fields, wrong types and invalid values are all reported together
// as an ErrorList naming the file, line, field path and reason.
func Parse(file string, data []byte) ([]*Release, error) {
	return ParseContext(context.Background(), file, data)
}

// ParseContext is Parse, ending early with ctx's error when ctx is done.
// Its time is linear in the size of data.
func ParseContext(ctx context.Context, file string, data []byte) ([]*Release, error) {
	var (
		releases []*Release
		errs     ErrorList
	)
	// Aliases may make a document's tree much larger than its text (a YAML
	// "billion laughs"); the walk is bounded by the text's size instead.
	// Without aliases every value takes two bytes of text at least, so a
	// budget of one visit per byte is never spent by a plain document.
	budget := len(data) + 1024
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for doc := 0; ; doc++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
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
		rel, docErrs, err := parseDocument(ctx, file, doc, &root, &budget)
		if err != nil {
			return nil, err
		}
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

func parseDocument(ctx context.Context, file string, doc int, root *yaml.Node, budget *int) (*Release, ErrorList, error) {
	w := walker{ctx: ctx, file: file, lines: map[string]position{}, budget: budget, fields: map[reflect.Type]map[string]reflect.StructField{}}
	body := root.Content[0]
	rel := &Release{}
	// The walker checks every node against the Go types and decodes it in
	// the same pass: yaml.v3's own decoding of a mapping compares every key
	// with every other, which is quadratic in a large map.
	w.walk(body, reflect.ValueOf(rel).Elem(), "")
	if w.err != nil {
		return nil, nil, w.err
	}
	rel.Origin = Origin{File: file, Doc: doc, lines: w.lines}
	// Validate even what failed to decode, so every problem of the file is
	// reported at once; a value the walker already rejected is not
	// reported again.
	errs := w.errs
	covered := newCoverage(w.errs)
	for _, e := range Validate(rel) {
		if !covered.covers(e.Path) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs, nil
	}
	return rel, nil, nil
}

// coverage is the field paths with a walker error, and their ancestors: a
// validation error on one of them, or under one, repeats the walker's.
type coverage struct {
	exact     map[string]bool // paths with an error
	ancestors map[string]bool // strict ancestors of those paths
}

func newCoverage(errs ErrorList) coverage {
	c := coverage{exact: map[string]bool{}, ancestors: map[string]bool{}}
	for _, e := range errs {
		if e.Path == "" {
			continue
		}
		c.exact[e.Path] = true
		for p := parentPath(e.Path); p != ""; p = parentPath(p) {
			c.ancestors[p] = true
		}
	}
	return c
}

func (c coverage) covers(path string) bool {
	if c.ancestors[path] {
		return true
	}
	for p := path; p != ""; p = parentPath(p) {
		if c.exact[p] {
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
	return FieldError{File: file, Line: line, Reason: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// position is where a field is in its file.
type position struct{ line, column int }

// walker checks a YAML node tree against the Go types and decodes it into
// a value of those types, so every unknown field and every wrongly typed
// value is reported with its path and line, not just the first.
type walker struct {
	ctx    context.Context
	file   string
	lines  map[string]position
	errs   ErrorList
	budget *int  // nodes left to visit in the file
	err    error // why the walk stopped: ctx done, or the budget spent
	// keyIndex maps the keys of the large mapping whose first key is
	// keyIndexOf to their first index (see setBefore).
	keyIndex   map[string]int
	keyIndexOf *yaml.Node
	// fields memoizes yamlFields by type for this walk.
	fields map[reflect.Type]map[string]reflect.StructField
}

var durationType = reflect.TypeOf(Duration{})

func (w *walker) fail(n *yaml.Node, path, format string, args ...any) {
	w.errs = append(w.errs, FieldError{File: w.file, Line: n.Line, Column: n.Column, Path: path, Reason: fmt.Sprintf(format, args...)})
}

// walk checks n against v's type and, when it fits, stores it in v.
func (w *walker) walk(n *yaml.Node, v reflect.Value, path string) {
	if w.err != nil {
		return
	}
	*w.budget--
	if *w.budget < 0 {
		w.err = FieldError{File: w.file, Line: n.Line, Column: n.Column, Path: path,
			Reason: "the document expands to far more values than its text holds (aliases of aliases?); write it out"}
		return
	}
	if *w.budget%4096 == 0 {
		if err := w.ctx.Err(); err != nil {
			w.err = err
			return
		}
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		if _, seen := w.lines[path]; !seen {
			w.lines[path] = position{n.Line, n.Column}
		}
	}
	t := v.Type()
	isNull := n.Kind == yaml.ScalarNode && n.Tag == "!!null"
	if t.Kind() == reflect.Pointer {
		switch {
		case isNull && t.Elem().Kind() == reflect.Struct:
			// "deploy:" with nothing after it means an empty stage, as {} does.
			v.Set(reflect.New(t.Elem()))
		case isNull:
			// min: ~ is as good as leaving it out.
		default:
			p := reflect.New(t.Elem())
			before := len(w.errs)
			w.walk(n, p.Elem(), path)
			if len(w.errs) == before {
				v.Set(p)
			}
		}
		return
	}
	if t == durationType {
		if n.Kind != yaml.ScalarNode {
			w.fail(n, path, "must be a duration such as 45s or 1m")
			return
		}
		d, err := parseDuration(n.Value)
		if err != nil {
			w.fail(n, path, "%v", err)
			return
		}
		v.Set(reflect.ValueOf(Duration{d}))
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
		fields, ok := w.fields[t]
		if !ok {
			fields = yamlFields(t)
			w.fields[t] = fields
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			child := joinPath(path, k.Value)
			if w.setBefore(n.Content, i, k.Value) {
				// The first one counts, so the rest of the document is
				// checked as it would be without the repeat.
				w.fail(k, child, "field is set twice")
				continue
			}
			w.lines[child] = position{k.Line, k.Column}
			f, ok := fields[k.Value]
			if !ok {
				w.fail(k, child, "unknown field%s", suggest(k.Value, fields))
				continue
			}
			w.walk(val, v.FieldByIndex(f.Index), child)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "must be a mapping, not %s", describe(n))
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMapWithSize(t, len(n.Content)/2))
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.AliasNode {
				k = k.Alias
			}
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
			w.lines[child] = position{k.Line, k.Column}
			elem := reflect.New(t.Elem()).Elem()
			w.walk(val, elem, child)
			v.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), elem)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n, path, "must be a list, not %s", describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			w.walk(item, s.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || isNull {
			w.fail(n, path, "must be a string, not %s", describe(n))
			return
		}
		w.scalar(n, v, path, "a string")
	case reflect.Int, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			w.fail(n, path, "must be a whole number, not %s", describe(n))
			return
		}
		w.scalar(n, v, path, fmt.Sprintf("a whole number from %d to %d", int64(-1)<<(t.Bits()-1), int64(1)<<(t.Bits()-1)-1))
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
			w.fail(n, path, "must be a number, not %s", describe(n))
			return
		}
		w.scalar(n, v, path, "a number")
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			w.fail(n, path, "must be true or false, not %s", describe(n))
			return
		}
		w.scalar(n, v, path, "true or false")
	default:
		w.fail(n, path, "cannot hold %s", describe(n))
	}
}

// leadingZero spots 0755, which YAML reads as octal and base 10 would not.
func leadingZero(s string) bool {
	s = strings.TrimLeft(s, "+-")
	return len(s) > 1 && s[0] == '0'
}

// setBefore reports whether a mapping's keys before the i-th hold key. A
// struct's mapping has a dozen keys: scanning them costs less than a map.
// A mapping with many keys (unknown fields, say) is indexed once instead,
// so it stays linear.
func (w *walker) setBefore(content []*yaml.Node, i int, key string) bool {
	if len(content) <= 32 {
		for j := 0; j < i; j += 2 {
			if content[j].Value == key {
				return true
			}
		}
		return false
	}
	if w.keyIndex == nil || w.keyIndexOf != content[0] {
		w.keyIndex, w.keyIndexOf = map[string]int{}, content[0]
		for j := 0; j < len(content); j += 2 {
			if _, ok := w.keyIndex[content[j].Value]; !ok {
				w.keyIndex[content[j].Value] = j
			}
		}
	}
	return w.keyIndex[key] < i
}

// scalar decodes one scalar node with yaml.v3 itself, so values mean what
// YAML says (0x1F, 1e3, a quoted "80"); that costs nothing on one scalar.
func (w *walker) scalar(n *yaml.Node, v reflect.Value, path, what string) {
	// The common cases without a decoder each: a string, a plain decimal.
	switch {
	case v.Kind() == reflect.String && n.ShortTag() == "!!str":
		v.SetString(n.Value)
		return
	case v.CanInt() && n.ShortTag() == "!!int" && !leadingZero(n.Value):
		if i, err := strconv.ParseInt(n.Value, 10, v.Type().Bits()); err == nil {
			v.SetInt(i)
			return
		}
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		w.fail(n, path, "must be %s, not %s", what, describe(n))
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

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
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
		out[name] = f
	}
	return out
}

// suggest names the known field closest to a mistyped one.
func suggest[V any](got string, fields map[string]V) string {
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
