package backtest

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/internal/testgen"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// BenchmarkBacktestFromClickHouse loads a million generated events into
// ClickHouse once, then times a history backtest of them through the
// example rules (events/s, and ns/op for the whole million) and, untimed
// in the same iterations, the read alone: the same queries, row scans and
// sorting with no engine (read-events/s). backtest/read is the backtest's
// share of the read's speed: 1 means the engine costs nothing on top of
// the read. scan-events/s is the driver's plain way for comparison: one
// unsorted SELECT of history.EventSelect scanned with history.ScanEvent.
func BenchmarkBacktestFromClickHouse(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	s := newHistory(b)
	events := testgen.Events(testgen.Config{Seed: 1, Events: n, Agents: 200, SessionsPerAgent: 5, Tenants: 4, Exfil: 50})
	q := HistoryQuery{Database: s.Database, From: events[0].Time, To: events[n-1].Time.Add(time.Millisecond)}
	insert(b, s, events, 200_000)
	events = nil
	// Merged, as older history is, and with no merge running meanwhile.
	require.NoError(b, s.Conn.Exec(ctx, "OPTIMIZE TABLE "+s.T(history.TableEvents)+" FINAL"))
	set, err := rules.Compile(rules.ExampleSources()...)
	require.NoError(b, err)

	var btEvents, readEvents, scanEvents int64
	var btTime, readTime, scanTime time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		t0 := time.Now()
		readEvents += readAll(b, ctx, s.Conn, q)
		readTime += time.Since(t0)
		t0 = time.Now()
		scanEvents += scanAll(b, ctx, s, q)
		scanTime += time.Since(t0)
		b.StartTimer()

		t0 = time.Now()
		src, err := NewHistorySource(ctx, s.Conn, q)
		require.NoError(b, err)
		res, err := RunSource(ctx, set, src, Config{})
		require.NoError(b, err)
		require.NoError(b, src.Close())
		btTime += time.Since(t0)
		require.EqualValues(b, n, res.Events)
		btEvents += res.Events
	}
	bt, rd := float64(btEvents)/btTime.Seconds(), float64(readEvents)/readTime.Seconds()
	b.ReportMetric(bt, "events/s")
	b.ReportMetric(rd, "read-events/s")
	b.ReportMetric(bt/rd, "backtest/read")
	b.ReportMetric(float64(scanEvents)/scanTime.Seconds(), "scan-events/s")
}

// scanAll reads the window with history.ScanEvent, unsorted, and returns
// the events read.
func scanAll(b *testing.B, ctx context.Context, s *history.Schema, q HistoryQuery) int64 {
	rows, err := s.Conn.Query(ctx, "SELECT "+history.EventSelect+" FROM "+s.T(history.TableEvents)+
		" WHERE ts_ms >= ? AND ts_ms < ?", q.From.UnixMilli(), q.To.UnixMilli())
	require.NoError(b, err)
	defer rows.Close()
	var (
		e     pipeline.Event
		total int64
	)
	for rows.Next() {
		require.NoError(b, history.ScanEvent(rows, &e))
		total++
	}
	require.NoError(b, rows.Err())
	return total
}

// readAll reads the window as a backtest does, with no engine, and returns
// the events read.
func readAll(b *testing.B, ctx context.Context, conn driver.Conn, q HistoryQuery) int64 {
	src, err := NewHistorySource(ctx, conn, q)
	require.NoError(b, err)
	defer src.Close()
	events := make([]pipeline.Event, DefaultBatchSize)
	var total int64
	for {
		n, err := src.Read(ctx, events)
		total += int64(n)
		if errors.Is(err, io.EOF) {
			return total
		}
		require.NoError(b, err)
	}
}
