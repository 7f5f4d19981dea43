package textfmt

import (
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
