package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tripline/tripline/internal/chserver"
	"github.com/tripline/tripline/internal/config"
	"github.com/tripline/tripline/internal/embednats"
	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/internal/testgen"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline"
)

// HistoryDetail is what one run of the history writer figure saw.
type HistoryDetail struct {
	Rows          int     `json:"rows"`
	Seconds       float64 `json:"seconds"`
	RowsPerSec    float64 `json:"rows_per_second"`
	RawSeconds    float64 `json:"raw_seconds"`
	RawRowsPerSec float64 `json:"raw_rows_per_second"`
	// InsertSeconds is the time the writer spent in its inserts (its
	// insert_seconds histogram), of Seconds: the rest is the reading,
	// decoding and acking that the inserts did not hide.
	InsertSeconds float64 `json:"writer_insert_seconds"`
	// RawFirst: the order was raw, writer, writer, raw (else the reverse).
	RawFirst bool `json:"raw_first"`
	// Rows counted afterwards in the writer's table and in the raw
	// reference's: each must equal Rows (none lost, none duplicated).
	StoredRows    uint64 `json:"stored_rows"`
	RawStoredRows uint64 `json:"raw_stored_rows"`
}

const (
	// histBatch is the writer's batch size (its default) and the size of
	// the raw reference's inserts.
	histBatch = 20_000
	// histFlush is the writer's flush interval in the writer figure: the
	// last, partial batch of a half waits this long for more rows (the
	// default, 1s, would weigh on a figure of a few seconds).
	histFlush = 200 * time.Millisecond
	// liveDurable and figDurable name the consumers of the pipeline phase's
	// writer and of the writer figure's.
	liveDurable = "bench_history"
	figDurable  = "bench_writer"
	// The writer's counters the pipeline phase reads.
	metricRows          = "tripline_history_rows_total"
	metricInsertErrors  = "tripline_history_insert_errors_total"
	metricInsertSeconds = "tripline_history_insert_seconds"
)

// historyStreams are the streams `tripline serve`'s history writer copies.
var historyStreams = []string{pipeline.EventsStream, pipeline.DecisionsStream, pipeline.RevocationsStream, pipeline.AcksStream, pipeline.DeadLetterStream}

// histEnv is what the history figures need: a ClickHouse server (a child
// process in the data directory, or the existing one of
// Config.ClickHouseAddr), databases of the benchmark's own, and a NATS
// server for the writer figure alone. The writer copies streams by name,
// so the writer figure's stream must be called like the events stream,
// yet must not feed the detector: it lives on a server of its own.
type histEnv struct {
	log     zerolog.Logger
	srv     *chserver.Server // nil on an existing server
	addr    string
	conn    driver.Conn
	base    string // prefix of the benchmark's database names
	version string
	live    *history.Schema // where the pipeline phase's writer writes

	ns     *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	pubErr *errCount
	topo   topology.Config
	rows   []pipeline.Event
	msgs   []histMsg
}

// histMsg is one row of the writer figure as a producer publishes it.
type histMsg struct {
	subject, id string
	data        []byte
}

// startHistory starts (or connects to) ClickHouse, migrates the pipeline
// phase's database, starts the writer figure's NATS server and generates
// its rows.
func (e *env) startHistory(ctx context.Context, sd *SetupDetail) (err error) {
	h := &histEnv{log: e.log, addr: e.cfg.ClickHouseAddr, pubErr: &errCount{}, topo: e.topo}
	e.hist = h
	defer func() {
		if err != nil {
			e.closeHistory()
			e.hist = nil
		}
	}()
	t0 := time.Now()
	if h.addr == "" {
		dir := filepath.Join(e.dir, "clickhouse")
		if h.srv, err = chserver.Start(ctx, chserver.Options{Dir: dir}); err != nil {
			return err
		}
		h.addr = h.srv.Addr()
		sd.ClickHouse = "clickhouse-server child process on " + h.addr + ", data in " + dir
	} else {
		sd.ClickHouse = "existing server at " + h.addr
	}
	if h.conn, err = history.Connect(config.ClickHouse{}, h.addr); err != nil {
		return fmt.Errorf("connect to %s: %w", h.addr, err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	h.base = "tripline_bench_" + hex.EncodeToString(b)
	if h.live, err = h.fresh(ctx, h.base+"_pipeline"); err != nil {
		return err
	}
	h.version = h.live.Dialect.Version.String()
	sd.ClickHouseVersion, sd.ClickHouseDatabases = h.version, h.base+"_{pipeline,writer,raw}"
	sd.ClickHouseStartSeconds = round(time.Since(t0).Seconds())
	e.p.printf("bench: ClickHouse %s: %s (ready in %s); databases %s_*",
		h.version, sd.ClickHouse, time.Since(t0).Round(time.Millisecond), h.base)

	if h.ns, err = embednats.Start(embednats.Options{StoreDir: filepath.Join(e.dir, "history-nats"), ServerName: "bench-history"}); err != nil {
		return err
	}
	if h.nc, err = nats.Connect(h.ns.ClientURL(), nats.Name("bench-history-producer")); err != nil {
		return err
	}
	if h.js, err = jetstream.New(h.nc, jetstream.WithPublishAsyncMaxPending(maxPending),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) { h.pubErr.add(err) })); err != nil {
		return err
	}
	n := 2 * (e.cfg.HistoryRows / 2)
	h.rows = testgen.Events(testgen.Config{Seed: 1, Events: n, Agents: e.cfg.Agents, SessionsPerAgent: max(1, e.cfg.Sessions/e.cfg.Agents)})
	h.msgs = make([]histMsg, len(h.rows))
	for i := range h.rows {
		ev := &h.rows[i]
		h.msgs[i] = histMsg{subject: pipeline.EventSubject(ev.Tenant, ev.Agent, h.topo.Partitions), id: ev.ID, data: ev.AppendJSON(nil)}
	}
	return nil
}

// fresh drops database and migrates it anew.
func (h *histEnv) fresh(ctx context.Context, database string) (*history.Schema, error) {
	if err := h.conn.Exec(ctx, "DROP DATABASE IF EXISTS "+database); err != nil {
		return nil, fmt.Errorf("drop database %s: %w", database, err)
	}
	return history.Migrate(ctx, h.conn, database, history.SchemaOptions{})
}

// closeHistory drops the benchmark's databases on an existing server and
// stops what startHistory started.
func (e *env) closeHistory() {
	h := e.hist
	if h == nil {
		return
	}
	if h.conn != nil {
		if h.srv == nil && h.base != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			for _, db := range []string{"_pipeline", "_writer", "_raw"} {
				if err := h.conn.Exec(ctx, "DROP DATABASE IF EXISTS "+h.base+db); err != nil {
					e.log.Warn().Err(err).Str("database", h.base+db).Msg("bench: could not drop a database of the benchmark")
				}
			}
			cancel()
		}
		h.conn.Close()
	}
	if h.nc != nil {
		h.nc.Close()
	}
	if h.ns != nil {
		h.ns.Shutdown()
		h.ns.WaitForShutdown()
	}
	if h.srv != nil {
		if err := h.srv.Stop(); err != nil {
			e.log.Warn().Err(err).Msg("bench: stopping ClickHouse")
		}
	}
}

// writerFigure measures the history writer and its raw reference in an
// ABBA order on two halves of the rows (raw, writer, writer, raw; the
// reverse in even runs), each into a freshly migrated database of its own.
//
// A writer half publishes its rows to the events stream first (untimed),
// then times a writer started on it until every message is acked, which
// it does only after the insert holding it succeeded. A raw half times
// history.Schema.InsertEvents of the same rows, decoded, in batches of the
// writer's size.
func (e *env) writerFigure(ctx context.Context, run int, f *Figure, d *RunDetail) error {
	h := e.hist
	hd := &HistoryDetail{Rows: len(h.rows), RawFirst: run%2 == 1}
	d.History = hd
	fail := func(err error) error {
		f.fail(run, err)
		d.Errors = append(d.Errors, "history: "+err.Error())
		return err
	}
	ws, err := h.fresh(ctx, h.base+"_writer")
	if err != nil {
		return fail(err)
	}
	rs, err := h.fresh(ctx, h.base+"_raw")
	if err != nil {
		return fail(err)
	}
	for _, sc := range h.topo.Streams() {
		_ = h.js.DeleteStream(ctx, sc.Name)
	}
	if err := topology.Provision(ctx, h.js, h.topo); err != nil {
		return fail(err)
	}
	half := len(h.rows) / 2
	var wEl, rEl, insEl time.Duration
	var errs []error
	raw := func(lo, hi int) {
		h.settle(ctx)
		el, err := h.rawInsert(ctx, rs, h.rows[lo:hi])
		if err != nil {
			errs = append(errs, fmt.Errorf("raw insert: %w", err))
			return
		}
		rEl += el
		e.p.printf("run %d  history    raw insert:     %s rows in %s = %s rows/s", run, group(int64(hi-lo)), el.Round(time.Millisecond), group(int64(float64(hi-lo)/el.Seconds())))
	}
	writer := func(lo, hi int) {
		if err := h.publish(ctx, lo, hi); err != nil {
			errs = append(errs, fmt.Errorf("publish: %w", err))
			return
		}
		h.settle(ctx)
		el, ins, err := h.writerHalf(ctx, ws)
		if err != nil {
			errs = append(errs, fmt.Errorf("writer: %w", err))
			return
		}
		wEl += el
		insEl += ins
		e.p.printf("run %d  history    history writer: %s rows in %s = %s rows/s (%s of it in inserts)", run, group(int64(hi-lo)), el.Round(time.Millisecond), group(int64(float64(hi-lo)/el.Seconds())), ins.Round(time.Millisecond))
	}
	if hd.RawFirst {
		raw(0, half)
		writer(0, half)
		writer(half, len(h.rows))
		raw(half, len(h.rows))
	} else {
		writer(0, half)
		raw(0, half)
		raw(half, len(h.rows))
		writer(half, len(h.rows))
	}
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}
	if hd.StoredRows, err = count(ctx, ws); err == nil {
		hd.RawStoredRows, err = count(ctx, rs)
	}
	if err != nil {
		return fail(fmt.Errorf("count rows: %w", err))
	}
	if hd.StoredRows != uint64(len(h.rows)) || hd.RawStoredRows != uint64(len(h.rows)) {
		return fail(fmt.Errorf("%d rows written, but the writer's table holds %d and the raw reference's %d", len(h.rows), hd.StoredRows, hd.RawStoredRows))
	}
	hd.Seconds, hd.RowsPerSec = round(wEl.Seconds()), round(float64(len(h.rows))/wEl.Seconds())
	hd.RawSeconds, hd.RawRowsPerSec = round(rEl.Seconds()), round(float64(len(h.rows))/rEl.Seconds())
	hd.InsertSeconds = round(insEl.Seconds())
	f.add(hd.RowsPerSec, hd.RawRowsPerSec)
	e.p.printf("run %d  history    writer %s rows/s, raw insert %s rows/s: ratio %.2f; %s rows stored by each",
		run, group(int64(hd.RowsPerSec)), group(int64(hd.RawRowsPerSec)), hd.RowsPerSec/hd.RawRowsPerSec, group(int64(hd.StoredRows)))
	return nil
}

// rawInsert inserts rows in batches of the writer's size, one after the
// other, and returns the time it took.
func (h *histEnv) rawInsert(ctx context.Context, s *history.Schema, rows []pipeline.Event) (time.Duration, error) {
	t0 := time.Now()
	for lo := 0; lo < len(rows); lo += histBatch {
		if err := s.InsertEvents(ctx, rows[lo:min(lo+histBatch, len(rows))]); err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}

// publish publishes rows [lo, hi) to the events stream, as producers do,
// and waits until JetStream has stored them all.
func (h *histEnv) publish(ctx context.Context, lo, hi int) error {
	for _, m := range h.msgs[lo:hi] {
		if _, err := h.js.PublishMsgAsync(eventMsg(m.subject, m.id, m.data), jetstream.WithStallWait(time.Minute)); err != nil {
			return err
		}
	}
	return flushAsync(ctx, h.js, h.pubErr)
}

// writerHalf starts a writer of the events stream into s, on a connection
// of its own as in a deployment, and returns the time from its start until
// the stream's consumer has nothing pending or unacknowledged, and the time
// it spent in inserts. The writer resumes the durable consumer of the half
// before, if any.
func (h *histEnv) writerHalf(ctx context.Context, s *history.Schema) (el, inserts time.Duration, err error) {
	nc, err := nats.Connect(h.ns.ClientURL(), nats.Name("bench-history-writer"))
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, 0, err
	}
	reg := prometheus.NewRegistry()
	w := history.NewWriter(js, s, history.WriterConfig{
		Streams: []string{pipeline.EventsStream}, Durable: figDurable, BatchSize: histBatch, FlushInterval: histFlush,
		Logger: h.log, Registerer: reg,
	})
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	t0 := time.Now()
	go func() { done <- w.Run(wctx) }()
	defer func() {
		cancel()
		<-done
	}()
	cons, err := findConsumers(ctx, h.js, []string{pipeline.EventsStream}, figDurable, done)
	if err != nil {
		return 0, 0, err
	}
	if el, err = waitAcked(ctx, t0, cons); err != nil {
		return 0, 0, err
	}
	return el, time.Duration(gatherSum(reg, metricInsertSeconds) * float64(time.Second)), nil
}

// settle waits, at most 10s, until ClickHouse merges nothing, so that the
// parts of a phase before are not merged during the next measurement.
func (h *histEnv) settle(ctx context.Context) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var n uint64
		if err := h.conn.QueryRow(ctx, "SELECT count() FROM system.merges").Scan(&n); err != nil || n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// findConsumers waits until the writer has created its consumer (durable
// name) on every stream, and returns them. done reports the writer's end.
func findConsumers(ctx context.Context, js jetstream.JetStream, streams []string, durable string, done <-chan error) ([]jetstream.Consumer, error) {
	deadline := time.Now().Add(30 * time.Second)
	cons := make([]jetstream.Consumer, 0, len(streams))
	for _, st := range streams {
		for {
			c, err := js.Consumer(ctx, st, durable)
			if err == nil {
				cons = append(cons, c)
				break
			}
			if !errors.Is(err, jetstream.ErrConsumerNotFound) || time.Now().After(deadline) {
				return nil, fmt.Errorf("history writer's consumer on %s: %w", st, err)
			}
			select {
			case err := <-done:
				return nil, fmt.Errorf("history writer stopped: %v", err)
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(pollEvery):
			}
		}
	}
	return cons, nil
}

func count(ctx context.Context, s *history.Schema) (uint64, error) {
	var n uint64
	err := s.Conn.QueryRow(ctx, "SELECT count() FROM "+s.T(history.TableEvents)).Scan(&n)
	return n, err
}

// liveHistory is the history writer of the pipeline phase: it copies the
// streams `tripline serve` copies into ClickHouse, on a connection of its
// own, with the production batch size and flush interval.
type liveHistory struct {
	reg    *prometheus.Registry
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
	cons   []jetstream.Consumer
}

// startLive starts the pipeline phase's writer, on a connection of its
// own, and waits until it has caught up with the streams (the backlog of
// the phases before), which it reports.
func (e *env) startLive(ctx context.Context, run int) error {
	h := e.hist
	nc, err := nats.Connect(e.srv.ClientURL(), nats.Name("bench-history"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect history writer: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return err
	}
	// A registry per writer: its counters start at zero.
	l := &liveHistory{reg: prometheus.NewRegistry()}
	e.live = l
	w := history.NewWriter(js, h.live, history.WriterConfig{
		Streams: historyStreams, Durable: liveDurable, Logger: e.log, Registerer: l.reg,
	})
	wctx, cancel := context.WithCancel(context.Background())
	l.nc, l.cancel, l.done = nc, cancel, make(chan error, 1)
	go func() { l.done <- w.Run(wctx) }()
	if l.cons, err = findConsumers(ctx, e.cliJS, historyStreams, liveDurable, l.done); err != nil {
		e.stopLive()
		return err
	}
	el, err := waitAcked(ctx, time.Now(), l.cons)
	if err != nil {
		e.stopLive()
		return fmt.Errorf("history writer catching up: %w", err)
	}
	h.settle(ctx)
	e.p.printf("run %d  pipeline   history writer on (ClickHouse %s, database %s): caught up with %s rows of backlog in %s",
		run, h.version, h.live.Database, group(int64(l.sum(metricRows))), el.Round(time.Millisecond))
	return nil
}

// stopLive stops the pipeline phase's writer; its consumers stay, so the
// next start resumes where it stopped.
func (e *env) stopLive() {
	l := e.live
	if !l.running() {
		return
	}
	l.cancel()
	select {
	case err := <-l.done:
		if err != nil {
			e.log.Warn().Err(err).Msg("bench: history writer stopped with an error")
		}
	case <-time.After(30 * time.Second):
		e.log.Warn().Msg("bench: history writer did not stop within 30s")
	}
	l.nc.Close()
	l.nc, l.cancel, l.cons = nil, nil, nil
}

// running reports whether the pipeline phase's writer is on.
func (l *liveHistory) running() bool { return l != nil && l.cancel != nil }

// sum returns the sum of the writer's counter name over its labels.
func (l *liveHistory) sum(name string) float64 { return gatherSum(l.reg, name) }

// gatherSum returns the sum over the labels of the counter, or of the
// histogram's sums, called name in reg.
func gatherSum(reg *prometheus.Registry, name string) float64 {
	var n float64
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				n += h.GetSampleSum()
			} else {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
