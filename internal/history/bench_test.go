package history_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/chtest"
	"github.com/tripline/tripline/internal/config"
	"github.com/tripline/tripline/internal/embednats"
	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/internal/testgen"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline"
)

// BenchmarkWriterVsRawInsert measures the history writer (JetStream pull,
// decode, columnar insert, ack) against a raw clickhouse-go columnar batch
// insert of the same rows into a table of the same definition, in the
// same run. Reports rows/s of each and their ratio.
//
//	go test ./internal/history -run '^$' -bench WriterVsRawInsert -benchtime 3x
func BenchmarkWriterVsRawInsert(b *testing.B) {
	const n = 200_000
	ctx := context.Background()
	ns, err := embednats.Start(embednats.Options{StoreDir: b.TempDir()})
	require.NoError(b, err)
	defer ns.Shutdown()
	db := chtest.NewDB(b)
	conn, err := history.Connect(config.ClickHouse{}, db.Addr)
	require.NoError(b, err)
	defer conn.Close()
	s, err := history.Migrate(ctx, conn, db.Database, history.SchemaOptions{})
	require.NoError(b, err)
	evs := testgen.Events(testgen.Config{Events: n, Seed: 1, Agents: 200})

	var writerRate, rawRate float64
	for i := 0; i < b.N; i++ {
		// A fresh stream and tables per round.
		nc, js := natsConn(b, ns.ClientURL())
		topo := topology.Config{Partitions: 4, Memory: false}
		js.DeleteStream(ctx, pipeline.EventsStream)
		require.NoError(b, topology.Provision(ctx, js, topo))
		require.NoError(b, conn.Exec(ctx, "DROP DATABASE "+db.Database))
		s, err = history.Migrate(ctx, conn, db.Database, history.SchemaOptions{})
		require.NoError(b, err)
		// The raw reference writes to an identical schema (materialized
		// view included) in a database of its own.
		require.NoError(b, conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db.Database+"_raw"))
		rawS, err := history.Migrate(ctx, conn, db.Database+"_raw", history.SchemaOptions{})
		require.NoError(b, err)
		for j := range evs {
			_, err := js.PublishAsync(pipeline.EventSubject(evs[j].Tenant, evs[j].Agent, topo.Partitions), evs[j].AppendJSON(nil), jetstream.WithMsgID(evs[j].ID), jetstream.WithStallWait(time.Minute))
			require.NoError(b, err)
		}
		<-js.PublishAsyncComplete()

		b.StartTimer()
		// Raw: the same rows, 20k per batch, straight into ClickHouse.
		start := time.Now()
		for lo := 0; lo < n; lo += 20_000 {
			require.NoError(b, rawS.InsertEvents(ctx, evs[lo:min(lo+20_000, n)]))
		}
		raw := time.Since(start)

		// Writer: from the stream to the table, until every row is there.
		w := history.NewWriter(js, s, history.WriterConfig{Streams: []string{pipeline.EventsStream}, FlushInterval: 200 * time.Millisecond})
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		start = time.Now()
		go func() { defer close(done); w.Run(wctx) }()
		for {
			var c uint64
			require.NoError(b, conn.QueryRow(ctx, "SELECT count() FROM "+s.T("events")).Scan(&c))
			if c >= n {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		wr := time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		nc.Close()
		writerRate += n / wr.Seconds()
		rawRate += n / raw.Seconds()
	}
	writerRate /= float64(b.N)
	rawRate /= float64(b.N)
	b.ReportMetric(writerRate, "writer_rows/s")
	b.ReportMetric(rawRate, "raw_rows/s")
	b.ReportMetric(writerRate/rawRate, "ratio")
}

func natsConn(b *testing.B, url string) (*nats.Conn, jetstream.JetStream) {
	nc, err := nats.Connect(url)
	require.NoError(b, err)
	js, err := jetstream.New(nc)
	require.NoError(b, err)
	return nc, js
}
