package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

// WriterConfig tunes the history writer. The zero value is usable.
type WriterConfig struct {
	// BatchSize is the most rows in one insert (default 20000).
	BatchSize int
	// FlushInterval is the longest a message waits for its batch (default 1s).
	FlushInterval time.Duration
	// AckWait is the consumers' ack wait (default 2m). Batches being
	// retried are kept alive with in-progress acks, so it only matters
	// after a crash.
	AckWait time.Duration
	// RetryMin and RetryMax bound the backoff between insert attempts
	// while ClickHouse is unavailable (defaults 200ms and 30s).
	RetryMin, RetryMax time.Duration
	// Durable is the consumer name on every stream (default "tl_history").
	// Several writers may share it: each message goes to one of them.
	Durable string
	// Streams to copy (default: events, decisions, revocations, acks, dead letters).
	Streams []string
	// Limits for decoding events (zero: pipeline defaults).
	Limits     pipeline.Limits
	Logger     zerolog.Logger
	Registerer prometheus.Registerer
}

func (c *WriterConfig) fill() {
	if c.BatchSize <= 0 {
		c.BatchSize = 20000
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.AckWait <= 0 {
		c.AckWait = 2 * time.Minute
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 200 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.Durable == "" {
		c.Durable = "tl_history"
	}
	if len(c.Streams) == 0 {
		c.Streams = []string{pipeline.EventsStream, pipeline.DecisionsStream, pipeline.RevocationsStream, pipeline.AcksStream, pipeline.DeadLetterStream}
	}
	if c.Limits == (pipeline.Limits{}) {
		c.Limits = pipeline.DefaultLimits()
	}
}

// Writer copies JetStream streams into ClickHouse. Each stream has its own
// durable pull consumer, so detection never waits on ClickHouse: when
// ClickHouse is down the writer retries with backoff and JetStream holds
// the backlog, which the writer drains once ClickHouse is back.
//
// A message is acknowledged only after the insert holding it succeeded.
// Rows are not duplicated when a message comes again (a crash between
// insert and ack, an ack lost, an insert whose outcome is unknown): the
// writer asks ClickHouse which keys of a redelivered message, or of a
// batch whose earlier attempt failed, are already stored and skips them.
// 18.16 has no insert deduplication for non-replicated tables, so this
// check is what makes writes exactly-once; ReplacingMergeTree on the
// tables' sort keys folds, at merge time, a duplicate that could still
// slip through (a timed-out insert that the server finishes after the
// check).
type Writer struct {
	js  jetstream.JetStream
	s   *Schema
	cfg WriterConfig
	log zerolog.Logger
	m   *writerMetrics

	mu      sync.Mutex
	lastErr error

	// crashAfterInsert, in tests, makes write fail after a successful
	// insert and before the acks, as a crash at that point would.
	crashAfterInsert func(table string) bool
}

// errCrash is what write returns when crashAfterInsert says so.
var errCrash = errors.New("history: simulated crash after insert")

// NewWriter returns a writer of js's streams into s.
func NewWriter(js jetstream.JetStream, s *Schema, cfg WriterConfig) *Writer {
	cfg.fill()
	return &Writer{js: js, s: s, cfg: cfg, log: cfg.Logger.With().Str("component", "history").Logger(), m: newWriterMetrics(cfg.Registerer)}
}

// Healthy returns the last insert error, nil once an insert succeeded after it.
func (w *Writer) Healthy() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

func (w *Writer) setErr(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
}

// Run copies every configured stream until ctx ends.
func (w *Writer) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, stream := range w.cfg.Streams {
		t, err := w.tableFor(stream)
		if err != nil {
			return err
		}
		cons, err := w.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
			Durable:     w.cfg.Durable,
			Description: "Tripline history writer: copies " + stream + " into ClickHouse table " + t.name,
			AckPolicy:   jetstream.AckExplicitPolicy,
			AckWait:     w.cfg.AckWait,
			// A batch being written, one waiting, one being read and the
			// client's prefetch buffer.
			MaxAckPending: 4 * w.cfg.BatchSize,
			MaxDeliver:    -1,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if err != nil {
			return fmt.Errorf("history: consumer on %s: %w", stream, err)
		}
		g.Go(func() error { return w.runStream(ctx, stream, cons, t) })
		g.Go(func() error { w.watchLag(ctx, stream, cons); return nil })
	}
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// batch is what one insert writes.
type batch struct {
	msgs    []jetstream.Msg
	rows    []row
	skipped []jetstream.Msg // malformed: acked, never written
	// check: some message was delivered before, or an attempt failed, so
	// the keys must be looked up before inserting.
	check bool
	first time.Time
	// cols are the rows as columns, built by the reader while the previous
	// batch is being inserted; keys and dup tell whether a key repeats.
	cols colBuilder
	keys map[string]struct{}
	dup  bool
}

// row is one decoded message; key identifies it in its table.
type row struct {
	key    string
	tenant string
	agent  string
	date   time.Time
	v      any
}

// table is how one stream maps to one ClickHouse table.
type table struct {
	name   string
	cols   []string
	decode func(m jetstream.Msg, meta *jetstream.MsgMetadata, r *row) error
	// newCols returns an empty column builder for the table, with room
	// for n rows where it matters.
	newCols func(n int) colBuilder
	// keyExpr is the SQL expression of a row's key in the table.
	keyExpr string
}

func (w *Writer) tableFor(stream string) (*table, error) {
	switch stream {
	case pipeline.EventsStream:
		lim := w.cfg.Limits
		return &table{
			name: TableEvents, cols: EventColumns, keyExpr: "id",
			decode: func(m jetstream.Msg, meta *jetstream.MsgMetadata, r *row) error {
				var e pipeline.Event
				if err := pipeline.Decode(m.Data(), &e, &lim); err != nil {
					return err
				}
				r.key, r.tenant, r.agent, r.date = e.ID, e.Tenant, e.Agent, dayOf(e.Time.UnixMilli())
				r.v = &eventRow{e: e, seq: meta.Sequence.Stream, received: meta.Timestamp, decided: m.Headers().Get(pipeline.HeaderDecided) != ""}
				return nil
			},
			newCols: func(n int) colBuilder { c := &eventCols{}; c.grow(n); return c },
		}, nil
	case pipeline.DecisionsStream:
		return &table{
			name: TableDecisions, cols: DecisionColumns, keyExpr: "id",
			decode: func(m jetstream.Msg, meta *jetstream.MsgMetadata, r *row) error {
				d := &detectors.Decision{}
				if err := json.Unmarshal(m.Data(), d); err != nil {
					return err
				}
				if d.ID == "" {
					return errors.New("decision without id")
				}
				r.key, r.tenant, r.agent, r.date = d.ID, d.Tenant, d.Subject.Agent, dayOf(d.Time.UnixMilli())
				r.v = &recordRow{v: d, body: m.Data(), received: meta.Timestamp}
				return nil
			},
			newCols: func(int) colBuilder { return &decisionCols{} },
		}, nil
	case pipeline.RevocationsStream:
		return &table{
			name: TableRevocations, cols: CommandColumns, keyExpr: "id",
			decode: func(m jetstream.Msg, meta *jetstream.MsgMetadata, r *row) error {
				c := &enforce.Command{}
				if err := json.Unmarshal(m.Data(), c); err != nil {
					return err
				}
				if c.ID == "" {
					return errors.New("command without id")
				}
				r.key, r.tenant, r.agent, r.date = c.ID, c.Tenant, c.Agent, dayOf(c.IssuedAt.UnixMilli())
				r.v = &recordRow{v: c, received: meta.Timestamp}
				return nil
			},
			newCols: func(int) colBuilder { return &commandCols{} },
		}, nil
	case pipeline.AcksStream:
		return &table{
			name: TableAcks, cols: AckColumns, keyExpr: "concat(command_id, '/', enforcer)",
			decode: func(m jetstream.Msg, meta *jetstream.MsgMetadata, r *row) error {
				a := &enforce.Ack{}
				if err := json.Unmarshal(m.Data(), a); err != nil {
					return err
				}
				if a.CommandID == "" || a.Enforcer == "" {
					return errors.New("ack without command_id or enforcer")
				}
				r.key, r.tenant, r.date = enforce.AckMsgID(a.CommandID, a.Enforcer), a.Tenant, dayOf(a.AppliedAt.UnixMilli())
				r.v = &recordRow{v: a, received: meta.Timestamp}
				return nil
			},
			newCols: func(int) colBuilder { return &ackCols{} },
		}, nil
	case pipeline.DeadLetterStream:
		return &table{
			name: TableDeadLetters, cols: DeadLetterColumns, keyExpr: "toString(stream_seq)",
			decode: func(m jetstream.Msg, meta *jetstream.MsgMetadata, r *row) error {
				tenant := strings.TrimPrefix(m.Subject(), pipeline.DeadLetterSubjectPrefix)
				r.key, r.tenant, r.date = strconv.FormatUint(meta.Sequence.Stream, 10), tenant, dayOf(meta.Timestamp.UnixMilli())
				r.v = &deadLetterRow{subject: m.Subject(), reason: m.Headers().Get(pipeline.HeaderError), body: m.Data(), seq: meta.Sequence.Stream, received: meta.Timestamp}
				return nil
			},
			newCols: func(int) colBuilder { return &deadLetterCols{} },
		}, nil
	}
	return nil, fmt.Errorf("history: no table for stream %q", stream)
}

type eventRow struct {
	e        pipeline.Event
	seq      uint64
	received time.Time
	decided  bool
}

type recordRow struct {
	v        any
	body     []byte
	received time.Time
}

type deadLetterRow struct {
	subject, reason string
	body            []byte
	seq             uint64
	received        time.Time
}

// runStream reads one stream into batches and writes them in order. The
// reader decodes the next batch while the previous one is inserted.
func (w *Writer) runStream(ctx context.Context, stream string, cons jetstream.Consumer, t *table) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(w.cfg.BatchSize))
	if err != nil {
		return fmt.Errorf("history: consume %s: %w", stream, err)
	}
	defer it.Stop()
	go func() {
		<-ctx.Done()
		it.Stop()
	}()
	batches := make(chan *batch, 1)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(batches)
		return w.read(gctx, stream, it, t, batches)
	})
	// Acks go out from a goroutine of their own, so that the next insert
	// starts as soon as the previous one succeeded. A batch handed over is
	// acked even if the writer is stopping: its rows are stored.
	acks := make(chan *batch, 2)
	acked := make(chan struct{})
	go func() {
		defer close(acked)
		for b := range acks {
			for _, m := range b.msgs {
				w.ack(m)
			}
			for _, m := range b.skipped {
				w.ack(m)
			}
		}
	}()
	g.Go(func() error {
		defer close(acks)
		for b := range batches {
			if err := w.write(gctx, stream, t, b, acks); err != nil {
				return err
			}
		}
		return nil
	})
	err = g.Wait()
	<-acked
	return err
}

func (w *Writer) read(ctx context.Context, stream string, it jetstream.MessagesContext, t *table, out chan<- *batch) error {
	b := &batch{}
	flush := func() error {
		if len(b.msgs) == 0 && len(b.skipped) == 0 {
			return nil
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
		b = &batch{}
		return nil
	}
	for {
		wait := w.cfg.FlushInterval
		if !b.first.IsZero() {
			wait = w.cfg.FlushInterval - time.Since(b.first)
			if wait <= 0 {
				if err := flush(); err != nil {
					return err
				}
				continue
			}
		}
		m, err := it.Next(jetstream.NextMaxWait(wait))
		if errors.Is(err, nats.ErrTimeout) {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("history: read %s: %w", stream, err)
		}
		if b.first.IsZero() {
			b.first = time.Now()
		}
		meta, err := m.Metadata()
		if err != nil {
			b.skipped = append(b.skipped, m)
			continue
		}
		var r row
		if err := t.decode(m, meta, &r); err != nil {
			// Malformed events are already in the dead-letter stream (the
			// detector put them there with the reason); other streams are
			// written only by Tripline. Either way the message is skipped.
			w.m.skipped.WithLabelValues(t.name).Inc()
			w.log.Debug().Str("stream", stream).Uint64("seq", meta.Sequence.Stream).Err(err).Msg("skipping undecodable message")
			b.skipped = append(b.skipped, m)
			continue
		}
		if meta.NumDelivered > 1 {
			b.check = true
		}
		b.msgs = append(b.msgs, m)
		b.rows = append(b.rows, r)
		if b.cols == nil {
			b.cols, b.keys = t.newCols(w.cfg.BatchSize), make(map[string]struct{}, w.cfg.BatchSize)
		}
		if _, ok := b.keys[r.key]; ok {
			b.dup = true
		} else {
			b.keys[r.key] = struct{}{}
		}
		b.cols.addRow(&b.rows[len(b.rows)-1])
		if len(b.rows) >= w.cfg.BatchSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// write inserts a batch, retrying until it succeeds or ctx ends, then acks
// its messages.
func (w *Writer) write(ctx context.Context, stream string, t *table, b *batch, acks chan<- *batch) error {
	log := w.log.With().Str("stream", stream).Str("table", t.name).Logger()
	backoff := w.cfg.RetryMin
	lastProgress := time.Now()
	for attempt := 1; ; attempt++ {
		n, err := w.insert(ctx, t, b)
		if err == nil {
			if attempt > 1 {
				log.Info().Int("attempts", attempt).Int("rows", n).Msg("ClickHouse insert succeeded after retries")
			}
			w.setErr(nil)
			w.m.rows.WithLabelValues(t.name).Add(float64(n))
			w.m.lastWrite.WithLabelValues(t.name).SetToCurrentTime()
			if w.crashAfterInsert != nil && w.crashAfterInsert(t.name) {
				return errCrash
			}
			acks <- b
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The insert may or may not have been applied: look the keys up
		// before the next attempt.
		b.check = true
		w.setErr(err)
		w.m.insertErrors.WithLabelValues(t.name).Inc()
		lvl := log.Warn()
		if attempt == 1 || attempt%10 == 0 {
			lvl = log.Error()
		}
		lvl.Err(err).Int("attempt", attempt).Int("rows", len(b.rows)).Dur("retry_in", backoff).Msg("ClickHouse insert failed; JetStream keeps the backlog")
		// Keep the batch's messages from being redelivered while we wait.
		if time.Since(lastProgress) > w.cfg.AckWait/4 || backoff > w.cfg.AckWait/4 {
			for _, m := range b.msgs {
				_ = m.InProgress()
			}
			lastProgress = time.Now()
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		for _, m := range b.msgs {
			_ = m.InProgress()
		}
		lastProgress = time.Now()
		backoff = min(2*backoff, w.cfg.RetryMax)
	}
}

func (w *Writer) ack(m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		// The message comes again after AckWait and the key check drops it.
		w.log.Debug().Err(err).Msg("ack failed")
	}
}

// insert writes the batch's rows that are not stored yet and returns how
// many it wrote.
func (w *Writer) insert(ctx context.Context, t *table, b *batch) (int, error) {
	if len(b.rows) == 0 {
		return 0, nil
	}
	if !b.check && !b.dup {
		// The common case: every message is new, the columns are built.
		return len(b.rows), w.send(ctx, t, b.cols.columns())
	}
	rows := dedupRows(b.rows)
	if b.check && len(rows) > 0 {
		have, err := w.existing(ctx, t, rows)
		if err != nil {
			return 0, err
		}
		if len(have) > 0 {
			kept := rows[:0:0]
			for _, r := range rows {
				if !have[r.key] {
					kept = append(kept, r)
				}
			}
			w.m.duplicates.WithLabelValues(t.name).Add(float64(len(rows) - len(kept)))
			rows = kept
		}
	}
	if len(rows) == 0 {
		return 0, nil
	}
	return len(rows), w.send(ctx, t, t.build(rows))
}

func (w *Writer) send(ctx context.Context, t *table, cols []any) error {
	start := time.Now()
	ictx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := appendColumns(ictx, w.s.Conn, insertSQL(w.s.T(t.name), t.cols), cols); err != nil {
		return err
	}
	w.m.insertSeconds.WithLabelValues(t.name).Observe(time.Since(start).Seconds())
	return nil
}

// dedupRows drops rows whose key came earlier in the same batch.
func dedupRows(rows []row) []row {
	seen := make(map[string]struct{}, len(rows))
	out := rows[:0:0]
	for _, r := range rows {
		if _, ok := seen[r.key]; ok {
			continue
		}
		seen[r.key] = struct{}{}
		out = append(out, r)
	}
	return out
}

// existing returns the keys of rows already in the table. The query is
// narrowed by date partition, tenant and, for events, agent (the head of
// the sort key), so it reads little even on a large table.
func (w *Writer) existing(ctx context.Context, t *table, rows []row) (map[string]bool, error) {
	keys := make([]string, 0, len(rows))
	tenants, agents, dates := map[string]bool{}, map[string]bool{}, map[time.Time]bool{}
	for _, r := range rows {
		keys = append(keys, r.key)
		tenants[r.tenant] = true
		agents[r.agent] = true
		dates[r.date] = true
	}
	q := "SELECT " + t.keyExpr + " AS k FROM " + w.s.T(t.name) + " WHERE date IN ? AND tenant IN ? AND k IN ?"
	args := []any{InList(dateStrings(dates)), InList(setList(tenants)), InList(keys)}
	if t.name == TableEvents {
		q += " AND agent IN ?"
		args = append(args, InList(setList(agents)))
	}
	res, err := w.s.Conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("look up stored keys: %w", err)
	}
	defer res.Close()
	have := map[string]bool{}
	for res.Next() {
		var k string
		if err := res.Scan(&k); err != nil {
			return nil, err
		}
		have[k] = true
	}
	return have, res.Err()
}

func setList(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func dateStrings(m map[time.Time]bool) []string {
	out := make([]string, 0, len(m))
	for d := range m {
		out = append(out, d.Format("2006-01-02"))
	}
	return out
}

// watchLag exports the consumer's backlog (pending + unacknowledged).
func (w *Writer) watchLag(ctx context.Context, stream string, cons jetstream.Consumer) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := cons.Info(ictx)
		cancel()
		if err == nil {
			w.m.lag.WithLabelValues(stream).Set(float64(info.NumPending + uint64(info.NumAckPending)))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type writerMetrics struct {
	rows          *prometheus.CounterVec
	skipped       *prometheus.CounterVec
	duplicates    *prometheus.CounterVec
	insertErrors  *prometheus.CounterVec
	insertSeconds *prometheus.HistogramVec
	lag           *prometheus.GaugeVec
	lastWrite     *prometheus.GaugeVec
}

func newWriterMetrics(reg prometheus.Registerer) *writerMetrics {
	m := &writerMetrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "history", Name: "rows_total",
			Help: "Rows written to ClickHouse, by table.",
		}, []string{"table"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "history", Name: "skipped_total",
			Help: "Messages not written because they could not be decoded (malformed events are in the dead-letter table).",
		}, []string{"table"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "history", Name: "duplicates_dropped_total",
			Help: "Redelivered rows found already stored and not written again.",
		}, []string{"table"}),
		insertErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "history", Name: "insert_errors_total",
			Help: "Failed insert attempts (each is retried with backoff).",
		}, []string{"table"}),
		insertSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "tripline", Subsystem: "history", Name: "insert_seconds",
			Help:    "Time of one successful batch insert.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"table"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "tripline", Subsystem: "history", Name: "lag_messages",
			Help: "Messages of a stream not yet written to ClickHouse (pending + unacknowledged).",
		}, []string{"stream"}),
		lastWrite: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "tripline", Subsystem: "history", Name: "last_write_timestamp_seconds",
			Help: "Unix time of the last successful insert, by table.",
		}, []string{"table"}),
	}
	if reg != nil {
		reg.MustRegister(m.rows, m.skipped, m.duplicates, m.insertErrors, m.insertSeconds, m.lag, m.lastWrite)
	}
	return m
}

// colBuilder accumulates decoded rows as columns.
type colBuilder interface {
	addRow(r *row)
	columns() []any
}

func (c *eventCols) addRow(r *row) {
	er := r.v.(*eventRow)
	c.add(&er.e, er.seq, er.received, er.decided)
}

func (c *decisionCols) addRow(r *row) {
	rr := r.v.(*recordRow)
	c.add(rr.v.(*detectors.Decision), rr.body, rr.received)
}

func (c *commandCols) addRow(r *row) {
	rr := r.v.(*recordRow)
	c.add(rr.v.(*enforce.Command), rr.received)
}

func (c *ackCols) addRow(r *row) {
	rr := r.v.(*recordRow)
	c.add(rr.v.(*enforce.Ack), rr.received)
}

func (c *deadLetterCols) addRow(r *row) {
	d := r.v.(*deadLetterRow)
	c.add(r.tenant, d.subject, d.reason, d.body, d.seq, d.received)
}

// build returns the columns of rows.
func (t *table) build(rows []row) []any {
	c := t.newCols(len(rows))
	for i := range rows {
		c.addRow(&rows[i])
	}
	return c.columns()
}
