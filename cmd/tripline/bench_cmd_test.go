package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/bench"
	"github.com/tripline/tripline/internal/syncbuf"
)

// TestBenchQuickJSON runs `tripline bench --quick --json --runs 1` in
// process: every figure must be measured, with its reference and ratio, so
// that the command cannot rot. It asserts no target: tiny sizes on a shared
// machine say nothing about them. The history figures need ClickHouse: a
// clickhouse-server child process the benchmark starts, or the server of
// $CLICKHOUSE_ADDR; without either the test fails.
func TestBenchQuickJSON(t *testing.T) {
	rep, errOut := runBenchJSON(t, "--history-rows", "4000")

	want := []string{bench.FigPipeline, bench.FigHistory, bench.FigRevokeP50, bench.FigRevokeP99, bench.FigDecideP50,
		bench.FigDecideP99, bench.FigBacktest, bench.FigStateBytes, bench.FigCheckNanos}
	var got []string
	for _, f := range rep.Figures {
		got = append(got, f.ID)
		require.Empty(t, f.Error, f.ID)
		require.Empty(t, f.Skipped, f.ID)
		require.NotNil(t, f.Value, f.ID)
		require.Len(t, f.Value.Runs, 1, f.ID)
		require.Positive(t, f.Value.Min, f.ID)
		require.Positive(t, f.Value.Median, f.ID)
		require.NotEmpty(t, f.Reference.Name, f.ID)
		require.NotEmpty(t, f.Reference.About, f.ID)
		require.NotNil(t, f.Reference.Value, f.ID)
		require.Positive(t, f.Reference.Value.Median, f.ID)
		require.NotNil(t, f.Ratio, f.ID)
		// Ratios are rounded to three decimals: allow for that on small ones.
		want := f.Value.Median / f.Reference.Value.Median
		require.InDelta(t, want, f.Ratio.Median, max(0.02*want, 0.0006), "%s: value %+v reference %+v ratio %+v", f.ID, f.Value, f.Reference.Value, f.Ratio)
		if f.Target != nil {
			require.NotNil(t, f.Met, "%s: a target is judged", f.ID)
		}
	}
	require.ElementsMatch(t, want, got)
	for _, id := range []string{bench.FigPipeline, bench.FigHistory, bench.FigRevokeP99, bench.FigDecideP99, bench.FigBacktest, bench.FigStateBytes, bench.FigCheckNanos} {
		require.NotNil(t, rep.Figure(id).Target, "%s has a target", id)
	}
	require.Equal(t, 4000, rep.Params.HistoryRows)
	require.NotEmpty(t, rep.Setup.ClickHouse)
	require.NotEmpty(t, rep.Setup.ClickHouseVersion)

	d := rep.Runs[0]
	require.NotNil(t, d.Latency)
	require.Positive(t, d.Latency.Attacks)
	require.Equal(t, d.Latency.Attacks, d.Latency.Revoked, "every attack is revoked")
	require.Zero(t, d.Latency.BenignEnforce, "benign traffic triggers no enforce rule")
	require.NotNil(t, d.Pipeline)
	require.Zero(t, d.Pipeline.DeadLetters)
	require.Zero(t, d.Pipeline.EnforceDecisions)
	require.Positive(t, d.Pipeline.Decisions, "the pipeline publishes decisions")
	require.True(t, d.Pipeline.HistoryWriter, "the pipeline runs with the history writer")
	require.GreaterOrEqual(t, d.Pipeline.HistoryRows, int64(d.Pipeline.Events+int(d.Pipeline.Decisions)), "the writer copied the events and decisions")
	require.Zero(t, d.Pipeline.HistoryInsertErrors)
	require.Positive(t, d.Pipeline.HistoryEventsPerSec)
	require.NotNil(t, d.History)
	require.Equal(t, 4000, d.History.Rows)
	require.Equal(t, uint64(4000), d.History.StoredRows, "the writer wrote every row once")
	require.Equal(t, uint64(4000), d.History.RawStoredRows)

	// progress went to stderr, stage by stage
	for _, stage := range []string{"pipeline", "history", "latency", "enforcer", "backtest", "state"} {
		require.Contains(t, errOut, "run 1  "+stage)
	}
	require.Contains(t, errOut, "history writer on")
}

// TestBenchNoHistory: --no-history runs without ClickHouse and says so: the
// history figure is skipped with its reason (not missing: the exit status
// is 0), and the pipeline ran without the history writer.
func TestBenchNoHistory(t *testing.T) {
	rep, errOut := runBenchJSON(t, "--no-history")
	f := rep.Figure(bench.FigHistory)
	require.NotNil(t, f, "the skipped figure is in the report")
	require.Equal(t, bench.NoHistoryReason, f.Skipped)
	require.Nil(t, f.Value)
	require.Nil(t, f.Met, "a skipped figure is not judged")
	require.Empty(t, f.Error)
	require.Equal(t, "off (--no-history)", rep.Params.History)
	require.Empty(t, rep.Setup.ClickHouse)
	for _, f := range rep.Figures {
		if f.ID != bench.FigHistory {
			require.NotNil(t, f.Value, f.ID)
		}
	}
	require.NotNil(t, rep.Runs[0].Pipeline)
	require.False(t, rep.Runs[0].Pipeline.HistoryWriter)
	require.Nil(t, rep.Runs[0].History)
	require.Contains(t, rep.Notes, "the pipeline phase ran without the history writer (--no-history)")
	require.Contains(t, errOut, "no history writer figure")
	require.NotContains(t, errOut, "run 1  history")
}

// runBenchJSON runs `tripline bench --quick --json --runs 1` with extra
// arguments, expects exit status 0 and returns the decoded report and the
// progress.
func runBenchJSON(t *testing.T, extra ...string) (*bench.Report, string) {
	t.Helper()
	var out, errOut syncbuf.Buffer
	code := run(context.Background(), append([]string{"bench", "--quick", "--json", "--runs", "1"}, extra...), env{stdout: &out, stderr: &errOut})
	require.Equal(t, 0, code, errOut.String())

	var rep bench.Report
	dec := json.NewDecoder(strings.NewReader(out.String()))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&rep), out.String())
	require.False(t, dec.More(), "one JSON object")

	require.Positive(t, rep.Machine.Cores)
	require.Positive(t, rep.Machine.GOMAXPROCS)
	require.True(t, strings.HasPrefix(rep.Machine.Go, "go"), rep.Machine.Go)
	require.Equal(t, 1, rep.Params.Runs)
	require.Equal(t, "file", rep.Params.Storage)
	require.Positive(t, rep.Params.RuleCount)
	require.Len(t, rep.Runs, 1)
	require.Positive(t, rep.ElapsedSeconds)
	return &rep, errOut.String()
}
