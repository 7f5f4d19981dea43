package detectors

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func compile(t testing.TB, yaml string) *rules.Set {
	t.Helper()
	set, err := rules.Compile(rules.Source{Name: "test.yaml", Data: []byte(yaml)})
	require.NoError(t, err)
	return set
}

func rule(cond string, extra ...string) string {
	s := "rules:\n  - id: r\n    description: test rule\n    condition: " + fmt.Sprintf("%q", cond) + "\n    cooldown: 0s\n"
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

func ev(id string, at time.Duration, mod ...func(*pipeline.Event)) *pipeline.Event {
	e := &pipeline.Event{ID: id, Time: t0.Add(at), Tenant: "acme", Agent: "spiffe://acme.dev/a", Session: "s1",
		Tool: "kb.search", Action: pipeline.ActionRead}
	for _, m := range mod {
		m(e)
	}
	return e
}

func run(e *Engine, evs ...*pipeline.Event) []Decision {
	var out []Decision
	for _, x := range evs {
		out = e.Process(x, out)
	}
	return out
}

func firedAt(ds []Decision) []time.Duration {
	var out []time.Duration
	for _, d := range ds {
		out = append(out, d.Time.Sub(t0))
	}
	return out
}

func TestCountWindowEdges(t *testing.T) {
	// 6 buckets of 10s over 1m: reading at t covers the bucket holding t and
	// the five before it.
	e := NewEngine(compile(t, rule("count(1m) >= 3")), Options{})
	ds := run(e,
		ev("a", 0), ev("b", 30*time.Second), // two in the window
		ev("c", 70*time.Second), // "a" has left the window: 2
		ev("d", 75*time.Second), // b, c, d: 3 → fires
	)
	require.Equal(t, []time.Duration{75 * time.Second}, firedAt(ds))
	require.Equal(t, "count(1m)", ds[0].Values[0].Name)
	require.Equal(t, 3.0, ds[0].Values[0].Value)
	require.Equal(t, ">=", ds[0].Values[0].Op)
	require.Equal(t, 3.0, *ds[0].Values[0].Threshold)
}

func TestCountFilterAndRate(t *testing.T) {
	e := NewEngine(compile(t, rule(`count(5m, action == "send") >= 2 && rate(1m) > 0.04`)), Options{})
	send := func(e *pipeline.Event) { e.Action = pipeline.ActionSend }
	ds := run(e, ev("a", 0, send), ev("b", time.Second), ev("c", 2*time.Second, send), ev("d", 3*time.Second))
	require.Equal(t, []time.Duration{2 * time.Second, 3 * time.Second}, firedAt(ds))
}

func TestSumAndDistinct(t *testing.T) {
	e := NewEngine(compile(t, rule(`sum(bytes_out, 10m) > 1000 && distinct(destination, 10m) >= 2`)), Options{})
	out := func(n int64, dst string) func(*pipeline.Event) {
		return func(e *pipeline.Event) { e.BytesOut, e.Destination = n, dst }
	}
	ds := run(e, ev("a", 0, out(600, "x.com")), ev("b", time.Minute, out(600, "x.com")), ev("c", 2*time.Minute, out(1, "y.com")))
	require.Equal(t, []time.Duration{2 * time.Minute}, firedAt(ds))
	require.Equal(t, 1201.0, ds[0].Values[0].Value)
	require.Equal(t, 2.0, ds[0].Values[1].Value)
}

func TestDistinctSwitchesToSketch(t *testing.T) {
	set := compile(t, rule(`distinct(resource, 1h) > 100000`))
	e := NewEngine(set, Options{DistinctExact: 16})
	const n = 5000
	for i := range n {
		e.Process(ev(fmt.Sprint(i), time.Duration(i)*100*time.Millisecond, func(e *pipeline.Event) { e.Resource = fmt.Sprintf("r-%d", i) }), nil)
	}
	g := e.kinds[0].groups["acme\x1fs1"]
	require.NotNil(t, g)
	require.NotNil(t, g.dist[0].sketch, "past the exact cap the distinct count uses a sketch")
	got := e.value(e.refs[0], g, t0.Add(n*100*time.Millisecond).UnixMilli())
	require.InDelta(t, n, got, n*0.2, "HLL estimate within 20%%")
	// exact below the cap
	e2 := NewEngine(set, Options{DistinctExact: 16})
	for i := range 10 {
		e2.Process(ev(fmt.Sprint(i), time.Duration(i)*time.Second, func(e *pipeline.Event) { e.Resource = fmt.Sprintf("r-%d", i%7) }), nil)
	}
	g2 := e2.kinds[0].groups["acme\x1fs1"]
	require.Equal(t, 7.0, e2.value(e2.refs[0], g2, t0.Add(10*time.Second).UnixMilli()))
}

func TestSeqOrderAndSpan(t *testing.T) {
	set := compile(t, rule(`seq(action == "read" && sensitivity == "restricted", action == "send", 10m)`))
	restricted := func(e *pipeline.Event) { e.Sensitivity = "restricted" }
	send := func(e *pipeline.Event) { e.Action = pipeline.ActionSend }

	// B before A does not fire; A then B within the span does.
	ds := run(NewEngine(set, Options{}), ev("b0", 0, send), ev("a", time.Minute, restricted), ev("b", 5*time.Minute, send))
	require.Equal(t, []time.Duration{5 * time.Minute}, firedAt(ds))
	require.Contains(t, ds[0].Evidence, "a", "the step that started the chain is evidence")

	// outside the span
	ds = run(NewEngine(set, Options{}), ev("a", 0, restricted), ev("b", 11*time.Minute, send))
	require.Empty(t, ds)
}

func TestSeqThreeSteps(t *testing.T) {
	set := compile(t, rule(`seq(tool == "web.fetch", tool == "fs.read", tool == "http.post", 5m)`))
	tool := func(n string) func(*pipeline.Event) { return func(e *pipeline.Event) { e.Tool = n } }
	ds := run(NewEngine(set, Options{}), ev("1", 0, tool("fs.read")), ev("2", time.Second, tool("web.fetch")),
		ev("3", 2*time.Second, tool("http.post")), ev("4", 3*time.Second, tool("fs.read")), ev("5", 4*time.Second, tool("http.post")))
	require.Equal(t, []time.Duration{4 * time.Second}, firedAt(ds))
}

// first_seen and distinct over domain(destination) count hosts: a new
// address at a known host is not new.
func TestFirstSeenDomain(t *testing.T) {
	set := compile(t, rule(`first_seen(domain(destination)) || distinct(domain(destination), 1h) > 2`))
	dst := func(d string) func(*pipeline.Event) { return func(e *pipeline.Event) { e.Destination = d } }
	ds := run(NewEngine(set, Options{}), ev("1", 0, dst("bob@corp.example")), ev("2", time.Minute, dst("alice@corp.example")),
		ev("3", 2*time.Minute, dst("https://CORP.example:443/upload")), ev("4", 3*time.Minute, dst("https://drop.example/x")),
		ev("5", 4*time.Minute, dst("carol@corp.example")), ev("6", 5*time.Minute, dst("x@third.example")), ev("7", 6*time.Minute, dst("bob@corp.example")))
	require.Equal(t, []time.Duration{0, 3 * time.Minute, 5 * time.Minute, 6 * time.Minute}, firedAt(ds),
		"new hosts, then three distinct hosts in the hour")
}

func TestFirstSeenHorizon(t *testing.T) {
	set := compile(t, rule(`first_seen(destination, 1h)`))
	dst := func(d string) func(*pipeline.Event) { return func(e *pipeline.Event) { e.Destination = d } }
	ds := run(NewEngine(set, Options{}), ev("1", 0, dst("a")), ev("2", time.Minute, dst("a")), ev("3", 2*time.Minute, dst("b")),
		ev("4", 3*time.Minute), ev("5", 2*time.Hour, dst("a")))
	require.Equal(t, []time.Duration{0, 2 * time.Minute, 2 * time.Hour}, firedAt(ds), "new, new, and seen again after the horizon")
}

func TestBaselineZScore(t *testing.T) {
	set := compile(t, rule(`history(count(1m)) >= 5 && zscore(count(1m)) > 4`, "group: [agent]"))
	e := NewEngine(set, Options{})
	var evs []*pipeline.Event
	// ten minutes at 10 calls a minute
	for i := range 100 {
		evs = append(evs, ev(fmt.Sprint(i), time.Duration(i)*6*time.Second))
	}
	require.Empty(t, run(e, evs...))
	// then 60 calls in 30 seconds
	evs = evs[:0]
	for i := range 60 {
		evs = append(evs, ev(fmt.Sprint("burst", i), 10*time.Minute+time.Duration(i)*500*time.Millisecond))
	}
	ds := run(e, evs...)
	require.NotEmpty(t, ds)
	require.Greater(t, ds[0].Values[1].Value, 4.0)
}

func TestLateAndTooLate(t *testing.T) {
	e := NewEngine(compile(t, rule(`count(10m) >= 3`)), Options{Lateness: time.Minute})
	ds := run(e, ev("a", 5*time.Minute), ev("late", 4*time.Minute+30*time.Second), ev("tooLate", 2*time.Minute))
	require.Empty(t, ds)
	st := e.Stats()
	require.EqualValues(t, 1, st.Late)
	require.EqualValues(t, 1, st.TooLate, "too-late events are reported")
	ds = run(e, ev("b", 6*time.Minute))
	require.Len(t, ds, 1, "the late event counted, the too-late one did not")
	require.Equal(t, 3.0, ds[0].Values[0].Value)
}

func TestCooldownSuppressedCount(t *testing.T) {
	set := compile(t, "rules:\n  - id: r\n    description: d\n    condition: count(1m) >= 1\n    cooldown: 5m\n")
	e := NewEngine(set, Options{})
	var evs []*pipeline.Event
	for i := range 8 {
		evs = append(evs, ev(fmt.Sprint(i), time.Duration(i)*time.Minute))
	}
	ds := run(e, evs...)
	require.Equal(t, []time.Duration{0, 5 * time.Minute}, firedAt(ds))
	require.EqualValues(t, 4, ds[1].Suppressed)
	require.EqualValues(t, 6, e.Stats().Suppressed)
	require.NotEqual(t, ds[0].ID, ds[1].ID)
}

func TestExceptionsExpire(t *testing.T) {
	set := compile(t, rule(`count(1m) >= 1`, `exceptions: [{match: 'tool == "git.push"', expires: 2027-01-01T00:00:00Z, comment: "release bot"}, {match: 'agent == "spiffe://acme.dev/a"', expires: 2026-01-01T00:10:00Z, comment: "batch run approved, SOC-1"}]`))
	e := NewEngine(set, Options{})
	ds := run(e, ev("1", 0), ev("1b", time.Minute), ev("2", 11*time.Minute))
	require.Equal(t, []time.Duration{11 * time.Minute}, firedAt(ds))
	require.EqualValues(t, 2, e.Stats().Excepted)
	require.EqualValues(t, 2, e.RuleStats("r").Excepted)
	require.Equal(t, []int64{0, 2}, e.RuleStats("r").ExceptionHits, "each exception counts what it held back")
}

func TestOverrides(t *testing.T) {
	set := compile(t, rule(`count(1m) > params.max`, "params: {max: 2}", `overrides: [{tenant: big, params: {max: 5}}]`))
	e := NewEngine(set, Options{})
	var evs []*pipeline.Event
	for i := range 4 {
		evs = append(evs, ev(fmt.Sprint("a", i), time.Duration(i)*time.Second))
		evs = append(evs, ev(fmt.Sprint("b", i), time.Duration(i)*time.Second, func(e *pipeline.Event) { e.Tenant = "big" }))
	}
	ds := run(e, evs...)
	require.Len(t, ds, 2)
	for _, d := range ds {
		require.Equal(t, "acme", d.Tenant)
	}
}

func TestMatchIndexAndMissingGroup(t *testing.T) {
	set := compile(t, rule(`count(1m) >= 1`, `match: action == "send"`, "group: [task]"))
	e := NewEngine(set, Options{})
	ds := run(e, ev("1", 0, func(e *pipeline.Event) { e.Task = "t" }), ev("2", time.Second, func(e *pipeline.Event) { e.Action = "send" }),
		ev("3", 2*time.Second, func(e *pipeline.Event) { e.Action, e.Task = "send", "t" }))
	require.Equal(t, []time.Duration{2 * time.Second}, firedAt(ds))
	require.EqualValues(t, 1, e.Stats().MissingGroup)
	require.Equal(t, "tenant=acme,task=t", ds[0].Group)
}

func TestRuntimeErrorIsCounted(t *testing.T) {
	set := compile(t, rule(`int(attrs.n) > 3`))
	e := NewEngine(set, Options{})
	ds := run(e, ev("1", 0, func(e *pipeline.Event) { e.Attrs = map[string]string{"n": "x"} }),
		ev("2", time.Second, func(e *pipeline.Event) { e.Attrs = map[string]string{"n": "7"} }))
	require.Len(t, ds, 1)
	require.EqualValues(t, 1, e.Stats().RuleErrors)
}

func TestDeterministicDecisions(t *testing.T) {
	set, err := rules.LoadPaths("../rules/examples")
	require.NoError(t, err)
	evs := synth(20000, 50)
	a := run(NewEngine(set, Options{}), evs...)
	b := run(NewEngine(set, Options{}), evs...)
	require.NotEmpty(t, a)
	require.Equal(t, a, b)
	ids := map[string]bool{}
	for _, d := range a {
		require.False(t, ids[d.ID], "decision ids are unique: %s", d.ID)
		ids[d.ID] = true
	}
}

func TestIdleGroupsEvicted(t *testing.T) {
	e := NewEngine(compile(t, rule(`count(1m) > 100`)), Options{})
	for i := range 100 {
		e.Process(ev(fmt.Sprint(i), time.Duration(i)*time.Second, func(e *pipeline.Event) { e.Session = fmt.Sprint("s", i) }), nil)
	}
	require.Greater(t, e.Stats().Groups, int64(50))
	e.Process(ev("late", 2*time.Hour, func(e *pipeline.Event) { e.Session = "fresh" }), nil)
	require.EqualValues(t, 1, e.Stats().Groups)
	require.EqualValues(t, 100, e.Stats().Evicted)
}

// An event timed near or before the unix epoch used to index the window
// rings negatively and crash the engine (found by the history backtest).
// It is now counted as out of range and leaves state alone.
func TestEventsBefore2000AreOutOfRange(t *testing.T) {
	e := NewEngine(compile(t, rule("count(1m) >= 1 && sum(bytes_out, 10m) >= 0")), Options{})
	for _, at := range []time.Time{time.Unix(15, 0), time.Unix(-3600, 0), pipeline.MinEventTime.Add(-time.Millisecond)} {
		ev := &pipeline.Event{ID: "e", Time: at, Tenant: "acme", Agent: "a", Session: "s", Tool: "t", Action: pipeline.ActionRead}
		require.NotPanics(t, func() { e.Process(ev, nil) })
	}
	require.EqualValues(t, 3, e.Stats().OutOfRange)
	require.Zero(t, e.Stats().Groups)
}

// A rule grouped by agent reads a session-level sum through by(): it fires
// for the session that read a lot, not for another session of the same
// agent, while first_seen stays per agent.
func TestByReadsTheAggregatesGroup(t *testing.T) {
	set := compile(t, `rules:
  - id: exfil
    description: a send to a destination new to the agent after the session read many sensitive records
    group: [agent]
    match: action == "send"
    condition: first_seen(domain(destination)) && by(session, sum(records, 1h, action == "read" && sensitivity in ["confidential","restricted"])) >= 20
    cooldown: 0s
`)
	e := NewEngine(set, Options{})
	read := func(session string, n int64) func(*pipeline.Event) {
		return func(e *pipeline.Event) { e.Session, e.Records, e.Sensitivity = session, n, "confidential" }
	}
	send := func(session, dst string) func(*pipeline.Event) {
		return func(e *pipeline.Event) {
			e.Session, e.Action, e.Tool, e.Destination = session, "send", "http.post", dst
		}
	}
	ds := run(e,
		ev("r1", 0, read("s1", 15)), ev("r2", time.Minute, read("s1", 10)), // s1: 25 records
		ev("r3", 2*time.Minute, read("s2", 5)),                        // s2: 5 records, same agent
		ev("x2", 3*time.Minute, send("s2", "https://drop.example/a")), // new to the agent, but s2 read little
		ev("x1", 4*time.Minute, send("s1", "https://drop.example/b")), // s1 read a lot, but the agent has sent there
		ev("y1", 5*time.Minute, send("s1", "mallory@other.example")),  // new and s1: fires
		ev("z0", 6*time.Minute, send("", "https://third.example")),    // no session: the by() sum reads 0
	)
	require.Len(t, ds, 1)
	d := ds[0]
	require.Equal(t, "y1", d.EventID)
	require.Equal(t, "tenant=acme,agent=spiffe://acme.dev/a", d.Group, "the decision is the rule's group")
	require.Equal(t, "s1", d.Subject.Session)
	require.Len(t, d.Values, 2)
	require.Equal(t, "first_seen(domain(destination))", d.Values[0].Name)
	require.Equal(t, `by(session, sum(records, 1h, action == "read" && sensitivity in ["confidential","restricted"]))`, d.Values[1].Name)
	require.Equal(t, 25.0, d.Values[1].Value)
	require.Equal(t, ">=", d.Values[1].Op)
	require.Equal(t, 20.0, *d.Values[1].Threshold)
	require.Zero(t, e.Stats().MissingGroup, "a missing by() group is not a missing rule group")
}

// When the event lacks a field of the by() group, the aggregate reads 0
// and a flag reads false, whatever the previous event left behind.
func TestByMissingGroupReadsZero(t *testing.T) {
	set := compile(t, `rules:
  - id: zero
    description: count of the session reads 0 without a session
    group: [agent]
    condition: by(session, count(1h)) == 0
    cooldown: 0s
  - id: flag
    description: a tool new to the task
    group: [agent]
    condition: by(task, first_seen(tool))
    cooldown: 0s
`)
	e := NewEngine(set, Options{})
	ds := run(e,
		ev("1", 0, func(e *pipeline.Event) { e.Task = "t1" }),                         // flag: new in t1
		ev("2", time.Second, func(e *pipeline.Event) { e.Session, e.Tool = "", "x" }), // zero: no session; flag: no task
		ev("3", 2*time.Second, func(e *pipeline.Event) { e.Task = "t1" }),             // seen in t1
		ev("4", 3*time.Second, func(e *pipeline.Event) { e.Task = "t2" }),             // new in t2
	)
	var got []string
	for _, d := range ds {
		got = append(got, d.Rule+"@"+d.EventID)
	}
	require.Equal(t, []string{"flag@1", "zero@2", "flag@4"}, got)
}

// by(session, baseline(…)) keeps the baseline per session, and an
// aggregate by() of the rule's own group is the rule's aggregate.
func TestByBaselinePerSession(t *testing.T) {
	set := compile(t, `rules:
  - id: burst
    description: a session far above its own rate
    group: [agent]
    condition: by(session, history(count(1m))) >= 5 && by(session, zscore(count(1m))) > 4 && by(agent, count(1m)) == count(1m)
    cooldown: 0s
`)
	require.Len(t, set.Aggs, 3, "count and its baseline per session (shared by history and zscore), count per agent")
	e := NewEngine(set, Options{})
	var evs []*pipeline.Event
	at := func(s string) func(*pipeline.Event) { return func(e *pipeline.Event) { e.Session = s } }
	// ten minutes at 10 calls a minute in s1, 30 a minute in s2
	for i := range 100 {
		evs = append(evs, ev(fmt.Sprint("a", i), time.Duration(i)*6*time.Second, at("s1")))
	}
	for i := range 300 {
		evs = append(evs, ev(fmt.Sprint("b", i), time.Duration(i)*2*time.Second, at("s2")))
	}
	slices.SortStableFunc(evs, func(a, b *pipeline.Event) int { return a.Time.Compare(b.Time) })
	require.Empty(t, run(e, evs...))
	// then 60 calls in 30 seconds in s1: the agent's count is no burst for
	// s2's rate, but s1 bursts against its own baseline
	evs = evs[:0]
	for i := range 60 {
		evs = append(evs, ev(fmt.Sprint("burst", i), 10*time.Minute+time.Duration(i)*500*time.Millisecond, at("s1")))
	}
	ds := run(e, evs...)
	require.NotEmpty(t, ds)
	require.Equal(t, "s1", ds[0].Subject.Session)
	var names []string
	for _, v := range ds[0].Values {
		names = append(names, v.Name)
	}
	require.Equal(t, []string{"by(session, count(1m))", "by(session, history(count(1m)))",
		"by(session, zscore(count(1m)))", "by(agent, count(1m))", "count(1m)"}, names, "each value once")
	require.Greater(t, ds[0].Values[2].Value, 4.0)
	require.Equal(t, ds[0].Values[3].Value, ds[0].Values[4].Value)
	require.Greater(t, ds[0].Values[3].Value, ds[0].Values[0].Value, "the agent's count holds both sessions")
}

// Kinds created for by() groups get idle times from their aggregates, and
// are evicted like any other.
func TestByKindsIdle(t *testing.T) {
	set := compile(t, `rules:
  - id: r
    description: d
    group: [agent]
    condition: by(session, count(1m)) > 100 || by(task, first_seen(tool, 2d)) && count(10m) > 1000
    cooldown: 0s
`)
	e := NewEngine(set, Options{})
	idle := map[string]time.Duration{}
	for _, k := range e.kinds {
		idle[k.key.Name()] = time.Duration(k.idle) * time.Millisecond
	}
	require.Equal(t, map[string]time.Duration{
		"tenant,agent":   11 * time.Minute,
		"tenant,session": 2 * time.Minute,
		"tenant,task":    7 * 24 * time.Hour,
	}, idle)
	for i := range 10 {
		e.Process(ev(fmt.Sprint(i), time.Duration(i)*time.Second, func(e *pipeline.Event) { e.Session, e.Task = fmt.Sprint("s", i), "t" }), nil)
	}
	require.EqualValues(t, 12, e.Stats().Groups)
	e.Process(ev("later", time.Hour, func(e *pipeline.Event) { e.Session = "fresh" }), nil)
	require.EqualValues(t, 3, e.Stats().Groups, "the agent, the new session and the task, which is kept for first_seen")
}

// An aggregate written several times is explained once per comparison.
func TestDecisionValuesAreNotRepeated(t *testing.T) {
	e := NewEngine(compile(t, rule(`count(1m) >= 2 && count(1m) < 10 && count(1m) >= 2 && count(1m) * 2 > 3`)), Options{})
	ds := run(e, ev("1", 0), ev("2", time.Second))
	require.Len(t, ds, 1)
	var got []string
	for _, v := range ds[0].Values {
		s := v.Name + " " + v.Op
		if v.Threshold != nil {
			s += fmt.Sprint(" ", *v.Threshold)
		}
		got = append(got, s)
	}
	require.Equal(t, []string{"count(1m) >= 2", "count(1m) < 10", "count(1m) "}, got)
}
