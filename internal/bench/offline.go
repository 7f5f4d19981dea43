package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/internal/backtest"
	"github.com/tripline/tripline/internal/testgen"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// BacktestDetail is what one run of the backtest figure saw.
type BacktestDetail struct {
	Events             int64   `json:"events"`
	Bytes              int64   `json:"bytes"`
	Decisions          int64   `json:"decisions"`
	Seconds            float64 `json:"seconds"`
	EventsPerSec       float64 `json:"events_per_second"`
	DecodeSeconds      float64 `json:"decode_seconds"`
	DecodeEventsPerSec float64 `json:"decode_events_per_second"`
}

// StateDetail is what one run of the state figure saw.
type StateDetail struct {
	Sessions        int     `json:"sessions"`
	Groups          int64   `json:"groups"`
	HeapBytes       int64   `json:"heap_bytes"`
	BytesPerSession float64 `json:"bytes_per_session"`
	RefHeapBytes    int64   `json:"ref_heap_bytes"`
}

// runOffline runs the figures that need no NATS, after the server is gone
// so that it neither competes for the CPU nor allocates during the heap
// measurements.
func runOffline(ctx context.Context, cfg Config, rep *Report, p progress) error {
	f, err := os.CreateTemp(cfg.Dir, "tripline-bench-*.jsonl")
	if err != nil {
		return fmt.Errorf("bench: events file: %w", err)
	}
	path := f.Name()
	defer os.Remove(path)
	gen := testgen.Config{
		Seed: 1, Events: cfg.BacktestEvents, Agents: cfg.Agents,
		SessionsPerAgent: max(1, cfg.Sessions/cfg.Agents), Exfil: max(1, cfg.BacktestEvents/20_000),
	}
	p.printf("bench: generating %s events (testgen, %d agents) into %s", group(int64(cfg.BacktestEvents)), cfg.Agents, path)
	err = testgen.WriteJSONL(f, gen)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bench: events file: %w", err)
	}
	for i := range cfg.Runs {
		run := i + 1
		d := &rep.Runs[i]
		if err := backtestFigure(ctx, run, cfg.Rules, path, rep.Figure(FigBacktest), d, p); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		stateFigure(run, cfg.Rules, cfg.StateSessions, rep.Figure(FigStateBytes), d, p)
	}
	return nil
}

// backtestFigure times backtest.Run over the file and JSON decoding alone
// of the same file, twice each in an ABBA order (decode, backtest,
// backtest, decode; the reverse in even runs) so that a drift of the
// machine's load falls on both alike.
func backtestFigure(ctx context.Context, run int, set *rules.Set, path string, f *Figure, d *RunDetail, p progress) error {
	bd := &BacktestDetail{}
	d.Backtest = bd
	var btEl, decEl time.Duration
	var btN, decN int64
	var errs []error
	bt := func() {
		in, size, err := backtest.OpenFile(path, nil)
		if err != nil {
			errs = append(errs, err)
			return
		}
		defer in.Close()
		t0 := time.Now()
		res, err := backtest.Run(ctx, set, in, backtest.Config{Total: size})
		btEl += time.Since(t0)
		if err != nil {
			errs = append(errs, err)
			return
		}
		if res.Malformed > 0 {
			errs = append(errs, fmt.Errorf("%d malformed lines in the generated file", res.Malformed))
		}
		btN += res.Events
		bd.Events, bd.Bytes, bd.Decisions = res.Events, res.Bytes, res.Decisions
	}
	dec := func() {
		t0 := time.Now()
		n, err := decodeFile(path)
		decEl += time.Since(t0)
		if err != nil {
			errs = append(errs, err)
		}
		decN += n
	}
	if run%2 == 1 {
		dec()
		bt()
		bt()
		dec()
	} else {
		bt()
		dec()
		dec()
		bt()
	}
	if err := errors.Join(errs...); err != nil {
		f.fail(run, err)
		d.Errors = append(d.Errors, "backtest: "+err.Error())
		return err
	}
	bd.Seconds, bd.EventsPerSec = round(btEl.Seconds()), round(float64(btN)/btEl.Seconds())
	bd.DecodeSeconds, bd.DecodeEventsPerSec = round(decEl.Seconds()), round(float64(decN)/decEl.Seconds())
	f.add(bd.EventsPerSec, bd.DecodeEventsPerSec)
	p.printf("run %d  backtest   %s events, twice: %s events/s (%s decisions); JSON decode alone %s events/s; ratio %.2f",
		run, group(bd.Events), group(int64(bd.EventsPerSec)), group(bd.Decisions), group(int64(bd.DecodeEventsPerSec)), bd.EventsPerSec/bd.DecodeEventsPerSec)
	return nil
}

// decodeFile decodes every line of the file the way the backtest reader
// does, and nothing else.
func decodeFile(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	lim := pipeline.DefaultLimits()
	dec := pipeline.NewDecoder(&lim)
	br := bufio.NewReaderSize(f, max(64<<10, lim.MaxEventBytes+2))
	var ev pipeline.Event
	var n int64
	for {
		line, err := br.ReadSlice('\n')
		if line = bytes.TrimRight(line, "\r\n"); len(line) > 0 {
			if derr := dec.Decode(line, &ev); derr != nil {
				return n, fmt.Errorf("line %d: %w", n+1, derr)
			}
			n++
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// stateFigure measures the heap an engine keeps per active session: a
// few calls each for sessions sessions (the method of the detectors
// package's BenchmarkEngineStatePerSession), against a bare map holding
// each session id.
func stateFigure(run int, set *rules.Set, sessions int, f *Figure, d *RunDetail, p progress) {
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	e := detectors.NewEngine(set, detectors.Options{})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	x := pipeline.Event{Tenant: "acme", Tool: "kb.search", Action: pipeline.ActionRead, Outcome: "ok",
		TaskScope: []string{"kb.search"}, Sensitivity: "internal", BytesIn: 2000}
	var out []detectors.Decision
	for s := range sessions {
		for k := range 3 { // a few calls each
			at = at.Add(time.Millisecond)
			y := x
			y.ID = "e-" + strconv.Itoa(s) + "-" + strconv.Itoa(k)
			y.Time = at
			y.Session = fmt.Sprintf("sess-%08d", s)
			y.Agent = "spiffe://acme.dev/agent/" + strconv.Itoa(s%500)
			y.Instance = "i-" + strconv.Itoa(s%1000)
			y.Credential = "tok-" + strconv.Itoa(s%2000)
			y.Task = "task-" + strconv.Itoa(s)
			out = e.Process(&y, out[:0])
		}
	}
	out = nil
	after := heap()
	groups := e.Stats().Groups
	runtime.KeepAlive(e)
	e = nil

	before2 := heap()
	ref := make(map[string]int64)
	for s := range sessions {
		ref[fmt.Sprintf("sess-%08d", s)] = int64(s)
	}
	after2 := heap()
	runtime.KeepAlive(ref)

	grown := int64(after) - int64(before)
	refGrown := int64(after2) - int64(before2)
	sd := &StateDetail{Sessions: sessions, Groups: groups, HeapBytes: grown, RefHeapBytes: refGrown,
		BytesPerSession: round(float64(grown) / float64(sessions))}
	d.State = sd
	if grown <= 0 || refGrown <= 0 {
		f.fail(run, fmt.Errorf("heap did not grow (engine %d B, reference %d B): the measurement was disturbed", grown, refGrown))
		return
	}
	refPer := float64(refGrown) / float64(sessions)
	f.add(sd.BytesPerSession, refPer)
	p.printf("run %d  state      %s sessions, %s groups: %s bytes/session; bare session map %s bytes/session",
		run, group(int64(sessions)), group(groups), group(int64(sd.BytesPerSession)), group(int64(refPer)))
}
