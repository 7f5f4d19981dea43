package enforce

import (
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Rejection reasons, the values of the "reason" label of
// tripline_enforcer_commands_rejected_total.
const (
	RejectUnsigned   = "unsigned"    // no signature, or a KV delete/purge of an active command
	RejectUnknownKey = "unknown_key" // signed by a key not in the Keyring
	RejectForged     = "forged"      // signature does not verify
	RejectExpired    = "expired"     // ExpiresAt is not after now
	RejectReplayed   = "replayed"    // applied before with the same signature, or revokes/holds a lifted id
	RejectMalformed  = "malformed"   // not a command, bad shape, or stored under the wrong key
	RejectFuture     = "future"      // issued further in the future than MaxClockSkew
)

var rejectReasons = []string{RejectUnsigned, RejectUnknownKey, RejectForged, RejectExpired, RejectReplayed, RejectMalformed, RejectFuture}

// enforcerMetrics is the Enforcer's one metrics struct. Hot-path counters
// are resolved once so Check never looks up a label.
type enforcerMetrics struct {
	applied     *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	active      prometheus.Gauge
	stale       prometheus.Gauge
	timeToApply prometheus.Histogram
	reconciles  *prometheus.CounterVec
	acks        *prometheus.CounterVec

	// Verdict counters are sharded: every Check bumps one, from any
	// number of goroutines at once.
	allow, deny, hold *shardedCounter
}

const counterShards = 16 // a power of two

// shardedCounter is a counter for the hot path: increments land on one of
// several cache lines picked at random, so concurrent Checks do not fight
// over one line. Prometheus reads the sum.
type shardedCounter struct {
	shards [counterShards]struct {
		n atomic.Uint64
		_ [56]byte // one cache line each
	}
}

// inc adds one on the shard r picks (r: a random number).
func (c *shardedCounter) inc(r uint32) { c.shards[r&(counterShards-1)].n.Add(1) }

func (c *shardedCounter) value() uint64 {
	var sum uint64
	for i := range c.shards {
		sum += c.shards[i].n.Load()
	}
	return sum
}

func newEnforcerMetrics(reg prometheus.Registerer, enforcerID string) (*enforcerMetrics, error) {
	cl := prometheus.Labels{"enforcer": enforcerID}
	m := &enforcerMetrics{
		allow: &shardedCounter{}, deny: &shardedCounter{}, hold: &shardedCounter{},
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "enforcer", Name: "commands_applied_total",
			Help: "Signed commands applied, by kind (revoke, hold, lift).", ConstLabels: cl,
		}, []string{"kind"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "enforcer", Name: "commands_rejected_total",
			Help:        "Commands or KV operations refused, by reason (unsigned, unknown_key, forged, expired, replayed, malformed, future).",
			ConstLabels: cl,
		}, []string{"reason"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "tripline", Subsystem: "enforcer", Name: "active_commands",
			Help: "Revocations and holds currently enforced.", ConstLabels: cl,
		}),
		stale: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "tripline", Subsystem: "enforcer", Name: "stale",
			Help:        "1 while the enforcer has been cut off from the revocation state for longer than StaleAfter (or has not loaded it yet).",
			ConstLabels: cl,
		}),
		timeToApply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "tripline", Subsystem: "enforcer", Name: "time_to_apply_seconds",
			Help:        "applied_at - issued_at of commands applied live or on reconciliation (not the start-up load).",
			ConstLabels: cl,
			Buckets:     prometheus.ExponentialBuckets(0.001, 2, 16), // 1ms .. ~33s
		}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "enforcer", Name: "reconciles_total",
			Help: "Reloads of the revocation state after a reconnect or a failed watch, by result (ok, failed).", ConstLabels: cl,
		}, []string{"result"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "enforcer", Name: "acks_total",
			Help: "Acknowledgements published, by result (published, failed).", ConstLabels: cl,
		}, []string{"result"}),
	}
	var err error
	for verdict, c := range map[string]*shardedCounter{"allow": m.allow, "deny": m.deny, "hold": m.hold} {
		f := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "enforcer", Name: "checks_total",
			Help:        "Calls checked, by verdict (allow, deny, hold).",
			ConstLabels: prometheus.Labels{"enforcer": enforcerID, "verdict": verdict},
		}, func() float64 { return float64(c.value()) })
		if err := reg.Register(f); err != nil {
			return nil, err
		}
	}
	if m.applied, err = register(reg, m.applied); err != nil {
		return nil, err
	}
	if m.rejected, err = register(reg, m.rejected); err != nil {
		return nil, err
	}
	if m.active, err = register(reg, m.active); err != nil {
		return nil, err
	}
	if m.stale, err = register(reg, m.stale); err != nil {
		return nil, err
	}
	if m.timeToApply, err = register(reg, m.timeToApply); err != nil {
		return nil, err
	}
	if m.reconciles, err = register(reg, m.reconciles); err != nil {
		return nil, err
	}
	if m.acks, err = register(reg, m.acks); err != nil {
		return nil, err
	}
	// Make every series visible from the start (a zero is information).
	for _, k := range []string{KindRevoke, KindHold, KindLift} {
		m.applied.WithLabelValues(k)
	}
	for _, r := range rejectReasons {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "failed"} {
		m.reconciles.WithLabelValues(r)
	}
	for _, r := range []string{"published", "failed"} {
		m.acks.WithLabelValues(r)
	}
	return m, nil
}

// producerMetrics is the Producer's metrics struct.
type producerMetrics struct {
	published  prometheus.Counter
	duplicates prometheus.Counter
	failed     prometheus.Counter
	retried    prometheus.Counter
	invalid    prometheus.Counter
}

func newProducerMetrics(reg prometheus.Registerer) *producerMetrics {
	c := func(name, help string) prometheus.Counter {
		ctr := prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "producer", Name: name, Help: help,
		})
		// Several producers in one process share the same series.
		ctr, _ = register(reg, ctr)
		return ctr
	}
	return &producerMetrics{
		published:  c("events_published_total", "Events acknowledged by the events stream (duplicates included)."),
		duplicates: c("events_duplicate_total", "Events the stream acknowledged as duplicates of an earlier event id."),
		failed:     c("events_failed_total", "Events given up on after every retry (returned by Flush)."),
		retried:    c("events_retried_total", "Publish attempts repeated after a failed or timed-out acknowledgement."),
		invalid:    c("events_invalid_total", "Events refused by Publish because they failed validation."),
	}
}

// register registers c, or returns the collector already registered under
// the same description so that two components sharing a registerer share
// the series instead of failing.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
