package detect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/pipeline"
)

// partition runs one partition: it rebuilds windows from the stream, then
// consumes the partition's durable consumer, evaluates, publishes decisions
// and revocations durably, and only then acks the events.
type partition struct {
	w       *Worker
	n       int
	label   string
	filter  string
	engine  *detectors.Engine
	rs      *ruleSet // the rule set engine runs
	dec     *pipeline.Decoder
	cons    jetstream.Consumer
	reqs    chan *nats.Msg
	decided map[string]struct{} // events already evaluated by a fresh decision
	// inState holds the stream sequences evaluated since the ack floor, so
	// that a redelivered event is acked without being counted twice.
	// Redeliveries can arrive after newer events, so a high-water mark
	// would not do.
	inState map[uint64]struct{}
	lastSeq uint64 // highest sequence replayed (for logs)
	// inflight carries evaluated batches to the acker (see handleBatch).
	inflight chan *pending
	log      zerolog.Logger
	out      []detectors.Decision
	held     map[string]detectors.RuleStats // per rule, as last exported
}

// GlobalPartition is the pseudo-partition whose owner evaluates the rules
// grouped by keys that span agents (credential, principal, task, …): it
// consumes every partition, since events are partitioned by agent.
const GlobalPartition = -1

func newPartition(w *Worker, n int) *partition {
	label, filter := strconv.Itoa(n), pipeline.EventsSubjectPrefix+"*."+strconv.Itoa(n)
	if n == GlobalPartition {
		label, filter = "global", pipeline.EventsSubjectPrefix+">"
	}
	rs := w.rules.Load()
	return &partition{
		w:       w,
		n:       n,
		label:   label,
		filter:  filter,
		engine:  detectors.NewEngine(rs.forPartition(n), w.cfg.Engine),
		rs:      rs,
		dec:     pipeline.NewDecoder(w.cfg.Limits),
		reqs:    make(chan *nats.Msg, 256),
		decided: map[string]struct{}{},
		inState: map[uint64]struct{}{},
		log:     w.log.With().Str("partition", label).Logger(),
	}
}

// ConsumerName is the durable consumer of partition n.
func ConsumerName(n int) string {
	if n == GlobalPartition {
		return "detect-global"
	}
	return "detect-p" + strconv.Itoa(n)
}

func (p *partition) run(ctx context.Context) error {
	js := p.w.js
	var err error
	p.cons, err = js.CreateOrUpdateConsumer(ctx, pipeline.EventsStream, jetstream.ConsumerConfig{
		Durable:       ConsumerName(p.n),
		Description:   "Tripline detector, partition " + p.label,
		FilterSubject: p.filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       p.w.cfg.AckWait,
		MaxAckPending: p.w.cfg.MaxAckPending,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("partition %d: consumer: %w", p.n, err)
	}
	if err := p.replay(ctx); err != nil {
		return err
	}
	if p.n != GlobalPartition {
		sub, err := p.w.nc.Subscribe(pipeline.DecideSubjectPrefix+p.label, func(m *nats.Msg) {
			select {
			case p.reqs <- m:
			default:
				reply(m, Verdict{Decision: "error", Error: "detector busy"})
			}
		})
		if err != nil {
			return fmt.Errorf("partition %d: subscribe decide: %w", p.n, err)
		}
		defer sub.Unsubscribe()
	}

	p.inflight = make(chan *pending, maxInFlight)
	ackerDone := make(chan struct{})
	go p.ack(ackerDone)
	defer func() {
		close(p.inflight)
		<-ackerDone
	}()

	it, err := p.cons.Messages(jetstream.PullMaxMessages(p.w.cfg.Batch))
	if err != nil {
		return fmt.Errorf("partition %d: consume: %w", p.n, err)
	}
	msgs := make(chan jetstream.Msg, p.w.cfg.Batch)
	go func() {
		defer close(msgs)
		for {
			m, err := it.Next()
			if err != nil {
				return
			}
			msgs <- m
		}
	}()
	defer func() {
		it.Stop()
		for range msgs { // unacked: redelivered to the next owner
		}
	}()
	p.log.Info().Uint64("replayed_to", p.lastSeq).Msg("partition acquired")
	lagTick := time.NewTicker(5 * time.Second)
	defer lagTick.Stop()
	batch := make([]jetstream.Msg, 0, p.w.cfg.Batch)
	for {
		p.refreshRules()
		// Fresh-decision requests come first: a proxy is waiting on them.
		select {
		case r := <-p.reqs:
			p.handleDecide(ctx, r)
			continue
		default:
		}
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-msgs:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("partition %d: consumer stopped", p.n)
			}
			batch = append(batch[:0], m)
		more:
			for len(batch) < cap(batch) {
				select {
				case m, ok := <-msgs:
					if !ok {
						break more
					}
					batch = append(batch, m)
				default:
					break more
				}
			}
			if err := p.handleBatch(ctx, batch); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		case r := <-p.reqs:
			p.handleDecide(ctx, r)
		case <-lagTick.C:
			p.exportHeld()
			if info, err := p.cons.Info(ctx); err == nil {
				p.w.m.lag.WithLabelValues(p.label).Set(float64(info.NumPending + uint64(info.NumAckPending)))
				for seq := range p.inState {
					if seq <= info.AckFloor.Stream {
						delete(p.inState, seq)
					}
				}
			}
		}
	}
}

// exportHeld adds the firings each rule's cooldown and exceptions held back
// since the last call to tripline_detect_firings_held_total.
func (p *partition) exportHeld() {
	if p.held == nil {
		p.held = map[string]detectors.RuleStats{}
	}
	for _, r := range p.engine.Set().Rules {
		st := p.engine.RuleStats(r.ID)
		prev := p.held[r.ID]
		if st.Suppressed < prev.Suppressed || st.Excepted < prev.Excepted {
			prev = detectors.RuleStats{} // a new version of the rule started over
		}
		if d := st.Suppressed - prev.Suppressed; d > 0 {
			p.w.m.held.WithLabelValues(r.ID, "cooldown").Add(float64(d))
		}
		if d := st.Excepted - prev.Excepted; d > 0 {
			p.w.m.held.WithLabelValues(r.ID, "exception").Add(float64(d))
		}
		p.held[r.ID] = st
	}
}

// refreshRules switches to the worker's current rule set, between two
// batches, keeping the state of what did not change.
func (p *partition) refreshRules() {
	cur := p.w.rules.Load()
	if cur == p.rs {
		return
	}
	p.engine = detectors.NewEngineFrom(cur.forPartition(p.n), p.w.cfg.Engine, p.engine)
	p.rs = cur
	p.log.Debug().Uint64("revision", cur.rev).Str("hash", cur.set.Hash).Msg("partition runs the new rule set")
}

// replay rebuilds the engine's windows from the stream before it acts.
// Events up to the consumer's ack floor were handled by the previous owner:
// they are evaluated only to rebuild state, over the longest window the
// rules read. Events after the floor that were delivered but are not all
// acknowledged (the previous owner may have died between publishing and
// acking, and acks can land out of order) are evaluated in stream order and
// their decisions published again: decision and command ids make that
// idempotent. Their redeliveries are then acked without a second count.
func (p *partition) replay(ctx context.Context) error {
	info, err := p.cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("partition %d: consumer info: %w", p.n, err)
	}
	floor, delivered := info.AckFloor.Stream, info.Delivered.Stream
	if delivered == 0 {
		return nil
	}
	st, err := p.w.js.Stream(ctx, pipeline.EventsStream)
	if err != nil {
		return fmt.Errorf("partition %d: stream: %w", p.n, err)
	}
	at := p.w.cfg.Now()
	ref := max(floor, 1)
	if m, err := st.GetMsg(ctx, ref); err == nil {
		at = m.Time
	}
	start := at.Add(-(p.rs.set.MaxWindow() + p.w.cfg.Engine.Lateness + time.Minute))
	oc, err := p.w.js.OrderedConsumer(ctx, pipeline.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{p.filter},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return fmt.Errorf("partition %d: replay consumer: %w", p.n, err)
	}
	var again []detectors.Decision
	n := 0
	defer func() { p.w.m.replayed.Add(float64(n)) }()
	for {
		b, err := oc.Fetch(500, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("partition %d: replay: %w", p.n, err)
		}
		got, done := 0, false
		for m := range b.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			seq := meta.Sequence.Stream
			if seq > delivered {
				done = true
				break
			}
			var ev pipeline.Event
			if p.dec.Decode(m.Data(), &ev) == nil && p.checkRoute(m.Subject(), &ev) == "" {
				if seq <= floor {
					p.out = p.engine.Process(&ev, p.out[:0])
				} else {
					again = p.engine.Process(&ev, again)
					p.inState[seq] = struct{}{}
				}
				n++
			}
			p.lastSeq = seq
			if meta.NumPending == 0 {
				done = true
				break
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if done || got == 0 {
			break
		}
	}
	p.log.Debug().Int("events", n).Int("republished", len(again)).Uint64("floor", floor).Uint64("delivered", delivered).Msg("replay done")
	return p.w.publish(ctx, p.n, p.w.guard.apply(again), nil)
}

type deadLetter struct {
	m      jetstream.Msg
	reason string
}

func (p *partition) handleBatch(ctx context.Context, batch []jetstream.Msg) error {
	start := time.Now()
	var evalTime time.Duration
	decs := p.out[:0]
	var dead []deadLetter
	var evaluated int
	for _, m := range batch {
		meta, err := m.Metadata()
		if err != nil {
			dead = append(dead, deadLetter{m, "no JetStream metadata"})
			continue
		}
		seq := meta.Sequence.Stream
		if _, ok := p.inState[seq]; ok {
			continue // redelivered: already counted, its decisions published
		}
		var ev pipeline.Event
		err = p.dec.Decode(m.Data(), &ev)
		reason := ""
		if err != nil {
			reason = err.Error()
		} else {
			reason = p.checkRoute(m.Subject(), &ev)
		}
		if reason != "" {
			if p.n != GlobalPartition { // the agent's own partition dead-letters it
				dead = append(dead, deadLetter{m, reason})
			}
			continue
		}
		p.inState[seq] = struct{}{}
		if m.Headers().Get(pipeline.HeaderDecided) != "" {
			if _, ok := p.decided[ev.ID]; ok {
				delete(p.decided, ev.ID)
				continue
			}
		}
		t0 := time.Now()
		decs = p.engine.Process(&ev, decs)
		evalTime += time.Since(t0)
		evaluated++
	}
	decs = p.w.guard.apply(decs)
	p.out = decs
	if e := p.log.Debug(); e.Enabled() {
		seqs := make([]uint64, 0, len(batch))
		for _, m := range batch {
			if meta, err := m.Metadata(); err == nil {
				seqs = append(seqs, meta.Sequence.Stream)
			}
		}
		e.Uints64("seqs", seqs).Int("decisions", len(decs)).Msg("batch")
	}
	p.w.m.eventsIn.WithLabelValues(p.label).Add(float64(len(batch)))
	if evaluated > 0 {
		p.w.m.evalSeconds.Observe(evalTime.Seconds() / float64(evaluated))
	}
	st := p.engine.Stats()
	p.w.m.ruleErrors.Add(float64(st.RuleErrors) - p.w.ruleErrSeen(p.n, st.RuleErrors))
	// Publish without waiting: the next batch is evaluated while this
	// one's decisions and revocations are in flight, so an attack is never
	// queued behind another batch's round trips. The acker acks each batch,
	// in order, once its publishes are durable.
	pd := &pending{batch: slices.Clone(batch), done: make(chan error, 1), start: start}
	select {
	case p.inflight <- pd: // blocks while maxInFlight batches are unacked: backpressure
	case <-ctx.Done():
		return ctx.Err()
	}
	decs, dead = slices.Clone(decs), slices.Clone(dead)
	go func() { pd.done <- p.w.publish(ctx, p.n, decs, dead) }()
	return nil
}

// maxInFlight bounds the batches whose publishes are outstanding.
const maxInFlight = 16

// pending is a batch whose decisions are being published.
type pending struct {
	batch []jetstream.Msg
	done  chan error
	start time.Time
}

// ack acks batches in order as their publishes complete. A batch whose
// publish failed (the worker is stopping) is left unacked, as is every
// batch after it: JetStream redelivers them to the next owner.
func (p *partition) ack(done chan<- struct{}) {
	defer close(done)
	failed := false
	for pd := range p.inflight {
		if err := <-pd.done; err != nil || failed {
			failed = true
			continue
		}
		for _, m := range pd.batch {
			_ = m.Ack()
		}
		p.w.m.batchSeconds.Observe(time.Since(pd.start).Seconds())
	}
}

// checkRoute refuses events published where they do not belong: the
// subject's tenant must be the event's tenant (producers are authorised per
// tenant subject), and the partition must be the agent's.
func (p *partition) checkRoute(subject string, ev *pipeline.Event) string {
	rest := strings.TrimPrefix(subject, pipeline.EventsSubjectPrefix)
	tenant, _, _ := strings.Cut(rest, ".")
	if tenant != ev.Tenant {
		return fmt.Sprintf("tenant: event says %q but was published on %s", ev.Tenant, subject)
	}
	if p.n == GlobalPartition {
		return ""
	}
	if want := pipeline.Partition(ev.Agent, p.w.cfg.Topology.Partitions); want != p.n {
		return fmt.Sprintf("partition: agent %q belongs to partition %d, published to %d (use pipeline.EventSubject)", ev.Agent, want, p.n)
	}
	return ""
}

// Verdict answers a fresh-decision request.
type Verdict struct {
	Decision  string   `json:"decision"` // allow | deny | hold | error
	Rules     []string `json:"rules,omitempty"`
	Decisions []string `json:"decisions,omitempty"`
	Error     string   `json:"error,omitempty"`
}

func reply(m *nats.Msg, v Verdict) {
	b, _ := json.Marshal(v)
	_ = m.Respond(b)
}

// handleDecide answers a fresh decision from live state. The call becomes an
// event: it is evaluated here, published to the events stream marked as
// decided (so history has it and this partition does not count it twice),
// and its decisions are published like any other.
func (p *partition) handleDecide(ctx context.Context, r *nats.Msg) {
	start := time.Now()
	defer func() { p.w.m.decideSeconds.Observe(time.Since(start).Seconds()) }()
	var ev pipeline.Event
	if err := p.dec.Decode(r.Data, &ev); err != nil {
		reply(r, Verdict{Decision: "error", Error: err.Error()})
		return
	}
	if want := pipeline.Partition(ev.Agent, p.w.cfg.Topology.Partitions); want != p.n {
		reply(r, Verdict{Decision: "error", Error: fmt.Sprintf("agent belongs to partition %d", want)})
		return
	}
	decs := p.w.guard.apply(p.engine.Process(&ev, nil))
	v := Verdict{Decision: "allow"}
	for _, d := range decs {
		v.Rules = append(v.Rules, d.Rule)
		v.Decisions = append(v.Decisions, d.ID)
		if d.Mode != "enforce" {
			continue
		}
		switch d.Action {
		case "revoke":
			v.Decision = "deny"
		case "hold":
			if v.Decision == "allow" {
				v.Decision = "hold"
			}
		}
	}
	reply(r, v)
	p.decided[ev.ID] = struct{}{}
	if len(p.decided) > 100000 {
		clear(p.decided) // bounded: at worst an event is counted twice
	}
	// Record the call without waiting for the store: the loop goes back to
	// events and requests at once. Losing this record loses history, not a
	// decision, and is logged.
	msg := &nats.Msg{Subject: pipeline.EventSubject(ev.Tenant, ev.Agent, p.w.cfg.Topology.Partitions), Data: r.Data, Header: nats.Header{}}
	msg.Header.Set(pipeline.HeaderDecided, "1")
	msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
	if f, err := p.w.js.PublishMsgAsync(msg); err != nil {
		p.log.Warn().Err(err).Str("event", ev.ID).Msg("fresh decision: event not recorded")
	} else {
		go func(id string) {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				p.log.Warn().Err(err).Str("event", id).Msg("fresh decision: event not recorded")
			}
		}(ev.ID)
	}
	// Decisions (rare) are published durably like any other: revocations
	// are commands.
	if len(decs) > 0 {
		if err := p.w.publish(ctx, p.n, decs, nil); err != nil && !errors.Is(err, context.Canceled) {
			p.log.Error().Err(err).Msg("fresh decision: decisions not published")
		}
	}
}
