package main

import (
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"strings"
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

// queryHistory is a migrated history database with a small story in it:
// the ClickHouse of $CLICKHOUSE_ADDR, or the package's shared child server
// (see TestMain).
func queryHistory(t *testing.T) (addr string, s *history.Schema) {
	t.Helper()
	addr = chtest.Addr(t)
	conn := chtest.Open(t, addr, "default")
	b := make([]byte, 6)
	rand.Read(b)
	name := "tq_" + hex.EncodeToString(b)
	ctx := context.Background()
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name) })
	s, err := history.Migrate(ctx, conn, name, history.SchemaOptions{})
	require.NoError(t, err)

	at := func(sec int) time.Time { return queryBase.Add(time.Duration(sec) * time.Second) }
	ev := []pipeline.Event{
		{ID: "e1", Time: at(1), Tenant: "acme", Agent: "agent-a", Session: "s-1", Tool: "fs", Action: "read",
			Resource: "/data/customers.csv", Outcome: "ok", BytesIn: 1000},
		{ID: "e2", Time: at(2), Tenant: "acme", Agent: "agent-a", Session: "s-1", Tool: "http", Action: "send",
			Destination: "=cmd|' /C calc'!A0", Outcome: "ok", BytesOut: 5000},
		{ID: "e3", Time: at(3), Tenant: "acme", Agent: "agent-a", Session: "s-1", Tool: "fs", Action: "read",
			Resource: "line1\nline2\x1b[2J", Outcome: "ok"},
		{ID: "x1", Time: at(1), Tenant: "other", Agent: "agent-a", Session: "s-1", Tool: "fs", Action: "read",
			Resource: "/data/customers.csv", Outcome: "ok"},
	}
	require.NoError(t, s.InsertEvents(ctx, ev))
	require.NoError(t, s.InsertEvents(ctx, ev[:1]))
	th := 1000.0
	require.NoError(t, s.InsertDecisions(ctx, []detectors.Decision{{ID: "d1", Time: at(2), Tenant: "acme", Rule: "exfil",
		RuleVersion: "v1", Severity: "high", Mode: "enforce", Action: "revoke", EventID: "e2", Evidence: []string{"e1"},
		Subject: detectors.Subject{Agent: "agent-a", Session: "s-1"}, Reason: "upload",
		Values: []detectors.Value{{Name: "bytes_out", Value: 5000, Op: ">", Threshold: &th}}}}))
	require.NoError(t, s.InsertCommands(ctx, []enforce.Command{{ID: "c1", Kind: "revoke", Tenant: "acme", Scope: "session",
		Value: "s-1", Decision: "d1", Rule: "exfil", IssuedAt: at(3), ExpiresAt: time.Now().Add(time.Hour), Issuer: "engine/w1"}}))
	require.NoError(t, s.InsertAcks(ctx, []enforce.Ack{{CommandID: "c1", Kind: "revoke", Tenant: "acme", Enforcer: "proxy-1",
		AppliedAt: at(3).Add(7 * time.Millisecond)}}))
	return addr, s
}

var queryBase = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func TestQueryCommands(t *testing.T) {
	addr, s := queryHistory(t)
	conn := []string{"--clickhouse", addr, "--database", s.Database, "--tenant", "acme"}
	period := []string{"--from", "2026-11-28T09:00:00Z", "--to", "2026-11-28T11:00:00Z"}
	query := func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		args = append([]string{"query"}, args...)
		args = append(args, conn...)
		return ops(t, "", args...)
	}

	t.Run("timeline table", func(t *testing.T) {
		code, out, errOut := query(t, append([]string{"timeline", "--session", "s-1"}, period...)...)
		require.Equal(t, 0, code, errOut)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		require.Len(t, lines, 4, out) // header and e1 (stored twice), e2, e3
		require.True(t, strings.HasPrefix(lines[0], "TIME"))
		require.Contains(t, out, `line1\nline2\x1b[2J`)
		require.NotContains(t, out, "\x1b")
	})
	t.Run("timeline json", func(t *testing.T) {
		code, out, errOut := query(t, append([]string{"timeline", "--agent", "agent-a", "--tool", "fs", "--json"}, period...)...)
		require.Equal(t, 0, code, errOut)
		var tl investigate.Timeline
		require.NoError(t, json.Unmarshal([]byte(out), &tl))
		require.Len(t, tl.Events, 2)
		require.Equal(t, "line1\nline2\x1b[2J", tl.Events[1].Resource)
	})
	t.Run("timeline csv", func(t *testing.T) {
		code, out, errOut := query(t, append([]string{"timeline", "--session", "s-1", "--csv", "--action", "send"}, period...)...)
		require.Equal(t, 0, code, errOut)
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		require.NoError(t, err)
		require.Len(t, recs, 2)
		require.Contains(t, recs[1], `'=cmd|' /C calc'!A0`)
	})
	t.Run("touched", func(t *testing.T) {
		code, out, errOut := query(t, append([]string{"touched", "--resource", "/data/customers.csv", "--json"}, period...)...)
		require.Equal(t, 0, code, errOut)
		var res investigate.Touched
		require.NoError(t, json.Unmarshal([]byte(out), &res))
		require.Len(t, res.Touches, 1)
		require.Equal(t, uint64(1), res.Touches[0].Events)
	})
	t.Run("top", func(t *testing.T) {
		code, out, errOut := query(t, append([]string{"top", "--metric", "bytes_in"}, period...)...)
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "BYTES_IN")
		require.Regexp(t, `agent-a\s+1,000\s+3\s`, out)
	})
	t.Run("decisions", func(t *testing.T) {
		code, out, errOut := query(t, append([]string{"decisions", "--mode", "enforce"}, period...)...)
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "bytes_out=5000 (> 1000)")
	})
	t.Run("revocations", func(t *testing.T) {
		code, out, errOut := query(t, append([]string{"revocations", "--status", "active", "--csv"}, period...)...)
		require.Equal(t, 0, code, errOut)
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		require.NoError(t, err)
		require.Len(t, recs, 2)
		require.Equal(t, "c1", recs[1][1])
	})
	t.Run("explain", func(t *testing.T) {
		code, out, errOut := query(t, "explain", "c1")
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "c1 by proxy-1 at 2026-11-28T10:00:03.007Z (7 ms)")
		code, out, errOut = query(t, "explain", "d1", "--json")
		require.Equal(t, 0, code, errOut)
		var x investigate.Explanation
		require.NoError(t, json.Unmarshal([]byte(out), &x))
		require.Equal(t, []string{"e1", "e2"}, []string{x.Evidence[0].ID, x.Evidence[1].ID})
	})
	t.Run("explain unknown", func(t *testing.T) {
		code, _, errOut := query(t, "explain", "nope")
		require.Equal(t, exitFindings, code)
		require.Contains(t, errOut, `no decision or command \"nope\"`)
	})
	t.Run("tenant", func(t *testing.T) {
		code, out, errOut := ops(t, "", append([]string{"query", "timeline", "--session", "s-1", "--json",
			"--clickhouse", addr, "--database", s.Database, "--tenant", "other"}, period...)...)
		require.Equal(t, 0, code, errOut)
		var tl investigate.Timeline
		require.NoError(t, json.Unmarshal([]byte(out), &tl))
		require.Len(t, tl.Events, 1)
		require.Equal(t, "x1", tl.Events[0].ID)
	})
}

// Bad invocations exit with 2 before anything is queried (the address
// below has no server).
func TestQueryUsage(t *testing.T) {
	conn := []string{"--clickhouse", "127.0.0.1:1", "--tenant", "acme"}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"timeline", "--session", "s", "--json", "--csv"}, "--json and --csv exclude each other"},
		{[]string{"timeline"}, "say whose timeline"},
		{[]string{"timeline", "--session", "s", "--agent", "a"}, "not both --session and --agent"},
		{[]string{"timeline", "--session", "s", "--since", "soon"}, "not a duration"},
		{[]string{"timeline", "--session", "s", "--since", "1h", "--from", "2026-11-28T00:00:00Z"}, "since or from, not both"},
		{[]string{"timeline", "--session", "s", "--limit", "100000"}, "above the maximum of 10000"},
		{[]string{"timeline", "--session", "s", "--since", "60d"}, "longer than the maximum of 31 days"},
		{[]string{"timeline", "--session", "s", "--action", "steal"}, `steal\" is not one of read, write`},
		{[]string{"timeline", "--session", "s", "--colour", "red"}, "unknown flag: --colour"},
		{[]string{"touched"}, "--resource or --destination"},
		{[]string{"top", "--metric", "vibes"}, `vibes\" is not one of rate, count`},
		{[]string{"revocations", "--status", "pending"}, `pending\" is not one of active, lifted, expired`},
		{[]string{"explain"}, "accepts 1 arg"},
		{[]string{"decisions", "--database", "x; DROP"}, "letters, digits and _ only"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, _, errOut := ops(t, "", append(append([]string{"query"}, c.args...), conn...)...)
			require.Equal(t, exitUsage, code, errOut)
			require.Contains(t, errOut, c.msg)
		})
	}
	code, _, errOut := ops(t, "", "query", "decisions", "--clickhouse", "127.0.0.1:1")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, `required flag(s) \"tenant\" not set`)
}

func TestQueryHelp(t *testing.T) {
	for _, sub := range []string{"timeline", "touched", "top", "decisions", "revocations", "explain"} {
		code, out, _ := ops(t, "", "query", sub, "--help")
		require.Equal(t, 0, code)
		require.Contains(t, out, "Examples:\n  tripline query "+sub, sub)
		require.Contains(t, out, "--tenant", sub)
	}
	code, out, _ := ops(t, "", "query")
	require.Equal(t, 0, code)
	for _, sub := range []string{"timeline", "touched", "top", "decisions", "revocations", "explain"} {
		require.Contains(t, out, "  "+sub+" ")
	}
}
