package sim

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/pipeline"
)

// attackCase is what a scenario check sees: the attack's events in time
// order, its label, and the benign events of the run.
type attackCase struct {
	t      *testing.T
	label  Label
	events []pipeline.Event
	benign []pipeline.Event
	sim    *Sim
}

// victim returns the population agent the attack's primary session runs
// as, or that owns the stolen credential.
func (c *attackCase) victim() *agent {
	for _, a := range c.sim.agents {
		if a.id == c.label.Agent {
			return a
		}
	}
	for _, ev := range c.benign {
		if ev.Credential == c.label.Credential {
			for _, a := range c.sim.agents {
				if a.id == ev.Agent {
					return a
				}
			}
		}
	}
	c.t.Fatalf("%s: no victim", c.label.ID)
	return nil
}

// victimEvents are the victim's own benign events.
func (c *attackCase) victimEvents() []pipeline.Event {
	id := c.victim().id
	var out []pipeline.Event
	for _, ev := range c.benign {
		if ev.Agent == id {
			out = append(out, ev)
		}
	}
	return out
}

func count(evs []pipeline.Event, f func(*pipeline.Event) bool) int {
	n := 0
	for i := range evs {
		if f(&evs[i]) {
			n++
		}
	}
	return n
}

// maxIn is the most events matching f within any window of length w.
func maxIn(evs []pipeline.Event, w time.Duration, f func(*pipeline.Event) bool) int {
	var ts []time.Time
	for i := range evs {
		if f(&evs[i]) {
			ts = append(ts, evs[i].Time)
		}
	}
	most, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) > w {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}

func all(*pipeline.Event) bool { return true }

// maxDistinct is the most distinct resources within any window of length w.
func maxDistinct(evs []pipeline.Event, w time.Duration) int {
	most, j := 0, 0
	in := map[string]int{}
	for i := range evs {
		in[evs[i].Resource]++
		for evs[i].Time.Sub(evs[j].Time) > w {
			if in[evs[j].Resource]--; in[evs[j].Resource] == 0 {
				delete(in, evs[j].Resource)
			}
			j++
		}
		most = max(most, len(in))
	}
	return most
}

func isPrivileged(ev *pipeline.Event) bool {
	if ev.Attrs["privileged"] == "true" {
		return true
	}
	for _, p := range []string{"iam.", "vault.", "secrets.", "payments.", "admin."} {
		if strings.HasPrefix(ev.Tool, p) {
			return true
		}
	}
	return false
}

// signals are the characteristic signals of each scenario, as
// docs/simulator.md and the Scenario comment state them.
var signals = map[string]func(c *attackCase){
	"injected-exfil": func(c *attackCase) {
		t := c.t
		known := map[string]bool{}
		for _, ev := range c.victimEvents() {
			known[ev.Destination] = true
		}
		step := 0
		for _, ev := range c.events {
			switch {
			case step == 0 && ev.Attrs["trust"] == "untrusted":
				step = 1
			case step == 1 && ev.Action == pipeline.ActionRead && slices.Contains([]string{"confidential", "restricted"}, ev.Sensitivity):
				step = 2
			case step == 2 && ev.Action == pipeline.ActionSend:
				require.GreaterOrEqual(t, ev.BytesOut, int64(2e6), "a large payload")
				require.False(t, known[ev.Destination], "to a destination new to the agent: %s", ev.Destination)
				step = 3
			}
		}
		require.Equal(t, 3, step, "untrusted read → sensitive read → send")
		require.LessOrEqual(t, c.label.LastEventTime.Sub(c.label.FirstEventTime), 15*time.Minute)
	},
	"runaway-loop": func(c *attackCase) {
		t := c.t
		pairs := map[[2]string]int{}
		for _, ev := range c.events {
			pairs[[2]string{ev.Tool, ev.Resource}]++
		}
		var top [2]string
		for p, n := range pairs {
			if n > pairs[top] {
				top = p
			}
		}
		loop := func(ev *pipeline.Event) bool { return ev.Tool == top[0] && ev.Resource == top[1] }
		n := count(c.events, loop)
		require.GreaterOrEqual(t, n, len(c.events)*9/10, "one tool and resource")
		errs := count(c.events, func(ev *pipeline.Event) bool { return loop(ev) && ev.Outcome == pipeline.OutcomeError })
		require.Greater(t, errs, n*6/10, "mostly failing")
		var first, last time.Time
		for _, ev := range c.events {
			if loop(&ev) {
				if first.IsZero() {
					first = ev.Time
				}
				last = ev.Time
			}
		}
		dur := last.Sub(first)
		require.GreaterOrEqual(t, dur, 9*time.Minute)
		perMin := float64(n) / dur.Minutes()
		require.InDelta(t, 45, perMin, 17, "30–60 calls a minute")
		require.Less(t, maxIn(c.events, time.Minute, loop), 120, "under a fixed ceiling of 120/min")
		// several times the agent's own rate: the median of its active hours,
		// and more than it ever makes in a session
		hours := map[time.Time]int{}
		sessions := map[string][]pipeline.Event{}
		for _, ev := range c.victimEvents() {
			hours[ev.Time.Truncate(time.Hour)]++
			sessions[ev.Session] = append(sessions[ev.Session], ev)
		}
		var counts []int
		for _, n := range hours {
			counts = append(counts, n)
		}
		slices.Sort(counts)
		own := float64(counts[len(counts)/2]) / 60
		require.Greater(t, perMin, 3*own, "own rate %.1f/min", own)
		most := 0
		for _, evs := range sessions {
			most = max(most, maxIn(evs, 10*time.Minute, all))
		}
		require.Greater(t, float64(maxIn(c.events, 10*time.Minute, loop)), 1.5*float64(most), "a session of its own")
	},
	"scope-creep": func(c *attackCase) {
		t := c.t
		outside := func(ev *pipeline.Event) bool { return !slices.Contains(ev.TaskScope, ev.Tool) }
		for _, ev := range c.events {
			require.NotEmpty(t, ev.TaskScope)
		}
		require.False(t, slices.ContainsFunc(c.events[:3], func(ev pipeline.Event) bool { return outside(&ev) }), "an innocent start")
		n := count(c.events, outside)
		require.GreaterOrEqual(t, n, 4)
		half := len(c.events) / 2
		require.Greater(t, count(c.events[half:], outside), count(c.events[:half], outside), "more and more")
	},
	"credential-reuse": func(c *attackCase) {
		t := c.t
		v := c.victim()
		owner := ""
		during := 0
		for _, ev := range c.benign {
			if ev.Credential != c.label.Credential {
				continue
			}
			require.Equal(t, v.id, ev.Agent)
			owner = ev.Instance
			if !ev.Time.Before(c.label.FirstEventTime.Add(-5*time.Minute)) && !ev.Time.After(c.label.LastEventTime) {
				during++
			}
		}
		require.NotEmpty(t, owner, "the victim uses the credential")
		require.Positive(t, during, "while the victim keeps using it")
		for _, ev := range c.events {
			require.Equal(t, c.label.Credential, ev.Credential)
			require.True(t, ev.Agent != v.id || ev.Instance != owner, "another identity or another place")
		}
		require.GreaterOrEqual(t, len(c.events), 8)
	},
	"slow-exfil": func(c *attackCase) {
		t := c.t
		sends := slices.DeleteFunc(slices.Clone(c.events), func(ev pipeline.Event) bool { return ev.Action != pipeline.ActionSend })
		require.GreaterOrEqual(t, len(sends), 8)
		known := map[string]bool{}
		for _, ev := range c.victimEvents() {
			known[ev.Destination] = true
		}
		for i, ev := range sends {
			require.Equal(t, sends[0].Destination, ev.Destination, "one destination")
			require.Less(t, ev.BytesOut, int64(64<<10), "each small")
			if i > 0 {
				require.GreaterOrEqual(t, ev.Time.Sub(sends[i-1].Time), 10*time.Minute)
				require.LessOrEqual(t, ev.Time.Sub(sends[i-1].Time), 25*time.Minute)
			}
		}
		require.False(t, known[sends[0].Destination], "new to the agent")
		require.GreaterOrEqual(t, sends[len(sends)-1].Time.Sub(sends[0].Time), 2*time.Hour)
		require.GreaterOrEqual(t, len(c.label.Sessions), 2, "over several sessions")
		require.Positive(t, count(c.events, func(ev *pipeline.Event) bool {
			return ev.Action == pipeline.ActionRead && ev.Time.Before(sends[0].Time) && slices.Contains([]string{"confidential", "restricted"}, ev.Sensitivity)
		}))
	},
	"privilege-probe": func(c *attackCase) {
		t := c.t
		probe := func(ev *pipeline.Event) bool { return ev.Outcome == pipeline.OutcomeDenied }
		require.GreaterOrEqual(t, count(c.events, probe), 10)
		require.GreaterOrEqual(t, count(c.events, func(ev *pipeline.Event) bool { return probe(ev) && ev.Action == pipeline.ActionAuth }), 2, "auth failures")
		var last time.Time
		for _, ev := range c.events {
			if !probe(&ev) {
				continue
			}
			require.True(t, ev.Action == pipeline.ActionAuth || isPrivileged(&ev), "%s is privileged", ev.Tool)
			if !last.IsZero() {
				require.GreaterOrEqual(t, ev.Time.Sub(last), 10*time.Second, "tens of seconds apart")
			}
			last = ev.Time
		}
	},
	"mass-delete": func(c *attackCase) {
		t := c.t
		del := func(ev *pipeline.Event) bool { return ev.Action == pipeline.ActionDelete }
		require.GreaterOrEqual(t, maxIn(c.events, 10*time.Minute, del), 60)
		res := map[string]bool{}
		for _, ev := range c.events {
			if del(&ev) {
				res[ev.Resource] = true
			}
		}
		require.GreaterOrEqual(t, len(res), 60, "distinct resources")
		require.Zero(t, count(c.victimEvents(), del), "the agent never deletes otherwise")
	},
	"cross-tenant": func(c *attackCase) {
		require.GreaterOrEqual(c.t, count(c.events, func(ev *pipeline.Event) bool {
			rt, ok := ev.Attrs["resource_tenant"]
			return ok && rt != ev.Tenant
		}), 5)
	},
	"prod-unapproved": func(c *attackCase) {
		require.GreaterOrEqual(c.t, count(c.events, func(ev *pipeline.Event) bool {
			return ev.Environment == "prod" && ev.Action != pipeline.ActionRead && ev.Approval != pipeline.ApprovalApproved
		}), 3)
	},
	"subagent-sprawl": func(c *attackCase) {
		t := c.t
		subs := map[string]bool{}
		depth := 0
		for _, ev := range c.events {
			if ev.ParentAgent != "" {
				require.True(t, strings.HasPrefix(ev.Agent, ev.ParentAgent+"/sub/"))
				require.Equal(t, strings.Count(ev.Agent, "/sub/"), ev.DelegationDepth)
				subs[ev.Session] = true
				depth = max(depth, ev.DelegationDepth)
			}
		}
		require.True(t, len(subs) >= 20 || depth >= 4, "%d sub-agent sessions, depth %d", len(subs), depth)
		require.Len(t, c.label.Sessions, len(subs)+1, "the orchestrator's session and its sub-agents'")
		if len(subs) >= 20 {
			require.GreaterOrEqual(t, maxIn(c.events, 5*time.Minute, func(ev *pipeline.Event) bool { return ev.Tool == "agent.spawn" }), 20)
		}
	},
	"resource-scan": func(c *attackCase) {
		t := c.t
		res := map[string]bool{}
		for _, ev := range c.events {
			res[ev.Resource] = true
		}
		require.GreaterOrEqual(t, len(res), 250)
		require.LessOrEqual(t, c.label.LastEventTime.Sub(c.label.FirstEventTime), 20*time.Minute)
		// far above what the agent's own sessions touch in ten minutes
		own := map[string][]pipeline.Event{}
		for _, ev := range c.victimEvents() {
			own[ev.Session] = append(own[ev.Session], ev)
		}
		most := 0
		for _, evs := range own {
			most = max(most, maxDistinct(evs, 10*time.Minute))
		}
		scan := maxDistinct(c.events, 10*time.Minute)
		require.Greater(t, scan, 2*most, "a session of its own touches at most %d in 10 minutes", most)
	},
	"bulk-read": func(c *attackCase) {
		t := c.t
		var sum int64
		for _, ev := range c.events {
			sum += ev.BytesIn
		}
		v := c.victim()
		require.GreaterOrEqual(t, float64(sum), 20*c.sim.baseline(v))
		// and far above what the agent reads in any hour of its own
		own := c.victimEvents()
		most, j := int64(0), 0
		var window int64
		for i, ev := range own {
			window += ev.BytesIn
			for ev.Time.Sub(own[j].Time) > time.Hour {
				window -= own[j].BytesIn
				j++
			}
			_ = i
			most = max(most, window)
		}
		require.Greater(t, sum, 2*most, "own busiest hour: %d bytes", most)
	},
}

// TestScenarioSignals checks each attack of the shared run carries its
// scenario's characteristic signal.
func TestScenarioSignals(t *testing.T) {
	res := sharedRun(t)
	benign := res.benign()
	bySession := map[[2]string][]pipeline.Event{}
	for _, ev := range res.events {
		k := [2]string{ev.Tenant, ev.Session}
		bySession[k] = append(bySession[k], ev)
	}
	require.Len(t, signals, len(scenarios))
	seen := map[string]int{}
	for _, l := range res.labels {
		t.Run(l.ID, func(t *testing.T) {
			check := signals[l.Scenario]
			require.NotNil(t, check, l.Scenario)
			var evs []pipeline.Event
			for _, s := range l.Sessions {
				evs = append(evs, bySession[[2]string{l.Tenant, s}]...)
			}
			slices.SortStableFunc(evs, func(a, b pipeline.Event) int { return a.Time.Compare(b.Time) })
			require.Len(t, evs, l.Events)
			check(&attackCase{t: t, label: l, events: evs, benign: benign, sim: res.sim})
			seen[l.Scenario]++
		})
	}
	for _, sc := range scenarios {
		require.Equal(t, 2, seen[sc.Name], sc.Name)
	}
}

// TestScenarioVictims: every scenario against every suitable role keeps
// within its span, at natural pace and compressed, and picks its victims
// in its roles.
func TestScenarioVictims(t *testing.T) {
	for _, d := range []time.Duration{48 * time.Hour, 10 * time.Minute} {
		for _, sc := range scenarios {
			s, err := New(Config{Seed: 9, Agents: 8, Duration: d, Scenarios: []string{sc.Name}, Repeat: 6})
			require.NoError(t, err, sc.Name)
			roles := map[string]bool{}
			for _, l := range s.Labels() {
				span := l.LastEventTime.Sub(l.FirstEventTime)
				require.LessOrEqual(t, span, min(sc.Span, (d-s.cfg.AttackFrom)*9/10), "%s: %s", l.ID, span)
				require.False(t, l.FirstEventTime.Before(DefaultStart.Add(s.cfg.AttackFrom)))
				for _, a := range s.agents {
					if a.id == l.Agent {
						roles[a.role.name] = true
						require.Contains(t, sc.Roles, a.role.name)
					}
				}
			}
			if sc.Name != "credential-reuse" {
				require.NotEmpty(t, roles, sc.Name)
			}
		}
	}
}
