package rules

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/expr-lang/expr/vm"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/pipeline"
)

func compileErrs(t *testing.T, src string) []string {
	t.Helper()
	_, err := Compile(Source{Name: "r.yaml", Data: []byte(src)})
	require.Error(t, err)
	var out []string
	for _, e := range err.(ErrorList) {
		out = append(out, e.Error())
	}
	return out
}

func TestLintReportsEveryErrorWithPosition(t *testing.T) {
	src := `rules:
  - id: Bad ID
    description: x
    severity: urgent
    tags: [ASI11, T4]
    condition: count(5m, nope == 1) > 3
    mode: loud
    colour: blue
  - id: ok-rule
    description: fine
    condition: |
      distinct(resource, 10m) > 3
        && sum(tool, 1h) > 2
    action: revoke
    scope: galaxy
  - id: ok-rule
    description: duplicate
    condition: count(1m) > 1
`
	require.Equal(t, []string{
		`r.yaml:2:9: rule id "Bad ID" must be lower case letters, digits, '.', '_' or '-'`,
		`r.yaml:4:15: severity "urgent" is not one of info, low, medium, high, critical`,
		`r.yaml:5:12: tag "ASI11" is not a known threat id (ASI01..ASI10, T1..T15, NHI1..NHI10, MAESTRO-L1..L7, NIST-GOVERN|MAP|MEASURE|MANAGE) nor a namespaced tag like team:soc`,
		`r.yaml:6:26: invalid filter nope == 1: unknown name nope`,
		`r.yaml:7:11: mode "loud" must be shadow or enforce`,
		`r.yaml:8:5: unknown field "colour" (known: id, description, rationale, severity, tags, match, group, condition, params, overrides, action, scope, revoke_for, hold_timeout, on_timeout, mode, cooldown, exceptions, tests)`,
		`r.yaml:13:16: tool is not numeric; sum() takes bytes_in, bytes_out, records or delegation_depth`,
		`r.yaml:15:12: scope "galaxy" must be one of session, instance, agent, task, principal, credential, tool`,
		`r.yaml:16:5: rule id "ok-rule" is already defined at r.yaml:9:5`,
	}, compileErrs(t, src))
}

func TestExprErrorsPointIntoTheFile(t *testing.T) {
	for name, tc := range map[string]struct{ src, want string }{
		"plain scalar": {"rules:\n  - id: a\n    description: d\n    condition: count(5m) > \"x\"\n",
			"r.yaml:4:26: invalid operation: > (mismatched types float64 and string)"},
		"parse error after a duration": {"rules:\n  - id: a\n    description: d\n    condition: count(5m) >> 3\n",
			"r.yaml:4:27: unexpected token Operator(\">\")"},
		"block scalar second line": {"rules:\n  - id: a\n    description: d\n    condition: |\n      count(5m) > 3\n        && nosuch\n",
			"r.yaml:6:12: unknown name nosuch"},
		"now is not available": {"rules:\n  - id: a\n    description: d\n    condition: now() > 3\n",
			"r.yaml:4:16: unknown name now"},
		"window must be constant": {"rules:\n  - id: a\n    description: d\n    condition: count(bytes_in) > 3\n",
			"r.yaml:4:22: want a constant duration such as 5m"},
		"unknown param": {"rules:\n  - id: a\n    description: d\n    condition: count(5m) > params.max\n",
			"r.yaml:4:28: unknown param \"max\" (declare it under params:)"},
		"baseline of a flag": {"rules:\n  - id: a\n    description: d\n    condition: zscore(first_seen(tool)) > 3\n",
			"r.yaml:4:16: zscore() takes count(), rate(), sum() or distinct(), e.g. zscore(count(5m))"},
	} {
		t.Run(name, func(t *testing.T) {
			errs := compileErrs(t, tc.src)
			require.Contains(t, errs, tc.want, strings.Join(errs, "\n"))
		})
	}
}

func TestAggregatesAreDeduplicatedAcrossRules(t *testing.T) {
	set, err := Compile(Source{Name: "r.yaml", Data: []byte(`rules:
  - id: a
    description: d
    condition: count(5m, action == "send") > 3 && distinct(resource, 10m) > 2
  - id: b
    description: d
    condition: count(5m, action == "send") > 10 || zscore(count(5m, action == "send")) > 4
  - id: c
    description: d
    group: [agent]
    condition: count(5m, action == "send") > 3
`)})
	require.NoError(t, err)
	var keys []string
	for _, a := range set.Aggs {
		keys = append(keys, a.Key)
	}
	require.Equal(t, []string{
		`count[tenant,session](5m0s, action == "send")`,
		`distinct[tenant,session](resource, 10m0s)`,
		`baseline[tenant,session](#0)`,
		`count[tenant,agent](5m0s, action == "send")`,
	}, keys)
	require.Equal(t, 10*time.Minute, set.MaxWindow())
}

func TestVersionIgnoresTestsAndLayout(t *testing.T) {
	a := "rules:\n  - id: a\n    description: d\n    condition: count(5m) > 3\n"
	b := "# moved and commented\nrules:\n\n  - id: a\n    condition: 'count(5m) > 3'   # same\n    description: \"d\"\n    tests: []\n"
	c := "rules:\n  - id: a\n    description: d\n    condition: count(5m) > 4\n"
	va, vb, vc := ver(t, a), ver(t, b), ver(t, c)
	require.Equal(t, va, vb)
	require.NotEqual(t, va, vc)
}

func ver(t *testing.T, src string) string {
	set, err := Compile(Source{Name: "r.yaml", Data: []byte(src)})
	require.NoError(t, err)
	return set.Rules[0].Version
}

// TestNativeMatchesVM checks that expressions compiled to closures agree
// with the expr VM on a spread of events.
func TestNativeMatchesVM(t *testing.T) {
	exprs := []string{
		`action == "send"`, `action != "read" && tool startsWith "fs."`, `tool in ["a", "b", "fs.read"]`,
		`not (tool in task_scope)`, `len(task_scope) > 0 && !(tool in task_scope)`,
		`bytes_in + bytes_out > 1000`, `bytes_in / 2 >= 10`, `records * 2 < 7 || delegation_depth > 2`,
		`attrs.trust == "untrusted"`, `attrs["k"] contains "x"`, `destination endsWith ".example"`,
		`resource matches "^secret/"`, `domain(destination) == "paste.example"`,
		`trust_domain(agent) != "acme.dev"`, `-bytes_in < -5`, `sensitivity in ["a","b","c","d","e","f","g","h","i","restricted"]`,
		`true`, `false == (tool == "x")`, `len(attrs) == 1`,
	}
	events := []*pipeline.Event{
		{Tool: "fs.read", Action: "read", BytesIn: 30, Resource: "secret/x", Agent: "spiffe://acme.dev/a"},
		{Tool: "http.post", Action: "send", BytesOut: 5000, Destination: "https://Paste.example:443/x", Agent: "spiffe://evil/x",
			TaskScope: []string{"fs.read"}, Attrs: map[string]string{"trust": "untrusted", "k": "xyz"}, Sensitivity: "restricted"},
		{Tool: "a", Action: "write", Records: 3, DelegationDepth: 3, TaskScope: []string{"a"}},
		{},
	}
	var v vm.VM
	for _, src := range exprs {
		c := &compiler{srcs: map[string][]string{}, set: &Set{}, aggIdx: map[string]int{}, grpIdx: map[string]int{}}
		p := c.predicate(src, exprLoc{})
		require.Empty(t, c.errs, src)
		require.True(t, p.Native(), "%s should compile natively", src)
		for i, ev := range events {
			var env Env
			env.Reset(ev)
			want, err := v.Run(p.prog, &env)
			require.NoError(t, err)
			got := p.native(&env)
			require.Equal(t, want, got, "%s on event %d", src, i)
		}
	}
}

func TestMatchIndexesActions(t *testing.T) {
	for src, want := range map[string][]pipeline.Action{
		`action == "send"`: {"send"},
		`action in ["write", "delete"] && tool == "x"`:   {"write", "delete"},
		`tool == "x" && "send" == action`:                {"send"},
		`action == "send" || action == "write"`:          {"send", "write"},
		`action == "send" || tool == "x"`:                nil,
		`action in ["write","send"] && action == "send"`: {"send"},
		`action == "read" && action == "send"`:           {},
	} {
		c := &compiler{srcs: map[string][]string{}, set: &Set{}, aggIdx: map[string]int{}, grpIdx: map[string]int{}}
		p := c.predicate(src, exprLoc{})
		require.NotNil(t, p, src)
		require.Equal(t, want, actionsOf(p.node), src)
	}
}

func TestDurations(t *testing.T) {
	for in, want := range map[string]time.Duration{"90s": 90 * time.Second, "1h30m": 90 * time.Minute, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1.5d": 36 * time.Hour} {
		d, err := ParseDuration(in)
		require.NoError(t, err)
		require.Equal(t, want, d, in)
	}
	for _, bad := range []string{"", "5", "-1m", "1y", "xd", "99999999999999d"} {
		_, err := ParseDuration(bad)
		require.Error(t, err, bad)
	}
	rw := rewriteDurations(`count(5m, tool == "5m") > 1h && x10m == 3 && count(7d)`)
	require.Equal(t, `count(duration("5m0s"), tool == "5m") > duration("1h") && x10m == 3 && count(duration("168h"))`, rw.out)
}

func FuzzCompile(f *testing.F) {
	srcs, err := ReadSources("examples")
	require.NoError(f, err)
	for _, s := range srcs {
		f.Add(string(s.Data))
	}
	f.Add("rules:\n  - id: a\n    description: d\n    condition: seq(count(5m) > 1, true, 1m)\n")
	f.Add("rules: [{id: a, description: d, condition: 'zscore(zscore(count(1s)))'}]\n")
	f.Add("rules:\n - &a {id: a}\n - *a\n")
	f.Add(byRules)
	f.Add("rules: [{id: a, description: d, group: [agent], condition: 'by(session, by(task, count(5m))) > 1'}]\n")
	f.Add("rules: [{id: a, description: d, condition: 'by(session) || by(count(1m)) || by(tool, 1) > 0'}]\n")
	f.Add("rules: [{id: a, description: d, condition: 'baseline(by(task, rate(1m))) > by(agent, history(sum(bytes_in, 1m)))'}]\n")
	f.Fuzz(func(t *testing.T, src string) {
		set, err := Compile(Source{Name: "f.yaml", Data: []byte(src)})
		if err != nil {
			for _, e := range err.(ErrorList) {
				if e.Pos.Line < 1 || e.Pos.Col < 1 {
					t.Fatalf("error without a position: %v", e)
				}
			}
			return
		}
		for _, r := range set.Rules {
			if r.Version == "" || len(r.Variants) == 0 {
				t.Fatalf("compiled rule %q incomplete", r.ID)
			}
		}
	})
}

var _ = fmt.Sprint

func TestHoldTimeoutPolicy(t *testing.T) {
	set, err := Compile(Source{Name: "r.yaml", Data: []byte(`rules:
  - id: h
    description: d
    condition: count(1m) > 1
    action: hold
    hold_timeout: 15m
    on_timeout: deny
  - id: r
    description: d
    condition: count(1m) > 1
    action: hold
`)})
	require.NoError(t, err)
	require.Equal(t, TimeoutDeny, set.Rules[0].OnTimeout)
	require.Equal(t, Duration(15*time.Minute), set.Rules[0].HoldTimeout)
	require.Equal(t, TimeoutRelease, set.Rules[1].OnTimeout, "default: the hold is released when it times out")
	require.Equal(t, set.Rules[1].RevokeFor, set.Rules[1].HoldTimeout)
	errs := compileErrs(t, "rules:\n  - id: a\n    description: d\n    condition: count(1m) > 1\n    on_timeout: deny\n  - id: b\n    description: d\n    condition: count(1m) > 1\n    action: hold\n    on_timeout: maybe\n")
	require.Contains(t, errs, "r.yaml:5:17: hold_timeout and on_timeout belong to action: hold")
	require.Contains(t, errs, `r.yaml:10:17: on_timeout "maybe" must be release or deny`)
}

const byRules = `rules:
  - id: exfil
    description: a send to a destination new to the agent after the session read many sensitive records
    group: [agent]
    condition: first_seen(domain(destination)) && by(session, sum(records, 1h, action == "read" && sensitivity in ["confidential","restricted"])) >= 20
  - id: session-volume
    description: the same sum, read by a rule grouped by session
    condition: sum(records, 1h, action == "read" && sensitivity in ["confidential","restricted"]) > 100
  - id: same-group
    description: by() of the rule's own group is the plain aggregate
    group: [agent]
    condition: by(agent, count(5m)) > 3 && count(5m) < 100
  - id: session-baseline
    description: a baseline kept per session
    group: [agent]
    condition: by(session, zscore(count(5m))) > 3
  - id: two-fields
    description: several fields, in any order
    group: [agent]
    condition: by(task, session, seq(action == "read", action == "send", 10m)) || by(session, task, count(5m)) > 3
`

func TestByAggregates(t *testing.T) {
	set, err := Compile(Source{Name: "r.yaml", Data: []byte(byRules)})
	require.NoError(t, err)
	var keys []string
	for _, a := range set.Aggs {
		keys = append(keys, a.Key)
	}
	filter := set.Aggs[1].Filter.Src
	require.Equal(t, []string{
		`first_seen[tenant,agent](domain(destination), 720h0m0s)`,
		`sum[tenant,session](records, 1h0m0s, ` + filter + `)`,
		`count[tenant,agent](5m0s)`,
		`count[tenant,session](5m0s)`,
		`baseline[tenant,session](#3)`,
		`seq[tenant,session,task](action == "read" -> action == "send" -> 10m0s)`,
		`count[tenant,session,task](5m0s)`,
	}, keys, "by() aggregates are kept for their own group and shared with rules of that group")

	groups := func(r *CompiledRule) []string {
		var out []string
		for _, g := range r.Groups {
			out = append(out, set.Groups[g].Name())
		}
		return out
	}
	exfil := set.Rule("exfil")
	require.Equal(t, []string{"tenant,agent", "tenant,session"}, groups(exfil))
	require.Equal(t, []string{"tenant,session"}, groups(set.Rule("session-volume")))
	require.Equal(t, []string{"tenant,agent"}, groups(set.Rule("same-group")))
	require.Equal(t, []string{"tenant,agent", "tenant,session,task"}, groups(set.Rule("two-fields")))

	c := exfil.Variants[0].Cond
	require.NotNil(t, c.Native, "a condition with by() still compiles natively")
	require.Len(t, c.Explain, 2)
	require.Equal(t, "first_seen(domain(destination))", c.Explain[0].Text)
	require.Equal(t, `by(session, sum(records, 1h, action == "read" && sensitivity in ["confidential","restricted"]))`, c.Explain[1].Text)
	require.True(t, c.Explain[1].HasThresh)
	require.Equal(t, ">=", c.Explain[1].Op)
	require.Equal(t, 20.0, c.Explain[1].Threshold)
	require.Equal(t, time.Hour, exfil.Window)

	sb := set.Rule("session-baseline").Variants[0].Cond
	require.Equal(t, []string{"by(session, count(5m))", "by(session, zscore(count(5m)))"}, []string{sb.Explain[0].Text, sb.Explain[1].Text})
	require.Equal(t, 3.0, sb.Explain[1].Threshold)
	require.NotNil(t, sb.Native)
	require.NotNil(t, set.Rule("two-fields").Variants[0].Cond.Native)
}

func TestByLocality(t *testing.T) {
	set, err := Compile(Source{Name: "r.yaml", Data: []byte(`rules:
  - id: local
    description: agent rule reading a session aggregate
    group: [agent]
    condition: by(session, count(5m)) > 3
  - id: by-task
    description: agent rule reading a task aggregate
    group: [agent]
    condition: count(5m) > 3 && by(task, count(5m)) > 10
  - id: task-rule
    description: task rule reading a session aggregate
    group: [task]
    condition: by(session, count(5m)) > 3
  - id: by-principal-agent
    description: principal and agent together stay within one agent
    condition: by(principal, agent, distinct(tool, 5m)) > 3
`)})
	require.NoError(t, err)
	local := map[string]bool{}
	for _, r := range set.Rules {
		local[r.ID] = set.RuleIsLocal(r)
	}
	require.Equal(t, map[string]bool{"local": true, "by-task": false, "task-rule": false, "by-principal-agent": true}, local)
	require.Equal(t, []string{"local", "by-principal-agent"}, ids(set.Subset(set.RuleIsLocal)))
}

func ids(s *Set) []string {
	var out []string
	for _, r := range s.Rules {
		out = append(out, r.ID)
	}
	return out
}

func TestByErrors(t *testing.T) {
	cond := func(c string) string {
		return "rules:\n  - id: a\n    description: d\n    group: [agent]\n    condition: " + c + "\n"
	}
	for name, tc := range map[string]struct{ src, want string }{
		"no aggregate": {cond(`by(session) > 1`),
			"r.yaml:5:16: by() takes group fields and an aggregate, e.g. by(session, count(5m))"},
		"not an aggregate": {cond(`by(session, tool == "x")`),
			"r.yaml:5:28: by() takes an aggregate as its last argument: count, rate, sum, distinct, seq, first_seen, baseline, stddev, zscore or history; compare outside: by(session, count(5m)) > 3"},
		"a field": {cond(`by(session, records) > 1`),
			"r.yaml:5:28: by() takes an aggregate as its last argument: count, rate, sum, distinct, seq, first_seen, baseline, stddev, zscore or history"},
		"comparison inside": {cond(`by(session, count(5m) > 3)`),
			"r.yaml:5:28: by() takes an aggregate as its last argument: count, rate, sum, distinct, seq, first_seen, baseline, stddev, zscore or history; compare outside: by(session, count(5m)) > 3"},
		"unknown field": {cond(`by(sesion, count(5m)) > 1`),
			"r.yaml:5:19: by() groups by " + strings.Join(GroupFields, ", ") + ", not sesion"},
		"string field": {cond(`by("session", count(5m)) > 1`),
			"r.yaml:5:19: by() groups by " + strings.Join(GroupFields, ", ") + `, not "session"`},
		"nested": {cond(`by(session, by(task, count(5m))) > 1`),
			"r.yaml:5:28: by() cannot be nested; name all the fields in one by()"},
		"nested deeper": {cond(`by(session, zscore(by(task, count(5m)))) > 1`),
			"r.yaml:5:35: by() cannot be nested; name all the fields in one by()"},
		"baseline of a by": {cond(`baseline(by(session, count(5m))) > 1`),
			"r.yaml:5:16: baseline() of a by() aggregate: put by() outside, e.g. by(session, baseline(count(5m)))"},
		"in a filter": {cond(`count(5m, by(session, count(1m)) > 1) > 1`),
			"r.yaml:5:26: a filter cannot contain an aggregate"},
		"in match": {"rules:\n  - id: a\n    description: d\n    match: by(session, count(1m)) > 1\n    condition: count(1m) > 1\n",
			"r.yaml:4:12: by() is an aggregate; aggregates are allowed only in a rule's condition"},
		"inner error keeps its position": {cond(`by(session, sum(tool, 1h)) > 1`),
			"r.yaml:5:32: tool is not numeric; sum() takes bytes_in, bytes_out, records or delegation_depth"},
	} {
		t.Run(name, func(t *testing.T) {
			errs := compileErrs(t, tc.src)
			require.Contains(t, errs, tc.want, strings.Join(errs, "\n"))
		})
	}
}
