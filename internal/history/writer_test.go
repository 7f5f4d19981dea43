package history_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/chtest"
	"github.com/tripline/tripline/internal/config"
	"github.com/tripline/tripline/internal/detect"
	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/internal/natstest"
	"github.com/tripline/tripline/internal/testgen"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
	"github.com/tripline/tripline/rules"
)

type wenv struct {
	t    *testing.T
	srv  *natstest.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	topo topology.Config
	s    *history.Schema
}

func newWEnv(t *testing.T, chAddr string) *wenv {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	topo := topology.Config{Partitions: 4}
	require.NoError(t, topology.Provision(context.Background(), js, topo))
	db := chtest.NewDB(t)
	addr := db.Addr
	if chAddr != "" {
		addr = chAddr
	}
	conn, err := history.Connect(config.ClickHouse{}, addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	s, err := history.Migrate(context.Background(), conn, db.Database, history.SchemaOptions{})
	require.NoError(t, err)
	return &wenv{t: t, srv: srv, nc: nc, js: js, topo: topo, s: s}
}

func (e *wenv) publish(evs []pipeline.Event) {
	ctx := context.Background()
	for i := range evs {
		ev := &evs[i]
		_, err := e.js.PublishAsync(pipeline.EventSubject(ev.Tenant, ev.Agent, e.topo.Partitions), ev.AppendJSON(nil), jetstream.WithMsgID(ev.ID))
		require.NoError(e.t, err)
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
		e.t.Fatal("publish did not complete")
	}
}

// startDetector runs a detector worker with the example rules until the
// test ends.
func (e *wenv) startDetector(lvl zerolog.Level) {
	set, err := rules.LoadPaths("../../rules/examples")
	require.NoError(e.t, err)
	_, priv, err := enforce.GenerateKey()
	require.NoError(e.t, err)
	nc, _ := e.srv.Connect(e.t)
	w, err := detect.New(context.Background(), nc, detect.Config{WorkerID: "w1", Topology: e.topo, Rules: set, Signer: enforce.NewSigner(priv),
		Logger: zerolog.New(zerolog.NewTestWriter(e.t)).Level(lvl)})
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

// startWriter runs a writer; stop cancels it and returns Run's error.
func (e *wenv) startWriter(cfg history.WriterConfig, hook func(string) bool) (w *history.Writer, stop func() error, done <-chan struct{}) {
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 500
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 100 * time.Millisecond
	}
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(e.t)).Level(zerolog.WarnLevel)
	w = history.NewWriter(e.js, e.s, cfg)
	if hook != nil {
		w.SetCrashAfterInsert(hook)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{})
	var err error
	go func() { err = w.Run(ctx); close(ch) }()
	stop = func() error {
		cancel()
		<-ch
		return err
	}
	e.t.Cleanup(func() { stop() })
	return w, stop, ch
}

// counts returns the rows of a table and the distinct keys among them.
func (e *wenv) counts(table, key string) (rows, distinct uint64) {
	err := e.s.Conn.QueryRow(context.Background(), "SELECT count(), uniqExact("+key+") FROM "+e.s.T(table)).Scan(&rows, &distinct)
	require.NoError(e.t, err)
	return rows, distinct
}

func (e *wenv) waitRows(table string, want uint64, within time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		rows, _ := e.counts(table, "1")
		if rows >= want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: %d rows after %s, want %d", table, rows, within, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Every event is written exactly once across a crash between insert and
// ack (the messages are redelivered), a restart, and producer retries of
// the same event id; malformed events are skipped (they are dead-lettered
// by the detector).
func TestWriterExactlyOnceAcrossCrashAndRedelivery(t *testing.T) {
	e := newWEnv(t, "")
	evs := testgen.Events(testgen.Config{Events: 3000, Seed: 11, Tenants: 2})
	e.publish(evs[:2000])
	// One malformed message on an events subject.
	_, err := e.js.Publish(context.Background(), pipeline.EventsSubjectPrefix+"acme.0", []byte(`{"id": 1`))
	require.NoError(t, err)

	// First writer: its second insert into events "crashes" before the acks.
	var inserts atomic.Int32
	_, stop, done := e.startWriter(history.WriterConfig{AckWait: time.Second}, func(table string) bool {
		return table == history.TableEvents && inserts.Add(1) == 2
	})
	select {
	case <-done:
		require.ErrorIs(t, stop(), history.ErrCrash)
	case <-time.After(30 * time.Second):
		t.Fatal("writer did not reach the crash")
	}
	rows, _ := e.counts(history.TableEvents, "id")
	require.Greater(t, rows, uint64(0), "the crashed batch was inserted")

	// Restart; the unacked messages come back after AckWait and are
	// found already stored. Then more events, some of them published again.
	reg := prometheus.NewRegistry()
	e.startWriter(history.WriterConfig{AckWait: time.Second, Registerer: reg}, nil)
	e.publish(evs[2000:])
	e.waitRows(history.TableEvents, 3000, 60*time.Second)
	// Producer retries outside the dedup window are new stream messages.
	time.Sleep(time.Second)
	rows, distinct := e.counts(history.TableEvents, "id")
	require.Equal(t, uint64(3000), distinct)
	require.Equal(t, uint64(3000), rows, "duplicate rows written")
	require.Greater(t, testutil.ToFloat64(mustVec(reg, "tripline_history_duplicates_dropped_total")), 0.0, "redelivered rows were not recognised")

	// The ids stored are exactly the ids published.
	res, err := e.s.Conn.Query(context.Background(), "SELECT id FROM "+e.s.T(history.TableEvents))
	require.NoError(t, err)
	got := map[string]bool{}
	for res.Next() {
		var id string
		require.NoError(t, res.Scan(&id))
		got[id] = true
	}
	res.Close()
	for _, ev := range evs {
		require.True(t, got[ev.ID], "event %s missing", ev.ID)
	}
}

func mustVec(reg *prometheus.Registry, name string) prometheus.Collector {
	return gathered{reg, name}
}

// gathered sums a metric family from a registry, for testutil.ToFloat64.
type gathered struct {
	reg  *prometheus.Registry
	name string
}

func (g gathered) Describe(ch chan<- *prometheus.Desc) {}
func (g gathered) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := g.reg.Gather()
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != g.name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(g.name, "sum", nil, nil), prometheus.UntypedValue, sum)
}

// ClickHouse stops while events are published: the detector keeps
// deciding and revoking meanwhile, the writer reports the error and its
// lag, and once ClickHouse is back everything is written exactly once.
func TestClickHouseOutage(t *testing.T) {
	ch := chtest.StartOwn(t)
	e := newWEnv(t, ch.Addr())
	ctx := context.Background()

	e.startDetector(zerolog.WarnLevel)

	reg := prometheus.NewRegistry()
	w, _, _ := e.startWriter(history.WriterConfig{RetryMin: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond, Registerer: reg}, nil)

	before := testgen.Events(testgen.Config{Events: 1000, Seed: 5})
	e.publish(before)
	e.waitRows(history.TableEvents, 1000, 30*time.Second)

	require.NoError(t, ch.Stop())
	// While ClickHouse is down: attacks are still detected and revoked.
	during := testgen.Events(testgen.Config{Events: 2000, Seed: 6, Exfil: 3, Start: testgen.DefaultStart.Add(time.Hour)})
	for i := range during {
		during[i].ID = "during-" + during[i].ID
	}
	revsBefore := streamCount(t, e.js, pipeline.RevocationsStream)
	e.publish(during)
	require.Eventually(t, func() bool {
		return streamCount(t, e.js, pipeline.RevocationsStream) >= revsBefore+3
	}, 30*time.Second, 50*time.Millisecond, "revocations stopped while ClickHouse was down")
	require.Eventually(t, func() bool { return w.Healthy() != nil }, 30*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(mustVec(reg, "tripline_history_lag_messages")) > 0
	}, 30*time.Second, 100*time.Millisecond, "lag not reported")
	time.Sleep(time.Second) // a few failed attempts

	require.NoError(t, ch.Restart(ctx))
	defer func() {
		if t.Failed() {
			c, _ := e.js.Consumer(ctx, pipeline.EventsStream, "tl_history")
			info, _ := c.Info(ctx)
			t.Logf("consumer: pending %d ack pending %d redelivered %d delivered %+v ackfloor %+v", info.NumPending, info.NumAckPending, info.NumRedelivered, info.Delivered, info.AckFloor)
		}
	}()
	e.waitRows(history.TableEvents, 3000, 60*time.Second)
	require.Eventually(t, func() bool { return w.Healthy() == nil }, 30*time.Second, 50*time.Millisecond)
	rows, distinct := e.counts(history.TableEvents, "id")
	require.Equal(t, uint64(3000), rows)
	require.Equal(t, uint64(3000), distinct)
	// Decisions and revocations made during the outage reached history too.
	revs := streamCount(t, e.js, pipeline.RevocationsStream)
	e.waitRows(history.TableRevocations, revs, 30*time.Second)
	decs := streamCount(t, e.js, pipeline.DecisionsStream)
	e.waitRows(history.TableDecisions, decs, 30*time.Second)
	r, d := e.counts(history.TableDecisions, "id")
	require.Equal(t, r, d, "duplicate decisions")
	require.Greater(t, testutil.ToFloat64(mustVec(reg, "tripline_history_insert_errors_total")), 0.0)
}

func streamCount(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	st, err := js.Stream(context.Background(), stream)
	require.NoError(t, err)
	info, err := st.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}
