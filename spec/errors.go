package spec

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// FieldError is one problem in a spec file. Load and Parse return every
// problem they find as *FieldError values joined with errors.Join, sorted by
// file (in the order the files were given), line and column.
type FieldError struct {
	File   string // as given to Load or Parse; "<stdin>" for standard input
	Line   int    // 1-based; 0 when the problem has no position (a read error)
	Column int    // 1-based
	Field  string // YAML path such as spec.network.allowCIDRs[1]; empty for the document or file
	Msg    string
	Err    error // underlying error, if any (such as fs.ErrNotExist)
}

// Error formats the problem as "FILE:LINE:COL: FIELD.PATH: message", leaving
// out the position and the path where there is none.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line) + ":" + strconv.Itoa(e.Column))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// join sorts errs by file order, line and column and joins them; order maps a
// file name to its rank, and unknown files sort first.
func join(errs []*FieldError, order map[string]int) error {
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b *FieldError) int {
		return cmp.Or(cmp.Compare(order[a.File], order[b.File]),
			cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// quote quotes a value for a message, shortening very long ones.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "..."
	}
	return strconv.Quote(s)
}
