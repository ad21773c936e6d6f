package specs

import "fmt"

// Duplicates reports every release defined again after its first
// definition, in the order given (files in lexical order, documents in
// file order): the error is on the later definition and names the first,
// so a person sees both places. Sluice's controller keeps the first one
// running in the same case (see the reconciler).
func Duplicates(rels []*Release) ErrorList {
	first := map[string]*Release{}
	var errs ErrorList
	for _, r := range rels {
		id := r.ID()
		f, dup := first[id]
		if !dup {
			first[id] = r
			continue
		}
		errs = append(errs, FieldError{
			File: r.Origin.File, Line: r.Origin.Line("metadata.name"), Column: r.Origin.Column("metadata.name"),
			Path:   "metadata.name",
			Reason: fmt.Sprintf("release %s is also defined at %s:%d; a release must be defined once", id, f.Origin.File, f.Origin.Line("metadata.name")),
		})
	}
	errs.Sort()
	return errs
}
