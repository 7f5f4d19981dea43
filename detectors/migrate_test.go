package detectors

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Rules read by the reload tests: every aggregate kind, several group keys.
const reloadBase = `
rules:
  - id: busy
    description: busy session
    condition: count(2m) > 40 && distinct(resource, 5m) > 20
    cooldown: 1m
  - id: seq-send
    description: read then send
    match: action == "send"
    group: [agent]
    condition: seq(action == "read" && sensitivity == "restricted", action == "send", 10m) && first_seen(destination)
    cooldown: 30s
  - id: volume
    description: bytes
    group: [agent]
    condition: sum(bytes_in, 5m) > 200000 && history(count(1m)) >= 3 && count(1m) > baseline(count(1m))
    cooldown: 2m
  - id: rate-dev
    description: above the agent's own baseline
    group: [agent]
    condition: history(count(10s)) >= 3 && zscore(count(10s)) > 1.5
    cooldown: 20s
  - id: cred
    description: credential
    group: [credential]
    condition: distinct(session, 10m) > 3
`

// TestReloadKeepsStateOfUnchangedRules runs the same events through one
// engine, and through an engine reloaded halfway with a set where one rule
// changed and one was added. The unchanged rules must decide exactly as if
// no reload happened (windows, sequences, first-seen terms, baselines and
// cooldowns carried over); the changed rule starts cold.
func TestReloadKeepsStateOfUnchangedRules(t *testing.T) {
	evs := synth(20000, 60)
	changed := reloadBase + `
  - id: added
    description: a new rule over an existing aggregate and a new one
    condition: count(2m) > 45 || count(3m, outcome == "error") > 5
`
	// the changed rule: another cooldown gives it another version
	changed = replaceOnce(t, changed, "cooldown: 2m", "cooldown: 3m")
	s1, s2 := compile(t, reloadBase), compile(t, changed)
	require.NotEqual(t, s1.Rule("volume").Version, s2.Rule("volume").Version)
	require.Equal(t, s1.Rule("busy").Version, s2.Rule("busy").Version)

	ref := NewEngine(s1, Options{})
	refDecs := run(ref, evs...)

	half := len(evs) / 2
	a := NewEngine(s1, Options{})
	before := run(a, evs[:half]...)
	b := NewEngineFrom(s2, Options{}, a)
	after := run(b, evs[half:]...)

	byRule := func(ds []Decision, id string) []string {
		var out []string
		for _, d := range ds {
			if d.Rule == id {
				out = append(out, d.ID+"/"+d.Group+"/"+d.EventID)
			}
		}
		return out
	}
	all := append(before, after...)
	for _, id := range []string{"busy", "seq-send", "rate-dev", "cred"} {
		want := byRule(refDecs, id)
		require.NotEmpty(t, want, "rule %s must fire in this stream for the test to mean anything", id)
		require.Equal(t, want, byRule(all, id), "rule %s", id)
		require.Equal(t, ref.RuleStats(id), b.RuleStats(id), "rule %s counters", id)
	}
	// a fresh engine of s2 over the second half only misses the history the
	// reload kept
	fresh := run(NewEngine(s2, Options{}), evs[half:]...)
	require.NotEqual(t, byRule(fresh, "seq-send"), byRule(after, "seq-send"))
	require.Equal(t, ref.Stats().Events, b.Stats().Events)
	require.NotEmpty(t, byRule(after, "added"))
}

// Reloading the same set is invisible.
func TestReloadSameSetIsInvisible(t *testing.T) {
	evs := synth(6000, 20)
	s := compile(t, reloadBase)
	want := run(NewEngine(s, Options{}), evs...)
	e := NewEngine(s, Options{})
	var got []Decision
	for i, x := range evs {
		if i%1000 == 999 {
			e = NewEngineFrom(compile(t, reloadBase), Options{}, e)
		}
		got = e.Process(x, got)
	}
	require.Equal(t, want, got)
}

func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	require.Contains(t, s, old)
	return strings.Replace(s, old, new, 1)
}

// by() aggregates are kept for their own group key, so a reload carries them
// like any other: matched by group name and canonical text, whichever rule
// reads them and whatever that rule's group is.
func TestReloadKeepsByAggregates(t *testing.T) {
	evs := synth(20000, 60)
	const base = `
rules:
  - id: busy-instance
    description: an agent rule reading its instance's volume
    group: [agent]
    condition: by(instance, count(2m)) > 330 && by(instance, distinct(resource, 2m)) > 150
    cooldown: 20s
  - id: new-dest-in-task
    description: a send to a destination new to the task
    group: [agent]
    match: action == "send"
    condition: by(task, first_seen(destination)) && by(task, seq(action == "read", action == "send", 1m))
    cooldown: 5s
`
	changed := base + `
  - id: instance-volume
    description: the same aggregate, now read by a rule grouped by instance
    group: [instance]
    condition: count(2m) > 330
    cooldown: 0s
`
	changed = replaceOnce(t, changed, "cooldown: 5s", "cooldown: 6s")
	s1, s2 := compile(t, base), compile(t, changed)

	ref := NewEngine(s1, Options{})
	refDecs := run(ref, evs...)
	full := run(NewEngine(s2, Options{}), evs...) // s2 from the start

	half := len(evs) / 2
	a := NewEngine(s1, Options{})
	before := run(a, evs[:half]...)
	b := NewEngineFrom(s2, Options{}, a)
	after := run(b, evs[half:]...)

	byRule := func(ds []Decision, id string, from int) []string {
		var out []string
		for _, d := range ds {
			if d.Rule == id && d.Time.Compare(evs[from].Time) >= 0 {
				out = append(out, d.ID+"/"+d.EventID+"/"+valuesText(d))
			}
		}
		return out
	}
	want := byRule(refDecs, "busy-instance", 0)
	require.NotEmpty(t, want)
	require.NotEmpty(t, byRule(refDecs, "busy-instance", half), "the rule must fire after the reload for the test to mean anything")
	require.Equal(t, want, byRule(append(before, after...), "busy-instance", 0), "an unchanged by() rule decides as if no reload happened")

	// the changed rule kept its by() state (its cooldown restarts): its
	// values after the reload are those of an engine that never reloaded
	values := func(ds []Decision, id string) map[string]string {
		out := map[string]string{}
		for _, d := range ds {
			if d.Rule == id && d.Time.Compare(evs[half].Time) >= 0 {
				out[d.EventID] = valuesText(d)
			}
		}
		return out
	}
	got, ok := values(after, "new-dest-in-task"), values(refDecs, "new-dest-in-task")
	require.NotEmpty(t, got)
	compared := 0
	for id, v := range got {
		if w, fired := ok[id]; fired {
			require.Equal(t, w, v, "event %s", id)
			compared++
		}
	}
	require.Greater(t, compared, len(got)/2)
	// without the reload's state, first_seen(destination) per task is new again
	require.Greater(t, len(values(run(NewEngine(s2, Options{}), evs[half:]...), "new-dest-in-task")), len(got))
	// the new rule reads the by(instance, count(2m)) state built before the
	// reload: right after it, it fires exactly as if it had been there all along
	require.NotEmpty(t, byRule(after, "instance-volume", half))
	require.Equal(t, byRule(full, "instance-volume", half), byRule(after, "instance-volume", half))
	fresh := run(NewEngine(s2, Options{}), evs[half:]...)
	require.NotEqual(t, byRule(fresh, "instance-volume", half), byRule(after, "instance-volume", half))
}

func valuesText(d Decision) string {
	var b strings.Builder
	for _, v := range d.Values {
		fmt.Fprintf(&b, "%s=%g;", v.Name, v.Value)
	}
	return b.String()
}
