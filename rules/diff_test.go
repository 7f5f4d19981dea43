package rules

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func compileYAML(t *testing.T, yaml string) *Set {
	t.Helper()
	set, err := Compile(Source{Name: "t.yaml", Data: []byte(yaml)})
	require.NoError(t, err)
	return set
}

const diffOld = `
rules:
  - id: loop
    description: too many calls
    tags: [ASI08, T4]
    group: [session]
    condition: count(1m) > params.max_calls
    params: {max_calls: 120, burst: 10}
    action: revoke
    scope: session
    mode: shadow
    overrides:
      - tenant: acme
        params: {max_calls: 500}
        comment: batch jobs
      - agent: spiffe://a/agent/x
        params: {max_calls: 300}
        comment: x is fast
    exceptions:
      - match: tool == "kb.search"
        expires: 2026-12-31
        comment: SOC-1
      - match: tool == "old"
        expires: 2026-06-30
        comment: SOC-2
  - id: fanout
    description: many resources
    condition: distinct(resource, 10m) > 50
  - id: gone
    description: removed rule
    condition: count(1m) > 1
  - id: respelled
    description: same rule spelled otherwise
    condition: count(1m) > 1
`

const diffNew = `
rules:
  - id: loop
    description: too many calls
    tags: [ASI08, T4, MAESTRO-L3]
    group: [agent]
    condition: |
      count(1m) >
        params.max_calls
    params: {max_calls: 60, per_tool: true}
    action: hold
    scope: agent
    mode: enforce
    cooldown: 10m
    revoke_for: 2h
    overrides:
      - tenant: acme
        params: {max_calls: 400}
        comment: batch jobs, SOC-9
      - tenant: beta
        params: {max_calls: 200}
        comment: beta tenant
    exceptions:
      - match: tool == "kb.search"
        expires: 2027-03-31
        comment: SOC-1 renewed
      - match: tool == "new"
        expires: 2026-09-30
        comment: SOC-3
  - id: fanout
    description: many resources
    condition: distinct(resource, 10m) > 50
  - id: added
    description: a new rule
    condition: count(1m) > 5
    action: revoke
    scope: credential
    mode: enforce
  - id: respelled
    description: same rule spelled otherwise
    condition: count(1m) > 1
    mode: shadow
    cooldown: 5m
`

func TestDiff(t *testing.T) {
	oldSet, newSet := compileYAML(t, diffOld), compileYAML(t, diffNew)
	d := Diff(oldSet, newSet)
	require.False(t, d.Empty())
	require.Equal(t, oldSet.Hash, d.OldHash)
	require.Equal(t, newSet.Hash, d.NewHash)
	require.Equal(t, []RuleInfo{{ID: "added", Version: newSet.Rule("added").Version, Mode: "enforce", Action: "revoke", Scope: "credential"}}, d.Added)
	require.Equal(t, []RuleInfo{{ID: "gone", Version: oldSet.Rule("gone").Version, Mode: "shadow", Action: "alert"}}, d.Removed)
	require.Equal(t, 1, d.Unchanged)
	require.Len(t, d.Changed, 2)

	loop := d.Changed[0]
	require.Equal(t, "loop", loop.ID)
	require.Equal(t, []FieldChange{
		{Field: "mode", Old: "shadow", New: "enforce"},
		{Field: "action", Old: "revoke", New: "hold"},
		{Field: "scope", Old: "session", New: "agent"},
		{Field: "group", Old: "session", New: "agent"},
		{Field: "params.burst", Old: "10"},
		{Field: "params.max_calls", Old: "120", New: "60"},
		{Field: "params.per_tool", New: "true"},
		{Field: "overrides[agent=spiffe://a/agent/x]", Old: "max_calls=300 (x is fast)"},
		{Field: "overrides[tenant=acme].params.max_calls", Old: "500", New: "400"},
		{Field: "overrides[tenant=acme].comment", Old: "batch jobs", New: "batch jobs, SOC-9"},
		{Field: "overrides[tenant=beta]", New: "max_calls=200 (beta tenant)"},
		{Field: `exceptions[tool == "kb.search"].expires`, Old: "2026-12-31", New: "2027-03-31"},
		{Field: `exceptions[tool == "kb.search"].comment`, Old: "SOC-1", New: "SOC-1 renewed"},
		{Field: `exceptions[tool == "new"]`, New: "expires 2026-09-30 (SOC-3)"},
		{Field: `exceptions[tool == "old"]`, Old: "expires 2026-06-30 (SOC-2)"},
		{Field: "cooldown", Old: "5m", New: "10m"},
		{Field: "revoke_for", Old: "1h", New: "2h"},
		{Field: "hold_timeout", New: "2h"},
		{Field: "on_timeout", New: "release"},
		{Field: "tags", Old: "[ASI08, T4]", New: "[ASI08, T4, MAESTRO-L3]"},
	}, loop.Fields, "the condition re-wrapped over two lines is the same condition")

	respelled := d.Changed[1]
	require.Equal(t, "respelled", respelled.ID)
	require.NotEqual(t, respelled.OldVersion, respelled.NewVersion)
	require.Empty(t, respelled.Fields)

	require.Equal(t, `+ rule added (enforce revoke credential)
- rule gone (shadow alert)
~ rule loop: mode shadow → enforce; action revoke → hold; scope session → agent; group session → agent; params.burst 10 → (none); params.max_calls 120 → 60; params.per_tool (none) → true; overrides[agent=spiffe://a/agent/x] max_calls=300 (x is fast) → (none); overrides[tenant=acme].params.max_calls 500 → 400; overrides[tenant=acme].comment batch jobs → batch jobs, SOC-9; overrides[tenant=beta] (none) → max_calls=200 (beta tenant); exceptions[tool == "kb.search"].expires 2026-12-31 → 2027-03-31; exceptions[tool == "kb.search"].comment SOC-1 → SOC-1 renewed; exceptions[tool == "new"] (none) → expires 2026-09-30 (SOC-3); exceptions[tool == "old"] expires 2026-06-30 (SOC-2) → (none); cooldown 5m → 10m; revoke_for 1h → 2h; hold_timeout (none) → 2h; on_timeout (none) → release; tags [ASI08, T4] → [ASI08, T4, MAESTRO-L3]
~ rule respelled: version `+respelled.OldVersion+` → `+respelled.NewVersion+`, same effective rule (a default written out or a value respelled)
1 rule unchanged
`, d.String())

	// The reverse diff swaps sides.
	r := Diff(newSet, oldSet)
	require.Equal(t, "gone", r.Added[0].ID)
	require.Equal(t, "added", r.Removed[0].ID)
	require.Equal(t, FieldChange{Field: "mode", Old: "enforce", New: "shadow"}, r.Changed[0].Fields[0])

	// It marshals with empty lists, not nulls.
	b, err := json.Marshal(Diff(oldSet, oldSet))
	require.NoError(t, err)
	require.JSONEq(t, `{"old_hash":"`+oldSet.Hash+`","new_hash":"`+oldSet.Hash+`","added":[],"removed":[],"changed":[],"unchanged":4}`, string(b))
}

func TestDiffEmpty(t *testing.T) {
	a, b := compileYAML(t, diffOld), compileYAML(t, diffOld)
	d := Diff(a, b)
	require.True(t, d.Empty())
	require.Equal(t, "no changes (4 rules)\n", d.String())

	empty := &Set{}
	d = Diff(empty, empty)
	require.True(t, d.Empty())
	require.Equal(t, "no changes (0 rules)\n", d.String())
}

func TestDiffDeterministic(t *testing.T) {
	oldSet, newSet := compileYAML(t, diffOld), compileYAML(t, diffNew)
	want := Diff(oldSet, newSet).String()
	for range 20 {
		require.Equal(t, want, Diff(oldSet, newSet).String())
	}
}

func TestFormatDuration(t *testing.T) {
	for in, want := range map[string]string{"0s": "0s", "90s": "1m30s", "5m": "5m", "1h30m": "1h30m", "2h": "2h", "7d": "7d", "500ms": "500ms"} {
		d, err := ParseDuration(in)
		require.NoError(t, err)
		require.Equal(t, want, formatDuration(d), in)
	}
}

func TestFormatValue(t *testing.T) {
	for _, c := range []struct {
		in   any
		want string
	}{
		{120, "120"}, {0.5, "0.5"}, {5e8, "500000000"}, {1e-7, "1e-07"}, {"x y", `"x y"`}, {true, "true"}, {nil, "null"},
		{[]any{"a", 1}, `["a",1]`}, {map[string]any{"b": 1, "a": 2}, `{"a":2,"b":1}`},
	} {
		require.Equal(t, c.want, formatValue(c.in))
	}
}
