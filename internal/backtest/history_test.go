package backtest

import (
	"bytes"
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/chtest"
	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/internal/testgen"
	"github.com/tripline/tripline/pipeline"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// newHistory is a migrated, empty history database.
func newHistory(t testing.TB) *history.Schema {
	t.Helper()
	db := chtest.NewDB(t)
	s, err := history.Migrate(context.Background(), db.Conn, db.Database, history.SchemaOptions{})
	require.NoError(t, err)
	return s
}

// insert writes events in batches of n, each batch a part of its own.
func insert(t testing.TB, s *history.Schema, events []pipeline.Event, n int) {
	t.Helper()
	for len(events) > 0 {
		k := min(n, len(events))
		require.NoError(t, s.InsertEvents(context.Background(), events[:k]))
		events = events[k:]
	}
}

// timeOrder sorts events as a history backtest reads them: by time, then id.
func timeOrder(events []pipeline.Event) {
	slices.SortStableFunc(events, func(a, b pipeline.Event) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.ID, b.ID))
	})
}

func jsonl(events []pipeline.Event) []byte {
	var buf []byte
	for i := range events {
		buf = events[i].AppendJSON(buf)
		buf = append(buf, '\n')
	}
	return buf
}

func historySource(t testing.TB, s *history.Schema, q HistoryQuery) *HistorySource {
	t.Helper()
	q.Database = s.Database
	src, err := NewHistorySource(context.Background(), s.Conn, q)
	require.NoError(t, err)
	t.Cleanup(func() { src.Close() })
	return src
}

// TestHistoryMatchesFile runs the same events from a file and from the
// history, whose table holds them out of order, in many parts, some twice.
func TestHistoryMatchesFile(t *testing.T) {
	set := goodRules(t)
	events := testgen.Events(testgen.Config{Seed: 7, Events: 30_000, Tenants: 2, Agents: 20, Exfil: 15})
	timeOrder(events)

	s := newHistory(t)
	shuffled := slices.Clone(events)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	insert(t, s, shuffled, 4000)
	// 500 events written a second time, as a redelivery would before the
	// table merges them.
	insert(t, s, shuffled[:500], 500)

	var fileDecs bytes.Buffer
	want, err := Run(context.Background(), set, bytes.NewReader(jsonl(events)), Config{Decisions: &fileDecs})
	require.NoError(t, err)
	require.Positive(t, want.Decisions)

	for _, sliceRows := range []int64{0, 2500} {
		src := historySource(t, s, HistoryQuery{From: events[0].Time, To: events[len(events)-1].Time.Add(time.Millisecond), SliceRows: sliceRows})
		if sliceRows > 0 {
			require.Greater(t, len(src.slices), 10, "small slices")
		} else {
			require.Len(t, src.slices, 1)
		}
		require.EqualValues(t, len(events)+500, src.Position().Expected)
		var decs bytes.Buffer
		var last Progress
		got, err := RunSource(context.Background(), set, src, Config{Decisions: &decs, Progress: func(p Progress) { last = p }})
		require.NoError(t, err)
		require.Equal(t, fileDecs.String(), decs.String(), "the same decisions, byte for byte")
		require.Equal(t, want.Rules, got.Rules)
		require.Equal(t, want.Stats, got.Stats)
		require.EqualValues(t, len(events), got.Events)
		require.EqualValues(t, 500, got.Duplicates)
		require.Equal(t, events[0].Time, got.First)
		require.Equal(t, events[len(events)-1].Time, got.Last)
		require.True(t, last.Done)
		require.EqualValues(t, len(events)+500, last.Expected)
		require.Equal(t, got.Last, last.Through)
	}
}

// TestHistoryWindow reads a part of the history: the window's bounds and
// the tenant filter hold, and the decisions are those of the same events
// from a file.
func TestHistoryWindow(t *testing.T) {
	set := goodRules(t)
	// Three days of events, about one every 20 s.
	events := testgen.Events(testgen.Config{Seed: 9, Events: 12_000, Tenants: 3, Agents: 30, MeanGap: 20 * time.Second, Exfil: 30})
	timeOrder(events)
	s := newHistory(t)
	insert(t, s, events, 5000)

	from := testgen.DefaultStart.Add(26 * time.Hour)
	to := from.Add(20 * time.Hour)
	for _, tenant := range []string{"", events[0].Tenant} {
		var in []pipeline.Event
		for _, e := range events {
			if !e.Time.Before(from) && e.Time.Before(to) && (tenant == "" || e.Tenant == tenant) {
				in = append(in, e)
			}
		}
		require.NotEmpty(t, in)
		var fileDecs, decs bytes.Buffer
		want, err := Run(context.Background(), set, bytes.NewReader(jsonl(in)), Config{Decisions: &fileDecs})
		require.NoError(t, err)

		src := historySource(t, s, HistoryQuery{From: from, To: to, Tenant: tenant, SliceRows: 1000})
		got, err := RunSource(context.Background(), set, src, Config{Decisions: &decs})
		require.NoError(t, err)
		require.EqualValues(t, len(in), got.Events, "tenant %q", tenant)
		require.Equal(t, fileDecs.String(), decs.String())
		require.Equal(t, want.Rules, got.Rules)
		require.False(t, got.First.Before(from))
		require.True(t, got.Last.Before(to))
		require.Equal(t, from.UTC(), got.From)
		require.Equal(t, to.UTC(), got.To)
	}

	// An empty window reads nothing.
	src := historySource(t, s, HistoryQuery{From: from.AddDate(1, 0, 0), To: to.AddDate(1, 0, 0)})
	require.Empty(t, src.slices)
	got, err := RunSource(context.Background(), set, src, Config{})
	require.NoError(t, err)
	require.Zero(t, got.Events)
	require.True(t, got.First.IsZero())
}

// TestHistoryDuplicates: a row written twice is read once, before and after
// the table merges it; the same id under another key is another row.
func TestHistoryDuplicates(t *testing.T) {
	set := goodRules(t)
	s := newHistory(t)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ev := func(id, session string, sec int) pipeline.Event {
		return pipeline.Event{ID: id, Time: at.Add(time.Duration(sec) * time.Second), Tenant: "acme", Agent: "spiffe://acme.example/a",
			Session: session, Tool: "db.query", Action: pipeline.ActionRead}
	}
	// Five reads in a minute fire bulk-read once; written twice, they
	// would still fire once, but the counts would double.
	var reads []pipeline.Event
	for i := range 5 {
		reads = append(reads, ev("e-"+string(rune('a'+i)), "s-1", i*5))
	}
	insert(t, s, reads, 5)
	insert(t, s, reads, 5)
	insert(t, s, reads[:2], 1)
	// Same id and time, another session: a row of its own.
	insert(t, s, []pipeline.Event{ev("e-a", "s-2", 0)}, 1)

	q := HistoryQuery{From: at, To: at.Add(time.Hour)}
	res, err := RunSource(context.Background(), set, historySource(t, s, q), Config{})
	require.NoError(t, err)
	require.EqualValues(t, 6, res.Events)
	require.EqualValues(t, 7, res.Duplicates)
	require.EqualValues(t, 1, res.Decisions)

	require.NoError(t, s.Conn.Exec(context.Background(), "OPTIMIZE TABLE "+s.T(history.TableEvents)+" FINAL"))
	merged, err := RunSource(context.Background(), set, historySource(t, s, q), Config{})
	require.NoError(t, err)
	require.Equal(t, res.Events, merged.Events, "the same rows as once merged")
	require.Zero(t, merged.Duplicates)
	require.Equal(t, res.Rules, merged.Rules)
}

func TestHistoryErrors(t *testing.T) {
	s := newHistory(t)
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		q    HistoryQuery
		err  string
	}{
		{"no table", HistoryQuery{Database: "default", From: at, To: at.Add(time.Hour)}, "database default has no events table"},
		{"bad name", HistoryQuery{Database: "x; DROP", From: at, To: at.Add(time.Hour)}, `invalid database name "x; DROP"`},
		{"empty window", HistoryQuery{Database: s.Database, From: at, To: at}, "empty time window 2026-03-01T00:00:00Z to 2026-03-01T00:00:00Z"},
		{"no window", HistoryQuery{Database: s.Database}, "empty time window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewHistorySource(ctx, s.Conn, tc.q)
			require.ErrorContains(t, err, tc.err)
		})
	}

	// A cancelled read stops with ctx's error.
	insert(t, s, testgen.Events(testgen.Config{Seed: 1, Events: 5000, Start: at}), 5000)
	src, err := NewHistorySource(ctx, s.Conn, HistoryQuery{Database: s.Database, From: at, To: at.AddDate(0, 0, 1)})
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = RunSource(cctx, goodRules(t), src, Config{})
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, src.Close())
}

func TestPlanSlices(t *testing.T) {
	const min = 60_000
	for _, tc := range []struct {
		name     string
		from, to int64
		minutes  []minuteCount
		limit    int64
		want     []slice
	}{
		{"no rows", 0, 10 * min, nil, 100, nil},
		{"one slice", 0, 10 * min, []minuteCount{{1, 10}, {5, 20}}, 100, []slice{{0, 10 * min, 30}}},
		{"cut at minutes", 30_000, 10 * min, []minuteCount{{0, 60}, {2, 30}, {3, 20}, {9, 100}}, 100,
			[]slice{{30_000, 3 * min, 90}, {3 * min, 9 * min, 20}, {9 * min, 10 * min, 100}}},
		{"busy minute", 0, 10 * min, []minuteCount{{1, 10}, {4, 350}, {6, 5}}, 100,
			[]slice{{0, 4 * min, 10}, {4 * min, 4*min + 15_000, 87}, {4*min + 15_000, 4*min + 30_000, 87},
				{4*min + 30_000, 4*min + 45_000, 87}, {4*min + 45_000, 5 * min, 87}, {5 * min, 10 * min, 5}}},
		{"busy first minute", 0, 2 * min, []minuteCount{{0, 250}}, 100,
			[]slice{{0, 20_000, 83}, {20_000, 40_000, 83}, {40_000, min, 83}, {min, 2 * min, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := planSlices(tc.from, tc.to, tc.minutes, tc.limit)
			require.Equal(t, tc.want, got)
			for i := 1; i < len(got); i++ {
				require.Equal(t, got[i-1].to, got[i].from, "contiguous")
			}
		})
	}
}

// TestCompareFromHistory: Compare reads the history once for both sets,
// and agrees with the same events from a file.
func TestCompareFromHistory(t *testing.T) {
	newSet, oldSet := thresholdSets(t, 3, 5)
	events := testgen.Events(testgen.Config{Seed: 5, Events: 20_000, Agents: 300, Exfil: 10})
	timeOrder(events)
	s := newHistory(t)
	insert(t, s, events, 10_000)
	q := HistoryQuery{From: events[0].Time, To: events[len(events)-1].Time.Add(time.Millisecond), SliceRows: 3000}

	c, err := Compare(context.Background(), newSet, oldSet, historySource(t, s, q), Config{})
	require.NoError(t, err)
	fromFile, err := Compare(context.Background(), newSet, oldSet, NewFileSource(bytes.NewReader(jsonl(events)), pipeline.Limits{}, false), Config{})
	require.NoError(t, err)
	require.Equal(t, fromFile.Rules, c.Rules)
	require.Equal(t, fromFile.Agents, c.Agents)
	require.EqualValues(t, len(events), c.New.Events)
	require.EqualValues(t, len(events), c.Old.Events)
	bulk := ruleDiff(t, c, "bulk-read")
	require.Positive(t, bulk.OnlyNew, "a lower threshold fires for more sessions")
	require.Positive(t, bulk.Both)
	require.Zero(t, bulk.OnlyOld)
}
