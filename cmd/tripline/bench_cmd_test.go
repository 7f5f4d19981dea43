package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/bench"
)

// TestBenchQuickJSON runs `tripline bench --quick --json --runs 1` in
// process: every figure must be measured, with its reference and ratio, so
// that the command cannot rot. It asserts no target: tiny sizes on a shared
// machine say nothing about them.
func TestBenchQuickJSON(t *testing.T) {
	var out, errOut syncBuf
	code := run(context.Background(), []string{"bench", "--quick", "--json", "--runs", "1"}, env{stdout: &out, stderr: &errOut})
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

	want := []string{bench.FigPipeline, bench.FigRevokeP50, bench.FigRevokeP99, bench.FigDecideP50,
		bench.FigDecideP99, bench.FigBacktest, bench.FigStateBytes, bench.FigCheckNanos}
	var got []string
	for _, f := range rep.Figures {
		got = append(got, f.ID)
		require.Empty(t, f.Error, f.ID)
		require.NotNil(t, f.Value, f.ID)
		require.Len(t, f.Value.Runs, 1, f.ID)
		require.Positive(t, f.Value.Min, f.ID)
		require.Positive(t, f.Value.Median, f.ID)
		require.NotEmpty(t, f.Reference.Name, f.ID)
		require.NotEmpty(t, f.Reference.About, f.ID)
		require.NotNil(t, f.Reference.Value, f.ID)
		require.Positive(t, f.Reference.Value.Median, f.ID)
		require.NotNil(t, f.Ratio, f.ID)
		require.InEpsilon(t, f.Value.Median/f.Reference.Value.Median, f.Ratio.Median, 0.02, f.ID)
		if f.Target != nil {
			require.NotNil(t, f.Met, "%s: a target is judged", f.ID)
		}
	}
	require.ElementsMatch(t, want, got)
	for _, id := range []string{bench.FigPipeline, bench.FigRevokeP99, bench.FigDecideP99, bench.FigBacktest, bench.FigStateBytes, bench.FigCheckNanos} {
		require.NotNil(t, rep.Figure(id).Target, "%s has a target", id)
	}

	d := rep.Runs[0]
	require.NotNil(t, d.Latency)
	require.Positive(t, d.Latency.Attacks)
	require.Equal(t, d.Latency.Attacks, d.Latency.Revoked, "every attack is revoked")
	require.Zero(t, d.Latency.BenignEnforce, "benign traffic triggers no enforce rule")
	require.NotNil(t, d.Pipeline)
	require.Zero(t, d.Pipeline.DeadLetters)
	require.Zero(t, d.Pipeline.EnforceDecisions)
	require.Positive(t, d.Pipeline.Decisions, "the pipeline publishes decisions")

	// progress went to stderr, stage by stage
	for _, stage := range []string{"pipeline", "latency", "enforcer", "backtest", "state"} {
		require.Contains(t, errOut.String(), "run 1  "+stage)
	}
}
