package main

import (
	"testing"

	"github.com/tripline/tripline/internal/chtest"
)

// One ClickHouse child process serves every test of the package that
// needs one (each gets its own database), stopped when the tests end.
func TestMain(m *testing.M) { chtest.Main(m) }
