package detect

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	eventsIn      *prometheus.CounterVec
	invalid       prometheus.Counter
	replayed      prometheus.Counter
	decisions     *prometheus.CounterVec
	revocations   *prometheus.CounterVec
	unenforceable prometheus.Counter
	guardTrips    *prometheus.CounterVec
	evalSeconds   prometheus.Histogram
	batchSeconds  prometheus.Histogram
	decideSeconds prometheus.Histogram
	publishRetry  prometheus.Counter
	lag           *prometheus.GaugeVec
	owned         prometheus.Gauge
	ruleErrors    prometheus.Counter
	tooLate       prometheus.Counter
	tampered      prometheus.Counter

	rulesInfo     *prometheus.GaugeVec
	rulesRevision prometheus.Gauge
	rulesCount    prometheus.Gauge
	reloads       *prometheus.CounterVec
	held          *prometheus.CounterVec

	timeToEnforce    prometheus.Histogram
	unapplied        prometheus.Counter
	unappliedPending prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		eventsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "events_total",
			Help: "Events consumed by detector workers.",
		}, []string{"partition"}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "dead_letters_total",
			Help: "Events sent to the dead-letter stream.",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "replayed_events_total",
			Help: "Events replayed to rebuild windows after taking over a partition.",
		}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "decisions_total",
			Help: "Decisions published, by rule, mode and action.",
		}, []string{"rule", "mode", "action"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "revocations_total",
			Help: "Revocation and hold commands issued.",
		}, []string{"kind"}),
		unenforceable: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "unenforceable_decisions_total",
			Help: "Enforce-mode decisions whose scope value was missing from the event.",
		}),
		guardTrips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "guard_rail_trips_total",
			Help: "Rules switched to shadow because they revoked too many subjects per minute.",
		}, []string{"rule"}),
		evalSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "eval_seconds_per_event",
			Help:    "Rule evaluation time per event, measured per batch.",
			Buckets: prometheus.ExponentialBuckets(1e-7, 2, 16),
		}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "batch_seconds",
			Help:    "Time to process a batch: decode, evaluate, publish decisions, ack.",
			Buckets: prometheus.ExponentialBuckets(1e-4, 2, 16),
		}),
		decideSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "fresh_decision_seconds",
			Help:    "Time to answer a fresh-decision request.",
			Buckets: prometheus.ExponentialBuckets(1e-5, 2, 16),
		}),
		publishRetry: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "publish_retries_total",
			Help: "Retries publishing decisions, revocations or dead letters.",
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "lag_events",
			Help: "Events waiting in a partition's consumer.",
		}, []string{"partition"}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "partitions_owned",
			Help: "Partitions this worker owns.",
		}),
		ruleErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "rule_errors_total",
			Help: "Runtime errors evaluating rules (counted, never fatal).",
		}),
		tooLate: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "too_late_events_total",
			Help: "Events older than the lateness bound: stored, not counted in windows.",
		}),
		tampered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "revocation_key_tampered_total",
			Help: "Revocation keys found holding something other than their command, and overwritten.",
		}),
		timeToEnforce: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "tripline", Name: "time_to_enforce_seconds",
			Help:    "From a revocation's issue to the first enforcer acknowledging it (applied_at − issued_at).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		unapplied: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tripline", Name: "revocations_unapplied_total",
			Help: "Revocations and holds no enforcer acknowledged in time — page on it.",
		}),
		rulesInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "rule_set_info",
			Help: "The rule set this worker runs: 1 for its hash.",
		}, []string{"hash"}),
		rulesRevision: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "rule_set_revision",
			Help: "Revision of the rules bucket's active key this worker runs (0: its configured files).",
		}),
		rulesCount: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "rules",
			Help: "Rules in the set this worker runs.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "rule_set_reloads_total",
			Help: "Rule sets swapped in (applied) or refused (rejected: a proposal or commit that did not compile).",
		}, []string{"result"}),
		held: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "detect", Name: "firings_held_total",
			Help: "Rule firings that made no decision, by rule and reason (cooldown, exception).",
		}, []string{"rule", "reason"}),
		unappliedPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "tripline", Name: "revocations_awaiting_ack",
			Help: "Revocations and holds issued and not yet acknowledged by any enforcer.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.eventsIn, m.invalid, m.replayed, m.decisions, m.revocations, m.unenforceable,
			m.guardTrips, m.evalSeconds, m.batchSeconds, m.decideSeconds, m.publishRetry, m.lag, m.owned,
			m.ruleErrors, m.tooLate, m.tampered, m.timeToEnforce, m.unapplied, m.unappliedPending,
			m.rulesInfo, m.rulesRevision, m.rulesCount, m.reloads, m.held)
	}
	return m
}
