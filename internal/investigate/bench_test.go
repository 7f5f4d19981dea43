package investigate_test

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/chtest"
	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/internal/investigate"
)

var benchEvents = flag.Int("timeline-events", 10_000_000, "events BenchmarkSessionTimeline10M loads")

// The benchmark's data set: benchAgents agents, benchSessions sessions
// (each of one agent), a principal per 4 agents, one event every 60 ms from
// benchStart (10M events span just under 7 days).
const (
	benchAgents   = 2000
	benchSessions = 20000
	benchTasks    = 50000
	benchStepMS   = 60
)

var benchStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// loadBench fills the events table server-side with INSERT … SELECT from
// numbers(n); the materialized view fills event_keys as for any insert.
func loadBench(b *testing.B, s *history.Schema, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := strconv.FormatInt(benchStart.UnixMilli(), 10)
	ts := "(" + start + " + number * " + strconv.Itoa(benchStepMS) + ")"
	sql := fmt.Sprintf(`INSERT INTO %s (tenant, agent, session, ts_ms, id, date, principal, task, tool, action,
	resource, destination, bytes_in, bytes_out, records, sensitivity, outcome, credential)
SELECT 'bench',
	concat('spiffe://bench/agent-', toString(number %% %[2]d)),
	concat('s-', toString(number %% %[3]d)),
	toInt64(%[4]s),
	concat('ev-', toString(number)),
	toDate(toDateTime(intDiv(%[4]s, 1000), 'UTC')),
	concat('user-', toString(number %% %[5]d)),
	concat('task-', toString(number %% %[6]d)),
	['fs', 'http', 'db', 'shell', 'mail'][number %% 5 + 1],
	['read', 'write', 'send', 'execute', 'read'][number %% 5 + 1],
	concat('/data/file-', toString(number %% 100000)),
	if(number %% 5 = 2, concat('host-', toString(number %% 1000), '.example.com'), ''),
	toInt64(number %% 4096), toInt64(if(number %% 5 = 2, number %% 65536, 0)), toInt64(number %% 100),
	'internal', 'ok', concat('cred-', toString(number %% %[2]d))
FROM numbers(%[7]d)`, s.T(history.TableEvents), benchAgents, benchSessions, ts, benchAgents/4, benchTasks, n)
	t0 := time.Now()
	require.NoError(b, s.Conn.Exec(ctx, sql))
	var rows, keys uint64
	require.NoError(b, s.Conn.QueryRow(ctx, "SELECT count() FROM "+s.T(history.TableEvents)).Scan(&rows))
	require.NoError(b, s.Conn.QueryRow(ctx, "SELECT count() FROM "+s.T(history.TableEventKeys)).Scan(&keys))
	require.Equal(b, uint64(n), rows)
	require.NotZero(b, keys)
	b.Logf("loaded %d events (%d event_keys rows) in %s", rows, keys, time.Since(t0).Round(time.Millisecond))
}

// BenchmarkSessionTimeline10M loads 10M events into ClickHouse once, then
// times timelines of different sessions (500 events each, over the
// data's 7 days) through Querier.Timeline: the event_keys look-up and the
// primary-key read. It reports the median and p95 latency. Run with
//
//	go test -run '^$' -bench SessionTimeline10M -benchtime 200x ./internal/investigate
//
// (-timeline-events N loads another number of events). The other
// sub-benchmarks time the agent, task and principal timelines and the
// who-touched query on the same data.
func BenchmarkSessionTimeline10M(b *testing.B) {
	db := chtest.NewDB(b)
	ctx := context.Background()
	s, err := history.Migrate(ctx, db.Conn, db.Database, history.SchemaOptions{})
	require.NoError(b, err)
	loadBench(b, s, *benchEvents)
	q := investigate.New(s, investigate.Options{})
	period := investigate.Period{From: benchStart, To: benchStart.Add(7 * 24 * time.Hour)}
	perSession := *benchEvents / benchSessions

	timeline := func(by string, value func(i int) string, want int) func(b *testing.B) {
		return func(b *testing.B) {
			var lat []time.Duration
			i := 0
			for b.Loop() {
				t0 := time.Now()
				tl, err := q.Timeline(ctx, investigate.TimelineQuery{Tenant: "bench", By: by, Value: value(i), Period: period,
					Limit: investigate.MaxTimelineLimit})
				lat = append(lat, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				if len(tl.Events) != want {
					b.Fatalf("%s %s: %d events, want %d", by, value(i), len(tl.Events), want)
				}
				i++
			}
			report(b, lat)
		}
	}
	b.Run("session", timeline(investigate.BySession, func(i int) string {
		return "s-" + strconv.Itoa(i*7919%benchSessions)
	}, perSession))
	b.Run("task", timeline(investigate.ByTask, func(i int) string {
		return "task-" + strconv.Itoa(i*7919%benchTasks)
	}, *benchEvents/benchTasks))
	b.Run("agent", timeline(investigate.ByAgent, func(i int) string {
		return "spiffe://bench/agent-" + strconv.Itoa(i*7919%benchAgents)
	}, min(*benchEvents/benchAgents, investigate.MaxTimelineLimit)))
	b.Run("touched", func(b *testing.B) {
		var lat []time.Duration
		i := 0
		for b.Loop() {
			t0 := time.Now()
			res, err := q.Touched(ctx, investigate.TouchedQuery{Tenant: "bench", Kind: investigate.KindResource,
				Value: "/data/file-" + strconv.Itoa(i*7919%100000), Period: period})
			lat = append(lat, time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Touches) == 0 {
				b.Fatal("nobody touched the file")
			}
			i++
		}
		report(b, lat)
	})
}

// report adds the median and p95 latency to the benchmark's figures.
func report(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "ms-median")
	b.ReportMetric(ms(lat[len(lat)*95/100]), "ms-p95")
}
