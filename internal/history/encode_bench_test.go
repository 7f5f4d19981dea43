package history_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/internal/testgen"
)

// BenchmarkEventColumns measures the writer's hot path between decoding
// and sending: building the insert columns of a batch of decoded events
// (an append per column per row, attributes sorted and secrets redacted),
// at a small batch and at the writer's default size. ns/event and
// events/s are per row; B/op and allocs/op per batch.
//
//	go test ./internal/history -run '^$' -bench EventColumns -benchmem
func BenchmarkEventColumns(b *testing.B) {
	for _, n := range []int{1000, 20_000} {
		evs := testgen.Events(testgen.Config{Events: n, Seed: 1, Agents: 200})
		batch := history.NewEventBatch(evs, time.Now())
		b.Run("batch="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			var cols []any
			for b.Loop() {
				cols = batch.Columns()
			}
			require.Len(b, cols, len(history.EventColumns))
			require.Len(b, cols[4], n, "one id per event")
			events := float64(b.N) * float64(n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
			b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
		})
	}
}
