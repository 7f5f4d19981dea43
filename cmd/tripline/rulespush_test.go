package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/history"
)

const pushRuleV1 = `rules:
  - id: many-denied
    description: denied calls
    condition: count(5m, outcome == "denied") >= params.max
    params: {max: 5}
    tests:
      - name: five denials
        defaults: {tenant: acme, agent: "spiffe://acme.dev/a", session: s-1, tool: iam.get, action: read, outcome: denied}
        events: [{at: 0s, repeat: 5, every: 10s}]
        expect: [{at: 40s}]
      - name: four denials
        defaults: {tenant: acme, agent: "spiffe://acme.dev/a", session: s-1, tool: iam.get, action: read, outcome: denied}
        events: [{at: 0s, repeat: 4, every: 10s}]
        expect: []
`

// TestRulesPushStatusLogRollback drives the rule-set commands against a
// running engine (tripline dev): push, a changed push with its diff, the
// log with who/when/why/what, a rollback, and a push refused because its
// tests fail.
func TestRulesPushStatusLogRollback(t *testing.T) {
	dir := t.TempDir()
	url := startDev(t, dir)

	var out, errOut string
	var code int
	require.Eventually(t, func() bool {
		code, out, errOut = ops(t, "", "rules", "status", "--nats", url)
		return code == 0 && strings.Contains(out, "\ndev")
	}, 10*time.Second, 50*time.Millisecond, "the dev worker reports: %s %s", out, errOut)
	require.Contains(t, out, "active: none pushed")

	rulesDir := filepath.Join(dir, "rules")
	require.NoError(t, os.MkdirAll(rulesDir, 0o755))
	file := filepath.Join(rulesDir, "denied.yaml")
	require.NoError(t, os.WriteFile(file, []byte(pushRuleV1), 0o644))

	code, _, errOut = ops(t, "", "rules", "push", rulesDir, "--nats", url, "--as", "alice")
	require.Equal(t, 2, code, "a push needs a comment")
	require.Contains(t, errOut, "--comment is required")

	code, out, errOut = ops(t, "", "rules", "push", rulesDir, "--nats", url, "--as", "alice", "-m", "denied calls only")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `revision \d+: set [0-9a-f]+ runs on 1 worker`, out)
	require.Contains(t, errOut, "waiting for 1 worker(s) to validate it")
	require.Contains(t, out, "+ rule many-denied", "the first push is diffed against the pack dev runs")
	require.Contains(t, out, "- rule loop-call-ceiling")

	v2 := strings.Replace(pushRuleV1, "params: {max: 5}", "params: {max: 4}", 1)
	v2 = strings.Replace(v2, "expect: [{at: 40s}]", "expect: [{at: 30s}]", 1)
	v2 = strings.Replace(v2, "events: [{at: 0s, repeat: 4, every: 10s}]", "events: [{at: 0s, repeat: 3, every: 10s}]", 1)
	require.NoError(t, os.WriteFile(file, []byte(v2), 0o644))
	code, out, errOut = ops(t, "", "rules", "push", rulesDir, "--nats", url, "--as", "bob", "-m", "four is enough (SOC-7)")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "many-denied")
	require.Contains(t, out, "params.max 5 → 4")

	code, out, errOut = ops(t, "", "rules", "push", rulesDir, "--nats", url, "--as", "bob", "-m", "again")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "no change")

	code, out, errOut = ops(t, "", "rules", "log", "--diff", "--nats", url)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "alice")
	require.Contains(t, out, "denied calls only")
	require.Contains(t, out, "bob")
	require.Contains(t, out, "four is enough (SOC-7)")
	require.Contains(t, out, "params.max 5 → 4")

	code, out, errOut = ops(t, "", "rules", "rollback", "--nats", url, "--as", "carol", "-m", "too noisy")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "params.max 4 → 5")
	code, out, _ = ops(t, "", "rules", "status", "--nats", url)
	require.Equal(t, 0, code)
	require.Regexp(t, `active: revision \d+, set [0-9a-f]+, by carol at .*: rollback to revision \d+: too noisy`, out)

	// a failing test refuses the push before anything is proposed
	broken := strings.Replace(pushRuleV1, "expect: [{at: 40s}]", "expect: [{at: 41s}]", 1)
	require.NoError(t, os.WriteFile(file, []byte(broken), 0o644))
	code, _, errOut = ops(t, "", "rules", "push", rulesDir, "--nats", url, "--as", "dave", "-m", "oops")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "rule tests fail")
	code, out, _ = ops(t, "", "rules", "log", "--nats", url)
	require.Equal(t, 0, code)
	require.NotContains(t, out, "dave")
	require.Equal(t, 4, strings.Count(out, "\n"), "header and three revisions:\n%s", out)
}

// TestRulesLogFromHistory reads the change log the history role keeps in
// ClickHouse, newest first, with each change's diff.
func TestRulesLogFromHistory(t *testing.T) {
	addr, s := queryHistory(t)
	ctx := context.Background()
	for i, c := range []history.RuleChange{
		{Revision: 3, Hash: "aaa", Time: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC), Author: "alice", Comment: "first", Rules: 24, Diff: "first set in the log: 24 rules"},
		{Revision: 4, Hash: "bbb", Time: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC), Author: "bob", Comment: "tighter (SOC-9)", Previous: "aaa", Rules: 24,
			Diff: "~ rule denied: params.max 5 → 3\n23 rules unchanged\n"},
	} {
		require.NoError(t, s.InsertRuleChange(ctx, &c), "row %d", i)
	}
	code, out, errOut := tripline(t, "", "rules", "log", "--history", "--clickhouse", addr, "--database", s.Database)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "4  2026-11-02T09:00:00Z  bob  bbb  24 rules  tighter (SOC-9)\n"+
		"    ~ rule denied: params.max 5 → 3\n    23 rules unchanged\n"+
		"3  2026-11-01T09:00:00Z  alice  aaa  24 rules  first\n"+
		"    first set in the log: 24 rules\n", out)

	code, _, errOut = tripline(t, "", "rules", "log", "--history", "--clickhouse", addr, "--database", "bad-name")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--database")
}
