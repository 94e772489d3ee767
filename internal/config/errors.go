package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// FieldError is one problem in a configuration file.
type FieldError struct {
	// File is the file name given to [Parse] (absolute for [Load]).
	File string
	// Line is the 1-based line of the field in File, or 0 when unknown
	// (a [Config] built in code and checked with [Config.Validate]).
	Line int
	// Field is the dotted path of the field, such as
	// "upstreams.api.timeouts.connect" or "routes[0].match.path_prefix".
	// Map keys that are not plain names are quoted:
	// upstreams."a b".targets[0].url. It is empty for problems of the file
	// as a whole (YAML syntax, empty file, several documents).
	Field string
	// Reason says what is wrong, in one line.
	Reason string
}

// Error returns "file:line: field: reason", or "file:line: reason" when
// Field is empty.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(e.Line))
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Errors is every problem found in a configuration file, sorted by line
// (problems on the same line keep the order they were found in). [Parse],
// [Load] and [Config.Validate] return a non-empty *Errors as their error.
type Errors []*FieldError

// Error returns the problems one per line.
func (e *Errors) Error() string {
	lines := make([]string, len(*e))
	for i, fe := range *e {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, so that errors.As finds a *[FieldError].
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(*e))
	for i, fe := range *e {
		errs[i] = fe
	}
	return errs
}

// add records a problem. The reason is kept on one line.
func (e *Errors) add(file string, line int, field, reason string) {
	if file == "" {
		file = "<config>"
	}
	reason = strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(reason)
	*e = append(*e, &FieldError{File: file, Line: line, Field: field, Reason: reason})
}

// result sorts the problems by line and returns them as an error, or nil
// when there are none.
func (e Errors) result() error {
	if len(e) == 0 {
		return nil
	}
	slices.SortStableFunc(e, func(a, b *FieldError) int { return cmp.Compare(a.Line, b.Line) })
	return &e
}
