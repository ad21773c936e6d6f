package cluster

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Drift is one field of an object that no longer holds what Sluice applied.
type Drift struct {
	Object ObjectRef
	// Field is the path of the field, e.g. spec.http[0].route[1].weight.
	Field string
	// Live and Desired are JSON values; Live is "<absent>" when the field
	// is missing. Secret values are redacted.
	Live    string
	Desired string
}

func (d Drift) String() string {
	return fmt.Sprintf("%s: %s is %s, want %s", d.Object, d.Field, d.Live, d.Desired)
}

// maxDrift bounds the fields reported per object; one is enough to know
// the object must be re-applied, a few help a person see why.
const maxDrift = 20

const absent = "<absent>"

// compareFields reports the fields of desired that live does not hold.
// live may carry more: fields the server defaults, fields other managers
// own. It is a subset check, tolerant of how the server stores values.
func compareFields(ref ObjectRef, desired, live map[string]any) []Drift {
	c := &comparer{ref: ref}
	c.compare("", desired, live, true)
	return c.out
}

type comparer struct {
	ref ObjectRef
	out []Drift
}

func (c *comparer) report(path string, live, desired any, present bool) {
	if len(c.out) >= maxDrift {
		return
	}
	d := Drift{Object: c.ref, Field: path, Live: absent, Desired: jsonValue(desired)}
	if present {
		d.Live = jsonValue(live)
	}
	if c.ref.Group == "" && c.ref.Kind == "Secret" {
		d.Desired = "<redacted>"
		if present {
			d.Live = "<redacted>"
		}
	}
	c.out = append(c.out, d)
}

func (c *comparer) compare(path string, desired, live any, present bool) {
	if desired == nil {
		// A null in an apply configuration asks for nothing in particular.
		return
	}
	if !present || live == nil {
		// The server drops zero values of omitempty fields: an empty map,
		// list, string, false or 0 is held by an absent or null field.
		if !isZero(desired) {
			c.report(path, live, desired, present)
		}
		return
	}
	switch d := desired.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			c.report(path, live, desired, true)
			return
		}
		for _, k := range slices.Sorted(maps.Keys(d)) {
			lv, ok := l[k]
			c.compare(joinPath(path, k), d[k], lv, ok)
		}
	case []any:
		l, ok := live.([]any)
		if !ok || len(l) != len(d) {
			c.report(path, live, desired, true)
			return
		}
		for i := range d {
			c.compare(path+"["+strconv.Itoa(i)+"]", d[i], l[i], true)
		}
	default:
		if !scalarEqual(desired, live) {
			c.report(path, live, desired, true)
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isZero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	case string:
		return x == ""
	case bool:
		return !x
	}
	if f, ok := number(v); ok {
		return f == 0
	}
	return false
}

// scalarEqual compares scalars as the API server stores them: numbers by
// value whatever their Go type, and resource quantities by amount (the
// server rewrites "0.5" as "500m").
func scalarEqual(desired, live any) bool {
	if df, ok := number(desired); ok {
		lf, ok := number(live)
		return ok && df == lf
	}
	ds, ok := desired.(string)
	if !ok {
		return desired == live
	}
	ls, ok := live.(string)
	if !ok {
		return false
	}
	if ds == ls {
		return true
	}
	dq, err1 := resource.ParseQuantity(ds)
	lq, err2 := resource.ParseQuantity(ls)
	return err1 == nil && err2 == nil && dq.Cmp(lq) == 0
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case float32:
		return float64(x), true
	case float64:
		if math.IsNaN(x) {
			return 0, false
		}
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// jsonValue renders a value for a report, shortened so a large list does
// not flood a log line.
func jsonValue(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}
