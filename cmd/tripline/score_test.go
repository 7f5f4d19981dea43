package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/score"
)

const scoreRules = `
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
`

// scoreFiles writes a labelled simulation: an exfiltration caught after
// three calls, a credential leak nobody catches, and two benign sessions,
// one of which the burst rule revokes.
func scoreFiles(t *testing.T) (rulesPath, events, labels string) {
	t.Helper()
	dir := t.TempDir()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var evs strings.Builder
	for i, e := range []struct {
		sec            int
		agent, session string
		action         string
	}{
		{0, "bot", "a1", "read"},
		{1, "user", "b0", "read"},
		{2, "user", "b0", "read"},
		{3, "user", "b0", "read"},
		{4, "user2", "b1", "read"},
		{5, "evil", "x", "write"},
		{10, "bot", "a1", "send"},
		{20, "bot", "a1", "send"},
	} {
		fmt.Fprintf(&evs, `{"id":"e-%d","time":"%s","tenant":"acme","agent":"spiffe://acme.example/agents/%s","session":"%s","credential":"cred-%s","tool":"tool.%s","action":"%s"}`+"\n",
			i, t0.Add(time.Duration(e.sec)*time.Second).Format(time.RFC3339Nano), e.agent, e.session, e.agent, e.action, e.action)
	}
	evs.WriteString("not an event\n")
	rulesPath, events, labels = filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "labels.jsonl")
	require.NoError(t, os.WriteFile(rulesPath, []byte(scoreRules), 0o644))
	require.NoError(t, os.WriteFile(events, []byte(evs.String()), 0o644))
	require.NoError(t, os.WriteFile(labels, []byte(`{"id":"x1","scenario":"exfil","tenant":"acme","agent":"spiffe://acme.example/agents/bot","sessions":["a1"],"credential":"cred-bot","first_event_time":"2026-01-01T00:00:00Z","last_event_time":"2026-01-01T00:00:20Z","events":3}
{"id":"x2","scenario":"leak","tenant":"acme","agent":"spiffe://acme.example/agents/evil","sessions":["x"],"credential":"cred-bot","events":1}
`), 0o644))
	return rulesPath, events, labels
}

func TestScoreTable(t *testing.T) {
	rulesPath, events, labels := scoreFiles(t)
	code, out, errOut := tripline(t, "", "rules", "score", "--rules", rulesPath, "--events", events, "--labels", labels, "-v")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, `SCENARIO  INSTANCES  DETECTED  WOULD STOP   STOPPED  TIME TO STOP  MAX  CALLS  HARMFUL THROUGH  TOTAL  RULES
exfil             1  1 (100%)    1 (100%)  1 (100%)           20s  20s      3                2      2  burst (1), sender (1)
leak              1    0 (0%)      0 (0%)    0 (0%)             -    -      -                1      1  -

TIME TO STOP (median) and MAX: event time from an attack's first event to
the first revoke or hold, any mode. CALLS: the attack's calls up to and
including it (median). HARMFUL THROUGH: send, write, delete and execute
calls at or before it (median; TOTAL over all instances).

ATTACK  SCENARIO  TENANT  EVENTS  DETECTED  STOP                              AFTER  CALLS  HARMFUL THROUGH  RULES
x1      exfil     acme         3  yes       burst revoke (enforce, by event)    20s      3           2 of 2  burst, sender
x2      leak      acme         1  no        -                                     -      -           1 of 1  -

BENIGN SESSIONS                 SESSIONS  SHARE
all                                    2
with a decision                        1    50%
with a shadow revoke or hold           0     0%  would-be false positives
with an enforce revoke or hold         1    50%  false positives

RULE    MODE     ACTION  DECISIONS  ATTACKS  BENIGN SESSIONS  BENIGN DECISIONS  E.G.
burst   enforce  revoke          2        1                1                 1  acme/b0
sender  shadow   alert           1        1                0                 0  -

scenarios fully detected 1/2; false positives 50% of benign sessions (1 of 2 revoked or held in mode enforce)
events 8  attack events 4  malformed 1  decisions 3  elapsed X  events/s X

malformed lines (first 1 of 1):
  line 9: invalid event JSON: invalid character 'n', expected a JSON object (at byte 0)
`, volatile.ReplaceAllString(out, "$1 X"))

	// Without -v, no line per attack.
	code, out, _ = tripline(t, "", "rules", "score", "--rules", rulesPath, "--events", events, "--labels", labels)
	require.Equal(t, 0, code)
	require.NotContains(t, out, "ATTACK ")
	require.Contains(t, out, "scenarios fully detected 1/2;")
}

func TestScoreJSON(t *testing.T) {
	rulesPath, events, labels := scoreFiles(t)
	code, out, errOut := tripline(t, "", "rules", "score", "--rules", rulesPath, "--events", events, "--labels", labels, "--json")
	require.Equal(t, 0, code, errOut)
	var got struct {
		score.Report
		Gates struct {
			MinDetect float64  `json:"min_detect"`
			MaxFP     float64  `json:"max_fp"`
			Passed    bool     `json:"passed"`
			Failures  []string `json:"failures"`
		} `json:"gates"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Len(t, got.Scenarios, 2)
	exfil := got.Scenarios[0]
	require.Equal(t, "exfil", exfil.Scenario)
	require.Equal(t, 1.0, exfil.DetectedFraction)
	require.Equal(t, score.Duration(20*time.Second), exfil.TimeToStopMedian)
	require.Equal(t, 3.0, exfil.CallsToStop)
	require.Len(t, got.Attacks, 2)
	require.Equal(t, "burst", got.Attacks[0].Stop.Rule)
	require.Equal(t, score.ByEvent, got.Attacks[0].Stop.By)
	require.Nil(t, got.Attacks[1].Stop)
	require.Equal(t, score.Benign{Sessions: 2, WithDecision: 1, WithEnforceStop: 1, DecisionRate: 0.5, FalsePositiveRate: 0.5}, got.Benign)
	require.Equal(t, 1, got.ScenariosDetected)
	require.EqualValues(t, 8, got.Events)
	require.EqualValues(t, 1, got.Malformed)
	require.True(t, got.Gates.Passed)
	require.Equal(t, []string{}, got.Gates.Failures)
	require.Equal(t, 1.0, got.Gates.MaxFP)
}

func TestScoreGates(t *testing.T) {
	rulesPath, events, labels := scoreFiles(t)
	base := []string{"rules", "score", "--rules", rulesPath, "--events", events, "--labels", labels}
	for _, tc := range []struct {
		flags []string
		code  int
		why   []string
	}{
		{nil, 0, nil},
		{[]string{"--min-detect", "0"}, 0, nil},
		{[]string{"--min-detect", "0.5"}, 1, []string{"gate failed: scenario leak: 0 of 1 instances detected (0%), below the minimum 50%"}},
		{[]string{"--min-detect", "1"}, 1, []string{"gate failed: scenario leak: 0 of 1 instances detected (0%), below the minimum 100%"}},
		{[]string{"--max-fp", "0.5"}, 0, nil},
		{[]string{"--max-fp", "0.01"}, 1, []string{"gate failed: false positives: 1 of 2 benign sessions revoked or held in mode enforce (50%), above the maximum 1%"}},
		{[]string{"--min-detect", "1", "--max-fp", "0", "--json"}, 1, []string{"scenario leak", "false positives"}},
	} {
		t.Run(strings.Join(tc.flags, " "), func(t *testing.T) {
			code, out, errOut := tripline(t, "", append(base, tc.flags...)...)
			require.Equal(t, tc.code, code, errOut)
			require.NotEmpty(t, out, "the score is printed whether or not a gate fails")
			for _, w := range tc.why {
				require.Contains(t, errOut, w)
			}
			if tc.code == 0 {
				require.NotContains(t, errOut, "gate failed")
			}
		})
	}
}

func TestScoreErrors(t *testing.T) {
	rulesPath, events, labels := scoreFiles(t)
	badLabels := filepath.Join(t.TempDir(), "labels.jsonl")
	require.NoError(t, os.WriteFile(badLabels, []byte("{\"tenant\":\"acme\",\"session\":\"s\"}\n"), 0o644))
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--events", events}, "required flag"},
		{[]string{"--labels", labels}, "required flag"},
		{[]string{"--events", events, "--labels", labels, "--min-detect", "2"}, "--min-detect 2 is not a fraction"},
		{[]string{"--events", events, "--labels", labels, "--max-fp", "-1"}, "--max-fp -1 is not a fraction"},
		{[]string{"--events", "-", "--labels", "-"}, "cannot both be stdin"},
		{[]string{"--events", events, "--labels", badLabels}, "line 1: no scenario"},
		{[]string{"--events", events, "--labels", "no/such/labels"}, "no such file"},
		{[]string{"--events", "no/such/events", "--labels", labels}, "no such file"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, errOut := tripline(t, "", append([]string{"rules", "score", "--rules", rulesPath}, tc.args...)...)
			require.Equal(t, 2, code, errOut)
			require.Contains(t, errOut, tc.msg)
		})
	}
}

func TestScoreDefaultPack(t *testing.T) {
	// Without --rules, the built-in pack scores the sample; labels from stdin.
	code, out, errOut := tripline(t, `{"id":"l","scenario":"some-scenario","tenant":"tenant1","sessions":["s-1-0"]}`+"\n",
		"rules", "score", "--events", sample, "--labels", "-", "--json")
	require.Equal(t, 0, code, errOut)
	var got score.Report
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	set, err := (&app{}).loadRulesOrPack(nil)
	require.NoError(t, err)
	require.Equal(t, set.Hash, got.SetHash)
	require.Len(t, got.Rules, len(set.Rules))
	require.EqualValues(t, 196, got.Events)
	require.Positive(t, got.AttackEvents)
	require.Positive(t, got.Benign.Sessions)
}
