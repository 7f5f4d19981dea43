package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/chtest"
	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/internal/investigate"
	"github.com/tripline/tripline/pipeline"
)

func TestBacktestInputErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{}, "no events to replay: give --events FILE, or --since or --from"},
		{[]string{"--events", sample, "--since", "7d"}, "--events and --since/--from/--to exclude each other"},
		{[]string{"--events", sample, "--from", "2026-01-01T00:00:00Z"}, "--events and --since/--from/--to exclude each other"},
		{[]string{"--since", "7d", "--from", "2026-01-01T00:00:00Z"}, "--since and --from exclude each other"},
		{[]string{"--to", "2026-01-01T00:00:00Z"}, "--to needs --since or --from"},
		{[]string{"--since", "7x"}, `--since "7x" is not a duration such as 90m, 24h or 7d`},
		{[]string{"--since", "-1h"}, `--since "-1h" must be positive`},
		{[]string{"--since", "0d"}, `--since "0d" is not a duration`},
		{[]string{"--since", "-5m"}, `--since "-5m" must be positive`},
		{[]string{"--from", "yesterday"}, `--from "yesterday" is not an RFC 3339 time`},
		{[]string{"--from", "2026-01-01T00:00:00Z", "--to", "noon"}, `--to "noon" is not an RFC 3339 time`},
		{[]string{"--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"}, "--from 2026-01-02T00:00:00Z is not before --to 2026-01-01T00:00:00Z"},
		{[]string{"--events", sample, "--tenant", "acme"}, "--tenant applies to the history (--since or --from), not to --events"},
		{[]string{"--events", sample, "--clickhouse", "127.0.0.1:9000"}, "--clickhouse applies to the history"},
		{[]string{"--since", "7d", "--strict"}, "--strict applies to --events"},
		{[]string{"--since", "7d", "--slice-rows", "0"}, "--slice-rows 0 must be positive"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := tripline(t, "", append([]string{"rules", "backtest", "--rules", goodRules}, tc.args...)...)
			require.Equal(t, 2, code, errOut)
			require.Empty(t, out)
			require.Contains(t, errOut, strings.ReplaceAll(tc.msg, `"`, `\"`), "the message, in the JSON log")
			require.Contains(t, errOut, "Run 'tripline --help' for usage.")
		})
	}

	// No ClickHouse there, or no history in the database: errors, with
	// where it looked.
	code, _, errOut := tripline(t, "", "rules", "backtest", "--rules", goodRules, "--since", "1h", "--clickhouse", "127.0.0.1:1")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "(ClickHouse at 127.0.0.1:1)")
	code, _, errOut = tripline(t, "", "rules", "backtest", "--rules", goodRules, "--since", "1h", "--database", "x;DROP")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `--database \"x;DROP\": letters, digits and _ only`)
}

// backtestServer is the ClickHouse of $CLICKHOUSE_ADDR, or the package's
// shared child server (see TestMain).
func backtestServer(t *testing.T) string {
	t.Helper()
	return chtest.Addr(t)
}

// backtestHistory is a migrated, empty history database on addr.
func backtestHistory(t *testing.T, addr string) *history.Schema {
	t.Helper()
	conn := chtest.Open(t, addr, "default")
	b := make([]byte, 6)
	rand.Read(b)
	name := "tb_" + hex.EncodeToString(b)
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name) })
	s, err := history.Migrate(context.Background(), conn, name, history.SchemaOptions{})
	require.NoError(t, err)
	return s
}

// sampleEvents are the valid events of the sample file, in file order.
func sampleEvents(t *testing.T) []pipeline.Event {
	t.Helper()
	data, err := os.ReadFile(sample)
	require.NoError(t, err)
	var out []pipeline.Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var e pipeline.Event
		if pipeline.Decode(sc.Bytes(), &e, nil) == nil {
			out = append(out, e)
		}
	}
	require.NoError(t, sc.Err())
	require.Len(t, out, 196)
	return out
}

// thresholdRules is a copy of the good rules with bulk-read's threshold at
// reads a minute.
func thresholdRules(t *testing.T, reads int) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"volume.yaml", "sequences.yaml"} {
		data, err := os.ReadFile(filepath.Join(goodRules, name))
		require.NoError(t, err)
		out := strings.Replace(string(data), "reads: 5", fmt.Sprintf("reads: %d", reads), 1)
		// The rule's own test expects it to fire at 5; backtests do not run tests.
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644))
	}
	return dir
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func TestBacktestHistory(t *testing.T) {
	addr := backtestServer(t)
	s := backtestHistory(t, addr)
	ctx := context.Background()
	events := sampleEvents(t)
	require.NoError(t, s.InsertEvents(ctx, events))
	db := []string{"--clickhouse", addr, "--database", s.Database}
	window := []string{"--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z"}
	dir := t.TempDir()

	// The file's decisions and counts, to compare with.
	fileOut := filepath.Join(dir, "file.jsonl")
	code, out, errOut := tripline(t, "", "rules", "backtest", "--rules", goodRules, "--events", sample, "--json", "--out", fileOut)
	require.Equal(t, 0, code, errOut)
	var fromFile jsonResult
	require.NoError(t, json.Unmarshal([]byte(out), &fromFile))
	require.Nil(t, fromFile.History)
	require.Equal(t, "2026-01-01T00:00:02.836Z", fromFile.FirstEvent.Format(time.RFC3339Nano))

	t.Run("same decisions as the file", func(t *testing.T) {
		histOut := filepath.Join(t.TempDir(), "history.jsonl")
		args := append([]string{"rules", "backtest", "--rules", goodRules, "--json", "--out", histOut, "--progress"}, append(window, db...)...)
		code, out, errOut := tripline(t, "", args...)
		require.Equal(t, 0, code, errOut)
		var res jsonResult
		require.NoError(t, json.Unmarshal([]byte(out), &res))
		require.Equal(t, readFile(t, fileOut), readFile(t, histOut))
		require.Equal(t, fromFile.Rules, res.Rules)
		require.EqualValues(t, 196, res.Events)
		require.Equal(t, fromFile.Decisions, res.Decisions)
		require.Equal(t, fromFile.FirstEvent, res.FirstEvent)
		require.Equal(t, fromFile.LastEvent, res.LastEvent)
		require.Equal(t, &jsonHistory{From: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)}, res.History)
		require.Regexp(t, `(?m)^196 events of 196 \(100%\), through 2026-01-01T00:06:59Z, [\d,]+ events/s$`, errOut, "--progress")

		// The table says what was read.
		code, out, errOut = tripline(t, "", append([]string{"rules", "backtest", "--rules", goodRules}, append(window, db...)...)...)
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "\nevents 196  duplicates 0  late 0  too late 0  decisions 7  elapsed ")
		require.Contains(t, out, "\nhistory 2026-01-01T00:00:00Z to 2026-01-02T00:00:00Z, every tenant: events 2026-01-01T00:00:02Z to 2026-01-01T00:06:59Z\n")
	})

	t.Run("duplicates count once", func(t *testing.T) {
		s := backtestHistory(t, addr)
		require.NoError(t, s.InsertEvents(ctx, events))
		require.NoError(t, s.InsertEvents(ctx, events[50:150]))
		histOut := filepath.Join(t.TempDir(), "history.jsonl")
		args := append([]string{"rules", "backtest", "--rules", goodRules, "--json", "--out", histOut, "--clickhouse", addr, "--database", s.Database}, window...)
		code, out, errOut := tripline(t, "", args...)
		require.Equal(t, 0, code, errOut)
		var res jsonResult
		require.NoError(t, json.Unmarshal([]byte(out), &res))
		require.EqualValues(t, 196, res.Events)
		require.EqualValues(t, 100, res.History.Duplicates)
		require.Equal(t, fromFile.Rules, res.Rules)
		require.Equal(t, readFile(t, fileOut), readFile(t, histOut))
	})

	t.Run("since and tenant", func(t *testing.T) {
		// Five reads in a minute, an hour, three days and ten days ago,
		// each in a session of its own: bulk-read fires for each.
		now := time.Now().UTC().Truncate(time.Minute)
		var recent []pipeline.Event
		for _, ago := range []time.Duration{time.Hour, 72 * time.Hour, 240 * time.Hour} {
			for i := range 5 {
				recent = append(recent, pipeline.Event{ID: fmt.Sprintf("r-%d-%d", ago/time.Hour, i), Time: now.Add(-ago + time.Duration(i)*time.Second),
					Tenant: "recent", Agent: "spiffe://recent.example/a", Session: fmt.Sprintf("s-%d", ago/time.Hour), Tool: "db.query", Action: pipeline.ActionRead})
			}
		}
		require.NoError(t, s.InsertEvents(ctx, recent))
		for _, tc := range []struct {
			since             string
			events, decisions int64
		}{{"2h", 5, 1}, {"4d", 10, 2}, {"7d", 10, 2}, {"11d", 15, 3}} {
			code, out, errOut := tripline(t, "", append([]string{"rules", "backtest", "--rules", goodRules, "--json", "--since", tc.since, "--tenant", "recent"}, db...)...)
			require.Equal(t, 0, code, errOut)
			var res jsonResult
			require.NoError(t, json.Unmarshal([]byte(out), &res))
			require.Equal(t, tc.events, res.Events, tc.since)
			require.Equal(t, tc.decisions, res.Decisions, tc.since)
			d, err := investigate.ParseSince(tc.since)
			require.NoError(t, err)
			require.Equal(t, d, res.History.To.Sub(res.History.From))
			require.WithinDuration(t, time.Now(), res.History.To, time.Minute)
			require.Equal(t, "recent", res.History.Tenant)
		}
		// --from and --to: the ten-day-old session alone.
		from, to := now.Add(-241*time.Hour).Format(time.RFC3339), now.Add(-239*time.Hour).Format(time.RFC3339)
		code, out, errOut := tripline(t, "", append([]string{"rules", "backtest", "--rules", goodRules, "--json", "--from", from, "--to", to, "--tenant", "recent"}, db...)...)
		require.Equal(t, 0, code, errOut)
		var res jsonResult
		require.NoError(t, json.Unmarshal([]byte(out), &res))
		require.EqualValues(t, 5, res.Events)
		// The same period without --tenant adds nothing: the sample is older.
		code, out, errOut = tripline(t, "", append([]string{"rules", "backtest", "--rules", goodRules, "--json", "--from", from, "--to", to}, db...)...)
		require.Equal(t, 0, code, errOut)
		require.NoError(t, json.Unmarshal([]byte(out), &res))
		require.EqualValues(t, 5, res.Events)
	})

	t.Run("against", func(t *testing.T) {
		low, high := thresholdRules(t, 5), thresholdRules(t, 7)
		args := append([]string{"rules", "backtest", "--rules", low, "--against", high}, append(window, db...)...)
		code, out, errOut := tripline(t, "", append(args, "--json")...)
		require.Equal(t, 0, code, errOut)
		var c jsonComparison
		require.NoError(t, json.Unmarshal([]byte(out), &c))
		require.EqualValues(t, 196, c.New.Events)
		require.EqualValues(t, 196, c.Old.Events)
		require.NotEqual(t, c.New.SetHash, c.Old.SetHash)
		require.Len(t, c.Rules, 2)
		bulk, exfil := c.Rules[1], c.Rules[0]
		require.Equal(t, "bulk-read", bulk.Rule)
		require.Equal(t, "changed", bulk.Change)
		require.EqualValues(t, 6, bulk.NewDecisions)
		require.Positive(t, bulk.OnlyNew, "a lower threshold fires for more sessions")
		require.Zero(t, bulk.OnlyOld)
		require.Equal(t, bulk.NewDecisions, bulk.OnlyNew+bulk.Both, "one decision per session in the sample")
		require.Equal(t, bulk.OldDecisions, bulk.Both)
		require.Len(t, bulk.OnlyNewSamples, int(min(bulk.OnlyNew, 5)))
		require.Equal(t, "exfil", exfil.Rule)
		require.Equal(t, "same", exfil.Change)
		require.EqualValues(t, 1, exfil.Both)
		var onlyNew, both int64
		for _, a := range c.Agents {
			onlyNew += a.OnlyNew
			both += a.Both
			require.Zero(t, a.OnlyOld)
		}
		require.Equal(t, bulk.OnlyNew, onlyNew)
		require.Equal(t, bulk.Both+exfil.Both, both)

		// The same from the file.
		code, fileOut, errOut := tripline(t, "", "rules", "backtest", "--rules", low, "--against", high, "--events", sample, "--json")
		require.Equal(t, 0, code, errOut)
		var fc jsonComparison
		require.NoError(t, json.Unmarshal([]byte(fileOut), &fc))
		require.Equal(t, c.Rules, fc.Rules)
		require.Equal(t, c.Agents, fc.Agents)

		// The table.
		code, out, errOut = tripline(t, "", args...)
		require.Equal(t, 0, code, errOut)
		golden(t, "backtest-against", volatile.ReplaceAllString(out, "$1 X"))
		require.NotContains(t, out, "No rule fires for a group with one set only.")

		// A set against itself.
		code, out, errOut = tripline(t, "", "rules", "backtest", "--rules", low, "--against", low, "--events", sample)
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "bulk-read  same      6    6         0         0     6\n")
		require.Contains(t, out, "\nNo rule fires for a group with one set only.\n")
		require.Contains(t, out, "\nevents 196  malformed 4  late 0  too late 0  decisions 7 new, 7 old  elapsed ")
	})
}
