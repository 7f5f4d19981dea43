// Package ruletest runs the tests written next to rules: each test feeds
// timed input events to a fresh engine holding only the rules it names and
// compares the decisions produced with the decisions it expects, in the
// manner of promtool's rule tests.
//
// Semantics:
//   - Events start at the test's start time (default DefaultStart). Each
//     input event is the test's defaults overlaid by its own fields (nested
//     maps such as attrs are merged; a field set to null removes a default),
//     at start+at; repeat: n emits n copies every apart, and "{i}" in any
//     string of a copy is replaced by its repetition number (0-based).
//   - An event without an id gets "t-<index>", index being its 0-based
//     position in the expanded input; with repeat and an explicit id without
//     {i}, the copies get "<id>-<k>". An event without a time gets its
//     computed time.
//   - Events are marshalled to JSON and decoded with pipeline.Decode, so a
//     test event is validated exactly like a real one. They are fed in the
//     order written, not sorted, so a test can send late events.
//   - Expectations are partial: an expectation compares only the fields it
//     sets. The decisions must match the expectations in order and in count.
//   - Every rule needs a positive test (one expecting a decision of the rule)
//     and a negative one (expecting none of the rule); see Coverage.
package ruletest

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// DefaultStart is the start time of a test that does not set one.
var DefaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Config tunes a run. The zero value runs every test with default engine
// options.
type Config struct {
	// Engine are the options of the engine each test runs on.
	Engine detectors.Options
	// Run, when set, selects the tests whose name matches (like go test -run).
	// Coverage is checked over all tests regardless.
	Run *regexp.Regexp
	// Limits applies to test events (zero: pipeline.DefaultLimits).
	Limits pipeline.Limits
}

// Result is the outcome of one test.
type Result struct {
	Name  string
	File  string
	Pos   rules.Pos
	Rules []string
	Pass  bool
	// Err is set when the test could not run (an invalid input event, an
	// empty test); the test then fails.
	Err string
	// Diff shows the expected and produced decisions when they differ.
	Diff string
	// Decisions are the decisions the test produced.
	Decisions []detectors.Decision
	// Events is the number of input events fed.
	Events int
}

// Missing is a rule lacking a positive or a negative test.
type Missing struct {
	Rule     string
	Pos      rules.Pos
	Positive bool // no test expects a decision of the rule
	Negative bool // no test expects none of the rule
}

func (m Missing) String() string {
	var what []string
	if m.Positive {
		what = append(what, "positive test (expecting a decision)")
	}
	if m.Negative {
		what = append(what, "negative test (expecting none)")
	}
	return fmt.Sprintf("%s: rule %q has no %s", m.Pos, m.Rule, strings.Join(what, " and no "))
}

// Report is the outcome of a run.
type Report struct {
	Tests   []Result
	Missing []Missing
	Passed  int
	Failed  int
	Skipped int // tests not selected by Config.Run
}

// OK reports whether every test selected passed and every rule is covered.
func (r *Report) OK() bool { return r.Failed == 0 && len(r.Missing) == 0 }

// Summary is a one-line account of the run.
func (r *Report) Summary() string {
	s := fmt.Sprintf("%s: %d passed, %d failed", plural(r.Passed+r.Failed, "test", "tests"), r.Passed, r.Failed)
	if r.Skipped > 0 {
		s += fmt.Sprintf(", %d skipped", r.Skipped)
	}
	if n := len(r.Missing); n > 0 {
		s += "; " + plural(n, "rule lacks", "rules lack") + " tests"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// Run runs the tests of set and checks that every rule has a positive and a
// negative test.
func Run(set *rules.Set, cfg Config) Report {
	var rep Report
	for _, t := range set.Tests {
		if cfg.Run != nil && !cfg.Run.MatchString(t.Name) {
			rep.Skipped++
			continue
		}
		res := RunTest(set, t, cfg)
		if res.Pass {
			rep.Passed++
		} else {
			rep.Failed++
		}
		rep.Tests = append(rep.Tests, res)
	}
	rep.Missing = Coverage(set)
	return rep
}

// Coverage returns the rules of set that lack a positive or a negative test.
//
// A test is positive for a rule it names when one of its expectations is for
// that rule (an expectation without a rule counts for every rule the test
// names). It is negative for a rule it names when none of its expectations
// can be for that rule; since the decisions must match the expectations in
// count, such a test shows that the rule stays quiet.
func Coverage(set *rules.Set) []Missing {
	pos := map[string]bool{}
	neg := map[string]bool{}
	for _, t := range set.Tests {
		for _, id := range t.Rules {
			could := false
			for _, e := range t.Expect {
				if e.Rule == "" || e.Rule == id {
					could = true
					break
				}
			}
			if could {
				pos[id] = true
			} else {
				neg[id] = true
			}
		}
	}
	var out []Missing
	for _, r := range set.Rules {
		m := Missing{Rule: r.ID, Pos: r.Pos, Positive: !pos[r.ID], Negative: !neg[r.ID]}
		if m.Positive || m.Negative {
			out = append(out, m)
		}
	}
	return out
}

// Subset returns a set holding only the rules with the given ids, in the
// order of set. Aggregates and group keys are shared with set; rules are
// shallow copies renumbered from 0, as the engine indexes its per-rule state
// by CompiledRule.Index. Unknown ids are ignored.
func Subset(set *rules.Set, ids []string) *rules.Set {
	return set.Subset(func(r *rules.CompiledRule) bool { return slices.Contains(ids, r.ID) })
}

// RunTest runs one test of set.
func RunTest(set *rules.Set, t *rules.Test, cfg Config) Result {
	res := Result{Name: t.Name, File: t.File, Pos: t.Pos, Rules: t.Rules}
	if res.Name == "" {
		res.Name = t.Pos.String()
	}
	fail := func(format string, args ...any) Result {
		res.Err = fmt.Sprintf(format, args...)
		return res
	}
	events, err := Inputs(t, cfg.Limits)
	if err != nil {
		return fail("%v", err)
	}
	if len(events) == 0 {
		return fail("%s: test %q has no input events", t.Pos, res.Name)
	}
	if len(t.Rules) == 0 {
		return fail("%s: test %q names no rules (rules: [rule-id])", t.Pos, res.Name)
	}
	for _, id := range t.Rules {
		if set.Rule(id) == nil {
			return fail("%s: test %q names rule %q, which the set does not hold", t.Pos, res.Name, id)
		}
	}
	eng := detectors.NewEngine(Subset(set, t.Rules), cfg.Engine)
	var got []detectors.Decision
	for i := range events {
		got = eng.Process(&events[i], got)
	}
	res.Events = len(events)
	res.Decisions = got
	start := startOf(t)
	if !matchAll(t.Expect, got, start) {
		res.Diff = Diff(t.Expect, got, start)
		return res
	}
	res.Pass = true
	return res
}

func startOf(t *rules.Test) time.Time {
	if t.Start.IsZero() {
		return DefaultStart
	}
	return t.Start.Time
}

// Inputs expands and decodes the input events of a test. An event that does
// not decode is reported with its position in the test file.
func Inputs(t *rules.Test, lim pipeline.Limits) ([]pipeline.Event, error) {
	start := startOf(t)
	var out []pipeline.Event
	for _, te := range t.Events {
		n := te.Repeat
		if n <= 0 {
			n = 1
		}
		if n > 1_000_000 {
			return nil, fmt.Errorf("%s: repeat %d is more than 1000000", te.Pos, n)
		}
		if n > 1 && te.Every <= 0 {
			return nil, fmt.Errorf("%s: repeat %d needs every: (the time between copies)", te.Pos, n)
		}
		base := merge(t.Defaults, te.Fields)
		if base == nil {
			base = map[string]any{}
		}
		for k := range n {
			m := base
			if n > 1 {
				m = substitute(base, strconv.Itoa(k)).(map[string]any)
			}
			m = maps.Clone(m)
			if id, ok := m["id"]; !ok || id == nil {
				m["id"] = "t-" + strconv.Itoa(len(out))
			} else if s, ok := base["id"].(string); ok && n > 1 && !strings.Contains(s, "{i}") {
				m["id"] = s + "-" + strconv.Itoa(k)
			}
			if tm, ok := m["time"]; !ok || tm == nil {
				at := start.Add(time.Duration(te.At) + time.Duration(k)*time.Duration(te.Every))
				m["time"] = at.UTC().Format(time.RFC3339Nano)
			}
			data, err := json.Marshal(m)
			if err != nil {
				return nil, fmt.Errorf("%s: event cannot be encoded as JSON: %v", te.Pos, err)
			}
			var ev pipeline.Event
			if err := pipeline.Decode(data, &ev, &lim); err != nil {
				return nil, fmt.Errorf("%s: %v", te.Pos, err)
			}
			out = append(out, ev)
		}
	}
	return out, nil
}

// substitute replaces {i} in every string of v (recursively) by i.
func substitute(v any, i string) any {
	switch x := v.(type) {
	case string:
		return strings.ReplaceAll(x, "{i}", i)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = substitute(e, i)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for k, e := range x {
			out[k] = substitute(e, i)
		}
		return out
	}
	return v
}

// merge overlays b on a: nested maps are merged, a nil value in b removes
// the key. Neither input is modified.
func merge(a, b map[string]any) map[string]any {
	if a == nil && b == nil {
		return nil
	}
	out := make(map[string]any, len(a)+len(b))
	maps.Copy(out, a)
	for k, v := range b {
		if v == nil {
			delete(out, k)
			continue
		}
		if bm, ok := v.(map[string]any); ok {
			if am, ok := out[k].(map[string]any); ok {
				out[k] = merge(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// Match reports whether decision d satisfies expectation e (only the fields
// e sets are compared; At is relative to start).
func Match(e *rules.Expect, d *detectors.Decision, start time.Time) bool {
	switch {
	case e.At != nil && !d.Time.Equal(start.Add(time.Duration(*e.At))):
		return false
	case e.Rule != "" && e.Rule != d.Rule:
		return false
	case e.Group != "" && e.Group != d.Group:
		return false
	case e.Action != "" && e.Action != d.Action:
		return false
	case e.Mode != "" && e.Mode != d.Mode:
		return false
	case e.Scope != "" && e.Scope != d.Scope:
		return false
	case e.EventID != "" && e.EventID != d.EventID:
		return false
	case e.Suppressed != nil && *e.Suppressed != d.Suppressed:
		return false
	}
	return true
}

func matchAll(want []*rules.Expect, got []detectors.Decision, start time.Time) bool {
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		if !Match(want[i], &got[i], start) {
			return false
		}
	}
	return true
}

// Diff shows expected and produced decisions aligned: lines starting with
// "  " matched, "- " were expected but not produced, "+ " were produced but
// not expected. Expectations show only the fields they set.
func Diff(want []*rules.Expect, got []detectors.Decision, start time.Time) string {
	// Longest common subsequence under Match, so one missing or extra
	// decision does not make every following line differ.
	n, m := len(want), len(got)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			switch {
			case Match(want[i], &got[j], start):
				lcs[i][j] = lcs[i+1][j+1] + 1
			case lcs[i+1][j] >= lcs[i][j+1]:
				lcs[i][j] = lcs[i+1][j]
			default:
				lcs[i][j] = lcs[i][j+1]
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "expected %s, got %d:\n", plural(n, "decision", "decisions"), m)
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && Match(want[i], &got[j], start) && lcs[i][j] == lcs[i+1][j+1]+1:
			fmt.Fprintf(&b, "    %s\n", FormatDecision(&got[j], start))
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			fmt.Fprintf(&b, "  - %s    (%s)\n", FormatExpect(want[i]), want[i].Pos)
			i++
		default:
			fmt.Fprintf(&b, "  + %s\n", FormatDecision(&got[j], start))
			j++
		}
	}
	return b.String()
}

// FormatDecision shows a decision on one line:
// at=+1m30s rule=x group=tenant=acme,session=s-1 action=revoke mode=enforce scope=session event=t-12.
func FormatDecision(d *detectors.Decision, start time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "at=%s rule=%s group=%s action=%s mode=%s", Offset(d.Time.Sub(start)), d.Rule, d.Group, d.Action, d.Mode)
	if d.Scope != "" {
		fmt.Fprintf(&b, " scope=%s", d.Scope)
	}
	fmt.Fprintf(&b, " event=%s", d.EventID)
	if d.Suppressed != 0 {
		fmt.Fprintf(&b, " suppressed=%d", d.Suppressed)
	}
	return b.String()
}

// FormatExpect shows an expectation with the fields it sets, in the order
// FormatDecision uses.
func FormatExpect(e *rules.Expect) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	if e.At != nil {
		add("at", Offset(time.Duration(*e.At)))
	}
	add("rule", e.Rule)
	add("group", e.Group)
	add("action", e.Action)
	add("mode", e.Mode)
	add("scope", e.Scope)
	add("event", e.EventID)
	if e.Suppressed != nil {
		add("suppressed", strconv.FormatInt(*e.Suppressed, 10))
	}
	if len(parts) == 0 {
		return "(any decision)"
	}
	return strings.Join(parts, " ")
}

// Offset formats a duration from the test start compactly with a sign:
// +1m30s, +2h, +0s, -5s, +1.5s.
func Offset(d time.Duration) string {
	sign := "+"
	if d < 0 {
		sign, d = "-", -d
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return sign + s
}
