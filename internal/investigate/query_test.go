package investigate_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/investigate"
)

func TestTimeline(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		q      investigate.TimelineQuery
		want   []string
		agents []string
	}{
		// The session's events across the two agents that acted in it,
		// in time order, e1 and e3 once each although stored twice.
		{"session", investigate.TimelineQuery{By: "session", Value: "s-1"},
			[]string{"e1", "e2", "e3", "e4", "e5"}, []string{agentA, agentB}},
		{"agent", investigate.TimelineQuery{By: "agent", Value: agentA},
			[]string{"e1", "e2", "e5", "e6"}, []string{agentA}},
		{"task", investigate.TimelineQuery{By: "task", Value: "t-1"},
			[]string{"e1", "e2", "e3", "e4", "e5"}, []string{agentA, agentB}},
		{"principal", investigate.TimelineQuery{By: "principal", Value: "alice"},
			[]string{"e1", "e2", "e3", "e4", "e5", "e6"}, []string{agentA, agentB}},
		{"tool", investigate.TimelineQuery{By: "session", Value: "s-1", Filter: investigate.EventFilter{Tool: "http"}},
			[]string{"e3", "e4"}, []string{agentA, agentB}},
		{"action", investigate.TimelineQuery{By: "principal", Value: "alice", Filter: investigate.EventFilter{Action: "write"}},
			[]string{"e6"}, []string{agentA, agentB}},
		{"outcome", investigate.TimelineQuery{By: "session", Value: "s-1", Filter: investigate.EventFilter{Outcome: "denied"}},
			[]string{"e4"}, []string{agentA, agentB}},
		{"sensitivity", investigate.TimelineQuery{By: "agent", Value: agentA, Filter: investigate.EventFilter{Sensitivity: "internal"}},
			[]string{"e2"}, []string{agentA}},
		{"resource exact", investigate.TimelineQuery{By: "agent", Value: agentA, Filter: investigate.EventFilter{Resource: "/data/customers.csv"}},
			[]string{"e1", "e5"}, []string{agentA}},
		{"resource contains", investigate.TimelineQuery{By: "agent", Value: agentA, Filter: investigate.EventFilter{ResourceContains: "customers"}},
			[]string{"e1", "e5", "e6"}, []string{agentA}},
		{"destination", investigate.TimelineQuery{By: "session", Value: "s-1", Filter: investigate.EventFilter{Destination: "paste.example.com"}},
			[]string{"e3", "e4"}, []string{agentA, agentB}},
		{"destination contains", investigate.TimelineQuery{By: "session", Value: "s-1", Filter: investigate.EventFilter{DestinationContains: "paste"}},
			[]string{"e3", "e4"}, []string{agentA, agentB}},
		// The two-day-old e0 is in a longer period.
		{"period", investigate.TimelineQuery{By: "session", Value: "s-1",
			Period: investigate.Period{From: base.AddDate(0, 0, -3), To: base.Add(3 * time.Second)}},
			[]string{"e0", "e1", "e2"}, []string{agentA, agentB}},
		{"nobody", investigate.TimelineQuery{By: "session", Value: "s-404"}, []string{}, []string{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.q.Tenant = "acme"
			if c.q.Period.From.IsZero() {
				c.q.Period = day()
			}
			tl, err := f.q.Timeline(ctx, c.q)
			require.NoError(t, err)
			require.Equal(t, c.want, ids(tl.Events))
			require.Equal(t, c.agents, tl.Agents)
			require.False(t, tl.Truncated)
		})
	}
}

// The limit keeps the oldest events and says so.
func TestTimelineLimit(t *testing.T) {
	f := newFixture(t)
	tl, err := f.q.Timeline(context.Background(), investigate.TimelineQuery{Tenant: "acme", By: "session", Value: "s-1", Period: day(), Limit: 3})
	require.NoError(t, err)
	require.Equal(t, []string{"e1", "e2", "e3"}, ids(tl.Events))
	require.True(t, tl.Truncated)
	tl, err = f.q.Timeline(context.Background(), investigate.TimelineQuery{Tenant: "acme", By: "session", Value: "s-1", Period: day(), Limit: 5})
	require.NoError(t, err)
	require.Len(t, tl.Events, 5)
	require.False(t, tl.Truncated, "exactly the limit, duplicates folded")
}

func TestTouched(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, err := f.q.Touched(ctx, investigate.TouchedQuery{Tenant: "acme", Kind: "resource", Value: "/data/customers.csv", Period: day()})
	require.NoError(t, err)
	require.Len(t, res.Touches, 2)
	a, c := res.Touches[0], res.Touches[1]
	require.Equal(t, agentA, a.Agent)
	require.Equal(t, "s-1", a.Session)
	require.Equal(t, uint64(2), a.Events, "e1 is stored twice and counted once")
	require.Equal(t, at(1), a.First)
	require.Equal(t, at(5), a.Last)
	require.Equal(t, []string{"read"}, a.Actions)
	require.Equal(t, []string{"fs"}, a.Tools)
	require.Equal(t, agentC, c.Agent)
	require.Equal(t, uint64(1), c.Events)

	res, err = f.q.Touched(ctx, investigate.TouchedQuery{Tenant: "acme", Kind: "resource", Value: "customers", Contains: true, Period: day()})
	require.NoError(t, err)
	var values []string
	for _, x := range res.Touches {
		values = append(values, x.Agent+" "+x.Value)
	}
	require.Equal(t, []string{agentA + " /data/customers.csv", agentA + " db://crm/customers", agentC + " /data/customers.csv"}, values)

	res, err = f.q.Touched(ctx, investigate.TouchedQuery{Tenant: "acme", Kind: "destination", Value: "paste.example.com", Period: day()})
	require.NoError(t, err)
	require.Len(t, res.Touches, 1)
	require.Equal(t, agentB, res.Touches[0].Agent)
	require.Equal(t, uint64(2), res.Touches[0].Events)
	require.Equal(t, []string{"send"}, res.Touches[0].Actions)

	res, err = f.q.Touched(ctx, investigate.TouchedQuery{Tenant: "acme", Kind: "resource", Value: "/data/customers.csv", Period: day(), Limit: 1})
	require.NoError(t, err)
	require.Len(t, res.Touches, 1)
	require.True(t, res.Truncated)
}

func TestTop(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	type row struct {
		key   string
		value int64
	}
	for _, c := range []struct {
		by, metric string
		want       []row
	}{
		// e1 and e3 are stored twice; every figure counts them once.
		{"agent", "count", []row{{agentA, 4}, {agentB, 2}, {agentC, 2}}},
		{"agent", "rate", []row{{agentA, 3}, {agentB, 2}, {agentC, 2}}},
		{"session", "count", []row{{"s-1", 5}, {"s-2", 1}, {"s-3", 1}, {hostile, 1}}},
		{"agent", "resources", []row{{agentA, 3}, {agentC, 2}, {agentB, 0}}},
		{"agent", "destinations", []row{{agentB, 1}, {agentC, 1}, {agentA, 0}}},
		{"agent", "tools", []row{{agentA, 2}, {agentC, 2}, {agentB, 1}}},
		{"agent", "bytes_out", []row{{agentB, 10000}, {agentA, 0}, {agentC, 0}}},
		{"agent", "bytes_in", []row{{agentA, 2500}, {agentC, 10}, {agentB, 0}}},
		{"session", "records", []row{{"s-1", 25}, {"s-2", 0}, {"s-3", 0}, {hostile, 0}}},
	} {
		t.Run(c.by+"/"+c.metric, func(t *testing.T) {
			top, err := f.q.Top(ctx, investigate.TopQuery{Tenant: "acme", By: c.by, Metric: c.metric, Period: day()})
			require.NoError(t, err)
			var got []row
			for _, r := range top.Rows {
				got = append(got, row{r.Key, r.Value})
			}
			require.Equal(t, c.want, got)
		})
	}
	top, err := f.q.Top(ctx, investigate.TopQuery{Tenant: "acme", By: "agent", Metric: "bytes_in", Period: day(), Limit: 1})
	require.NoError(t, err)
	require.Len(t, top.Rows, 1)
	require.Equal(t, uint64(4), top.Rows[0].Events)
	require.Equal(t, at(1), top.Rows[0].First)
	require.Equal(t, at(70), top.Rows[0].Last)
}

func TestDecisions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		q    investigate.DecisionQuery
		want []string
	}{
		{"all, newest first, d1 once", investigate.DecisionQuery{}, []string{"d2", "d1"}},
		{"rule", investigate.DecisionQuery{Rule: "exfil-volume"}, []string{"d1"}},
		{"agent", investigate.DecisionQuery{Agent: agentA}, []string{"d2"}},
		{"session", investigate.DecisionQuery{Session: "s-1"}, []string{"d1"}},
		{"mode", investigate.DecisionQuery{Mode: "shadow"}, []string{"d2"}},
		{"action", investigate.DecisionQuery{Action: "revoke"}, []string{"d1"}},
		{"none", investigate.DecisionQuery{Rule: "nope"}, []string{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.q.Tenant, c.q.Period = "acme", day()
			res, err := f.q.Decisions(ctx, c.q)
			require.NoError(t, err)
			got := []string{}
			for _, d := range res.Decisions {
				got = append(got, d.ID)
			}
			require.Equal(t, c.want, got)
		})
	}
	res, err := f.q.Decisions(ctx, investigate.DecisionQuery{Tenant: "acme", Period: day(), Rule: "exfil-volume"})
	require.NoError(t, err)
	d := res.Decisions[0]
	require.Equal(t, "v3", d.RuleVersion)
	require.Equal(t, "critical", d.Severity)
	require.Equal(t, at(4), d.Time)
	require.Equal(t, []string{"e3", "e2", "e-missing"}, d.Evidence)
	require.Len(t, d.Values, 2)
	require.Equal(t, ">", d.Values[0].Op)
	require.Equal(t, 100.0, *d.Values[0].Threshold)
	require.Nil(t, d.Values[1].Threshold)

	res, err = f.q.Decisions(ctx, investigate.DecisionQuery{Tenant: "acme", Period: day(), Limit: 1})
	require.NoError(t, err)
	require.Len(t, res.Decisions, 1)
	require.True(t, res.Truncated)
}

func TestRevocations(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	type row struct{ id, status string }
	for _, c := range []struct {
		name string
		q    investigate.RevocationQuery
		want []row
	}{
		// Newest first; c1 once although stored twice; c1 lifted by l1,
		// c3 past its expiry, c2 in force.
		{"all", investigate.RevocationQuery{}, []row{{"l1", ""}, {"c3", "expired"}, {"c1", "lifted"}, {"c2", "active"}}},
		{"active", investigate.RevocationQuery{Status: "active"}, []row{{"c2", "active"}}},
		{"lifted", investigate.RevocationQuery{Status: "lifted"}, []row{{"c1", "lifted"}}},
		{"expired", investigate.RevocationQuery{Status: "expired"}, []row{{"c3", "expired"}}},
		{"kind", investigate.RevocationQuery{Kind: "hold"}, []row{{"c2", "active"}}},
		{"scope and value", investigate.RevocationQuery{Scope: "session", Value: "s-1"}, []row{{"l1", ""}, {"c1", "lifted"}}},
		{"agent", investigate.RevocationQuery{Agent: agentB}, []row{{"c1", "lifted"}, {"c2", "active"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.q.Tenant, c.q.Period = "acme", day()
			res, err := f.q.Revocations(ctx, c.q)
			require.NoError(t, err)
			var got []row
			for _, r := range res.Revocations {
				got = append(got, row{r.ID, r.Status})
			}
			require.Equal(t, c.want, got)
		})
	}
	res, err := f.q.Revocations(ctx, investigate.RevocationQuery{Tenant: "acme", Period: day(), Status: "lifted"})
	require.NoError(t, err)
	r := res.Revocations[0]
	require.Equal(t, base.Add(30*time.Minute), *r.LiftedAt)
	require.Equal(t, "d1", r.Decision)
	require.Equal(t, []string{"e4"}, r.Evidence)
	require.Equal(t, base.Add(2*time.Hour), r.ExpiresAt)

	// Before the lift and the expiry, everything issued by then is active.
	early := investigate.New(f.s, investigate.Options{Now: func() time.Time { return base.Add(15 * time.Minute) }})
	res, err = early.Revocations(ctx, investigate.RevocationQuery{Tenant: "acme", Period: investigate.Period{From: base.Add(-time.Hour), To: base.Add(15 * time.Minute)}})
	require.NoError(t, err)
	for _, r := range res.Revocations {
		require.Equal(t, "active", r.Status, r.ID)
	}

	res, err = f.q.Revocations(ctx, investigate.RevocationQuery{Tenant: "acme", Period: day(), Limit: 2})
	require.NoError(t, err)
	require.Len(t, res.Revocations, 2)
	require.True(t, res.Truncated)
}

func TestExplainDecision(t *testing.T) {
	f := newFixture(t)
	x, err := f.q.Explain(context.Background(), "acme", "d1")
	require.NoError(t, err)
	require.Equal(t, "d1", x.Decision.ID)
	require.Equal(t, "exfil-volume", x.Decision.Rule)
	require.Equal(t, "large upload to a paste site", x.Decision.Reason)
	// The fired event and the evidence, oldest first, from acme only
	// (tenant other has events e1 and e2 too).
	require.Equal(t, []string{"e2", "e3", "e4"}, ids(x.Evidence))
	for _, e := range x.Evidence {
		require.Equal(t, "acme", e.Tenant)
	}
	require.Equal(t, []string{"e-missing"}, x.MissingEvidence)

	require.Len(t, x.Commands, 2)
	c1, c2 := x.Commands[0], x.Commands[1]
	require.Equal(t, "c1", c1.ID)
	require.Equal(t, "lifted", c1.Status)
	require.Len(t, c1.LiftedBy, 1)
	require.Equal(t, "l1", c1.LiftedBy[0].ID)
	require.Len(t, c1.LiftedBy[0].Acks, 1)
	require.Equal(t, int64(5), c1.LiftedBy[0].Acks[0].TimeToEnforceMS)
	// Two enforcers, proxy-1's ack stored twice and counted once.
	require.Len(t, c1.Acks, 2)
	require.Equal(t, "proxy-1", c1.Acks[0].Enforcer)
	require.Equal(t, int64(3), c1.Acks[0].TimeToEnforceMS)
	require.Equal(t, "gateway-2", c1.Acks[1].Enforcer)
	require.Equal(t, int64(45), c1.Acks[1].TimeToEnforceMS)
	require.Equal(t, "c2", c2.ID)
	require.Equal(t, "active", c2.Status)
	require.Empty(t, c2.Acks)

	s := x.Summary
	require.Equal(t, 2, s.Commands)
	require.Equal(t, 1, s.Acked)
	require.Equal(t, 2, s.Acks)
	require.Equal(t, []string{"gateway-2", "proxy-1"}, s.Enforcers)
	require.Equal(t, "proxy-1", s.FirstAck.Enforcer)
	require.Equal(t, int64(3), s.FirstAck.TimeToEnforceMS)
	require.Equal(t, "gateway-2", s.SlowestAck.Enforcer)
	require.Equal(t, int64(45), s.SlowestAck.TimeToEnforceMS)
	require.Equal(t, []string{"c2"}, s.Unacknowledged)
}

// A command id explains the decision behind it; a lift's id, what it
// lifted; an analyst's command stands alone.
func TestExplainCommand(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, id := range []string{"c1", "c2", "l1"} {
		x, err := f.q.Explain(ctx, "acme", id)
		require.NoError(t, err, id)
		require.Equal(t, id, x.ID)
		require.Equal(t, "d1", x.Decision.ID, id)
		require.Len(t, x.Commands, 2, id)
	}
	x, err := f.q.Explain(ctx, "acme", "c3")
	require.NoError(t, err)
	require.Nil(t, x.Decision)
	require.Empty(t, x.Evidence)
	require.Len(t, x.Commands, 1)
	require.Equal(t, "expired", x.Commands[0].Status)
	require.Equal(t, "analyst/bob", x.Commands[0].Issuer)
	require.Equal(t, []string{"c3"}, x.Summary.Unacknowledged)

	_, err = f.q.Explain(ctx, "acme", "nope")
	require.ErrorIs(t, err, investigate.ErrNotFound)
}

// Tenant other has rows with the same ids, agents, sessions and resources
// as acme: it sees only its own, and acme never sees them.
func TestTenantScoping(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tl, err := f.q.Timeline(ctx, investigate.TimelineQuery{Tenant: "other", By: "session", Value: "s-1", Period: day()})
	require.NoError(t, err)
	require.Equal(t, []string{"e1", "e2"}, ids(tl.Events))
	for _, e := range tl.Events {
		require.Equal(t, "other", e.Tenant)
	}
	tl, err = f.q.Timeline(ctx, investigate.TimelineQuery{Tenant: "acme", By: "agent", Value: agentA, Period: day(),
		Filter: investigate.EventFilter{Resource: "OTHER-SECRET"}})
	require.NoError(t, err)
	require.Empty(t, tl.Events)

	touched, err := f.q.Touched(ctx, investigate.TouchedQuery{Tenant: "other", Kind: "resource", Value: "/data/customers.csv", Period: day()})
	require.NoError(t, err)
	require.Len(t, touched.Touches, 1)
	require.Equal(t, uint64(1), touched.Touches[0].Events)
	touched, err = f.q.Touched(ctx, investigate.TouchedQuery{Tenant: "acme", Kind: "resource", Value: "OTHER-SECRET", Period: day()})
	require.NoError(t, err)
	require.Empty(t, touched.Touches)

	top, err := f.q.Top(ctx, investigate.TopQuery{Tenant: "other", By: "agent", Metric: "count", Period: day()})
	require.NoError(t, err)
	require.Len(t, top.Rows, 1)
	require.Equal(t, int64(2), top.Rows[0].Value)
	top, err = f.q.Top(ctx, investigate.TopQuery{Tenant: "acme", By: "agent", Metric: "bytes_out", Period: day(), Limit: 1})
	require.NoError(t, err)
	require.Equal(t, int64(10000), top.Rows[0].Value, "other's 1 GiB upload is not acme's")

	ds, err := f.q.Decisions(ctx, investigate.DecisionQuery{Tenant: "other", Period: day()})
	require.NoError(t, err)
	require.Len(t, ds.Decisions, 1)
	require.Equal(t, "other-rule", ds.Decisions[0].Rule)

	rs, err := f.q.Revocations(ctx, investigate.RevocationQuery{Tenant: "other", Period: day()})
	require.NoError(t, err)
	require.Len(t, rs.Revocations, 1)
	require.Equal(t, "active", rs.Revocations[0].Status, "acme's lift of c1 does not lift other's c1")

	x, err := f.q.Explain(ctx, "other", "d1")
	require.NoError(t, err)
	require.Equal(t, "other-rule", x.Decision.Rule)
	require.Equal(t, []string{"e2"}, ids(x.Evidence))
	require.Equal(t, "OTHER-SECRET", x.Evidence[0].Resource)
	require.Len(t, x.Commands, 1)
	require.Equal(t, []string{"other-proxy"}, x.Summary.Enforcers)

	_, err = f.q.Explain(ctx, "nobody", "d1")
	require.ErrorIs(t, err, investigate.ErrNotFound)
}

// Hostile strings are stored, searched and returned byte for byte.
func TestHostileStrings(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tl, err := f.q.Timeline(ctx, investigate.TimelineQuery{Tenant: "acme", By: "session", Value: hostile, Period: day(),
		Filter: investigate.EventFilter{Tool: hostile, ResourceContains: "DROP TABLE"}})
	require.NoError(t, err)
	require.Equal(t, []string{"h1"}, ids(tl.Events))
	e := tl.Events[0]
	require.Equal(t, hostile, e.Session)
	require.Equal(t, hostile, e.Resource)
	require.Equal(t, hostile, e.Attrs["note"])

	for _, by := range []string{"task", "principal"} {
		tl, err := f.q.Timeline(ctx, investigate.TimelineQuery{Tenant: "acme", By: by, Value: hostile, Period: day()})
		require.NoError(t, err)
		require.Equal(t, []string{"h1"}, ids(tl.Events), by)
	}
	touched, err := f.q.Touched(ctx, investigate.TouchedQuery{Tenant: "acme", Kind: "resource", Value: hostile, Period: day()})
	require.NoError(t, err)
	require.Len(t, touched.Touches, 1)
	require.Equal(t, hostile, touched.Touches[0].Value)
	require.Equal(t, []string{hostile}, touched.Touches[0].Tools)
}

// Limits, periods and filters are checked before anything runs.
func TestInvalidQueries(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	long := investigate.Period{From: base.AddDate(0, -2, 0), To: base}
	for name, run := range map[string]func() error{
		"limit above max": func() error {
			_, err := f.q.Timeline(ctx, investigate.TimelineQuery{Tenant: "acme", By: "agent", Value: "a", Period: day(), Limit: investigate.MaxTimelineLimit + 1})
			return err
		},
		"negative limit": func() error {
			_, err := f.q.Decisions(ctx, investigate.DecisionQuery{Tenant: "acme", Period: day(), Limit: -1})
			return err
		},
		"top limit": func() error {
			_, err := f.q.Top(ctx, investigate.TopQuery{Tenant: "acme", By: "agent", Period: day(), Limit: investigate.MaxTopLimit + 1})
			return err
		},
		"no tenant": func() error {
			_, err := f.q.Timeline(ctx, investigate.TimelineQuery{By: "agent", Value: "a", Period: day()})
			return err
		},
		"no subject": func() error {
			_, err := f.q.Timeline(ctx, investigate.TimelineQuery{Tenant: "acme", Period: day()})
			return err
		},
		"bad by": func() error {
			_, err := f.q.Timeline(ctx, investigate.TimelineQuery{Tenant: "acme", By: "tool", Value: "x", Period: day()})
			return err
		},
		"period too long": func() error {
			_, err := f.q.Timeline(ctx, investigate.TimelineQuery{Tenant: "acme", By: "agent", Value: "a", Period: long})
			return err
		},
		"empty period": func() error {
			_, err := f.q.Touched(ctx, investigate.TouchedQuery{Tenant: "acme", Kind: "resource", Value: "r", Period: investigate.Period{From: base, To: base}})
			return err
		},
		"bad action": func() error {
			_, err := f.q.Timeline(ctx, investigate.TimelineQuery{Tenant: "acme", By: "agent", Value: "a", Period: day(), Filter: investigate.EventFilter{Action: "steal"}})
			return err
		},
		"exact and contains": func() error {
			_, err := f.q.Timeline(ctx, investigate.TimelineQuery{Tenant: "acme", By: "agent", Value: "a", Period: day(), Filter: investigate.EventFilter{Resource: "a", ResourceContains: "b"}})
			return err
		},
		"bad metric": func() error {
			_, err := f.q.Top(ctx, investigate.TopQuery{Tenant: "acme", By: "agent", Metric: "vibes", Period: day()})
			return err
		},
		"bad status": func() error {
			_, err := f.q.Revocations(ctx, investigate.RevocationQuery{Tenant: "acme", Period: day(), Status: "pending"})
			return err
		},
		"bad kind": func() error {
			_, err := f.q.Touched(ctx, investigate.TouchedQuery{Tenant: "acme", Kind: "tool", Value: "r", Period: day()})
			return err
		},
		"long value": func() error {
			_, err := f.q.Explain(ctx, "acme", string(make([]byte, investigate.MaxValueLen+1)))
			return err
		},
	} {
		require.ErrorIs(t, run(), investigate.ErrInvalid, name)
	}
}

func TestParsePeriod(t *testing.T) {
	clock := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		since, from, to string
		want            investigate.Period
	}{
		{"", "", "", investigate.Period{From: clock.Add(-24 * time.Hour), To: clock}},
		{"90m", "", "", investigate.Period{From: clock.Add(-90 * time.Minute), To: clock}},
		{"7d", "", "", investigate.Period{From: clock.AddDate(0, 0, -7), To: clock}},
		{"", "2026-11-27T00:00:00Z", "", investigate.Period{From: clock.Add(-36 * time.Hour), To: clock}},
		{"", "2026-11-27T01:00:00+01:00", "2026-11-27T06:00:00Z", investigate.Period{From: clock.Add(-36 * time.Hour), To: clock.Add(-30 * time.Hour)}},
		{"1h", "", "2026-11-27T06:00:00Z", investigate.Period{From: clock.Add(-31 * time.Hour), To: clock.Add(-30 * time.Hour)}},
	} {
		p, err := investigate.ParsePeriod(c.since, c.from, c.to, clock)
		require.NoError(t, err)
		require.True(t, c.want.From.Equal(p.From) && c.want.To.Equal(p.To), "%+v: got %v – %v", c, p.From, p.To)
	}
	for _, bad := range [][3]string{{"1h", "2026-11-27T00:00:00Z", ""}, {"-1h", "", ""}, {"7x", "", ""}, {"0d", "", ""},
		{"", "yesterday", ""}, {"", "", "2026-11-27"}} {
		_, err := investigate.ParsePeriod(bad[0], bad[1], bad[2], clock)
		require.ErrorIs(t, err, investigate.ErrInvalid, "%q", bad)
	}
}
