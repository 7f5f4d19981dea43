// Package textfmt formats numbers, times and empty cells for the tables
// the CLI prints.
package textfmt

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Thousands writes n with thousands separators: 1234567 → 1,234,567.
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// OrDash returns s, or "-" when it is empty (a table cell that must not be
// blank).
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Time formats t as RFC 3339 in UTC, or "-" for the zero time.
func Time(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// Align writes rows as columns separated by two spaces, each as wide as
// its widest cell (in runes), right-aligning the columns right says, and
// trims trailing spaces.
func Align(b *strings.Builder, rows [][]string, right func(col int) bool) {
	var widths []int
	for _, row := range rows {
		for i, c := range row {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range rows {
		var line strings.Builder
		for i, c := range row {
			if i > 0 {
				line.WriteString("  ")
			}
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if right(i) {
				line.WriteString(pad + c)
			} else {
				line.WriteString(c + pad)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteString("\n")
	}
}
