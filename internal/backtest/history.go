package backtest

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/pipeline"
)

// DefaultSliceRows is the default of HistoryQuery.SliceRows: with two
// slices in memory at a time and a few hundred bytes a row, a few hundred
// megabytes.
const DefaultSliceRows = 250_000

// HistoryQuery selects the events a history backtest reads.
type HistoryQuery struct {
	// Database holds the events table (default "tripline").
	Database string
	// From and To bound event time: From <= time < To. Both are required.
	From, To time.Time
	// Tenant keeps one tenant's events; "" reads every tenant.
	Tenant string
	// SliceRows is about how many rows are read, sorted and held in memory
	// at a time (default DefaultSliceRows). Memory grows with it, and the
	// reads of the server shrink: see HistorySource.
	SliceRows int64
}

// HistorySource reads events from the events table of the history in
// ClickHouse, in event-time order across all agents.
//
// The window is cut into contiguous time slices of about SliceRows rows,
// planned from per-minute counts (a query that reads the time column
// only). Each slice is read with one query, in the order the table stores
// it, each row packed into one string by the server (eventSelect), then
// sorted in memory by time, id, tenant, agent and session (the table's
// sort key, time first); rows are decoded into events as they are
// replayed. One slice is read ahead while the engine works through the
// previous one.
//
// Why not ORDER BY ts_ms in the server: ClickHouse 18.16 cannot read a
// table in an order other than its sort key, and sorting every column of a
// slice took it five to ten times longer than reading the slice. The sort
// key (tenant, agent, session, ts_ms, id) also spreads a time slice over
// every granule of its day's partition, so each slice's query reads the
// whole day, and a day of N events is read about N/SliceRows times: big
// slices read less, and use more memory.
//
// Rows written twice that the table has not merged yet (same tenant,
// agent, session, time and id: the sort key) are read once, as the table
// will hold them once merged; Position.Duplicates counts the others.
//
// Close stops the read ahead; call it when done with the source.
type HistorySource struct {
	conn   driver.Conn
	q      HistoryQuery
	query  string
	slices []slice
	pos    Position

	// The read ahead: a goroutine loads slices into buffers and sends them
	// on ready, in order; Read takes them and gives them back on free.
	started bool
	ready   chan *sliceBuf
	free    chan *sliceBuf
	cancel  context.CancelFunc
	done    chan struct{}
	cur     *sliceBuf
	next    int // the next row of cur, an index into cur.order
}

// slice is a time range of the window, [from, to) in unix ms, and how many
// rows the plan counted in it.
type slice struct {
	from, to int64
	rows     int64
}

// sliceBuf holds one slice's rows, packed as read (see eventSelect), and
// order, those to replay in time order, duplicates left out. Rows are
// decoded into events only as they are replayed: packed, a row takes a
// third of the memory.
type sliceBuf struct {
	rows  []string
	order []rowRef
	dups  int64
	err   error // the read failed after the rows
}

// rowRef is a row of a sliceBuf and its time, the first sort key.
type rowRef struct {
	ms int64
	i  int32
}

// NewHistorySource plans the read of q's window from the history behind
// conn. It fails when the database has no events table.
func NewHistorySource(ctx context.Context, conn driver.Conn, q HistoryQuery) (*HistorySource, error) {
	if q.Database == "" {
		q.Database = "tripline"
	}
	if !history.ValidIdent(q.Database) {
		return nil, fmt.Errorf("backtest: invalid database name %q (letters, digits and _ only)", q.Database)
	}
	if q.From.IsZero() || q.To.IsZero() || !q.From.Before(q.To) {
		return nil, fmt.Errorf("backtest: empty time window %s to %s", q.From.UTC().Format(time.RFC3339), q.To.UTC().Format(time.RFC3339))
	}
	if q.SliceRows <= 0 {
		q.SliceRows = DefaultSliceRows
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", q.Database, history.TableEvents).Scan(&n); err != nil {
		return nil, fmt.Errorf("backtest: reading the history: %w", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("backtest: database %s has no %s table: check the database name, or that the history writer ran", q.Database, history.TableEvents)
	}
	h := &HistorySource{conn: conn, q: q}
	h.pos.From, h.pos.To = q.From.UTC(), q.To.UTC()
	h.query = "SELECT " + eventSelect() + "\nFROM " + q.Database + "." + history.TableEvents + "\n" + h.where()
	if err := h.plan(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

// where is the filter of a time range (four arguments, see args) and of
// the tenant. The date conditions let the server skip whole partitions.
func (h *HistorySource) where() string {
	w := "WHERE date >= toDate(?) AND date <= toDate(?) AND ts_ms >= ? AND ts_ms < ?"
	if h.q.Tenant != "" {
		w += " AND tenant = ?"
	}
	return w
}

// args are the arguments of where for [from, to) in unix ms.
func (h *HistorySource) args(from, to int64) []any {
	day := func(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.DateOnly) }
	a := []any{day(from), day(to - 1), from, to}
	if h.q.Tenant != "" {
		a = append(a, h.q.Tenant)
	}
	return a
}

// plan counts the rows of the window per minute and cuts it into slices.
func (h *HistorySource) plan(ctx context.Context) error {
	from, to := h.q.From.UnixMilli(), h.q.To.UnixMilli()
	rows, err := h.conn.Query(ctx, "SELECT toInt64(intDiv(ts_ms, 60000)) AS m, count() FROM "+
		h.q.Database+"."+history.TableEvents+"\n"+h.where()+"\nGROUP BY m ORDER BY m", h.args(from, to)...)
	if err != nil {
		return fmt.Errorf("backtest: planning the history read: %w", err)
	}
	defer rows.Close()
	var minutes []minuteCount
	for rows.Next() {
		var m minuteCount
		if err := rows.Scan(&m.minute, &m.rows); err != nil {
			return fmt.Errorf("backtest: planning the history read: %w", err)
		}
		minutes = append(minutes, m)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("backtest: planning the history read: %w", err)
	}
	h.slices = planSlices(from, to, minutes, h.q.SliceRows)
	for _, s := range h.slices {
		h.pos.Expected += s.rows
	}
	return nil
}

type minuteCount struct {
	minute int64 // unix ms / 60000
	rows   uint64
}

// planSlices cuts [from, to) at minute boundaries into contiguous slices of
// at most limit rows where it can; a minute of more rows is cut into equal
// parts. No slices when there are no rows.
func planSlices(from, to int64, minutes []minuteCount, limit int64) []slice {
	var out []slice
	cur := slice{from: from}
	for _, m := range minutes {
		start, end := max(m.minute*60_000, from), min((m.minute+1)*60_000, to)
		n := int64(m.rows)
		if cur.rows > 0 && cur.rows+n > limit {
			cur.to = start
			out = append(out, cur)
			cur = slice{from: start}
		}
		if n <= limit {
			cur.rows += n
			continue
		}
		// One busy minute: equal parts of it, each a slice; the first
		// also covers the quiet time before it.
		parts := min((n+limit-1)/limit, end-start)
		span := end - start
		for i := range parts {
			s := slice{from: start + span*i/parts, to: start + span*(i+1)/parts, rows: n / parts}
			if i == 0 {
				s.from = cur.from
			}
			out = append(out, s)
		}
		cur = slice{from: end}
	}
	if cur.rows > 0 || len(out) > 0 && cur.from < to {
		cur.to = to
		out = append(out, cur)
	}
	return out
}

// Position reports the window, the rows expected and the duplicates skipped.
func (h *HistorySource) Position() Position { return h.pos }

// Read copies the next events of the slices read ahead.
func (h *HistorySource) Read(ctx context.Context, events []pipeline.Event) (int, error) {
	if !h.started {
		h.start(ctx)
	}
	n := 0
	for n < len(events) {
		if h.cur == nil || h.next == len(h.cur.order) {
			if h.cur != nil {
				h.free <- h.cur
				h.cur = nil
			}
			var b *sliceBuf
			select {
			case b = <-h.ready:
			case <-ctx.Done():
				return n, ctx.Err()
			}
			if b == nil { // every slice read, or the read ahead stopped
				if err := ctx.Err(); err != nil {
					return n, err
				}
				return n, io.EOF
			}
			h.pos.Duplicates += b.dups
			if b.err != nil {
				return n, b.err
			}
			h.cur, h.next = b, 0
			continue
		}
		r := h.cur.order[h.next]
		if err := decodeRow(r.ms, h.cur.rows[r.i], &events[n]); err != nil {
			return n, err
		}
		h.next++
		n++
	}
	return n, nil
}

// start starts the read ahead, which stops with ctx or Close.
func (h *HistorySource) start(ctx context.Context) {
	h.started = true
	const buffers = 2 // one replayed while the next is read
	h.ready = make(chan *sliceBuf, buffers)
	h.free = make(chan *sliceBuf, buffers)
	for range buffers {
		h.free <- &sliceBuf{}
	}
	ctx, h.cancel = context.WithCancel(ctx)
	h.done = make(chan struct{})
	go func() {
		defer close(h.done)
		defer close(h.ready)
		for _, s := range h.slices {
			var b *sliceBuf
			select {
			case b = <-h.free:
			case <-ctx.Done():
				return
			}
			h.load(ctx, s, b)
			select {
			case h.ready <- b:
			case <-ctx.Done():
				return
			}
			if b.err != nil {
				return
			}
		}
	}()
}

// load reads one slice into b and puts its rows in time order.
func (h *HistorySource) load(ctx context.Context, s slice, b *sliceBuf) {
	if want := int(s.rows + s.rows/16 + 16); cap(b.rows) < want {
		// Sized from the plan, not grown by appending.
		b.rows, b.order = make([]string, 0, want), make([]rowRef, 0, want)
	}
	clear(b.rows) // let the previous slice's rows go
	b.rows, b.order, b.dups, b.err = b.rows[:0], b.order[:0], 0, nil
	rows, err := h.conn.Query(ctx, h.query, h.args(s.from, s.to)...)
	if err != nil {
		b.err = fmt.Errorf("backtest: reading the history: %w", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var (
			ms  int64
			row string
		)
		if err := rows.Scan(&ms, &row); err != nil {
			b.err = fmt.Errorf("backtest: reading the history: %w", err)
			return
		}
		b.order = append(b.order, rowRef{ms: ms, i: int32(len(b.rows))})
		b.rows = append(b.rows, row)
	}
	if err := rows.Err(); err != nil {
		b.err = fmt.Errorf("backtest: reading the history: %w", err)
		return
	}
	// The table's sort key with time first; duplicates end up side by
	// side. Rows rarely share a millisecond: only then are the other
	// fields read from the packed rows.
	key := func(x, y rowRef) int {
		if x.ms != y.ms {
			return cmp.Compare(x.ms, y.ms)
		}
		xi, xt, xa, xs := rowKey(b.rows[x.i])
		yi, yt, ya, ys := rowKey(b.rows[y.i])
		if c := strings.Compare(xi, yi); c != 0 {
			return c
		}
		return cmp.Or(strings.Compare(xt, yt), strings.Compare(xa, ya), strings.Compare(xs, ys))
	}
	slices.SortFunc(b.order, key)
	kept := b.order[:0]
	for k, r := range b.order {
		if k > 0 && key(kept[len(kept)-1], r) == 0 {
			b.dups++
			continue
		}
		kept = append(kept, r)
	}
	b.order = kept
}

// Close stops the read ahead and waits for it.
func (h *HistorySource) Close() error {
	if !h.started {
		return nil
	}
	h.cancel()
	<-h.done
	return nil
}
