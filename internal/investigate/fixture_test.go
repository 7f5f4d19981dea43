package investigate_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/internal/chtest"
	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/internal/investigate"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// The fixture's clock: base is when its story starts, now an hour later.
var (
	base = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	now  = base.Add(time.Hour)
)

const (
	agentA = "spiffe://acme/agent-a"
	agentB = "spiffe://acme/agent-b" // a sub-agent acting in session s-1
	agentC = "spiffe://acme/agent-c"
	// hostile is stored and must come back byte for byte.
	hostile = "x'); DROP TABLE events; --\"\\\x00\x01\x1b[31m\n\t,=1+2\u202e☃"
)

// at is base plus a number of seconds.
func at(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }

type fixture struct {
	s *history.Schema
	q *investigate.Querier
}

// newFixture migrates a fresh database and loads the story: tenant acme's
// events, decisions, commands and acks, tenant other's look-alikes, and a
// duplicate of some rows of each table (as a redelivery before a merge
// would leave them).
func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := chtest.NewDB(t)
	ctx := context.Background()
	s, err := history.Migrate(ctx, db.Conn, db.Database, history.SchemaOptions{})
	require.NoError(t, err)
	f := &fixture{s: s, q: investigate.New(s, investigate.Options{Now: func() time.Time { return now }})}
	// No merge may fold the duplicates this fixture writes: the queries
	// must fold them themselves.
	for _, table := range []string{history.TableEvents, history.TableDecisions, history.TableRevocations, history.TableAcks} {
		require.NoError(t, db.Conn.Exec(ctx, "SYSTEM STOP MERGES "+s.T(table)))
	}

	acme := []pipeline.Event{
		{ID: "e1", Time: at(1), Tenant: "acme", Agent: agentA, Session: "s-1", Task: "t-1", Principal: "alice",
			Tool: "fs", Action: pipeline.ActionRead, Resource: "/data/customers.csv", Sensitivity: "confidential",
			Outcome: "ok", BytesIn: 1000, Records: 10},
		{ID: "e2", Time: at(2), Tenant: "acme", Agent: agentA, Session: "s-1", Task: "t-1", Principal: "alice",
			Tool: "fs", Action: pipeline.ActionRead, Resource: "/data/orders.csv", Sensitivity: "internal",
			Outcome: "ok", BytesIn: 500, Records: 5},
		{ID: "e3", Time: at(3), Tenant: "acme", Agent: agentB, ParentAgent: agentA, DelegationDepth: 1, Session: "s-1",
			Task: "t-1", Principal: "alice", Tool: "http", Action: pipeline.ActionSend, Destination: "paste.example.com",
			Sensitivity: "confidential", Outcome: "ok", BytesOut: 4000},
		{ID: "e4", Time: at(4), Tenant: "acme", Agent: agentB, ParentAgent: agentA, DelegationDepth: 1, Session: "s-1",
			Task: "t-1", Principal: "alice", Tool: "http", Action: pipeline.ActionSend, Destination: "paste.example.com",
			Sensitivity: "confidential", Outcome: "denied", BytesOut: 6000},
		{ID: "e5", Time: at(5), Tenant: "acme", Agent: agentA, Session: "s-1", Task: "t-1", Principal: "alice",
			Tool: "fs", Action: pipeline.ActionRead, Resource: "/data/customers.csv", Sensitivity: "confidential",
			Outcome: "ok", BytesIn: 1000, Records: 10},
		{ID: "e6", Time: at(70), Tenant: "acme", Agent: agentA, Session: "s-2", Task: "t-2", Principal: "alice",
			Tool: "db", Action: pipeline.ActionWrite, Resource: "db://crm/customers", Outcome: "error"},
		{ID: "e7", Time: at(80), Tenant: "acme", Agent: agentC, Session: "s-3", Task: "t-3", Principal: "bob",
			Tool: "fs", Action: pipeline.ActionRead, Resource: "/data/customers.csv", Outcome: "ok", BytesIn: 10},
		// Two days earlier: outside the default period.
		{ID: "e0", Time: base.AddDate(0, 0, -2), Tenant: "acme", Agent: agentA, Session: "s-1", Tool: "fs",
			Action: pipeline.ActionRead, Resource: "/data/customers.csv", Outcome: "ok"},
		// Hostile values everywhere a caller can search or see.
		{ID: "h1", Time: at(90), Tenant: "acme", Agent: agentC, Session: hostile, Task: hostile, Principal: hostile,
			Tool: hostile, Action: pipeline.ActionOther, Resource: hostile, Destination: "=HYPERLINK(\"http://evil\")",
			Outcome: "ok", Attrs: map[string]string{"note": hostile}},
	}
	other := []pipeline.Event{
		// Same ids, agent names, session and resource in another tenant.
		{ID: "e1", Time: at(1), Tenant: "other", Agent: agentA, Session: "s-1", Task: "t-1", Principal: "alice",
			Tool: "fs", Action: pipeline.ActionRead, Resource: "/data/customers.csv", Outcome: "ok", BytesOut: 1 << 30},
		{ID: "e2", Time: at(2), Tenant: "other", Agent: agentA, Session: "s-1", Tool: "fs", Action: pipeline.ActionRead,
			Resource: "OTHER-SECRET", Outcome: "ok"},
	}
	require.NoError(t, s.InsertEvents(ctx, append(acme, other...)))
	// e1 and e3 again, as a redelivery would write them.
	require.NoError(t, s.InsertEvents(ctx, []pipeline.Event{acme[0], acme[2]}))

	th := 100.0
	d1 := detectors.Decision{ID: "d1", Time: at(4), Tenant: "acme", Rule: "exfil-volume", RuleVersion: "v3",
		Severity: "critical", Tags: []string{"exfil"}, Mode: "enforce", Action: "revoke", Scope: "session",
		Group: "tenant=acme,session=s-1", Subject: detectors.Subject{Agent: agentB, Session: "s-1", Principal: "alice"},
		EventID: "e4", Evidence: []string{"e3", "e2", "e-missing"}, Anchor: at(0).UnixMilli(),
		Values: []detectors.Value{{Name: "bytes_out_5m", Value: 10000, Op: ">", Threshold: &th}, {Name: "destinations", Value: 1}},
		Reason: "large upload to a paste site"}
	d2 := detectors.Decision{ID: "d2", Time: at(70), Tenant: "acme", Rule: "write-errors", RuleVersion: "v1",
		Severity: "low", Mode: "shadow", Action: "alert", Subject: detectors.Subject{Agent: agentA, Session: "s-2"},
		EventID: "e6", Reason: "write errors"}
	dOther := detectors.Decision{ID: "d1", Time: at(4), Tenant: "other", Rule: "other-rule", Mode: "enforce",
		Action: "revoke", Subject: detectors.Subject{Agent: agentA, Session: "s-1"}, EventID: "e2", Reason: "other tenant"}
	require.NoError(t, s.InsertDecisions(ctx, []detectors.Decision{d1, d2, dOther}))
	require.NoError(t, s.InsertDecisions(ctx, []detectors.Decision{d1}))

	cmds := []enforce.Command{
		{ID: "c1", Kind: enforce.KindRevoke, Tenant: "acme", Scope: enforce.ScopeSession, Value: "s-1", Agent: agentB,
			Reason: "large upload to a paste site", Rule: "exfil-volume", RuleVersion: "v3", Decision: "d1",
			Evidence: []string{"e4"}, IssuedAt: at(6), ExpiresAt: base.Add(2 * time.Hour), Issuer: "engine/w1", KeyID: "k1"},
		{ID: "c2", Kind: enforce.KindHold, Tenant: "acme", Scope: enforce.ScopeAgent, Value: agentB, Agent: agentB,
			Reason: "large upload to a paste site", Rule: "exfil-volume", Decision: "d1", IssuedAt: at(6),
			ExpiresAt: base.Add(2 * time.Hour), Issuer: "engine/w1", KeyID: "k1"},
		{ID: "c3", Kind: enforce.KindRevoke, Tenant: "acme", Scope: enforce.ScopeCredential, Value: "cred-9",
			Reason: "leaked", IssuedAt: base.Add(10 * time.Minute), ExpiresAt: base.Add(20 * time.Minute),
			Issuer: "analyst/bob", KeyID: "k2"},
		{ID: "l1", Kind: enforce.KindLift, Tenant: "acme", Scope: enforce.ScopeSession, Value: "s-1", Lifts: "c1",
			Reason: "false positive", IssuedAt: base.Add(30 * time.Minute), ExpiresAt: base.Add(2 * time.Hour),
			Issuer: "analyst/bob", KeyID: "k2"},
		{ID: "c1", Kind: enforce.KindRevoke, Tenant: "other", Scope: enforce.ScopeSession, Value: "s-1", Decision: "d1",
			Reason: "other tenant", IssuedAt: at(6), ExpiresAt: base.Add(2 * time.Hour), Issuer: "engine/w9"},
	}
	require.NoError(t, s.InsertCommands(ctx, cmds))
	require.NoError(t, s.InsertCommands(ctx, cmds[:1]))

	acks := []enforce.Ack{
		{CommandID: "c1", Kind: "revoke", Tenant: "acme", Enforcer: "proxy-1", AppliedAt: at(6).Add(3 * time.Millisecond), IssuedAt: at(6)},
		{CommandID: "c1", Kind: "revoke", Tenant: "acme", Enforcer: "gateway-2", AppliedAt: at(6).Add(45 * time.Millisecond), IssuedAt: at(6)},
		{CommandID: "l1", Kind: "lift", Tenant: "acme", Enforcer: "proxy-1", AppliedAt: base.Add(30*time.Minute + 5*time.Millisecond)},
		{CommandID: "c1", Kind: "revoke", Tenant: "other", Enforcer: "other-proxy", AppliedAt: at(6).Add(time.Millisecond)},
	}
	require.NoError(t, s.InsertAcks(ctx, acks))
	require.NoError(t, s.InsertAcks(ctx, acks[:1]))

	for table, id := range map[string]string{history.TableEvents: "id = 'e1'", history.TableDecisions: "id = 'd1'",
		history.TableRevocations: "id = 'c1'", history.TableAcks: "command_id = 'c1' AND enforcer = 'proxy-1'"} {
		var n uint64
		require.NoError(t, db.Conn.QueryRow(ctx, "SELECT count() FROM "+s.T(table)+" WHERE tenant = 'acme' AND "+id).Scan(&n))
		require.Equal(t, uint64(2), n, "the fixture stores %s twice in %s", id, table)
	}
	return f
}

// day is the period of the fixture's story (excluding e0, two days before).
func day() investigate.Period { return investigate.Period{From: base.Add(-time.Hour), To: now} }

func ids(events []pipeline.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}
