package pipeline

import (
	"strconv"
	"strings"
)

// DecodeError reports an event that is not acceptable JSON for the event
// contract: a syntax error, invalid UTF-8, a duplicate field, a value of the
// wrong type, or a structural limit exceeded. Its text is meant to be used as
// the dead-letter reason as it is.
type DecodeError struct {
	// Offset is the byte offset in the input where the problem was found.
	Offset int
	// Path is the field concerned ("bytes_in", `attrs["k"]`, "task_scope[3]"),
	// empty when the problem is not inside a known field.
	Path string
	// Reason says what is wrong.
	Reason string
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString("invalid event JSON: ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	b.WriteString(" (at byte ")
	b.WriteString(strconv.Itoa(e.Offset))
	b.WriteString(")")
	return b.String()
}

// FieldError is one validation problem: the field path and what is wrong.
type FieldError struct {
	Path   string // "time", "tenant", `attrs["k"]`, "task_scope[3]"
	Reason string // "missing", "longer than 1024 bytes", …
}

func (e FieldError) String() string { return e.Path + ": " + e.Reason }

// ValidationError lists every problem Validate found in an event, in schema
// field order.
type ValidationError struct {
	Problems []FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid event: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Path)
		b.WriteString(": ")
		b.WriteString(p.Reason)
	}
	return b.String()
}
