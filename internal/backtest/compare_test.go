package backtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// thresholdSets are the test rules with bulk-read's threshold at a and at
// b reads a minute; exfil is the same in both.
func thresholdSets(t testing.TB, a, b int) (*rules.Set, *rules.Set) {
	t.Helper()
	load := func(reads int) *rules.Set {
		dir := t.TempDir()
		for _, name := range []string{"volume.yaml", "sequences.yaml"} {
			data, err := os.ReadFile(filepath.Join("../../testdata/rules/good", name))
			require.NoError(t, err)
			out := strings.Replace(string(data), "reads: 5", fmt.Sprintf("reads: %d", reads), 1)
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644))
		}
		set, err := rules.LoadPaths(dir)
		require.NoError(t, err)
		return set
	}
	return load(a), load(b)
}

func ruleDiff(t testing.TB, c *Comparison, id string) RuleDiff {
	t.Helper()
	for _, d := range c.Rules {
		if d.Rule == id {
			return d
		}
	}
	t.Fatalf("no rule %s in the comparison", id)
	return RuleDiff{}
}

// compareEvents: four agents. a reads 5 times in session s-1 and 8 times
// in s-2, b 6 times in s-3, c 10 times in s-4; d reads restricted data and
// sends it out (exfil) in s-5.
func compareEvents() []pipeline.Event {
	at := time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)
	var out []pipeline.Event
	n := 0
	add := func(agent, session string, e pipeline.Event) {
		n++
		e.ID = fmt.Sprintf("e-%03d", n)
		e.Time = at.Add(time.Duration(n) * time.Second)
		e.Tenant, e.Agent, e.Session = "acme", "spiffe://acme.example/agents/"+agent, session
		if e.Tool == "" {
			e.Tool, e.Action = "db.query", pipeline.ActionRead
		}
		out = append(out, e)
	}
	reads := map[string]int{"s-1": 5, "s-2": 8, "s-3": 6, "s-4": 10}
	agents := map[string]string{"s-1": "a", "s-2": "a", "s-3": "b", "s-4": "c"}
	for i := range 10 { // interleaved, all within a minute per session
		for _, s := range []string{"s-1", "s-2", "s-3", "s-4"} {
			if i < reads[s] {
				add(agents[s], s, pipeline.Event{})
			}
		}
	}
	add("d", "s-5", pipeline.Event{Sensitivity: "restricted"})
	add("d", "s-5", pipeline.Event{Tool: "http.post", Action: pipeline.ActionSend, Destination: "https://drop.example/x", BytesOut: 5_000_000})
	return out
}

func TestCompareThreshold(t *testing.T) {
	low, high := thresholdSets(t, 5, 7)
	events := compareEvents()
	data := jsonl(events)
	src := func() Source { return NewFileSource(bytes.NewReader(data), pipeline.Limits{}, false) }

	// The decisions of the low threshold alone, for their ids.
	var out bytes.Buffer
	_, err := RunSource(context.Background(), low, src(), Config{Decisions: &out})
	require.NoError(t, err)
	ids := map[string]string{} // group → decision id
	for _, d := range readDecisions(t, out.Bytes()) {
		ids[d.Rule+" "+d.Group] = d.ID
	}
	require.Len(t, ids, 5, "bulk-read for s-1 to s-4, exfil for s-5")

	var decs bytes.Buffer
	c, err := Compare(context.Background(), low, high, src(), Config{Decisions: &decs})
	require.NoError(t, err)
	require.Equal(t, out.String(), decs.String(), "the decisions written are the new set's")
	require.EqualValues(t, len(events), c.New.Events)
	require.EqualValues(t, len(events), c.Old.Events)
	require.EqualValues(t, 5, c.New.Decisions)
	require.EqualValues(t, 3, c.Old.Decisions)

	agent := func(s string) string { return "spiffe://acme.example/agents/" + s }
	group := func(s string) string { return "tenant=acme,session=" + s }
	f := func(agentName, session string) Firing {
		return Firing{Rule: "bulk-read", Group: group(session), Agent: agent(agentName), Decisions: 1, Decision: ids["bulk-read "+group(session)]}
	}
	noTime := func(fs []Firing) []Firing {
		for i := range fs {
			require.False(t, fs[i].Time.IsZero())
			fs[i].Time = time.Time{}
		}
		return fs
	}

	require.Len(t, c.Rules, 2)
	bulk := ruleDiff(t, c, "bulk-read")
	require.Equal(t, RuleChanged, bulk.Change)
	require.EqualValues(t, 4, bulk.NewDecisions)
	require.EqualValues(t, 2, bulk.OldDecisions)
	require.EqualValues(t, 2, bulk.OnlyNew)
	require.EqualValues(t, 0, bulk.OnlyOld)
	require.EqualValues(t, 2, bulk.Both)
	require.Equal(t, []Firing{f("a", "s-1"), f("b", "s-3")}, noTime(bulk.OnlyNewSamples))
	require.Empty(t, bulk.OnlyOldSamples)
	require.True(t, bulk.Differs())

	exfil := ruleDiff(t, c, "exfil")
	require.Equal(t, RuleDiff{Rule: "exfil", Change: RuleSame, NewDecisions: 1, OldDecisions: 1, Both: 1,
		OnlyNewSamples: []Firing{}, OnlyOldSamples: []Firing{}}, exfil)
	require.False(t, exfil.Differs())

	type counts struct{ newDecs, oldDecs, onlyNew, onlyOld, both int64 }
	got := map[string]counts{}
	var order []string
	for _, a := range c.Agents {
		got[a.Agent] = counts{a.NewDecisions, a.OldDecisions, a.OnlyNew, a.OnlyOld, a.Both}
		order = append(order, a.Agent)
	}
	require.Equal(t, map[string]counts{
		agent("a"): {2, 1, 1, 0, 1},
		agent("b"): {1, 0, 1, 0, 0},
		agent("c"): {1, 1, 0, 0, 1},
		agent("d"): {1, 1, 0, 0, 1},
	}, got)
	require.Equal(t, []string{agent("a"), agent("b"), agent("c"), agent("d")}, order, "most differences first")
	require.Equal(t, []Firing{f("a", "s-1")}, noTime(c.Agents[0].OnlyNewSamples))
	require.Equal(t, []Firing{f("b", "s-3")}, noTime(c.Agents[1].OnlyNewSamples))

	// The other way round, what only the new set fired is only the old's.
	rev, err := Compare(context.Background(), high, low, src(), Config{})
	require.NoError(t, err)
	rbulk := ruleDiff(t, rev, "bulk-read")
	require.EqualValues(t, 0, rbulk.OnlyNew)
	require.EqualValues(t, 2, rbulk.OnlyOld)
	require.EqualValues(t, 2, rbulk.Both)
	require.Equal(t, []Firing{f("a", "s-1"), f("b", "s-3")}, noTime(rbulk.OnlyOldSamples))
	require.EqualValues(t, 1, rev.Agents[0].OnlyOld)
}

// TestCompareRuleSets: rules only in one set are added or removed; with
// the same set on both sides everything is in both.
func TestCompareRuleSets(t *testing.T) {
	all := goodRules(t)
	// exfil alone: the rule without the file's tests, one of which names
	// bulk-read.
	data, err := os.ReadFile("../../testdata/rules/good/sequences.yaml")
	require.NoError(t, err)
	rule, _, ok := strings.Cut(string(data), "\ntests:")
	require.True(t, ok)
	exfilOnly, err := rules.Compile(rules.Source{Name: "exfil.yaml", Data: []byte(rule)})
	require.NoError(t, err)
	events := jsonl(compareEvents())
	src := func() Source { return NewFileSource(bytes.NewReader(events), pipeline.Limits{}, false) }

	c, err := Compare(context.Background(), all, exfilOnly, src(), Config{})
	require.NoError(t, err)
	require.Equal(t, RuleAdded, ruleDiff(t, c, "bulk-read").Change)
	require.EqualValues(t, 4, ruleDiff(t, c, "bulk-read").OnlyNew)

	c, err = Compare(context.Background(), exfilOnly, all, src(), Config{})
	require.NoError(t, err)
	require.Equal(t, []string{"exfil", "bulk-read"}, []string{c.Rules[0].Rule, c.Rules[1].Rule}, "removed rules last")
	require.Equal(t, RuleRemoved, c.Rules[1].Change)
	require.EqualValues(t, 4, c.Rules[1].OnlyOld)
	require.EqualValues(t, 0, c.Rules[1].NewDecisions)

	c, err = Compare(context.Background(), all, all, src(), Config{})
	require.NoError(t, err)
	for _, d := range c.Rules {
		require.Equal(t, RuleSame, d.Change)
		require.False(t, d.Differs(), d.Rule)
		require.Equal(t, d.NewDecisions, d.OldDecisions)
	}
	require.Equal(t, c.New.Rules, c.Old.Rules)
}

// TestCompareWriteError: a failing decision writer stops both engines.
func TestCompareWriteError(t *testing.T) {
	low, high := thresholdSets(t, 2, 3)
	at := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	var events []pipeline.Event
	for i := range 5000 {
		events = append(events, pipeline.Event{ID: fmt.Sprint("e-", i), Time: at.Add(time.Duration(i) * time.Second), Tenant: "acme",
			Agent: "spiffe://acme.example/a", Session: fmt.Sprint("s-", i/3), Tool: "db.query", Action: pipeline.ActionRead})
	}
	_, err := Compare(context.Background(), low, high, NewFileSource(bytes.NewReader(jsonl(events)), pipeline.Limits{}, false), Config{Decisions: &failWriter{}})
	require.ErrorContains(t, err, "disk full")
}
