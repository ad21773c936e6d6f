package cluster

import (
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// ObjectError is a failure on one object, with the API server's reason
// and the fields it rejected spelled out.
type ObjectError struct {
	Object ObjectRef
	// Op is what was being done: "validate", "apply", "prune", "read".
	Op  string
	Err error
}

func (e *ObjectError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", e.Op, e.Object)
	var status apierrors.APIStatus
	if !errors.As(e.Err, &status) {
		b.WriteString(e.Err.Error())
		return b.String()
	}
	st := status.Status()
	fmt.Fprintf(&b, "rejected by the API server (%s)", st.Reason)
	var causes []string
	if st.Details != nil {
		for _, c := range st.Details.Causes {
			switch {
			case hasField(c.Field):
				causes = append(causes, fmt.Sprintf("field %s: %s", c.Field, c.Message))
			case c.Message != "":
				causes = append(causes, c.Message)
			}
		}
	}
	if len(causes) == 0 {
		causes = append(causes, st.Message)
	}
	b.WriteString(": ")
	b.WriteString(strings.Join(causes, "; "))
	return b.String()
}

func (e *ObjectError) Unwrap() error { return e.Err }

// Fields lists the fields the API server named in its rejection.
func (e *ObjectError) Fields() []string {
	var status apierrors.APIStatus
	if !errors.As(e.Err, &status) || status.Status().Details == nil {
		return nil
	}
	var out []string
	for _, c := range status.Status().Details.Causes {
		if hasField(c.Field) {
			out = append(out, c.Field)
		}
	}
	return out
}

// hasField tells a field path from the "<nil>" the API server puts in
// causes that concern no field.
func hasField(path string) bool { return path != "" && path != "<nil>" }
