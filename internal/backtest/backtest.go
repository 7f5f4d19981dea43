// Package backtest replays recorded events through a rule set offline, on
// event time, and reports what the rules would have decided. The events
// come from a Source: a JSON Lines file (FileSource) or the history kept in
// ClickHouse (HistorySource). Compare runs two rule sets over the same
// events in one pass and reports where they disagree.
//
// Reading and decoding run in one goroutine, each engine in another; events
// travel between them in batches that are recycled, so the steady state
// allocates little more than the strings of each event.
package backtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// Defaults of Config.
const (
	DefaultBatchSize        = 256
	DefaultProgressEvery    = 100_000
	DefaultProgressInterval = time.Second
	// MaxMessages is how many malformed-line messages a Result keeps.
	MaxMessages = 20
)

// Config tunes a backtest. The zero value is usable.
type Config struct {
	// Engine are the options of the engine the events run through.
	Engine detectors.Options
	// Limits apply to each event of a file, as in a live worker (zero:
	// defaults).
	Limits pipeline.Limits
	// Strict stops a file at its first malformed line with a
	// *MalformedError.
	Strict bool
	// Decisions, when set, receives every decision as one JSON object per
	// line (with Compare: the decisions of the new set).
	Decisions io.Writer
	// Progress, when set, is called from the engine goroutine every
	// ProgressEvery events or ProgressInterval of wall time, whichever comes
	// first, and once at the end.
	Progress         func(Progress)
	ProgressEvery    int64         // default DefaultProgressEvery
	ProgressInterval time.Duration // default DefaultProgressInterval
	// Total is the size of the input in bytes when known (a file), for
	// progress; Bytes counts the same (compressed) bytes.
	Total int64
	// Now is the wall clock, for events/s and progress (default time.Now).
	Now func() time.Time
	// BatchSize is the number of events handed to the engine at a time
	// (default DefaultBatchSize).
	BatchSize int
}

func (cfg *Config) fill() {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = DefaultProgressEvery
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = DefaultProgressInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
}

// Source is where a backtest reads its events.
//
// Read fills events from index 0 with the next events, in event-time order
// as far as the source can tell, and returns how many it filled; fewer than
// len(events) is not the end. At the end it returns io.EOF. Any other error
// ends the backtest once the n events filled before it are processed. The
// backtest calls Read and Position from one goroutine, and reuses the events
// it was given once the engines are done with them.
//
// Position reports how far the source has come, for progress and the
// Result; it is called after each Read, and once more at the end.
type Source interface {
	Read(ctx context.Context, events []pipeline.Event) (n int, err error)
	Position() Position
}

// Position is how far a source has read. Fields a source has no use for
// stay zero.
type Position struct {
	Lines      int64 // file: lines read, blank and malformed included
	Bytes      int64 // file: input bytes read (compressed bytes for gzip)
	Malformed  int64 // file: lines that are not valid events
	Duplicates int64 // history: rows skipped as copies of a row already read
	// Expected is how many events the source expects to read in all, when
	// it knows (history: the rows in the window, duplicates included).
	Expected int64
	// From and To are the event-time window read (history).
	From, To time.Time
}

// Progress is a snapshot of a running backtest.
type Progress struct {
	Events     int64 // events processed by the engine
	Lines      int64 // lines read
	Bytes      int64 // input bytes read (compressed bytes for gzip input)
	Total      int64 // input size, 0 if unknown
	Expected   int64 // events expected in all, 0 if unknown
	Duplicates int64 // duplicate rows skipped
	// Through is the newest event time processed; From and To are the
	// window read (zero for a file).
	Through, From, To time.Time
	Elapsed           time.Duration
	EventsPerSec      float64
	Done              bool // the last report
}

// RuleSummary is what one rule did over the replay.
type RuleSummary struct {
	Rule       string `json:"rule"`
	Version    string `json:"version"`
	Mode       string `json:"mode"`
	Action     string `json:"action"`
	Fired      int64  `json:"fired"`      // decisions emitted
	Suppressed int64  `json:"suppressed"` // firings held back by cooldown
	Excepted   int64  `json:"excepted"`   // firings held back by an exception
	Errors     int64  `json:"errors"`     // evaluation errors
	Groups     int64  `json:"groups"`     // distinct groups with a decision
	// Exceptions lists the rule's exceptions with the firings each held back.
	Exceptions []ExceptionSummary `json:"exceptions,omitempty"`
}

// ExceptionSummary is one exception of a rule and what it suppressed.
type ExceptionSummary struct {
	Match   string    `json:"match"`
	Expires time.Time `json:"expires"`
	Comment string    `json:"comment"`
	Hits    int64     `json:"hits"` // firings it held back
}

// Result is the outcome of a backtest.
type Result struct {
	Rules      []RuleSummary
	Lines      int64 // lines read, blank and malformed included (file)
	Events     int64 // events decoded and processed
	Malformed  int64 // lines that are not valid events (file)
	Messages   []string
	Duplicates int64 // rows skipped as duplicates (history)
	Decisions  int64
	Bytes      int64
	// First and Last are the oldest and newest event times processed;
	// From and To the window asked for (history).
	First, Last  time.Time
	From, To     time.Time
	Elapsed      time.Duration
	EventsPerSec float64
	Stats        detectors.Stats
}

// MalformedError is a malformed line in strict mode.
type MalformedError struct {
	Line int64
	Err  error
}

func (e *MalformedError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *MalformedError) Unwrap() error { return e.Err }

// Run replays the JSON Lines in r (plain or gzip, detected by its magic
// bytes) through an engine for set. The error is an I/O error, a decision
// write error, ctx's error or, in strict mode, a *MalformedError; the Result
// then covers what was processed before it.
func Run(ctx context.Context, set *rules.Set, r io.Reader, cfg Config) (*Result, error) {
	return RunSource(ctx, set, NewFileSource(r, cfg.Limits, cfg.Strict), cfg)
}

// RunSource replays the events of src through an engine for set. The error
// is src's, a decision write error or ctx's error; the Result then covers
// what was processed before it.
func RunSource(ctx context.Context, set *rules.Set, src Source, cfg Config) (*Result, error) {
	out, err := run(ctx, []*rules.Set{set}, src, cfg)
	return out[0].result, err
}

// batch is a unit of work between the reader and the engines.
type batch struct {
	events []pipeline.Event
	n      int
	pos    Position
	refs   atomic.Int32 // engines yet to process it
}

// outcome is what one engine produced.
type outcome struct {
	result  *Result
	perRule map[string]*ruleAcc
}

// run replays src through one engine per set, every engine in a goroutine
// of its own fed the same batches. The first engine writes cfg.Decisions
// and reports progress.
func run(ctx context.Context, sets []*rules.Set, src Source, cfg Config) ([]outcome, error) {
	cfg.fill()
	start := cfg.Now()

	nBatches := 8 * len(sets)
	free := make(chan *batch, nBatches)
	for range nBatches {
		free <- &batch{events: make([]pipeline.Event, cfg.BatchSize)}
	}
	fulls := make([]chan *batch, len(sets))
	evs := make([]*evaluator, len(sets))
	for i, set := range sets {
		fulls[i] = make(chan *batch, nBatches)
		evs[i] = &evaluator{cfg: &cfg, eng: detectors.NewEngine(set, cfg.Engine), start: start, perRule: map[string]*ruleAcc{}}
	}
	evs[0].lead = true

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer func() {
			for _, c := range fulls {
				close(c)
			}
		}()
		return read(gctx, src, free, fulls)
	})
	// The engines drain what the reader sent even when the reader fails
	// (strict mode), so they stop only for the caller's ctx or their own
	// error.
	for i, ev := range evs {
		g.Go(func() error { return ev.run(ctx, free, fulls[i]) })
	}
	err := g.Wait()

	pos := src.Position()
	elapsed := cfg.Now().Sub(start)
	out := make([]outcome, len(sets))
	for i, ev := range evs {
		res := &Result{
			Lines:      pos.Lines,
			Events:     ev.events,
			Malformed:  pos.Malformed,
			Duplicates: pos.Duplicates,
			Decisions:  ev.decisions,
			Bytes:      pos.Bytes,
			First:      ev.firstTime(),
			Last:       ev.lastTime(),
			From:       pos.From,
			To:         pos.To,
			Elapsed:    elapsed,
			Stats:      ev.eng.Stats(),
		}
		if m, ok := src.(interface{ Messages() []string }); ok {
			res.Messages = m.Messages()
		}
		if s := elapsed.Seconds(); s > 0 {
			res.EventsPerSec = float64(res.Events) / s
		}
		for _, r := range sets[i].Rules {
			rs := ev.eng.RuleStats(r.ID)
			sum := RuleSummary{Rule: r.ID, Version: r.Version, Mode: r.Mode, Action: r.Action, Suppressed: rs.Suppressed, Excepted: rs.Excepted, Errors: rs.Errors}
			for j, x := range r.Exceptions {
				es := ExceptionSummary{Match: x.Match.Src, Expires: x.Expires, Comment: x.Comment}
				if j < len(rs.ExceptionHits) {
					es.Hits = rs.ExceptionHits[j]
				}
				sum.Exceptions = append(sum.Exceptions, es)
			}
			if a := ev.perRule[r.ID]; a != nil {
				sum.Fired = a.fired
				sum.Groups = int64(len(a.groups))
			}
			res.Rules = append(res.Rules, sum)
		}
		out[i] = outcome{result: res, perRule: ev.perRule}
	}
	if cfg.Progress != nil {
		res := out[0].result
		cfg.Progress(Progress{
			Events: res.Events, Lines: res.Lines, Bytes: res.Bytes, Total: cfg.Total,
			Expected: pos.Expected, Duplicates: pos.Duplicates, Through: res.Last, From: pos.From, To: pos.To,
			Elapsed: res.Elapsed, EventsPerSec: res.EventsPerSec, Done: true,
		})
	}
	return out, err
}

// read fills batches from src and hands each to every engine.
func read(ctx context.Context, src Source, free chan *batch, fulls []chan *batch) error {
	for {
		var b *batch
		select {
		case b = <-free:
		case <-ctx.Done():
			return ctx.Err()
		}
		n, err := src.Read(ctx, b.events)
		b.n, b.pos = n, src.Position()
		if n > 0 {
			b.refs.Store(int32(len(fulls)))
			for _, full := range fulls {
				select {
				case full <- b:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		} else {
			free <- b
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// ruleAcc is what one rule decided, by group.
type ruleAcc struct {
	fired  int64
	groups map[string]*groupAcc
}

// groupAcc is what one rule decided for one group: how often, and its
// first decision.
type groupAcc struct {
	decisions int64
	first     string // decision id
	agent     string
	time      time.Time
}

// evaluator runs an engine over batches.
type evaluator struct {
	cfg         *Config
	eng         *detectors.Engine
	lead        bool // writes decisions and reports progress
	start       time.Time
	events      int64
	decisions   int64
	first, last int64 // event time range, unix ms
	perRule     map[string]*ruleAcc
}

func (ev *evaluator) run(ctx context.Context, free chan<- *batch, full <-chan *batch) error {
	var out *bufio.Writer
	if ev.lead && ev.cfg.Decisions != nil {
		out = bufio.NewWriterSize(ev.cfg.Decisions, 64<<10)
	}
	progress := ev.cfg.Progress
	if !ev.lead {
		progress = nil
	}
	var (
		decs      []detectors.Decision
		nextCount = ev.cfg.ProgressEvery
		lastTime  = ev.start
		line      []byte
	)
	for b := range full {
		for i := range b.events[:b.n] {
			e := &b.events[i]
			if t := e.Time.UnixMilli(); ev.events == 0 && i == 0 {
				ev.first, ev.last = t, t
			} else {
				ev.first, ev.last = min(ev.first, t), max(ev.last, t)
			}
			decs = ev.eng.Process(e, decs[:0])
			for j := range decs {
				d := &decs[j]
				ev.record(d)
				if out != nil {
					var err error
					if line, err = json.Marshal(d); err != nil {
						return fmt.Errorf("backtest: encoding decision: %w", err)
					}
					out.Write(line)
					if err := out.WriteByte('\n'); err != nil {
						return fmt.Errorf("backtest: writing decisions: %w", err)
					}
				}
			}
		}
		ev.events += int64(b.n)
		pos := b.pos
		// The batch may be reused as soon as every engine is done with it:
		// an engine keeps no pointer to an event, and decoded strings never
		// alias a batch.
		if b.refs.Add(-1) == 0 {
			free <- b
		}
		if progress != nil && (ev.events >= nextCount || ev.cfg.Now().Sub(lastTime) >= ev.cfg.ProgressInterval) {
			now := ev.cfg.Now()
			el := now.Sub(ev.start)
			p := Progress{
				Events: ev.events, Lines: pos.Lines, Bytes: pos.Bytes, Total: ev.cfg.Total,
				Expected: pos.Expected, Duplicates: pos.Duplicates, Through: ev.lastTime(), From: pos.From, To: pos.To,
				Elapsed: el,
			}
			if el > 0 {
				p.EventsPerSec = float64(ev.events) / el.Seconds()
			}
			progress(p)
			lastTime = now
			for nextCount <= ev.events {
				nextCount += ev.cfg.ProgressEvery
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if out != nil {
		if err := out.Flush(); err != nil {
			return fmt.Errorf("backtest: writing decisions: %w", err)
		}
	}
	return nil
}

// record counts a decision for its rule and group.
func (ev *evaluator) record(d *detectors.Decision) {
	ev.decisions++
	a := ev.perRule[d.Rule]
	if a == nil {
		a = &ruleAcc{groups: map[string]*groupAcc{}}
		ev.perRule[d.Rule] = a
	}
	a.fired++
	g := a.groups[d.Group]
	if g == nil {
		// A copy: the event's strings may share a larger buffer (a packed
		// history row) that should not live on for this.
		g = &groupAcc{first: d.ID, agent: strings.Clone(d.Subject.Agent), time: d.Time}
		a.groups[d.Group] = g
	}
	g.decisions++
}

// firstTime and lastTime are the event time range processed (zero before
// the first event).
func (ev *evaluator) firstTime() time.Time {
	if ev.events == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ev.first).UTC()
}

func (ev *evaluator) lastTime() time.Time {
	if ev.events == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ev.last).UTC()
}
