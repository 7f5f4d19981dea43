package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/internal/backtest"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// generate runs a simulation to the end and returns its JSON Lines, the
// labels in the order Next returned them and the number of events.
func generate(t *testing.T, cfg Config) ([]byte, []Label, int) {
	t.Helper()
	s, err := New(cfg)
	require.NoError(t, err)
	var (
		buf    bytes.Buffer
		labels []Label
		ev     pipeline.Event
		last   time.Duration
		n      int
	)
	for {
		off, l, ok := s.Next(&ev)
		if !ok {
			break
		}
		require.GreaterOrEqual(t, off, last, "offsets never go back")
		require.Less(t, off, s.Config().Duration)
		last = off
		if l != nil {
			require.Equal(t, ev.Time, l.FirstEventTime)
			labels = append(labels, *l)
		}
		line := ev.AppendJSON(nil)
		var back pipeline.Event
		require.NoError(t, pipeline.Decode(line, &back, nil), "event %d is valid: %s", n, line)
		buf.Write(line)
		buf.WriteByte('\n')
		n++
	}
	require.Equal(t, s.Labels(), labels, "Labels lists them in the order Next returns them")
	return buf.Bytes(), labels, n
}

func TestDeterministicPerSeed(t *testing.T) {
	cfg := Config{Seed: 7, Agents: 12, Tenants: 2, Rate: 20, Duration: 100 * time.Second, Scenarios: ScenarioNames(), Repeat: 2}
	a, la, n := generate(t, cfg)
	b, lb, _ := generate(t, cfg)
	require.Equal(t, a, b)
	require.Equal(t, la, lb)

	cfg.Seed = 8
	c, _, _ := generate(t, cfg)
	require.NotEqual(t, a, c)

	// benign traffic at the configured rate, plus the attacks in sessions
	// of their own
	attack := 0
	for line := range bytes.Lines(a) {
		var ev pipeline.Event
		require.NoError(t, pipeline.Decode(bytes.TrimSpace(line), &ev, nil))
		for _, name := range ScenarioNames() {
			if strings.HasPrefix(ev.Session, "sim7-"+name+"-") {
				attack++
			}
		}
	}
	require.Equal(t, 2*(5+150+8+5+5), attack)
	require.InDelta(t, 20*100, n-attack, 20*100*0.1)

	require.Len(t, la, len(scenarios)*2)
	counts := map[string]int{}
	for _, l := range la {
		counts[l.Scenario]++
		require.NotEmpty(t, l.Tenant)
		require.NotEmpty(t, l.Agent)
		require.NotEmpty(t, l.Session)
		require.NotEmpty(t, l.Credential)
		require.False(t, l.FirstEventTime.Before(DefaultStart))
	}
	for _, name := range ScenarioNames() {
		require.Equal(t, 2, counts[name], name)
	}
}

// TestExampleRulesCatchEveryScenario replays a simulation through the
// example rules: each attack fires the rule meant for it, about its own
// session (or credential), and benign traffic fires none of them.
func TestExampleRulesCatchEveryScenario(t *testing.T) {
	set, err := rules.Compile(rules.ExampleSources()...)
	require.NoError(t, err)
	ruleOf := map[string]string{}
	for _, sc := range scenarios {
		require.NotNil(t, set.Rule(sc.Rule), "scenario %s names rule %s", sc.Name, sc.Rule)
		ruleOf[sc.Name] = sc.Rule
	}
	replay := func(cfg Config) ([]Label, []detectors.Decision) {
		data, labels, _ := generate(t, cfg)
		var out bytes.Buffer
		_, err := backtest.Run(context.Background(), set, bytes.NewReader(data), backtest.Config{Decisions: &out, Strict: true})
		require.NoError(t, err)
		var decs []detectors.Decision
		sc := bufio.NewScanner(&out)
		for sc.Scan() {
			var d detectors.Decision
			require.NoError(t, json.Unmarshal(sc.Bytes(), &d))
			decs = append(decs, d)
		}
		return labels, decs
	}

	for seed := range uint64(2) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			labels, decs := replay(Config{Seed: seed, Agents: 16, Tenants: 2, Rate: 20, Duration: 2 * time.Minute, Scenarios: ScenarioNames()})
			for _, l := range labels {
				found := false
				for _, d := range decs {
					if d.Rule != ruleOf[l.Scenario] || d.Tenant != l.Tenant {
						continue
					}
					if l.Scenario == "credential" {
						found = found || d.Subject.Credential == l.Credential && d.Subject.Agent == l.Agent
					} else {
						found = found || d.Subject.Session == l.Session
					}
				}
				require.True(t, found, "%s: no %s decision about %+v", l.Scenario, ruleOf[l.Scenario], l)
			}
			for _, d := range decs {
				for name, rule := range ruleOf {
					if d.Rule != rule {
						continue
					}
					attack := false
					for _, l := range labels {
						attack = attack || l.Scenario == name && (d.Subject.Session == l.Session || d.Subject.Credential == l.Credential)
					}
					require.True(t, attack, "benign traffic fired %s: %+v", rule, d)
				}
			}
		})
	}

	// Benign traffic alone, faster, with many agents: none of them.
	_, decs := replay(Config{Seed: 42, Agents: 40, Tenants: 3, Rate: 150, Duration: time.Minute})
	for _, d := range decs {
		for _, rule := range ruleOf {
			require.NotEqual(t, rule, d.Rule, "benign traffic fired %s: %+v", rule, d)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Scenarios: []string{"exfil", "nope"}}, `scenario "nope" is unknown (have exfil, loop, probe, scope, credential)`},
		{Config{Scenarios: []string{"loop", "loop"}}, `scenario "loop" is listed twice`},
		{Config{Scenarios: []string{"loop"}, Duration: 20 * time.Second}, "duration 20s is too short for scenario loop, which takes 30s after a warm-up: use at least 34s"},
		{Config{Rate: -1}, "rate: -1 events/s"},
		{Config{Agents: 2, Tenants: 3}, "tenants: 3 is not between 1 and the number of agents (2)"},
		{Config{Run: "Bad.Run"}, `run: "Bad.Run" may hold only`},
	} {
		_, err := New(tc.cfg)
		require.ErrorContains(t, err, tc.want)
	}
	// the minimum it suggests is enough
	_, err := New(Config{Scenarios: []string{"loop"}, Duration: 34 * time.Second})
	require.NoError(t, err)
}

func TestScenarioSpans(t *testing.T) {
	// Every scenario stays within its span, whatever the victim's role.
	s, err := New(Config{Agents: len(roles)})
	require.NoError(t, err)
	for _, sc := range scenarios {
		for _, a := range s.agents {
			x := &instance{r: s.r, run: "r", k: 1, victim: a, session: "s", task: "t"}
			steps := sc.build(x)
			require.NotEmpty(t, steps)
			for _, st := range steps {
				require.LessOrEqual(t, st.at, sc.Span, "%s against %s", sc.Name, a.role.name)
			}
		}
	}
}
