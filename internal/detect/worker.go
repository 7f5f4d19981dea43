// Package detect runs detector workers: each owns some partitions of the
// events stream, evaluates the rules over them with a detectors.Engine,
// and publishes decisions and signed revocations before acking the events.
package detect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
	"github.com/tripline/tripline/rules"
)

// Config configures a worker.
type Config struct {
	WorkerID string
	Topology topology.Config
	Rules    *rules.Set
	Engine   detectors.Options
	Limits   *pipeline.Limits
	Signer   *enforce.Signer
	// Batch is how many events are evaluated between publishes and acks.
	Batch int
	// MaxAckPending bounds the events in flight per partition (backpressure).
	MaxAckPending int
	// AckWait is how long an unacked event waits before redelivery.
	AckWait time.Duration
	// RevokeLimit is the guard rail: a rule that issues more revocations
	// than this in a minute (per worker) is switched to shadow.
	RevokeLimit int
	// UnappliedAfter: a revocation no enforcer acknowledged within this
	// long raises an alert (tripline_revocations_unapplied_total).
	UnappliedAfter time.Duration
	Logger         zerolog.Logger
	Registerer     prometheus.Registerer
	Now            func() time.Time
}

func (c *Config) defaults() {
	c.Topology = c.Topology.WithDefaults()
	if c.Batch <= 0 {
		c.Batch = 256
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 4096
	}
	if c.AckWait <= 0 {
		c.AckWait = 10 * time.Second
	}
	if c.UnappliedAfter <= 0 {
		c.UnappliedAfter = 30 * time.Second
	}
	if c.RevokeLimit <= 0 {
		c.RevokeLimit = 50
	}
	if c.Limits == nil {
		l := pipeline.DefaultLimits()
		c.Limits = &l
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Engine.Lateness <= 0 {
		c.Engine.Lateness = time.Minute
	}
}

// Worker owns partitions and runs them.
type Worker struct {
	cfg   Config
	nc    *nats.Conn
	js    jetstream.JetStream
	revKV jetstream.KeyValue
	log   zerolog.Logger
	m     *metrics
	guard *guardRail
	// rules is the rule set partitions run; swapped by a push (ruleset.go).
	rules   atomic.Pointer[ruleSet]
	rulesKV jetstream.KeyValue

	mu         sync.Mutex
	ruleErrors map[int]int64
	status     Status // reported in the rules bucket
}

// New makes a worker. The topology must be provisioned.
func New(ctx context.Context, nc *nats.Conn, cfg Config) (*Worker, error) {
	cfg.defaults()
	if cfg.WorkerID == "" {
		return nil, errors.New("detect: worker id is required")
	}
	if cfg.Rules == nil {
		return nil, errors.New("detect: a rule set is required")
	}
	if cfg.Signer == nil {
		return nil, errors.New("detect: a signing key is required to issue revocations")
	}
	// An async publish whose ack never comes must fail (and be retried)
	// rather than wait forever.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, pipeline.RevocationsBucket)
	if err != nil {
		return nil, fmt.Errorf("detect: revocations bucket (run tripline nats init): %w", err)
	}
	w := &Worker{
		cfg: cfg, nc: nc, js: js, revKV: kv,
		log:        cfg.Logger.With().Str("worker", cfg.WorkerID).Logger(),
		m:          newMetrics(cfg.Registerer),
		ruleErrors: map[int]int64{},
	}
	if w.rulesKV, err = RulesBucket(ctx, js); err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	w.guard = newGuardRail(cfg.RevokeLimit, cfg.Now, w.log, w.m)
	w.install(newRuleSet(cfg.Rules, 0), nil)
	return w, nil
}

func (w *Worker) ruleErrSeen(p int, now int64) float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev := w.ruleErrors[p]
	w.ruleErrors[p] = now
	return float64(prev)
}

// publish makes decisions, revocations and dead letters durable. It retries
// until every one is acknowledged by JetStream or ctx ends: revocations are
// commands and are never dropped. Message ids make retries idempotent.
func (w *Worker) publish(ctx context.Context, part int, decs []detectors.Decision, dead []deadLetter) error {
	var msgs []*nats.Msg
	var cmds []*enforce.Command
	for _, d := range dead {
		tenant := "_"
		if t := subjectTenant(d.m.Subject()); t != "" {
			tenant = t
		}
		m := &nats.Msg{Subject: pipeline.DeadLetterSubjectPrefix + tenant, Data: d.m.Data(), Header: nats.Header{}}
		m.Header.Set(pipeline.HeaderError, truncate(d.reason, 1024))
		m.Header.Set("Tripline-Subject", d.m.Subject())
		if meta, err := d.m.Metadata(); err == nil {
			m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dlq-%d", meta.Sequence.Stream))
		}
		msgs = append(msgs, m)
		w.m.invalid.Inc()
	}
	for i := range decs {
		d := &decs[i]
		b, _ := json.Marshal(d)
		m := &nats.Msg{Subject: pipeline.DecisionsSubjectPrefix + d.Tenant, Data: b, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, d.ID)
		msgs = append(msgs, m)
		w.m.decisions.WithLabelValues(d.Rule, d.Mode, d.Action).Inc()
		if d.Mode == rules.ModeEnforce && d.Action != rules.ActionAlert {
			c := w.command(d)
			if c == nil {
				w.m.unenforceable.Inc()
				w.log.Warn().Str("rule", d.Rule).Str("scope", d.Scope).Str("decision", d.ID).Msg("enforce decision without a value for its scope; not revoked")
				continue
			}
			cmds = append(cmds, c)
		}
	}
	for _, c := range cmds {
		b, _ := json.Marshal(c)
		m := &nats.Msg{Subject: pipeline.RevocationsSubjectPrefix + c.Tenant, Data: b, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, c.ID)
		msgs = append(msgs, m)
	}
	// The current state (KV, what enforcers act on) and the streams are
	// written concurrently: one round trip, not two, before the ack.
	if len(cmds) == 0 {
		return retry(ctx, w.m, func() error { return w.publishAll(ctx, msgs) })
	}
	errc := make(chan error, 1)
	go func() { errc <- retry(ctx, w.m, func() error { return w.publishAll(ctx, msgs) }) }()
	kvErr := w.putCommands(ctx, cmds)
	if err := <-errc; err != nil {
		return err
	}
	return kvErr
}

// putCommands writes commands to the revocations bucket; an id already
// there was issued before (replay or redelivery) and is left as it is.
func (w *Worker) putCommands(ctx context.Context, cmds []*enforce.Command) error {
	for _, c := range cmds {
		b, _ := json.Marshal(c)
		ttl := time.Until(c.ExpiresAt)
		if ttl < time.Second {
			ttl = time.Second
		}
		existed := false
		if err := retry(ctx, w.m, func() error {
			_, err := w.revKV.Create(ctx, c.ID, b, jetstream.KeyTTL(ttl))
			if !errors.Is(err, jetstream.ErrKeyExists) {
				return err
			}
			// Issued before (replay or redelivery) — unless what holds the
			// key is not a command for it: command ids are predictable, and
			// a client able to write the bucket (see docs/nats.md, the ack
			// reflection gap) could occupy the key to pre-empt the
			// revocation. Such a value is overwritten and reported.
			e, gerr := w.revKV.Get(ctx, c.ID)
			if errors.Is(gerr, jetstream.ErrKeyNotFound) {
				return gerr // gone meanwhile (expired): create again
			}
			if gerr != nil {
				return gerr
			}
			if ownsKey(e.Value(), c.ID) {
				existed = true
				return nil
			}
			w.m.tampered.Inc()
			w.log.Error().Str("command", c.ID).Int("bytes", len(e.Value())).
				Msg("revocation key held something that is not a command for it; overwriting (check bucket write permissions)")
			_, err = w.revKV.Update(ctx, c.ID, b, e.Revision())
			return err
		}); err != nil {
			return err
		}
		if existed {
			continue
		}
		w.m.revocations.WithLabelValues(c.Kind).Inc()
		w.log.Info().Str("command", c.ID).Str("kind", c.Kind).Str("scope", c.Scope).Str("tenant", c.Tenant).
			Str("rule", c.Rule).Str("decision", c.Decision).Msg("revocation issued")
	}
	return nil
}

func (w *Worker) publishAll(ctx context.Context, msgs []*nats.Msg) error {
	if len(msgs) == 0 {
		return nil
	}
	futs := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		f, err := w.js.PublishMsgAsync(m)
		if err != nil {
			return err
		}
		futs = append(futs, f)
	}
	var failed []*nats.Msg
	var firstErr error
	for i, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			failed = append(failed, msgs[i])
			if firstErr == nil {
				firstErr = err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if firstErr != nil {
		// all are re-sent; message ids drop the ones that did land
		return fmt.Errorf("publish %d of %d: %w", len(failed), len(msgs), firstErr)
	}
	return nil
}

func retry(ctx context.Context, m *metrics, f func() error) error {
	backoff := 50 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m.publishRetry.Inc()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// command turns an enforce decision into a signed command, or nil when the
// event lacked the value of the decision's scope.
func (w *Worker) command(d *detectors.Decision) *enforce.Command {
	kind := enforce.KindRevoke
	if d.Action == rules.ActionHold {
		kind = enforce.KindHold
	}
	c := &enforce.Command{
		ID: enforce.CommandID(d.ID, d.Scope), Kind: kind, Tenant: d.Tenant, Scope: d.Scope,
		Agent: d.Subject.Agent, Reason: d.Reason, Rule: d.Rule, RuleVersion: d.RuleVersion,
		Decision: d.ID, Evidence: d.Evidence, Tags: d.Tags,
		Issuer: "engine/" + w.cfg.WorkerID,
	}
	switch d.Scope {
	case enforce.ScopeSession:
		c.Value = d.Subject.Session
	case enforce.ScopeInstance:
		c.Value = d.Subject.Instance
	case enforce.ScopeAgent:
		c.Value = d.Subject.Agent
	case enforce.ScopeTask:
		c.Value = d.Subject.Task
	case enforce.ScopePrincipal:
		c.Value = d.Subject.Principal
	case enforce.ScopeCredential:
		c.Value = d.Subject.Credential
	case enforce.ScopeTool:
		c.Value, c.Tool = d.Subject.Agent, d.Subject.Tool
	}
	if c.Value == "" || d.Scope == enforce.ScopeTool && c.Tool == "" {
		return nil
	}
	// Issued now, on the wall clock: time-to-enforce is measured from here.
	// A re-issue after a restart gets the same id and is deduplicated.
	c.IssuedAt = w.cfg.Now().UTC().Truncate(time.Millisecond)
	ttl := d.RevokeFor
	if ttl <= 0 {
		ttl = rules.DefaultRevokeFor
	}
	c.ExpiresAt = c.IssuedAt.Add(ttl)
	if kind == enforce.KindHold {
		// A hold waits hold_timeout for an analyst; then it is released
		// (it expires) or, with on_timeout: deny, refuses the scope for
		// revoke_for more.
		timeout := d.HoldTimeout
		if timeout <= 0 {
			timeout = ttl
		}
		if d.OnTimeout == rules.TimeoutDeny {
			c.HoldUntil = c.IssuedAt.Add(timeout)
			c.ExpiresAt = c.HoldUntil.Add(ttl)
		} else {
			c.ExpiresAt = c.IssuedAt.Add(timeout)
		}
	}
	w.cfg.Signer.Sign(c)
	return c
}

func subjectTenant(subject string) string {
	for _, pre := range []string{pipeline.EventsSubjectPrefix} {
		if len(subject) > len(pre) && subject[:len(pre)] == pre {
			rest := subject[len(pre):]
			for i := 0; i < len(rest); i++ {
				if rest[i] == '.' {
					return rest[:i]
				}
			}
			return rest
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// ownsKey reports whether a bucket value is a signed command stored under
// its own id: the command itself, or a lift of it. Signatures are the
// enforcers' to check; this only tells a command from something else.
func ownsKey(value []byte, id string) bool {
	var c enforce.Command
	if json.Unmarshal(value, &c) != nil || c.Sig == "" {
		return false
	}
	return c.ID == id && (c.Kind == enforce.KindRevoke || c.Kind == enforce.KindHold) || c.Kind == enforce.KindLift && c.Lifts == id
}
