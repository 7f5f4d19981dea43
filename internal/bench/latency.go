package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tripline/tripline/internal/detect"
	"github.com/tripline/tripline/pipeline"
)

// LatencyDetail is what one run of the latency phases saw.
type LatencyDetail struct {
	Rate       float64 `json:"rate"`     // background events/s
	Sessions   int     `json:"sessions"` // sessions the load was spread over
	Background int64   `json:"background_events"`
	// Attacks published, and how many revocations the enforcer applied.
	Attacks int `json:"attacks"`
	Revoked int `json:"revoked"`
	Missed  int `json:"missed"`
	// Publish of the triggering event → the enforcer applied the command.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// Publish → the command seen by a plain watcher of the KV bucket.
	KVP50Ms float64 `json:"kv_watch_p50_ms"`
	KVP99Ms float64 `json:"kv_watch_p99_ms"`
	// Publish → the command's issued_at, stamped by the detector before it
	// stores the command (millisecond precision): ingest, delivery and
	// evaluation, without the KV store and the enforcer.
	IssueP50Ms float64 `json:"issued_p50_ms"`
	IssueP99Ms float64 `json:"issued_p99_ms"`
	// Raw JetStream publish → consume at the same rate.
	RawMessages int     `json:"raw_messages"`
	RawP50Ms    float64 `json:"raw_p50_ms"`
	RawP99Ms    float64 `json:"raw_p99_ms"`
	// Fresh decisions and the interleaved echo requests.
	Decides      int            `json:"fresh_decisions"`
	DecideP50Ms  float64        `json:"fresh_decision_p50_ms"`
	DecideP99Ms  float64        `json:"fresh_decision_p99_ms"`
	EchoP50Ms    float64        `json:"echo_p50_ms"`
	EchoP99Ms    float64        `json:"echo_p99_ms"`
	Verdicts     map[string]int `json:"verdicts"`
	DecideErrors int            `json:"request_errors"`
	// Enforce-mode decisions beyond the attacks' own: benign traffic that
	// an enforce rule judged (should be 0).
	BenignEnforce int64 `json:"benign_enforce_decisions"`
}

const (
	latStream  = "BENCH_LAT"
	latSubject = "bench.lat."
	sentHeader = "Bench-Sent"
	tick       = time.Millisecond
)

// latency measures the pipeline and its raw reference at the same rate,
// in alternating slices of about a second (raw, then tripline, and again)
// so that the machine's noise falls on both alike.
func (e *env) latency(ctx context.Context, run int, rate float64, rep *Report, d *RunDetail) error {
	tr := e.traffic.atRate(rate)
	ld := &LatencyDetail{Rate: rate, Sessions: tr.sessions, Verdicts: map[string]int{}}
	d.Latency = ld
	fail := func(ids []string, err error) {
		for _, id := range ids {
			rep.Figure(id).fail(run, err)
		}
		d.Errors = append(d.Errors, "latency: "+err.Error())
	}
	revIDs, decIDs := []string{FigRevokeP50, FigRevokeP99}, []string{FigDecideP50, FigDecideP99}

	nSlices := max(1, int(e.cfg.Duration.Round(time.Second)/time.Second))
	slice := e.cfg.Duration / time.Duration(nSlices)
	total := rate + 2*e.cfg.AttackRate
	e.p.printf("run %d  latency    %s of each, in %d slices: raw JetStream publish → consume at %s msgs/s; tripline at %s events/s + %g attacks/s + %g fresh decisions/s …",
		run, e.cfg.Duration, nSlices, group(int64(total)), group(int64(rate)), e.cfg.AttackRate, e.cfg.DecideRate)
	raw, err := e.newRawLatency(ctx, run, total, tr)
	if err != nil {
		fail(revIDs, fmt.Errorf("raw reference: %w", err))
		raw = nil
	}
	pl := &pipeLatency{e: e, tr: tr, run: run, rate: rate, sentAt: map[string]time.Time{}, verdicts: map[string]int{}}
	before := e.counters()
	for range nSlices {
		if raw != nil {
			if err := raw.slice(ctx, slice); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fail(revIDs, fmt.Errorf("raw reference: %w", err))
				raw.stop()
				raw = nil
			}
		}
		if err := pl.slice(ctx, slice); err != nil {
			if raw != nil {
				raw.stop()
			}
			fail(append(revIDs, decIDs...), err)
			return err
		}
	}
	var rawLat []time.Duration
	if raw != nil {
		if rawLat, err = raw.finish(ctx); err != nil {
			fail(revIDs, fmt.Errorf("raw reference: %w", err))
		}
	}
	res, err := pl.finish(ctx, ld)
	if err != nil {
		fail(append(revIDs, decIDs...), err)
		return err
	}
	after := e.counters()
	ld.BenignEnforce = max(int64(after.enforce-before.enforce)-int64(ld.Attacks), 0)

	ld.RawMessages = len(rawLat)
	ld.RawP50Ms, ld.RawP99Ms = ms(percentile(rawLat, 0.5)), ms(percentile(rawLat, 0.99))
	ld.P50Ms, ld.P99Ms = ms(percentile(res.revoke, 0.5)), ms(percentile(res.revoke, 0.99))
	ld.MaxMs = ms(percentile(res.revoke, 1))
	ld.KVP50Ms, ld.KVP99Ms = ms(percentile(res.kv, 0.5)), ms(percentile(res.kv, 0.99))
	ld.IssueP50Ms, ld.IssueP99Ms = ms(percentile(res.issued, 0.5)), ms(percentile(res.issued, 0.99))
	ld.DecideP50Ms, ld.DecideP99Ms = ms(percentile(res.decide, 0.5)), ms(percentile(res.decide, 0.99))
	ld.EchoP50Ms, ld.EchoP99Ms = ms(percentile(res.echo, 0.5)), ms(percentile(res.echo, 0.99))
	ld.Decides = len(res.decide)
	if len(rawLat) > 0 {
		e.p.printf("run %d  latency    raw JetStream: p50 %.2f ms, p99 %.2f ms (%s messages)", run, ld.RawP50Ms, ld.RawP99Ms, group(int64(len(rawLat))))
	}
	switch {
	case len(res.revoke) == 0:
		fail(revIDs, fmt.Errorf("no revocation observed for %d attacks: the rules in use do not revoke a restricted read followed by a send to a new destination", ld.Attacks))
	case len(rawLat) == 0:
		fail(revIDs, errors.New("no raw reference"))
	default:
		rep.Figure(FigRevokeP50).add(ld.P50Ms, ld.RawP50Ms)
		rep.Figure(FigRevokeP99).add(ld.P99Ms, ld.RawP99Ms)
	}
	if len(res.revoke) > 0 {
		e.p.printf("run %d  latency    tripline: publish → enforcer applied p50 %.2f ms, p99 %.2f ms (%d of %d attacks revoked); → issued by the detector %.2f/%.2f ms, → in the KV bucket %.2f/%.2f ms",
			run, ld.P50Ms, ld.P99Ms, ld.Revoked, ld.Attacks, ld.IssueP50Ms, ld.IssueP99Ms, ld.KVP50Ms, ld.KVP99Ms)
	}
	if len(res.decide) == 0 || len(res.echo) == 0 {
		fail(decIDs, fmt.Errorf("no fresh decision answered (%d request errors)", ld.DecideErrors))
	} else {
		rep.Figure(FigDecideP50).add(ld.DecideP50Ms, ld.EchoP50Ms)
		rep.Figure(FigDecideP99).add(ld.DecideP99Ms, ld.EchoP99Ms)
		e.p.printf("run %d  latency    fresh decision p50 %.2f ms, p99 %.2f ms; echo p50 %.2f ms, p99 %.2f ms (%d requests each)",
			run, ld.DecideP50Ms, ld.DecideP99Ms, ld.EchoP50Ms, ld.EchoP99Ms, ld.Decides)
	}
	return nil
}

// rawLatency is the reference: benign payloads published at the same rate
// to a stream of their own with the publish time in a header, consumed by a
// pull consumer that acks each message and records publish → consume.
type rawLatency struct {
	e      *env
	tr     *traffic
	rate   float64
	prefix string
	it     jetstream.MessagesContext
	done   chan struct{}
	sent   int64
	el     time.Duration // publishing time of the slices so far

	mu  sync.Mutex
	lat []time.Duration
}

func (e *env) newRawLatency(ctx context.Context, run int, rate float64, tr *traffic) (*rawLatency, error) {
	sc := e.topo.Streams()[0]
	sc.Name, sc.Description, sc.Subjects = latStream, "tripline bench: raw JetStream latency reference", []string{latSubject + ">"}
	_ = e.js.DeleteStream(ctx, latStream)
	if _, err := e.js.CreateStream(ctx, sc); err != nil {
		return nil, err
	}
	cons, err := e.cliJS.CreateConsumer(ctx, latStream, jetstream.ConsumerConfig{
		Durable: "lat", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: 4096,
	})
	if err == nil {
		r := &rawLatency{e: e, tr: tr, rate: rate, prefix: "r-r" + strconv.Itoa(run) + "-", done: make(chan struct{})}
		if r.it, err = cons.Messages(jetstream.PullMaxMessages(256)); err == nil {
			go r.consume()
			return r, nil
		}
	}
	_ = e.js.DeleteStream(context.Background(), latStream)
	return nil, err
}

func (r *rawLatency) consume() {
	defer close(r.done)
	for {
		m, err := r.it.Next()
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		if ts, err := strconv.ParseInt(m.Headers().Get(sentHeader), 10, 64); err == nil {
			r.mu.Lock()
			r.lat = append(r.lat, time.Duration(now-ts))
			r.mu.Unlock()
		}
		_ = m.Ack()
	}
}

// slice publishes at the rate for d.
func (r *rawLatency) slice(ctx context.Context, d time.Duration) error {
	var ev pipeline.Event
	base := r.el
	defer func() { r.el = base + d }()
	return pace(ctx, d, func(el time.Duration) error {
		for due := int64(r.rate * (base + el).Seconds()); r.sent < due; r.sent++ {
			a := r.tr.event(&ev, r.prefix+strconv.FormatInt(r.sent, 10), r.e.nextN(), time.Now().UTC())
			m := eventMsg(latSubject+strconv.Itoa(a.part), ev.ID, ev.AppendJSON(nil))
			m.Header.Set(sentHeader, strconv.FormatInt(time.Now().UnixNano(), 10))
			if err := r.e.publish(m); err != nil {
				return err
			}
		}
		return nil
	})
}

// finish waits until every message is consumed and returns the latencies.
func (r *rawLatency) finish(ctx context.Context) ([]time.Duration, error) {
	defer r.stop()
	if err := r.e.flush(ctx); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.mu.Lock()
		n := len(r.lat)
		r.mu.Unlock()
		if int64(n) >= r.sent {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("consumed %d of %d messages within 30s", n, r.sent)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lat), nil
}

func (r *rawLatency) stop() {
	r.it.Stop()
	<-r.done
	_ = r.e.js.DeleteStream(context.Background(), latStream)
}

// nextN returns the next benign event number of the live traffic, so that
// the sessions keep being visited round robin across phases.
func (e *env) nextN() int64 { return e.bgN.Add(1) - 1 }

type latencyResult struct {
	revoke, kv, issued, decide, echo []time.Duration
}

// pipeLatency is the pipeline side: background events with attacks mixed
// in, and fresh-decision requests each followed by an echo request.
type pipeLatency struct {
	e          *env
	tr         *traffic
	run        int
	rate       float64
	sent       int64
	attacks    int
	decides    int
	el         time.Duration
	lastAttack time.Time
	reqErrs    atomic.Int64

	mu       sync.Mutex
	sentAt   map[string]time.Time // attack session → publish of its send
	verdicts map[string]int
	decide   []time.Duration
	echo     []time.Duration
}

// slice runs the load for d.
func (p *pipeLatency) slice(ctx context.Context, d time.Duration) error {
	e := p.e
	reqCtx, stopReq := context.WithCancel(ctx)
	reqDone := make(chan struct{})
	go func() {
		defer close(reqDone)
		p.requests(reqCtx)
	}()
	defer func() { stopReq(); <-reqDone }()

	var ev pipeline.Event
	prefix := "l-r" + strconv.Itoa(p.run) + "-"
	base := p.el
	defer func() { p.el = base + d }()
	return pace(ctx, d, func(el time.Duration) error {
		el += base
		for due := int64(p.rate * el.Seconds()); p.sent < due; p.sent++ {
			a := p.tr.event(&ev, prefix+strconv.FormatInt(p.sent, 10), e.nextN(), time.Now().UTC())
			if err := e.publish(eventMsg(a.subject, ev.ID, ev.AppendJSON(nil))); err != nil {
				return err
			}
		}
		for due := int(e.cfg.AttackRate * el.Seconds()); p.attacks < due; p.attacks++ {
			name := "r" + strconv.Itoa(p.run) + "-" + strconv.Itoa(p.attacks)
			read, send, subj := attack(name, time.Now().UTC(), e.topo.Partitions)
			if err := e.publish(eventMsg(subj, read.ID, read.AppendJSON(nil))); err != nil {
				return err
			}
			data := send.AppendJSON(nil)
			t := time.Now()
			if err := e.publish(eventMsg(subj, send.ID, data)); err != nil {
				return err
			}
			p.mu.Lock()
			p.sentAt[send.Session] = t
			p.mu.Unlock()
			p.lastAttack = t
		}
		return nil
	})
}

// requests sends fresh-decision requests at the configured rate, each
// followed by an echo request of the same body, until ctx ends.
func (p *pipeLatency) requests(ctx context.Context) {
	e := p.e
	tk := time.NewTicker(time.Duration(float64(time.Second) / e.cfg.DecideRate))
	defer tk.Stop()
	var ev pipeline.Event
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		p.decides++
		a := p.tr.event(&ev, "d-r"+strconv.Itoa(p.run)+"-"+strconv.Itoa(p.decides), e.nextN(), time.Now().UTC())
		body := ev.AppendJSON(nil)
		t0 := time.Now()
		m, err := e.cliNC.Request(pipeline.DecideSubjectPrefix+strconv.Itoa(a.part), body, 2*time.Second)
		rtt := time.Since(t0)
		if err != nil {
			p.reqErrs.Add(1)
			continue
		}
		var v detect.Verdict
		_ = json.Unmarshal(m.Data, &v)
		t1 := time.Now()
		_, err = e.cliNC.Request(echoSubject, body, 2*time.Second)
		ertt := time.Since(t1)
		p.mu.Lock()
		p.verdicts[v.Decision]++
		p.decide = append(p.decide, rtt)
		if err == nil {
			p.echo = append(p.echo, ertt)
		}
		p.mu.Unlock()
		if err != nil {
			p.reqErrs.Add(1)
		}
	}
}

// finish waits for the revocations (each attack's command applied by the
// enforcer, or latencyTimeout after the last attack) and returns the
// samples.
func (p *pipeLatency) finish(ctx context.Context, ld *LatencyDetail) (*latencyResult, error) {
	if err := p.e.flush(ctx); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ld.Background, ld.Attacks, ld.DecideErrors = p.sent, p.attacks, int(p.reqErrs.Load())
	for k, v := range p.verdicts {
		ld.Verdicts[k] = v
	}
	res := &latencyResult{decide: p.decide, echo: p.echo}
	deadline := p.lastAttack.Add(latencyTimeout)
	for {
		revoke, kv, issued := p.e.matchAttacks(p.sentAt)
		if len(revoke) == len(p.sentAt) || time.Now().After(deadline) {
			res.revoke, res.kv, res.issued = revoke, kv, issued
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	ld.Revoked = len(res.revoke)
	ld.Missed = p.attacks - ld.Revoked
	return res, nil
}

// matchAttacks returns, for the attacks whose revocation the enforcer has
// applied, publish → applied, and for those the KV watcher has seen,
// publish → seen and publish → issued.
func (e *env) matchAttacks(sentAt map[string]time.Time) (revoke, kv, issued []time.Duration) {
	e.seen.mu.Lock()
	defer e.seen.mu.Unlock()
	for id, session := range e.seen.session {
		t, ok := sentAt[session]
		if !ok {
			continue
		}
		if at, ok := e.seen.applied[id]; ok {
			revoke = append(revoke, max(at.Sub(t), 0))
		}
	}
	for session, t := range sentAt {
		if at, ok := e.seen.kvAt[session]; ok {
			kv = append(kv, max(at.Sub(t), 0))
			// issued_at is truncated to the millisecond
			issued = append(issued, max(e.seen.issued[session].Sub(t.Truncate(time.Millisecond)), 0))
		}
	}
	return revoke, kv, issued
}

// pace calls fn with the time elapsed, every millisecond, for d. fn
// publishes what is due by then, so a late tick is caught up.
func pace(ctx context.Context, d time.Duration, fn func(el time.Duration) error) error {
	t0 := time.Now()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		el := time.Since(t0)
		if el >= d {
			return nil
		}
		if err := fn(el); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tk.C:
		}
	}
}
