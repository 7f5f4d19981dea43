package score

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/internal/backtest"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// Config tunes Run. The zero value is usable.
type Config struct {
	// Engine are the options of the engine the events run through.
	Engine detectors.Options
	// Progress, when set, is called every ProgressEvery events or
	// ProgressInterval of wall time, whichever comes first, and once at
	// the end, with the same reports as a backtest.
	Progress         func(backtest.Progress)
	ProgressEvery    int64         // default backtest.DefaultProgressEvery
	ProgressInterval time.Duration // default backtest.DefaultProgressInterval
	// Total is the input's size in bytes when known, for progress.
	Total int64
	// Now is the wall clock, for progress and events/s (default time.Now).
	Now func() time.Time
	// BatchSize is how many events are read at a time (default
	// backtest.DefaultBatchSize).
	BatchSize int
}

// Run replays the events of src, in the order src gives them, through an
// engine for set, as a detector worker would, and scores the decisions
// against labels. The error is src's or ctx's; the Report then covers what
// was processed before it.
func Run(ctx context.Context, set *rules.Set, src backtest.Source, labels []Label, cfg Config) (*Report, error) {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = backtest.DefaultBatchSize
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = backtest.DefaultProgressEvery
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = backtest.DefaultProgressInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	start := cfg.Now()
	eng := detectors.NewEngine(set, cfg.Engine)
	sc := NewScorer(set, labels)
	var (
		events      = make([]pipeline.Event, cfg.BatchSize)
		decs        []detectors.Decision
		n           int64
		first, last time.Time
		nextCount   = cfg.ProgressEvery
		lastReport  = start
		err         error
	)
	progress := func(done bool) {
		now := cfg.Now()
		pos := src.Position()
		p := backtest.Progress{
			Events: n, Lines: pos.Lines, Bytes: pos.Bytes, Total: cfg.Total, Expected: pos.Expected,
			Duplicates: pos.Duplicates, Through: last, From: pos.From, To: pos.To,
			Elapsed: now.Sub(start), Done: done,
		}
		if s := p.Elapsed.Seconds(); s > 0 {
			p.EventsPerSec = float64(n) / s
		}
		cfg.Progress(p)
		lastReport = now
		for nextCount <= n {
			nextCount += cfg.ProgressEvery
		}
	}
	for {
		var k int
		k, err = src.Read(ctx, events)
		for i := range events[:k] {
			e := &events[i]
			if n == 0 || e.Time.Before(first) {
				first = e.Time
			}
			if n == 0 || e.Time.After(last) {
				last = e.Time
			}
			n++
			decs = eng.Process(e, decs[:0])
			sc.Event(e, decs)
		}
		if errors.Is(err, io.EOF) {
			err = nil
			break
		}
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			break
		}
		if cfg.Progress != nil && (n >= nextCount || cfg.Now().Sub(lastReport) >= cfg.ProgressInterval) {
			progress(false)
		}
	}
	if cfg.Progress != nil {
		progress(true)
	}
	r := sc.Report()
	pos := src.Position()
	r.Lines, r.Malformed = pos.Lines, pos.Malformed
	if m, ok := src.(interface{ Messages() []string }); ok && len(m.Messages()) > 0 {
		r.MalformedLines = m.Messages()
	}
	if n > 0 {
		r.First, r.Last = first.UTC(), last.UTC()
	}
	r.Stats = eng.Stats()
	r.Elapsed = cfg.Now().Sub(start)
	if s := r.Elapsed.Seconds(); s > 0 {
		r.EventsPerSec = float64(n) / s
	}
	return r, err
}
