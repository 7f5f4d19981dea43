// Package backtest replays a JSON Lines file of events through a rule set
// offline, on event time, and reports what the rules would have decided.
//
// Reading and decoding run in one goroutine, the engine in another; events
// travel between them in batches that are recycled, so the steady state
// allocates little more than the strings of each event.
package backtest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/gzip"
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
	// Limits apply to each event, as in a live worker (zero: defaults).
	Limits pipeline.Limits
	// Strict stops at the first malformed line with a *MalformedError.
	Strict bool
	// Decisions, when set, receives every decision as one JSON object per line.
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

// Progress is a snapshot of a running backtest.
type Progress struct {
	Events       int64 // events processed by the engine
	Lines        int64 // lines read
	Bytes        int64 // input bytes read (compressed bytes for gzip input)
	Total        int64 // input size, 0 if unknown
	Elapsed      time.Duration
	EventsPerSec float64
	Done         bool // the last report
}

// RuleSummary is what one rule did over the replay.
type RuleSummary struct {
	Rule       string `json:"rule"`
	Mode       string `json:"mode"`
	Action     string `json:"action"`
	Fired      int64  `json:"fired"`      // decisions emitted
	Suppressed int64  `json:"suppressed"` // firings held back by cooldown
	Excepted   int64  `json:"excepted"`   // firings held back by an exception
	Errors     int64  `json:"errors"`     // evaluation errors
	Groups     int64  `json:"groups"`     // distinct groups with a decision
}

// Result is the outcome of a backtest.
type Result struct {
	Rules        []RuleSummary
	Lines        int64 // lines read, blank and malformed included
	Events       int64 // events decoded and processed
	Malformed    int64 // lines that are not valid events
	Messages     []string
	Decisions    int64
	Bytes        int64
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

// errLineTooLong is the reason for a line longer than the read buffer.
type errLineTooLong struct{ max int }

func (e errLineTooLong) Error() string {
	return fmt.Sprintf("line longer than the %d-byte event limit", e.max)
}

// OpenFile opens an events file for Run: "-" is stdin (size unknown). The
// size is the file's size, for Config.Total.
func OpenFile(path string, stdin io.Reader) (io.ReadCloser, int64, error) {
	if path == "-" {
		return io.NopCloser(stdin), 0, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("backtest: %w", err)
	}
	var size int64
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return f, size, nil
}

// batch is a unit of work between the reader and the engine.
type batch struct {
	events []pipeline.Event
	n      int
	lines  int64 // lines read when the batch was sent
	bytes  int64
}

// counter counts the bytes read through it. Only the reader goroutine uses it.
type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Run replays the JSON Lines in r (plain or gzip, detected by its magic
// bytes) through an engine for set. The error is an I/O error, a decision
// write error, ctx's error or, in strict mode, a *MalformedError; the Result
// then covers what was processed before it.
func Run(ctx context.Context, set *rules.Set, r io.Reader, cfg Config) (*Result, error) {
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
	start := cfg.Now()

	const nBatches = 8
	free := make(chan *batch, nBatches)
	full := make(chan *batch, nBatches)
	for range nBatches {
		free <- &batch{events: make([]pipeline.Event, cfg.BatchSize)}
	}

	rd := reader{cfg: &cfg, src: &counter{r: r}}
	ev := evaluator{cfg: &cfg, eng: detectors.NewEngine(set, cfg.Engine), start: start, perRule: map[string]*ruleAcc{}}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(full)
		return rd.run(gctx, free, full)
	})
	// The evaluator drains what the reader sent even when the reader fails
	// (strict mode), so it stops only for the caller's ctx.
	g.Go(func() error { return ev.run(ctx, free, full) })
	err := g.Wait()

	res := &Result{
		Lines:     rd.lines,
		Events:    ev.events,
		Malformed: rd.malformed,
		Messages:  rd.messages,
		Decisions: ev.decisions,
		Bytes:     rd.src.n,
		Elapsed:   cfg.Now().Sub(start),
		Stats:     ev.eng.Stats(),
	}
	if s := res.Elapsed.Seconds(); s > 0 {
		res.EventsPerSec = float64(res.Events) / s
	}
	for _, r := range set.Rules {
		rs := ev.eng.RuleStats(r.ID)
		sum := RuleSummary{Rule: r.ID, Mode: r.Mode, Action: r.Action, Suppressed: rs.Suppressed, Excepted: rs.Excepted, Errors: rs.Errors}
		if a := ev.perRule[r.ID]; a != nil {
			sum.Fired = a.fired
			sum.Groups = int64(len(a.groups))
		}
		res.Rules = append(res.Rules, sum)
	}
	if cfg.Progress != nil {
		cfg.Progress(Progress{Events: res.Events, Lines: res.Lines, Bytes: res.Bytes, Total: cfg.Total, Elapsed: res.Elapsed, EventsPerSec: res.EventsPerSec, Done: true})
	}
	return res, err
}

// reader reads and decodes lines into batches.
type reader struct {
	cfg       *Config
	src       *counter
	lines     int64
	malformed int64
	messages  []string
}

func (rd *reader) run(ctx context.Context, free <-chan *batch, full chan<- *batch) error {
	lim := rd.cfg.Limits
	dec := pipeline.NewDecoder(&lim)
	maxLine := lim.MaxEventBytes
	if maxLine <= 0 {
		maxLine = pipeline.DefaultMaxEventBytes
	}
	// A line that does not fit the buffer is too long to be an event: the
	// buffer holds the largest event plus CR LF.
	bufSize := max(64<<10, maxLine+2)
	raw := bufio.NewReaderSize(rd.src, bufSize)
	br := raw
	if magic, _ := raw.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(raw)
		if err != nil {
			return fmt.Errorf("backtest: gzip input: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, bufSize)
	}

	var b *batch
	get := func() error {
		select {
		case b = <-free:
			b.n = 0
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	send := func() error {
		b.lines, b.bytes = rd.lines, rd.src.n
		select {
		case full <- b:
			b = nil
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := get(); err != nil {
		return err
	}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Too long to be an event: skip to the end of the line.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			rd.lines++
			if merr := rd.bad(errLineTooLong{maxLine}); merr != nil {
				return cmp.Or(send(), merr)
			}
			line = nil
		} else if len(line) > 0 {
			rd.lines++
		}
		if len(line) > 0 {
			if line = bytes.TrimRight(line, "\r\n"); len(bytes.TrimSpace(line)) > 0 {
				if derr := dec.Decode(line, &b.events[b.n]); derr != nil {
					if merr := rd.bad(derr); merr != nil {
						return cmp.Or(send(), merr)
					}
				} else if b.n++; b.n == len(b.events) {
					if err := send(); err != nil {
						return err
					}
					if err := get(); err != nil {
						return err
					}
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("backtest: reading events: %w", err)
		}
	}
	if b.n > 0 {
		return send()
	}
	return nil
}

// bad records a malformed line; in strict mode it returns the error to stop with.
func (rd *reader) bad(err error) error {
	rd.malformed++
	if rd.cfg.Strict {
		return &MalformedError{Line: rd.lines, Err: err}
	}
	if len(rd.messages) < MaxMessages {
		rd.messages = append(rd.messages, fmt.Sprintf("line %d: %v", rd.lines, err))
	}
	return nil
}

type ruleAcc struct {
	fired  int64
	groups map[string]struct{}
}

// evaluator runs the engine over batches.
type evaluator struct {
	cfg       *Config
	eng       *detectors.Engine
	start     time.Time
	events    int64
	decisions int64
	perRule   map[string]*ruleAcc
}

func (ev *evaluator) run(ctx context.Context, free chan<- *batch, full <-chan *batch) error {
	var out *bufio.Writer
	if ev.cfg.Decisions != nil {
		out = bufio.NewWriterSize(ev.cfg.Decisions, 64<<10)
	}
	var (
		decs      []detectors.Decision
		nextCount = ev.cfg.ProgressEvery
		lastTime  = ev.start
		line      []byte
	)
	for b := range full {
		for i := range b.events[:b.n] {
			decs = ev.eng.Process(&b.events[i], decs[:0])
			for j := range decs {
				d := &decs[j]
				ev.decisions++
				a := ev.perRule[d.Rule]
				if a == nil {
					a = &ruleAcc{groups: map[string]struct{}{}}
					ev.perRule[d.Rule] = a
				}
				a.fired++
				a.groups[d.Group] = struct{}{}
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
		lines, bytes := b.lines, b.bytes
		// The batch may be reused as soon as it is back: the engine keeps
		// no pointer to an event, and decoded strings never alias a batch.
		free <- b
		if ev.cfg.Progress != nil && (ev.events >= nextCount || ev.cfg.Now().Sub(lastTime) >= ev.cfg.ProgressInterval) {
			now := ev.cfg.Now()
			el := now.Sub(ev.start)
			p := Progress{Events: ev.events, Lines: lines, Bytes: bytes, Total: ev.cfg.Total, Elapsed: el}
			if el > 0 {
				p.EventsPerSec = float64(ev.events) / el.Seconds()
			}
			ev.cfg.Progress(p)
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
