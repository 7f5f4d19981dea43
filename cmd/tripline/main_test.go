package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/detectors"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	goodRules = "../../testdata/rules/good"
	sample    = "../../testdata/events/sample.jsonl"
)

// tripline runs the command line in-process and returns its exit code and
// output.
func tripline(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut})
	return code, out.String(), errOut.String()
}

// golden compares got with testdata/name.golden; -update rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./cmd/tripline -update to create it")
	require.Equal(t, string(want), got)
}

func TestHelpOnEveryCommand(t *testing.T) {
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		if c.Name() == "help" || c.Name() == "completion" {
			return
		}
		seen++
		path := strings.Fields(c.CommandPath())[1:]
		code, out, errOut := tripline(t, "", append(path, "--help")...)
		require.Equal(t, 0, code, "%s --help: %s", c.CommandPath(), errOut)
		require.Contains(t, out, "Usage:", c.CommandPath())
		require.Contains(t, out, "Examples:", c.CommandPath())
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(&app{}))
	require.GreaterOrEqual(t, seen, 6)

	code, out, _ := tripline(t, "")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Tripline watches what AI agents do")
}

func TestVersion(t *testing.T) {
	code, out, _ := tripline(t, "", "version")
	require.Equal(t, 0, code)
	require.Regexp(t, `^tripline dev.* \(go1\.\d+`, out)
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"frob"},
		{"rules", "lint"},
		{"rules", "test"},
		{"rules", "backtest", "--rules", goodRules},
		{"rules", "backtest", "--events", sample},
		{"rules", "backtest", "--rules", goodRules, "--events", sample, "--bogus"},
		{"rules", "test", goodRules, "--run", "("},
		{"version", "extra"},
		{"--log-level", "loud", "version"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, _, errOut := tripline(t, "", args...)
			require.Equal(t, 2, code, errOut)
			require.Contains(t, errOut, "Run 'tripline --help' for usage.")
		})
	}
}

func TestIOErrors(t *testing.T) {
	for _, args := range [][]string{
		{"rules", "lint", "no/such/dir"},
		{"rules", "lint", t.TempDir()}, // no rule files
		{"rules", "backtest", "--rules", goodRules, "--events", "no/such/file.jsonl"},
		{"rules", "backtest", "--rules", goodRules, "--events", sample, "--out", "no/such/dir/out.jsonl"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, _, errOut := tripline(t, "", args...)
			require.Equal(t, 2, code, errOut)
			require.Contains(t, errOut, `"level":"error"`)
		})
	}
}

func TestLint(t *testing.T) {
	code, out, _ := tripline(t, "", "rules", "lint", goodRules)
	require.Equal(t, 0, code)
	require.Regexp(t, `^2 rules, 4 tests OK \(set [0-9a-f]{16}\)\n$`, out)

	code, out, errOut := tripline(t, "", "rules", "lint", "../../testdata/rules/bad", goodRules)
	require.Equal(t, 1, code)
	require.Equal(t, "3 errors in rule files\n", errOut)
	golden(t, "lint-errors", out)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		require.Regexp(t, `^\.\./\.\./testdata/rules/bad/bad\.yaml:\d+:\d+: `, l)
	}
}

func TestRulesTest(t *testing.T) {
	code, out, _ := tripline(t, "", "rules", "test", goodRules)
	require.Equal(t, 0, code, out)
	require.Equal(t, "PASS: 4 tests: 4 passed, 0 failed\n", out)

	code, out, _ = tripline(t, "", "rules", "test", goodRules, "-v", "--run", "^bulk")
	require.Equal(t, 0, code, out)
	require.Equal(t, "ok    bulk read fires once then cools down (../../testdata/rules/good/volume.yaml:18:9) 8 events, 1 decisions\n"+
		"PASS: 1 test: 1 passed, 0 failed, 3 skipped\n", out)

	code, out, _ = tripline(t, "", "rules", "test", "../../testdata/rules/failing")
	require.Equal(t, 1, code)
	golden(t, "test-failing", out)

	// Lint errors stop the tests.
	code, out, _ = tripline(t, "", "rules", "test", "../../testdata/rules/bad")
	require.Equal(t, 1, code)
	require.Contains(t, out, "bad.yaml:3:9: ")
}

// volatile hides what changes from run to run: timings.
var volatile = regexp.MustCompile(`(elapsed|events/s) [0-9.,]+[µmn]?s?`)

func TestBacktestTable(t *testing.T) {
	code, out, errOut := tripline(t, "", "rules", "backtest", "--rules", goodRules, "--events", sample)
	require.Equal(t, 0, code, errOut)
	require.Empty(t, errOut, "no progress when stderr is not a terminal")
	golden(t, "backtest-table", volatile.ReplaceAllString(out, "$1 X"))
}

func TestBacktestJSONAndOut(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"decisions.jsonl", "decisions.jsonl.gz"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			code, out, errOut := tripline(t, "", "rules", "backtest", "--rules", goodRules, "--events", sample, "--json", "--out", path, "--progress")
			require.Equal(t, 0, code, errOut)
			var res jsonResult
			require.NoError(t, json.Unmarshal([]byte(out), &res))
			require.EqualValues(t, 200, res.Lines)
			require.EqualValues(t, 196, res.Events)
			require.EqualValues(t, 4, res.Malformed)
			require.Len(t, res.MalformedLines, 4)
			require.Len(t, res.Rules, 2)
			require.Positive(t, res.Decisions)
			require.Regexp(t, `^[0-9a-f]{16}$`, res.SetHash)
			require.Contains(t, errOut, "196 events, 200 lines", "--progress reports on stderr")

			f, err := os.Open(path)
			require.NoError(t, err)
			defer f.Close()
			var r = bufio.NewReader(f)
			var sc *bufio.Scanner
			if strings.HasSuffix(name, ".gz") {
				zr, err := gzip.NewReader(r)
				require.NoError(t, err)
				sc = bufio.NewScanner(zr)
			} else {
				sc = bufio.NewScanner(r)
			}
			n := 0
			for sc.Scan() {
				var d detectors.Decision
				require.NoError(t, json.Unmarshal(sc.Bytes(), &d))
				require.NotEmpty(t, d.ID)
				n++
			}
			require.NoError(t, sc.Err())
			require.EqualValues(t, res.Decisions, n)
		})
	}
}

func TestBacktestStdinAndStrict(t *testing.T) {
	data, err := os.ReadFile(sample)
	require.NoError(t, err)
	code, out, errOut := tripline(t, string(data), "rules", "backtest", "--rules", goodRules, "--events", "-", "--json")
	require.Equal(t, 0, code, errOut)
	var res jsonResult
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.EqualValues(t, 196, res.Events)

	code, out, errOut = tripline(t, string(data), "rules", "backtest", "--rules", goodRules, "--events", "-", "--strict")
	require.Equal(t, 1, code)
	require.Empty(t, out)
	require.Regexp(t, `^-: line 20: invalid event JSON: `, errOut)

	// Rule errors are findings.
	code, out, _ = tripline(t, string(data), "rules", "backtest", "--rules", "../../testdata/rules/bad", "--events", "-")
	require.Equal(t, 1, code)
	require.Contains(t, out, "bad.yaml:3:9: ")
}

func TestGroupAndSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		require.Equal(t, want, group(n))
	}
	for n, want := range map[int64]string{12: "12 B", 1500: "1.5 kB", 2_500_000: "2.5 MB", 3_000_000_000: "3.0 GB"} {
		require.Equal(t, want, sizeOf(n))
	}
}
