package score

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/backtest"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// testRules: a burst of calls revokes the session (enforce); a send
// alerts (shadow); a credential used by two agents revokes the credential
// (shadow); an agent that deletes is held (enforce, agent scope).
const testRules = `
rules:
  - id: burst
    description: three calls in a minute
    group: [session]
    condition: count(1m) >= 3
    action: revoke
    scope: session
    mode: enforce
    cooldown: 1h
  - id: sender
    description: a send
    condition: action == "send"
    cooldown: 1h
  - id: shared-cred
    description: one credential, two agents
    group: [credential]
    condition: distinct(agent, 1h) > 1
    action: revoke
    scope: credential
    cooldown: 1h
  - id: deleter
    description: a delete holds the agent
    group: [agent]
    condition: action == "delete"
    action: hold
    scope: agent
    mode: enforce
    cooldown: 1h
`

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func compile(t *testing.T, y string) *rules.Set {
	t.Helper()
	set, err := rules.Compile(rules.Source{Name: "test.yaml", Data: []byte(y)})
	require.NoError(t, err)
	return set
}

// ev is an event at sec seconds past t0: "agent/session/credential action".
func ev(id string, sec float64, who string, action pipeline.Action) pipeline.Event {
	p := strings.Split(who, "/")
	return pipeline.Event{
		ID: id, Time: t0.Add(time.Duration(sec * float64(time.Second))), Tenant: "acme",
		Agent: "spiffe://acme/agent/" + p[0], Session: p[1], Credential: p[2],
		Instance: p[0] + "-pod", Tool: "tool." + string(action), Action: action,
	}
}

// sliceSource is a backtest.Source over events in memory.
type sliceSource struct {
	evs []pipeline.Event
	i   int
}

func (s *sliceSource) Read(_ context.Context, out []pipeline.Event) (int, error) {
	n := copy(out, s.evs[s.i:])
	s.i += n
	if s.i == len(s.evs) {
		return n, io.EOF
	}
	return n, nil
}

func (s *sliceSource) Position() backtest.Position { return backtest.Position{Lines: int64(s.i)} }

func run(t *testing.T, labels []Label, evs ...pipeline.Event) *Report {
	t.Helper()
	r, err := Run(context.Background(), compile(t, testRules), &sliceSource{evs: evs}, labels, Config{BatchSize: 2})
	require.NoError(t, err)
	return r
}

func attackOf(r *Report, id string) Attack {
	for _, a := range r.Attacks {
		if a.ID == id {
			return a
		}
	}
	panic("no attack " + id)
}

func TestAttributionByEvent(t *testing.T) {
	labels := []Label{{ID: "x1", Scenario: "exfil", Tenant: "acme", Agent: "spiffe://acme/agent/bot", Sessions: []string{"a1"}}}
	r := run(t, labels,
		ev("e1", 0, "bot/a1/c1", pipeline.ActionRead),
		ev("e2", 10, "bot/a1/c1", pipeline.ActionSend), // sender alerts
		ev("e3", 20, "bot/a1/c1", pipeline.ActionSend), // burst revokes
		ev("e4", 30, "bot/a1/c1", pipeline.ActionSend),
		ev("b1", 5, "user/b1/c2", pipeline.ActionRead),
	)
	a := attackOf(r, "x1")
	require.True(t, a.Detected)
	require.True(t, a.WouldStop)
	require.True(t, a.Stopped)
	require.Equal(t, int64(4), a.Events)
	require.Equal(t, int64(3), a.Harmful)
	require.Equal(t, t0, a.First)
	require.Equal(t, t0.Add(30*time.Second), a.Last)
	require.Equal(t, []string{"burst", "sender"}, a.Rules)

	require.Equal(t, "sender", a.FirstDecision.Rule)
	require.Equal(t, ByEvent, a.FirstDecision.By)
	require.Equal(t, Duration(10*time.Second), a.FirstDecision.After)
	require.Equal(t, int64(2), a.FirstDecision.Calls)

	require.Equal(t, "burst", a.Stop.Rule)
	require.Equal(t, Duration(20*time.Second), a.Stop.After)
	require.Equal(t, int64(3), a.Stop.Calls, "calls up to and including the one that fired")
	require.Equal(t, int64(2), a.Stop.Harmful)
	require.Equal(t, int64(2), a.HarmfulThrough)
	require.Equal(t, a.Stop, a.EnforcedStop)

	require.Equal(t, []Scenario{{
		Scenario: "exfil", Instances: 1, Detected: 1, DetectedFraction: 1, WouldStop: 1, Stopped: 1,
		TimeToStopMedian: Duration(20 * time.Second), TimeToStopMax: Duration(20 * time.Second),
		CallsToStop: 3, HarmfulMedian: 2, HarmfulTotal: 2,
		Rules: []RuleCount{{Rule: "burst", Instances: 1}, {Rule: "sender", Instances: 1}},
	}}, r.Scenarios)
	require.Equal(t, 1, r.ScenariosDetected)
	require.Equal(t, Benign{Sessions: 1}, r.Benign)
	require.Equal(t, int64(5), r.Events)
	require.Equal(t, int64(4), r.AttackEvents)
	require.Equal(t, int64(2), r.Decisions)
	require.Empty(t, r.Check(Gates{MinDetect: 1, MaxFP: 0}))
}

func TestAttributionByScope(t *testing.T) {
	// The leaked credential c1 is used by an attacker (session x) while
	// its owner keeps working (session b). The shared-cred decision fires
	// on the owner's event, but its credential scope covers the attack.
	leak := Label{ID: "leak", Scenario: "credential-leak", Tenant: "acme", Agent: "spiffe://acme/agent/evil", Sessions: []string{"x"}, Credential: "c1"}
	t.Run("during the attack", func(t *testing.T) {
		r := run(t, []Label{leak},
			ev("x1", 0, "evil/x/c1", pipeline.ActionRead),
			ev("x2", 5, "evil/x/c1", pipeline.ActionWrite),
			ev("b1", 5, "owner/b/c1", pipeline.ActionRead), // shared-cred fires here
		)
		a := attackOf(r, "leak")
		require.True(t, a.Detected)
		require.True(t, a.WouldStop)
		require.False(t, a.Stopped, "shared-cred is in shadow")
		require.Equal(t, ByScope, a.Stop.By)
		require.Equal(t, "credential", a.Stop.Scope)
		require.Equal(t, Duration(5*time.Second), a.Stop.After)
		require.Equal(t, int64(2), a.Stop.Calls, "in stream order")
		require.Equal(t, int64(1), a.HarmfulThrough)
		require.Equal(t, []string{"shared-cred"}, a.Rules)
		// The owner's session is benign: revoking the leaked credential stops
		// it too, as collateral of a revocation aimed at the attack (its
		// evidence holds the attacker's calls), not as a false positive.
		require.Equal(t, Benign{Sessions: 1, WithDecision: 1, Collateral: 1, DecisionRate: 1}, r.Benign)
	})
	t.Run("confirmed when the attack goes on", func(t *testing.T) {
		// The decision comes after the attack's last event so far: it is
		// pending until the attack shows it was still going.
		r := run(t, []Label{leak},
			ev("x1", 0, "evil/x/c1", pipeline.ActionWrite),
			ev("b1", 5, "owner/b/c1", pipeline.ActionRead),
			ev("x2", 10, "evil/x/c1", pipeline.ActionWrite),
		)
		a := attackOf(r, "leak")
		require.Equal(t, ByScope, a.Stop.By)
		require.Equal(t, int64(1), a.Stop.Calls)
		require.Equal(t, int64(1), a.HarmfulThrough)
	})
	t.Run("after the attack", func(t *testing.T) {
		r := run(t, []Label{leak},
			ev("x1", 0, "evil/x/c1", pipeline.ActionWrite),
			ev("b1", 5, "owner/b/c1", pipeline.ActionRead),
		)
		a := attackOf(r, "leak")
		require.False(t, a.Detected)
		require.Nil(t, a.Stop)
		require.Equal(t, int64(1), a.HarmfulThrough, "nothing stopped it: every harmful call got through")
		require.Equal(t, []string{}, a.Rules)
	})
	t.Run("before the attack", func(t *testing.T) {
		r := run(t, []Label{leak},
			ev("b0", 0, "other/b0/c1", pipeline.ActionRead),
			ev("b1", 5, "owner/b/c1", pipeline.ActionRead), // fires before the attack began
			ev("x1", 10, "evil/x/c1", pipeline.ActionWrite),
		)
		require.False(t, attackOf(r, "leak").Detected)
		require.Equal(t, int64(2), r.Benign.Sessions)
	})
	t.Run("agent scope learnt from the label", func(t *testing.T) {
		// A delete by the attacking agent in another session holds the
		// agent: that covers the attack, and is a false positive on the
		// benign session it fired in.
		r := run(t, []Label{{ID: "d", Scenario: "scope-creep", Tenant: "acme", Agent: "spiffe://acme/agent/bot", Sessions: []string{"a1"}}},
			ev("a1", 0, "bot/a1/c1", pipeline.ActionRead),
			ev("b1", 1, "bot/b1/c1", pipeline.ActionDelete),
			ev("a2", 2, "bot/a1/c1", pipeline.ActionRead),
		)
		a := attackOf(r, "d")
		require.True(t, a.Stopped)
		require.Equal(t, "deleter", a.EnforcedStop.Rule)
		require.Equal(t, "agent", a.EnforcedStop.Scope)
		require.Equal(t, Benign{Sessions: 1, WithDecision: 1, WithEnforceStop: 1, DecisionRate: 1, FalsePositiveRate: 1}, r.Benign)
	})
}

func TestBenignFalsePositives(t *testing.T) {
	labels := []Label{{ID: "x", Scenario: "loop", Tenant: "acme", Session: "a1"}}
	var evs []pipeline.Event
	evs = append(evs, ev("a", 0, "bot/a1/c1", pipeline.ActionRead)) // undetected
	// Ten benign sessions; two burst (enforce revoke), three send (alert).
	for i := range 10 {
		who := fmt.Sprintf("u%d/b%d/k%d", i, i, i)
		evs = append(evs, ev(fmt.Sprintf("b%d-0", i), float64(i), who, pipeline.ActionRead))
		if i < 2 {
			evs = append(evs, ev(fmt.Sprintf("b%d-1", i), float64(i)+1, who, pipeline.ActionRead), ev(fmt.Sprintf("b%d-2", i), float64(i)+2, who, pipeline.ActionRead))
		}
		if i >= 7 {
			evs = append(evs, ev(fmt.Sprintf("b%d-s", i), float64(i)+3, who, pipeline.ActionSend))
		}
	}
	r := run(t, labels, evs...)
	require.Equal(t, Benign{
		Sessions: 10, WithDecision: 5, WithEnforceStop: 2,
		DecisionRate: 0.5, FalsePositiveRate: 0.2,
	}, r.Benign)
	require.Equal(t, []Rule{
		{Rule: "sender", Version: r.Rules[0].Version, Mode: "shadow", Action: "alert", Decisions: 3, BenignSessions: 3, BenignDecisions: 3, BenignSamples: []string{"acme/b7", "acme/b8", "acme/b9"}},
		{Rule: "burst", Version: r.Rules[1].Version, Mode: "enforce", Action: "revoke", Decisions: 2, BenignSessions: 2, BenignDecisions: 2, BenignSamples: []string{"acme/b0", "acme/b1"}},
		{Rule: "deleter", Version: r.Rules[2].Version, Mode: "enforce", Action: "hold", BenignSamples: []string{}},
		{Rule: "shared-cred", Version: r.Rules[3].Version, Mode: "shadow", Action: "revoke", BenignSamples: []string{}},
	}, r.Rules)
	require.Equal(t, 0, r.ScenariosDetected)
	require.Equal(t, Scenario{Scenario: "loop", Instances: 1, HarmfulMedian: 0, Rules: []RuleCount{}}, r.Scenarios[0])

	require.Equal(t, []string{
		"scenario loop: 0 of 1 instances detected (0%), below the minimum 50%",
		"false positives: 2 of 10 benign sessions revoked or held in mode enforce (20%), above the maximum 1%",
	}, r.Check(Gates{MinDetect: 0.5, MaxFP: 0.01}))
	require.Empty(t, r.Check(Gates{MaxFP: 1}), "the defaults only report")
	require.Len(t, r.Check(Gates{MaxFP: 0.2}), 0, "at the maximum passes")
}

func TestScenarioSummary(t *testing.T) {
	// Three instances of one scenario: stopped after 1 and 3 calls, one
	// never (its two harmful calls get through); one label without events.
	labels := []Label{
		{ID: "s1", Scenario: "loop", Tenant: "acme", Session: "s1"},
		{ID: "s2", Scenario: "loop", Tenant: "acme", Session: "s2"},
		{ID: "s3", Scenario: "loop", Tenant: "acme", Session: "s3"},
		{ID: "s4", Scenario: "loop", Tenant: "acme", Session: "s4", FirstEventTime: t0.Add(time.Hour)},
	}
	r := run(t, labels,
		ev("1", 0, "a/s1/c1", pipeline.ActionDelete), // deleter holds after 1 call
		ev("2", 0, "b/s2/c2", pipeline.ActionWrite),
		ev("3", 30, "b/s2/c2", pipeline.ActionWrite),
		ev("4", 50, "b/s2/c2", pipeline.ActionRead), // burst after 3 calls, 50s
		ev("5", 0, "c/s3/c3", pipeline.ActionWrite),
		ev("6", 90, "c/s3/c3", pipeline.ActionExecute),
	)
	s := r.Scenarios[0]
	require.Equal(t, Scenario{
		Scenario: "loop", Instances: 4, Unseen: 1, Detected: 2, DetectedFraction: 0.5, WouldStop: 2, Stopped: 2,
		TimeToStopMedian: Duration(25 * time.Second), TimeToStopMax: Duration(50 * time.Second),
		CallsToStop: 2, HarmfulMedian: 1.5, HarmfulTotal: 5, // 1 + 2 + 2 + 0
		Rules: []RuleCount{{Rule: "burst", Instances: 1}, {Rule: "deleter", Instances: 1}},
	}, s)
	require.Equal(t, t0.Add(time.Hour), attackOf(r, "s4").First, "no events: the label's times")
}

func TestReportJSON(t *testing.T) {
	r := run(t, []Label{{ID: "x1", Scenario: "exfil", Tenant: "acme", Session: "a1"}},
		ev("e1", 0, "bot/a1/c1", pipeline.ActionSend), ev("e2", 1.5, "bot/a1/c1", pipeline.ActionSend), ev("e3", 2, "bot/a1/c1", pipeline.ActionSend))
	b, err := json.Marshal(r)
	require.NoError(t, err)
	require.Contains(t, string(b), `"time_to_stop_median_seconds":2`)
	require.Contains(t, string(b), `"after_seconds":2`)
	var back Report
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, r.Scenarios, back.Scenarios)
	require.Equal(t, r.Attacks, back.Attacks)
}

func TestRunProgressAndErrors(t *testing.T) {
	var reports []backtest.Progress
	evs := []pipeline.Event{ev("1", 0, "a/s/c", pipeline.ActionRead), ev("2", 1, "a/s/c", pipeline.ActionRead), ev("3", 2, "a/s/c", pipeline.ActionRead)}
	r, err := Run(context.Background(), compile(t, testRules), &sliceSource{evs: evs}, nil,
		Config{BatchSize: 1, ProgressEvery: 2, Progress: func(p backtest.Progress) { reports = append(reports, p) }})
	require.NoError(t, err)
	require.Equal(t, int64(3), r.Events)
	require.Equal(t, t0, r.First)
	require.Equal(t, t0.Add(2*time.Second), r.Last)
	require.GreaterOrEqual(t, len(reports), 2)
	require.True(t, reports[len(reports)-1].Done)
	require.Equal(t, int64(3), reports[len(reports)-1].Events)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Run(ctx, compile(t, testRules), &sliceSource{evs: append(evs, evs...)}, nil, Config{BatchSize: 1})
	require.ErrorIs(t, err, context.Canceled)
}

func TestReadLabels(t *testing.T) {
	const in = `{"id":"l1","scenario":"exfil","tenant":"acme","agent":"a","session":"s1","sessions":["s1","s2"],"credential":"c","instance":"i","first_event_time":"2026-01-01T00:00:00Z","last_event_time":"2026-01-01T00:05:00Z","events":12}

{"scenario":"loop","tenant":"acme","session":"s3","extra":"ignored"}
`
	want := []Label{
		{ID: "l1", Scenario: "exfil", Tenant: "acme", Agent: "a", Session: "s1", Sessions: []string{"s1", "s2"}, Credential: "c", Instance: "i",
			FirstEventTime: t0, LastEventTime: t0.Add(5 * time.Minute), Events: 12},
		{ID: "line-3", Scenario: "loop", Tenant: "acme", Session: "s3"},
	}
	got, err := ReadLabels(strings.NewReader(in))
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.Equal(t, []string{"s3"}, got[1].sessions())

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(in))
	require.NoError(t, zw.Close())
	got, err = ReadLabels(&gz)
	require.NoError(t, err)
	require.Equal(t, want, got)

	_, err = ReadLabels(strings.NewReader(`{"scenario":"x","tenant":"t","session":"s","id":"a"}
not json
{"tenant":"t","session":"s"}
{"scenario":"x","session":"s"}
{"scenario":"x","tenant":"t"}
{"scenario":"x","tenant":"t","session":"s2","id":"a"}
`))
	require.Error(t, err)
	for _, msg := range []string{"line 2: invalid character", "line 3: no scenario", "line 4: no tenant", "line 5: no session", `line 6: id "a" is already used on line 1`} {
		require.Contains(t, err.Error(), msg)
	}
}

func TestPercent(t *testing.T) {
	for f, want := range map[float64]string{0: "0%", 1: "100%", 0.5: "50%", 0.125: "12.5%", 0.0123: "1.23%", 0.00004: "<0.01%"} {
		require.Equal(t, want, Percent(f))
	}
}
