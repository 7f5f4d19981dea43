package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tripline/tripline/internal/detect"
	"github.com/tripline/tripline/pipeline"
)

// PipelineDetail is what one run of the throughput figure saw.
type PipelineDetail struct {
	Events          int     `json:"events"`
	Seconds         float64 `json:"seconds"`
	EventsPerSec    float64 `json:"events_per_second"`
	RawSeconds      float64 `json:"raw_seconds"`
	RawEventsPerSec float64 `json:"raw_events_per_second"`
	// RawFirst: the order was raw, tripline, tripline, raw (else the reverse).
	RawFirst bool `json:"raw_first"`
	// What the detector did with the events (its own counters).
	Decisions        int64 `json:"decisions"`
	EnforceDecisions int64 `json:"enforce_decisions"`
	Revocations      int64 `json:"revocations"`
	DeadLetters      int64 `json:"dead_letters"`
	// HistoryWriter: a history writer copied the streams into ClickHouse
	// throughout the phase, as `tripline serve` does. HistorySeconds is, per
	// half, first publish → the writer acked every message (its last batch
	// waits up to its flush interval, 1s), summed; HistoryRows are the rows
	// it wrote (events and decisions) and HistoryInsertErrors its failed
	// insert attempts.
	HistoryWriter       bool    `json:"history_writer"`
	HistorySeconds      float64 `json:"history_seconds,omitempty"`
	HistoryEventsPerSec float64 `json:"history_events_per_second,omitempty"`
	HistoryRows         int64   `json:"history_rows,omitempty"`
	HistoryInsertErrors int64   `json:"history_insert_errors,omitempty"`
}

const (
	rawStream   = "BENCH_RAW"
	rawSubjects = "bench.raw."
	pollEvery   = 10 * time.Millisecond
)

// throughput measures the pipeline and its raw reference in an ABBA
// order on two halves of the events (raw, tripline, tripline, raw; the
// reverse in even runs), so that a drift of the machine's load falls on
// both alike, and returns the pipeline's events/s.
//
// With history, a history writer runs throughout the phase: it first
// catches up with the backlog of the phases before (untimed), and after
// each tripline half the phase waits until it has written that half too,
// so that its work does not spill into the next measurement.
func (e *env) throughput(ctx context.Context, run int, f *Figure, d *RunDetail) (float64, error) {
	all := e.traffic.payloads("e-r"+strconv.Itoa(run)+"-", 2*(e.cfg.Events/2))
	halves := [2][]payload{all[:len(all)/2], all[len(all)/2:]}
	pd := &PipelineDetail{Events: len(all), RawFirst: run%2 == 1}
	d.Pipeline = pd
	if e.hist != nil {
		if err := e.startLive(ctx, run); err != nil {
			err = fmt.Errorf("history writer: %w", err)
			f.fail(run, err)
			d.Errors = append(d.Errors, "throughput: "+err.Error())
			return 0, err
		}
		defer e.stopLive()
		pd.HistoryWriter = true
	}
	var hist0, histErr0 float64
	if e.live.running() {
		hist0, histErr0 = e.live.sum(metricRows), e.live.sum(metricInsertErrors)
	}
	var rawEl, pipeEl, histEl time.Duration
	var errs []error
	before := e.counters()
	raw := func(pl []payload) {
		el, err := e.rawThroughput(ctx, pl)
		if err != nil {
			errs = append(errs, fmt.Errorf("raw JetStream: %w", err))
			return
		}
		rawEl += el
		e.p.printf("run %d  pipeline   raw JetStream: %s events in %s = %s events/s", run, group(int64(len(pl))), el.Round(time.Millisecond), group(int64(float64(len(pl))/el.Seconds())))
	}
	pipe := func(pl []payload) {
		el, hel, err := e.pipelineThroughput(ctx, pl)
		if err != nil {
			errs = append(errs, fmt.Errorf("pipeline: %w", err))
			return
		}
		pipeEl += el
		histEl += hel
		hist := ""
		if hel > 0 {
			hist = fmt.Sprintf("; history written in %s", hel.Round(time.Millisecond))
		}
		e.p.printf("run %d  pipeline   tripline:      %s events in %s = %s events/s%s", run, group(int64(len(pl))), el.Round(time.Millisecond), group(int64(float64(len(pl))/el.Seconds())), hist)
	}
	if pd.RawFirst {
		raw(halves[0])
		pipe(halves[0])
		pipe(halves[1])
		raw(halves[1])
	} else {
		pipe(halves[0])
		raw(halves[0])
		raw(halves[1])
		pipe(halves[1])
	}
	after := e.counters()
	pd.Decisions = int64(after.decisions - before.decisions)
	pd.EnforceDecisions = int64(after.enforce - before.enforce)
	pd.Revocations = int64(after.revocations - before.revocations)
	pd.DeadLetters = int64(after.deadLetters - before.deadLetters)
	if e.live.running() {
		pd.HistoryRows = int64(e.live.sum(metricRows) - hist0)
		pd.HistoryInsertErrors = int64(e.live.sum(metricInsertErrors) - histErr0)
	}
	if err := errors.Join(errs...); err != nil {
		f.fail(run, err)
		d.Errors = append(d.Errors, "throughput: "+err.Error())
		return 0, err
	}
	pd.Seconds, pd.EventsPerSec = round(pipeEl.Seconds()), round(float64(len(all))/pipeEl.Seconds())
	pd.RawSeconds, pd.RawEventsPerSec = round(rawEl.Seconds()), round(float64(len(all))/rawEl.Seconds())
	f.add(pd.EventsPerSec, pd.RawEventsPerSec)
	hist := "history writer off"
	if pd.HistoryWriter {
		pd.HistorySeconds, pd.HistoryEventsPerSec = round(histEl.Seconds()), round(float64(len(all))/histEl.Seconds())
		hist = fmt.Sprintf("the history writer wrote %s rows, events at %s/s (%s failed inserts)",
			group(pd.HistoryRows), group(int64(pd.HistoryEventsPerSec)), group(pd.HistoryInsertErrors))
	}
	e.p.printf("run %d  pipeline   tripline %s events/s, raw JetStream %s events/s: ratio %.2f; the detector published %s decisions (%s enforce), %s dead letters; %s",
		run, group(int64(pd.EventsPerSec)), group(int64(pd.RawEventsPerSec)), pd.EventsPerSec/pd.RawEventsPerSec,
		group(pd.Decisions), group(pd.EnforceDecisions), group(pd.DeadLetters), hist)
	return pd.EventsPerSec, nil
}

// pipelineThroughput publishes the payloads on the events stream and
// waits until the detector consumers of every partition have acked them
// all; a detector acks an event only after its decisions are published.
// With the history writer on, it then waits until the writer has acked
// every message too and returns that time as well (first publish → the
// history written).
func (e *env) pipelineThroughput(ctx context.Context, pl []payload) (el, hist time.Duration, err error) {
	subj := make([]string, e.topo.Partitions)
	cons := make([]jetstream.Consumer, e.topo.Partitions)
	for p := range subj {
		subj[p] = pipeline.EventsSubjectPrefix + benchTenant + "." + strconv.Itoa(p)
		c, err := e.cliJS.Consumer(ctx, pipeline.EventsStream, detect.ConsumerName(p))
		if err != nil {
			return 0, 0, fmt.Errorf("detector consumer %d: %w", p, err)
		}
		cons[p] = c
	}
	t0 := time.Now()
	for i := range pl {
		if err := e.publish(eventMsg(subj[pl[i].part], pl[i].id, pl[i].data)); err != nil {
			return 0, 0, err
		}
	}
	if err := e.flush(ctx); err != nil {
		return 0, 0, err
	}
	if el, err = waitAcked(ctx, t0, cons); err != nil || !e.live.running() {
		return el, 0, err
	}
	if hist, err = waitAcked(ctx, t0, e.live.cons); err != nil {
		return 0, 0, fmt.Errorf("history writer: %w", err)
	}
	return el, hist, nil
}

// rawThroughput publishes the same payloads to a stream of its own, with
// the events stream's configuration and partitioned subjects, and consumes
// them as the detector does, minus the processing: one pull consumer per
// partition (same batch and MaxAckPending) acking each message, all on one
// connection, concurrently with the publishing.
func (e *env) rawThroughput(ctx context.Context, pl []payload) (time.Duration, error) {
	sc := e.topo.Streams()[0] // the events stream's configuration
	sc.Name, sc.Description, sc.Subjects = rawStream, "tripline bench: raw JetStream reference", []string{rawSubjects + ">"}
	_ = e.js.DeleteStream(ctx, rawStream)
	if _, err := e.js.CreateStream(ctx, sc); err != nil {
		return 0, fmt.Errorf("raw stream: %w", err)
	}
	defer func() { _ = e.js.DeleteStream(context.Background(), rawStream) }()
	parts := e.topo.Partitions
	subj := make([]string, parts)
	want := make([]int, parts)
	for i := range pl {
		want[pl[i].part]++
	}
	cons := make([]jetstream.Consumer, parts)
	its := make([]jetstream.MessagesContext, parts)
	defer func() {
		for _, it := range its {
			if it != nil {
				it.Stop()
			}
		}
	}()
	got := make(chan error, parts)
	for p := range parts {
		subj[p] = rawSubjects + strconv.Itoa(p)
		c, err := e.cliJS.CreateConsumer(ctx, rawStream, jetstream.ConsumerConfig{
			Durable: "raw-p" + strconv.Itoa(p), FilterSubject: subj[p],
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: 4096, MaxDeliver: -1,
		})
		if err != nil {
			return 0, fmt.Errorf("raw consumer: %w", err)
		}
		cons[p] = c
		if its[p], err = c.Messages(jetstream.PullMaxMessages(256)); err != nil {
			return 0, fmt.Errorf("raw consumer: %w", err)
		}
		go func(it jetstream.MessagesContext, n int) {
			for range n {
				m, err := it.Next()
				if err != nil {
					got <- err
					return
				}
				_ = m.Ack()
			}
			got <- nil
		}(its[p], want[p])
	}
	t0 := time.Now()
	for i := range pl {
		if err := e.publish(eventMsg(subj[pl[i].part], pl[i].id, pl[i].data)); err != nil {
			return 0, err
		}
	}
	if err := e.flush(ctx); err != nil {
		return 0, err
	}
	timeout := time.After(2 * time.Minute)
	for range parts {
		select {
		case err := <-got:
			if err != nil {
				return 0, fmt.Errorf("raw consumer: %w", err)
			}
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-timeout:
			return 0, errors.New("raw consumers: not every message consumed within 2 minutes")
		}
	}
	return waitAcked(ctx, t0, cons)
}

// waitAcked polls the consumers until none has a message pending or
// unacknowledged, and returns the time since t0 at which that was seen.
func waitAcked(ctx context.Context, t0 time.Time, cons []jetstream.Consumer) (time.Duration, error) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		done := true
		for _, c := range cons {
			info, err := c.Info(ctx)
			if err != nil {
				return 0, err
			}
			if info.NumPending > 0 || info.NumAckPending > 0 {
				done = false
				break
			}
		}
		if done {
			return time.Since(t0), nil
		}
		if time.Now().After(deadline) {
			return 0, errors.New("events not all acknowledged within 5 minutes")
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// detectCounters are the detector's own counters, summed.
type detectCounters struct {
	decisions, enforce, revocations, deadLetters float64
}

func (e *env) counters() detectCounters {
	var c detectCounters
	mfs, err := e.reg.Gather()
	if err != nil {
		return c
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue()
			switch mf.GetName() {
			case "tripline_detect_decisions_total":
				c.decisions += v
				for _, l := range m.GetLabel() {
					if l.GetName() == "mode" && l.GetValue() == "enforce" {
						c.enforce += v
					}
				}
			case "tripline_detect_revocations_total":
				c.revocations += v
			case "tripline_detect_dead_letters_total":
				c.deadLetters += v
			}
		}
	}
	return c
}
