package history

import (
	"time"

	"github.com/tripline/tripline/pipeline"
)

// EventBatch is a batch of decoded events as the writer's reader holds
// them (rows of the events table), for BenchmarkEventColumns.
type EventBatch struct {
	t    *table
	rows []row
}

// NewEventBatch decodes nothing: it wraps evs as the rows the reader makes
// of events delivered with stream sequences 1…n, received at received.
func NewEventBatch(evs []pipeline.Event, received time.Time) *EventBatch {
	t, err := NewWriter(nil, nil, WriterConfig{}).tableFor(pipeline.EventsStream)
	if err != nil {
		panic(err)
	}
	b := &EventBatch{t: t, rows: make([]row, len(evs))}
	for i := range evs {
		e := evs[i]
		b.rows[i] = row{key: e.ID, tenant: e.Tenant, agent: e.Agent, date: dayOf(e.Time.UnixMilli()),
			v: &eventRow{e: e, seq: uint64(i + 1), received: received}}
	}
	return b
}

// Columns builds the batch's insert columns the way the reader does, row
// by row into a fresh column builder (the writer starts one per batch).
func (b *EventBatch) Columns() []any {
	c := b.t.newCols(len(b.rows))
	for i := range b.rows {
		c.addRow(&b.rows[i])
	}
	return c.columns()
}
