package gates

import (
	"math"
	"strconv"
	"strings"

	"sluice.dev/sluice/specs"
)

// String is a short line for commit messages and logs:
// "success-rate 99.8 >= 99", "p99 212ms <= 500ms", "success-rate no data".
func (r Result) String() string {
	label, unit := r.Metric, ""
	switch r.Metric {
	case specs.MetricRequestSuccessRate:
		label = "success-rate"
	case specs.MetricRequestDuration:
		label, unit = "p99", "ms"
	}
	if r.NoData {
		return label + " no data"
	}
	val := formatValue(r.Value, r.Min, r.Max) + unit
	bound := func(b float64) string { return strconv.FormatFloat(b, 'f', -1, 64) + unit }
	var b strings.Builder
	b.WriteString(label)
	b.WriteByte(' ')
	switch {
	case r.Min != nil && r.Value < *r.Min:
		b.WriteString(val + " < " + bound(*r.Min))
	case r.Max != nil && r.Value > *r.Max:
		b.WriteString(val + " > " + bound(*r.Max))
	case r.Min != nil && r.Max != nil:
		b.WriteString(bound(*r.Min) + " <= " + val + " <= " + bound(*r.Max))
	case r.Min != nil:
		b.WriteString(val + " >= " + bound(*r.Min))
	case r.Max != nil:
		b.WriteString(val + " <= " + bound(*r.Max))
	default:
		b.WriteString(val)
	}
	return b.String()
}

// formatValue rounds v for reading (one decimal, or three significant digits
// below 1) but keeps enough digits that it never prints equal to a bound it
// is on the wrong side of, such as "99 < 99".
func formatValue(v float64, lo, hi *float64) string {
	prec := 1
	if a := math.Abs(v); a > 0 && a < 1 {
		prec = 2 - int(math.Floor(math.Log10(a)))
	}
	for ; prec < 17; prec++ {
		s := strconv.FormatFloat(v, 'f', prec, 64)
		r, _ := strconv.ParseFloat(s, 64)
		if inRange(r, lo, hi) == inRange(v, lo, hi) {
			return trimZeros(s)
		}
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func trimZeros(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
