package detect

import (
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/rules"
)

// guardRail stops a faulty rule from revoking everyone: a rule that issues
// more than limit revocations or holds within a minute is demoted to shadow
// on this worker until the rule set is reloaded; the trip is logged and
// counted (tripline_detect_guard_rail_trips_total), and later decisions of
// the rule carry guard_rail so analysts see why they were not enforced.
type guardRail struct {
	limit int
	now   func() time.Time
	log   zerolog.Logger
	m     *metrics

	mu      sync.Mutex
	recent  map[string][]time.Time
	tripped map[string]bool
}

func newGuardRail(limit int, now func() time.Time, log zerolog.Logger, m *metrics) *guardRail {
	return &guardRail{limit: limit, now: now, log: log, m: m, recent: map[string][]time.Time{}, tripped: map[string]bool{}}
}

func (g *guardRail) apply(decs []detectors.Decision) []detectors.Decision {
	if len(decs) == 0 {
		return decs
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	for i := range decs {
		d := &decs[i]
		if d.Mode != rules.ModeEnforce || d.Action == rules.ActionAlert {
			continue
		}
		if g.tripped[d.Rule] {
			d.Mode, d.GuardRail = rules.ModeShadow, "rule demoted to shadow: revocation rate over the guard rail"
			continue
		}
		ts := g.recent[d.Rule]
		cut := 0
		for cut < len(ts) && now.Sub(ts[cut]) > time.Minute {
			cut++
		}
		ts = append(ts[cut:], now)
		g.recent[d.Rule] = ts
		if len(ts) > g.limit {
			g.tripped[d.Rule] = true
			g.m.guardTrips.WithLabelValues(d.Rule).Inc()
			g.log.Error().Str("rule", d.Rule).Int("limit_per_min", g.limit).
				Msg("guard rail tripped: rule revoked too many subjects and is now in shadow mode; fix the rule and reload")
			d.Mode, d.GuardRail = rules.ModeShadow, "rule demoted to shadow: revocation rate over the guard rail"
		}
	}
	return decs
}

func (g *guardRail) isTripped(rule string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tripped[rule]
}
