package api

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the API's own metrics.
type metrics struct {
	requests     *prometheus.CounterVec   // route, code
	duration     *prometheus.HistogramVec // route
	authFailures *prometheus.CounterVec   // reason
	rateLimited  *prometheus.CounterVec   // caller
	panics       prometheus.Counter
}

// Reasons of tripline_api_auth_failures_total.
const (
	authMissing   = "missing"   // no Authorization header
	authMalformed = "malformed" // not "Bearer <token>"
	authInvalid   = "invalid"   // no such token
	authRole      = "role"      // the token's role is below the route's
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "api", Name: "requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "tripline", Subsystem: "api", Name: "request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "api", Name: "auth_failures_total",
			Help: "Refused API requests by reason: missing, malformed or invalid token (401), role too low (403).",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "api", Name: "rate_limited_total",
			Help: "API requests refused with 429 by the per-token rate limit, by token name.",
		}, []string{"caller"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tripline", Subsystem: "api", Name: "panics_total",
			Help: "Handler panics recovered (answered 500).",
		}),
	}
	for _, reason := range []string{authMissing, authMalformed, authInvalid, authRole} {
		m.authFailures.WithLabelValues(reason)
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.authFailures, m.rateLimited, m.panics} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("api: metrics already registered: one API server per registry")
			}
			return nil, err
		}
	}
	return m, nil
}
