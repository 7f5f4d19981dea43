package investigate

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tripline/tripline/internal/textfmt"
)

// Column is a column of a Table.
type Column struct {
	// Name is the CSV header (snake_case); terminals show it upper-cased.
	Name string
	// Numeric columns are right-aligned in terminals and, being written
	// by this package from numbers, never guarded in CSV.
	Numeric bool
}

// Table is one section of a result as rows of cells.
type Table struct {
	Title   string
	Columns []Column
	Rows    [][]string
	// Empty is printed in terminals instead of a table without rows.
	Empty string
	// Notes are printed in terminals under the table (e.g. truncation).
	Notes []string
}

// Result is what every query returns: it marshals to JSON as itself, and
// shows as tables in terminals and in CSV.
type Result interface {
	Tables() []Table
}

// Format is an output format.
type Format int

// Formats.
const (
	FormatTable Format = iota // aligned columns for terminals
	FormatJSON                // one JSON document
	FormatCSV                 // RFC 4180 with a header row
)

// ParseFormat reads "table", "json" or "csv".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "", "table":
		return FormatTable, nil
	case "json":
		return FormatJSON, nil
	case "csv":
		return FormatCSV, nil
	}
	return 0, invalid("format %q is not one of table, json, csv", s)
}

// Write writes r to w in format f.
func Write(w io.Writer, r Result, f Format) error {
	switch f {
	case FormatJSON:
		return WriteJSON(w, r)
	case FormatCSV:
		return WriteCSV(w, r)
	}
	return WriteText(w, r)
}

// WriteJSON writes r as one indented JSON document. Strings come back
// exactly as stored (control characters are escaped as JSON requires, and
// decode to the same bytes); only invalid UTF-8 becomes U+FFFD.
func WriteJSON(w io.Writer, r Result) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteCSV writes r as RFC 4180 CSV with a header row of the column
// names: records end with CRLF; a field with a comma, a double quote, CR
// or LF is enclosed in double quotes, its quotes doubled; the bytes of a
// field are otherwise written as they are (a newline inside a value stays
// a newline).
//
// Formula injection: a spreadsheet runs a cell that starts with = + - or @
// (and tab or carriage return, which some treat alike) as a formula. Such
// a text cell is written with a single quote in front ('=cmd|…), which
// spreadsheets show as text; numeric cells, which this package writes
// from numbers, are left alone. Strip the leading quote of those cells to
// get the stored value back, or use JSON.
//
// A result of several sections (explain) is written in long form, one
// row per cell: section, row (from 1), column, value.
func WriteCSV(w io.Writer, r Result) error {
	tables := r.Tables()
	var b strings.Builder
	if len(tables) == 1 {
		t := tables[0]
		head := make([]string, len(t.Columns))
		for i, c := range t.Columns {
			head[i] = c.Name
		}
		csvRecord(&b, head...)
		rec := make([]string, len(t.Columns))
		for _, row := range t.Rows {
			for i, c := range t.Columns {
				rec[i] = csvCell(row[i], c.Numeric)
			}
			csvRecord(&b, rec...)
		}
	} else {
		csvRecord(&b, "section", "row", "column", "value")
		for _, t := range tables {
			for n, row := range t.Rows {
				for i, c := range t.Columns {
					csvRecord(&b, csvCell(t.Title, false), strconv.Itoa(n+1), csvCell(c.Name, false), csvCell(row[i], c.Numeric))
				}
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// csvRecord appends one RFC 4180 record.
func csvRecord(b *strings.Builder, fields ...string) {
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		if !strings.ContainsAny(f, ",\"\r\n") {
			b.WriteString(f)
			continue
		}
		b.WriteByte('"')
		b.WriteString(strings.ReplaceAll(f, `"`, `""`))
		b.WriteByte('"')
	}
	b.WriteString("\r\n")
}

// csvCell guards a text cell against formula injection (see WriteCSV).
func csvCell(s string, numeric bool) string {
	if numeric || s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// maxCell is the most characters of a value a terminal table shows; the
// rest is cut with "…" (JSON and CSV carry whole values).
const maxCell = 80

// WriteText writes r as aligned tables for a terminal. Control characters,
// bidirectional-text controls and invalid UTF-8 in values are shown
// escaped (\n, \x1b, \u202e, …) so that stored data cannot move the
// cursor, recolour or rewrite the screen.
func WriteText(w io.Writer, r Result) error {
	tables := r.Tables()
	var b strings.Builder
	for n, t := range tables {
		if n > 0 {
			b.WriteString("\n")
		}
		if t.Title != "" && len(tables) > 1 {
			b.WriteString(strings.ToUpper(t.Title) + "\n")
		}
		if len(t.Rows) == 0 {
			if t.Empty != "" {
				b.WriteString(t.Empty + "\n")
			}
		} else {
			writeAligned(&b, t)
		}
		for _, note := range t.Notes {
			b.WriteString(note + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeAligned(b *strings.Builder, t Table) {
	cells := make([][]string, 0, len(t.Rows)+1)
	head := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		head[i] = strings.ToUpper(c.Name)
	}
	cells = append(cells, head)
	for _, row := range t.Rows {
		out := make([]string, len(t.Columns))
		for i, c := range t.Columns {
			out[i] = clip(TermSafe(row[i]), maxCell)
			if n, err := strconv.ParseInt(row[i], 10, 64); err == nil && c.Numeric {
				out[i] = textfmt.Thousands(n)
			}
		}
		cells = append(cells, out)
	}
	textfmt.Align(b, cells, func(i int) bool { return t.Columns[i].Numeric })
}

// TermSafe escapes what a terminal would interpret in s: C0 and C1
// control characters (\n, \t, \r, \x1b, \u009b, …), DEL, Unicode line and
// paragraph separators, bidirectional-text controls (\u202e, …) and
// invalid UTF-8 bytes (\xff). Everything else, backslashes included, is
// shown as is.
func TermSafe(s string) string {
	safe := true
	for _, r := range s {
		if unsafeRune(r) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80 && unsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == utf8.RuneError ||
		r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r)
}

// clip cuts s to n characters, marking the cut with "…".
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
