// Package textfmt formats numbers, times and empty cells for the tables
// the CLI prints.
package textfmt

import (
	"strconv"
	"strings"
	"time"
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
