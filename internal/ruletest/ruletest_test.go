package ruletest

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

func compile(t *testing.T, files map[string]string) *rules.Set {
	t.Helper()
	var srcs []rules.Source
	for name, data := range files {
		srcs = append(srcs, rules.Source{Name: name, Data: []byte(data)})
	}
	set, err := rules.Compile(srcs...)
	require.NoError(t, err)
	return set
}

func TestGoodRulesPass(t *testing.T) {
	set, err := rules.LoadPaths("../../testdata/rules/good")
	require.NoError(t, err)
	rep := Run(set, Config{})
	for _, r := range rep.Tests {
		require.True(t, r.Pass, "%s (%s): %s%s", r.Name, r.Pos, r.Err, r.Diff)
		require.Positive(t, r.Events)
	}
	require.Empty(t, rep.Missing)
	require.True(t, rep.OK())
	require.Equal(t, 4, rep.Passed)
	require.Equal(t, "4 tests: 4 passed, 0 failed", rep.Summary())
}

// The shipped example pack must pass its own tests.
func TestExamplePack(t *testing.T) {
	set, err := rules.LoadPaths("../../rules/examples")
	require.NoError(t, err)
	require.NotEmpty(t, set.Rules, "rules/examples must hold rules")
	rep := Run(set, Config{})
	for _, r := range rep.Tests {
		if !r.Pass {
			t.Errorf("%s (%s): %s%s", r.Name, r.Pos, r.Err, r.Diff)
		}
	}
	require.Empty(t, rep.Missing)
	require.Positive(t, rep.Passed)
}

const bulkRule = `
rules:
  - id: bulk-read
    description: Many reads
    group: [session]
    condition: count(1m) >= 3
    action: revoke
    mode: enforce
    cooldown: 1m
    tests:
%s
`

const defaults = `defaults: {tenant: acme, agent: "spiffe://acme.example/agents/a", session: s-1, tool: db.query, action: read}`

func bulkSet(t *testing.T, tests string) *rules.Set {
	t.Helper()
	return compile(t, map[string]string{"bulk.yaml": strings.ReplaceAll(strings.Replace(bulkRule, "%s", tests, 1), "DEFAULTS", defaults)})
}

func TestFailingTestShowsDiff(t *testing.T) {
	set := bulkSet(t, `
      - name: wrong expectations
        DEFAULTS
        events:
          - {at: 0s, repeat: 10, every: 10s}
        expect:
          - {at: 20s, event: t-2, suppressed: 0}
          - {at: 30s, rule: bulk-read}
      - name: quiet
        DEFAULTS
        events:
          - {at: 0s}
        expect: []`)
	rep := Run(set, Config{})
	require.False(t, rep.OK())
	require.Equal(t, 1, rep.Failed)
	require.Equal(t, 1, rep.Passed)
	res := rep.Tests[0]
	require.False(t, res.Pass)
	require.Empty(t, res.Err)
	require.Equal(t, "bulk.yaml", res.File)
	require.Equal(t, []string{"bulk-read"}, res.Rules)
	// Reads every 10s from 0s to 90s: 3 in a minute at 20s; the 1m
	// cooldown holds back 30s..70s, so the next decision is at 80s.
	require.Equal(t, `expected 2 decisions, got 2:
    at=+20s rule=bulk-read group=tenant=acme,session=s-1 action=revoke mode=enforce scope=session event=t-2
  - at=+30s rule=bulk-read    (bulk.yaml:18:13)
  + at=+1m20s rule=bulk-read group=tenant=acme,session=s-1 action=revoke mode=enforce scope=session event=t-8 suppressed=5
`, res.Diff)
}

func TestDiffAlignment(t *testing.T) {
	start := DefaultStart
	d := func(at time.Duration, rule, ev string) detectors.Decision {
		return detectors.Decision{Time: start.Add(at), Rule: rule, Group: "tenant=acme,session=s-1", Action: "alert", Mode: "shadow", EventID: ev}
	}
	dur := func(x time.Duration) *rules.Duration { v := rules.Duration(x); return &v }
	sup := int64(2)
	want := []*rules.Expect{
		{At: dur(time.Minute), Rule: "a"},
		{Rule: "b", Pos: rules.Pos{File: "f.yaml", Line: 9, Col: 11}},
		{At: dur(90 * time.Second), EventID: "e-3", Suppressed: &sup},
	}
	got := []detectors.Decision{
		d(time.Minute, "a", "e-1"),
		d(90*time.Second, "c", "e-3"),
	}
	got[1].Suppressed = 2
	require.Equal(t, `expected 3 decisions, got 2:
    at=+1m rule=a group=tenant=acme,session=s-1 action=alert mode=shadow event=e-1
  - rule=b    (f.yaml:9:11)
    at=+1m30s rule=c group=tenant=acme,session=s-1 action=alert mode=shadow event=e-3 suppressed=2
`, Diff(want, got, start))

	got = append(got, d(2*time.Hour, "x", "e-9"))
	require.Contains(t, Diff(want, got, start), "  + at=+2h rule=x ")
}

func TestPartialMatching(t *testing.T) {
	start := DefaultStart
	dec := detectors.Decision{Time: start.Add(90 * time.Second), Rule: "r", Group: "tenant=acme,session=s-1", Action: "revoke", Mode: "enforce", Scope: "session", EventID: "e-1", Suppressed: 3}
	at := rules.Duration(90 * time.Second)
	other := rules.Duration(time.Minute)
	three, four := int64(3), int64(4)
	for _, tc := range []struct {
		name string
		e    rules.Expect
		ok   bool
	}{
		{"empty matches anything", rules.Expect{}, true},
		{"every field", rules.Expect{At: &at, Rule: "r", Group: "tenant=acme,session=s-1", Action: "revoke", Mode: "enforce", Scope: "session", EventID: "e-1", Suppressed: &three}, true},
		{"at", rules.Expect{At: &other}, false},
		{"rule", rules.Expect{Rule: "x"}, false},
		{"group", rules.Expect{Group: "tenant=acme,session=s-2"}, false},
		{"action", rules.Expect{Action: "alert"}, false},
		{"mode", rules.Expect{Mode: "shadow"}, false},
		{"scope", rules.Expect{Scope: "agent"}, false},
		{"event", rules.Expect{EventID: "e-2"}, false},
		{"suppressed", rules.Expect{Suppressed: &four}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.ok, Match(&tc.e, &dec, start))
		})
	}
}

func TestMissingPositiveAndNegative(t *testing.T) {
	set := compile(t, map[string]string{"r.yaml": `
rules:
  - id: only-positive
    description: x
    condition: count(1m) >= 1
    tests:
      - name: fires
        ` + defaults + `
        events: [{at: 0s}]
        expect: [{rule: only-positive}]
  - id: only-negative
    description: x
    condition: count(1m) >= 100
    tests:
      - name: quiet
        ` + defaults + `
        events: [{at: 0s}]
        expect: []
  - id: untested
    description: x
    condition: count(1m) >= 100
  - id: covered
    description: x
    condition: count(1m) >= 2
tests:
  - name: both, only covered fires
    rules: [covered, only-negative]
    ` + defaults + `
    events: [{at: 0s, repeat: 2, every: 1s}]
    expect: [{rule: covered}]
  - name: covered stays quiet
    rules: [covered]
    ` + defaults + `
    events: [{at: 0s}]
    expect: []
`})
	rep := Run(set, Config{})
	require.Equal(t, 0, rep.Failed, "%+v", rep.Tests)
	require.False(t, rep.OK())
	require.Equal(t, []Missing{
		{Rule: "only-positive", Pos: set.Rule("only-positive").Pos, Negative: true},
		{Rule: "only-negative", Pos: set.Rule("only-negative").Pos, Positive: true},
		{Rule: "untested", Pos: set.Rule("untested").Pos, Positive: true, Negative: true},
	}, rep.Missing)
	require.Equal(t, `r.yaml:19:5: rule "untested" has no positive test (expecting a decision) and no negative test (expecting none)`, rep.Missing[2].String())
	require.Equal(t, `r.yaml:3:5: rule "only-positive" has no negative test (expecting none)`, rep.Missing[0].String())
	require.Contains(t, rep.Summary(), "3 rules lack tests")
}

func TestInputs(t *testing.T) {
	set := bulkSet(t, `
      - name: inputs
        start: 2026-03-01T10:00:00Z
        defaults: {tenant: acme, agent: "spiffe://acme.example/agents/a", session: s-1, tool: db.query, action: read, attrs: {env: prod, team: a}}
        events:
          - {at: 1m, event: {attrs: {team: b}}}
          - {at: 2m, repeat: 3, every: 30s, event: {id: r, resource: "file-{i}", attrs: {n: "{i}"}}}
          - {at: 3m, repeat: 2, every: 1s, event: {id: "x{i}"}}
          - {at: 0s, event: {session: null, time: "2026-03-01T09:00:00Z"}}
        expect: []`)
	evs, err := Inputs(set.Tests[0], pipeline.Limits{})
	require.NoError(t, err)
	require.Len(t, evs, 7)
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	require.Equal(t, "t-0", evs[0].ID)
	require.Equal(t, start.Add(time.Minute), evs[0].Time)
	require.Equal(t, map[string]string{"env": "prod", "team": "b"}, evs[0].Attrs)
	require.Equal(t, []string{"r-0", "r-1", "r-2"}, []string{evs[1].ID, evs[2].ID, evs[3].ID})
	require.Equal(t, start.Add(3*time.Minute), evs[3].Time)
	require.Equal(t, "file-2", evs[3].Resource)
	require.Equal(t, map[string]string{"env": "prod", "team": "a", "n": "2"}, evs[3].Attrs)
	require.Equal(t, []string{"x0", "x1"}, []string{evs[4].ID, evs[5].ID})
	require.Equal(t, "t-6", evs[6].ID)
	require.Empty(t, evs[6].Session, "null removes a default")
	require.Equal(t, start.Add(-time.Hour), evs[6].Time, "explicit time wins")
}

func TestInvalidEventFailsWithPosition(t *testing.T) {
	set := bulkSet(t, `
      - name: bad event
        DEFAULTS
        events:
          - {at: 0s}
          - {at: 1s, event: {tenant: "bad tenant"}}
        expect: []`)
	res := RunTest(set, set.Tests[0], Config{})
	require.False(t, res.Pass)
	require.Regexp(t, `^bulk\.yaml:16:13: invalid event: tenant: contains`, res.Err)

	set = bulkSet(t, `
      - name: no events
        DEFAULTS
        events: []
        expect: []`)
	res = RunTest(set, set.Tests[0], Config{})
	require.False(t, res.Pass)
	require.Contains(t, res.Err, "has no input events")
}

func TestLateEventsAreFedInOrder(t *testing.T) {
	set := bulkSet(t, `
      - name: late
        DEFAULTS
        events:
          - {at: 10s}
          - {at: 0s}
          - {at: 20s}
        expect:
          - {at: 20s, event: t-2}`)
	res := RunTest(set, set.Tests[0], Config{Engine: detectors.Options{Lateness: time.Minute}})
	require.True(t, res.Pass, res.Diff)
	require.Equal(t, 3, res.Events)
}

func TestRunFilter(t *testing.T) {
	set, err := rules.LoadPaths("../../testdata/rules/good")
	require.NoError(t, err)
	rep := Run(set, Config{Run: regexp.MustCompile(`^bulk`)})
	require.Equal(t, 1, rep.Passed)
	require.Equal(t, 3, rep.Skipped)
	require.Empty(t, rep.Missing, "coverage counts every test, not only the selected ones")
}

func TestSubsetRenumbers(t *testing.T) {
	set, err := rules.LoadPaths("../../testdata/rules/good")
	require.NoError(t, err)
	require.Len(t, set.Rules, 2)
	last := set.Rules[1]
	sub := Subset(set, []string{last.ID})
	require.Len(t, sub.Rules, 1)
	require.Equal(t, 0, sub.Rules[0].Index)
	require.Equal(t, 1, last.Index, "the original set is not modified")
	require.Same(t, last.Rule, sub.Rules[0].Rule)
}

func TestOffset(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                         "+0s",
		1500 * time.Millisecond:   "+1.5s",
		90 * time.Second:          "+1m30s",
		time.Minute:               "+1m",
		10 * time.Minute:          "+10m",
		time.Hour:                 "+1h",
		90 * time.Minute:          "+1h30m",
		time.Hour + 5*time.Second: "+1h0m5s",
		-5 * time.Second:          "-5s",
	} {
		require.Equal(t, want, Offset(d), d.String())
	}
}
