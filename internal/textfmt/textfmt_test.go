package textfmt

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		require.Equal(t, want, Thousands(n))
	}
}

func TestOrDashAndTime(t *testing.T) {
	if OrDash("") != "-" || OrDash("x") != "x" {
		t.Fatal("OrDash")
	}
	if Time(time.Time{}) != "-" {
		t.Fatal("zero time")
	}
	if got := Time(time.Date(2026, 11, 28, 12, 0, 0, 0, time.FixedZone("x", 3600))); got != "2026-11-28T11:00:00Z" {
		t.Fatal(got)
	}
}

func TestAlign(t *testing.T) {
	var b strings.Builder
	Align(&b, [][]string{{"NAME", "N", "NOTE"}, {"é", "1,234", ""}, {"long name", "5", "x"}}, func(i int) bool { return i == 1 })
	want := "NAME           N  NOTE\n" +
		"é          1,234\n" +
		"long name      5  x\n"
	require.Equal(t, want, b.String())
}
