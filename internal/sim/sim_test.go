package sim

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/pipeline"
)

// result is a whole run.
type result struct {
	sim     *Sim
	events  []pipeline.Event
	offsets []time.Duration
	labels  []Label // in the order Next returned them
	benignE []pipeline.Event
}

// generate runs a simulation to the end, checking every event is valid.
func generate(t testing.TB, cfg Config) *result {
	t.Helper()
	s, err := New(cfg)
	require.NoError(t, err)
	res := &result{sim: s}
	size := int(s.natural * 1.1)
	if s.cfg.Rate > 0 {
		size = int(s.cfg.Rate * s.cfg.Duration.Seconds() * 1.3)
	}
	for _, l := range s.labels {
		size += l.Events
	}
	res.events, res.offsets = make([]pipeline.Event, 0, size), make([]time.Duration, 0, size)
	var ev pipeline.Event
	for {
		off, l, ok := s.Next(&ev)
		if !ok {
			break
		}
		require.NoError(t, ev.Validate(nil), "event %d: %+v", len(res.events), ev)
		if l != nil {
			require.Equal(t, ev.Time, l.FirstEventTime, "%s: the label comes with its first event", l.ID)
			res.labels = append(res.labels, *l)
		}
		res.events = append(res.events, ev)
		res.offsets = append(res.offsets, off)
	}
	return res
}

// attackSessions maps (tenant, session) of every label to its label.
func (r *result) attackSessions() map[[2]string]*Label {
	out := map[[2]string]*Label{}
	for i := range r.labels {
		for _, s := range r.labels[i].Sessions {
			out[[2]string{r.labels[i].Tenant, s}] = &r.labels[i]
		}
	}
	return out
}

// benign returns the events outside labelled sessions.
func (r *result) benign() []pipeline.Event {
	if r.benignE != nil {
		return r.benignE
	}
	atk := r.attackSessions()
	r.benignE = make([]pipeline.Event, 0, len(r.events))
	for _, ev := range r.events {
		if atk[[2]string{ev.Tenant, ev.Session}] == nil {
			r.benignE = append(r.benignE, ev)
		}
	}
	return r.benignE
}

// A two-day run with every scenario twice, shared by the tests that only
// read it.
var (
	sharedOnce sync.Once
	shared     *result
	sharedCfg  = Config{Seed: 3, Agents: 32, Tenants: 3, Scenarios: ScenarioNames(), Repeat: 2}
)

func sharedRun(t *testing.T) *result {
	t.Helper()
	sharedOnce.Do(func() { shared = generate(t, sharedCfg) })
	require.NotNil(t, shared)
	return shared
}

func encode(events []pipeline.Event, withID bool) []byte {
	buf := make([]byte, 0, 600*len(events))
	for _, ev := range events {
		if !withID {
			ev.ID = ""
		}
		buf = append(ev.AppendJSON(buf), '\n')
	}
	return buf
}

func TestDeterministicPerSeed(t *testing.T) {
	cfg := Config{Seed: 7, Agents: 12, Tenants: 2, Duration: 6 * time.Hour, Scenarios: ScenarioNames()}
	a, b := generate(t, cfg), generate(t, cfg)
	require.Equal(t, encode(a.events, true), encode(b.events, true))
	require.Equal(t, a.labels, b.labels)
	require.Equal(t, a.sim.Labels(), a.labels, "Labels lists them in the order Next returns them")

	cfg.Seed = 8
	c := generate(t, cfg)
	require.NotEqual(t, encode(a.events, true), encode(c.events, true))
}

// TestAttacksLeaveBenignTrafficAlone: the benign events of a run do not
// depend on the scenarios mixed in, so the attack events are exactly what
// a run adds to the benign-only run, and they are exactly the events of
// the labelled sessions.
func TestAttacksLeaveBenignTrafficAlone(t *testing.T) {
	full := sharedRun(t)
	cfg := sharedCfg
	cfg.Scenarios = nil
	alone := generate(t, cfg)
	require.Empty(t, alone.labels)

	require.Equal(t, encode(alone.events, false), encode(full.benign(), false),
		"outside labelled sessions, the run is the benign-only run")
	atk := full.attackSessions()
	perLabel := map[string]int{}
	for _, ev := range full.events {
		if l := atk[[2]string{ev.Tenant, ev.Session}]; l != nil {
			perLabel[l.ID]++
		}
	}
	benignSessions := map[string]bool{}
	for _, ev := range alone.events {
		benignSessions[ev.Session] = true
	}
	require.Len(t, full.labels, len(ScenarioNames())*2)
	for _, l := range full.labels {
		require.Equal(t, l.Events, perLabel[l.ID], "%s: its sessions hold its events and nothing else", l.ID)
		for _, s := range l.Sessions {
			require.False(t, benignSessions[s], "%s: session %s is also a benign one", l.ID, s)
		}
	}
	require.Equal(t, len(full.events)-len(alone.events), func() int {
		n := 0
		for _, l := range full.labels {
			n += l.Events
		}
		return n
	}())
}

func TestLabels(t *testing.T) {
	res := sharedRun(t)
	ids := map[string]bool{}
	sessions := map[string]string{}
	bySession := map[string][]pipeline.Event{}
	for _, ev := range res.events {
		bySession[ev.Session] = append(bySession[ev.Session], ev)
	}
	for i, l := range res.labels {
		require.False(t, ids[l.ID], "ids are unique: %s", l.ID)
		ids[l.ID] = true
		require.True(t, strings.HasPrefix(l.ID, l.Scenario+"-"))
		require.NotEmpty(t, l.Sessions)
		require.Equal(t, l.Session, l.Sessions[0], "the primary session comes first")
		for _, s := range l.Sessions {
			require.Empty(t, sessions[s], "%s: session %s is also %s's", l.ID, s, sessions[s])
			sessions[s] = l.ID
		}
		if i > 0 {
			require.False(t, l.FirstEventTime.Before(res.labels[i-1].FirstEventTime), "in the order of their first events")
		}
		// the identity of the primary session's first event
		first := bySession[l.Session][0]
		require.Equal(t, first.Time, l.FirstEventTime)
		require.Equal(t, []string{l.Tenant, l.Agent, l.Instance, l.Credential}, []string{first.Tenant, first.Agent, first.Instance, first.Credential})
		last := time.Time{}
		for _, s := range l.Sessions {
			evs := bySession[s]
			require.NotEmpty(t, evs)
			if evs[len(evs)-1].Time.After(last) {
				last = evs[len(evs)-1].Time
			}
		}
		require.Equal(t, last, l.LastEventTime, l.ID)
		// on the last day, after the agents have a history
		require.False(t, l.FirstEventTime.Before(DefaultStart.Add(24*time.Hour)), l.ID)
		require.True(t, l.LastEventTime.Before(DefaultStart.Add(48*time.Hour)), l.ID)
	}
}

func TestTimeOrder(t *testing.T) {
	res := sharedRun(t)
	require.Greater(t, len(res.events), 50_000)
	for i, ev := range res.events {
		off := res.offsets[i]
		switch {
		case !ev.Time.Equal(DefaultStart.Add(off.Truncate(time.Millisecond))):
			t.Fatalf("event %d at offset %s has time %s", i, off, ev.Time)
		case off < 0 || off >= DefaultDuration:
			t.Fatalf("event %d at offset %s is outside the run", i, off)
		case i > 0 && off < res.offsets[i-1]:
			t.Fatalf("event %d goes back in time: %s after %s", i, off, res.offsets[i-1])
		case ev.ID != fmt.Sprintf("sim%d-%d", sharedCfg.Seed, i+1):
			t.Fatalf("event %d has id %s", i, ev.ID)
		}
	}
}

// localHour is the hour of ev in its tenant's time zone.
func localHour(s *Sim, ev *pipeline.Event) int {
	for _, tn := range s.tenants {
		if tn.name == ev.Tenant {
			return ev.Time.Add(tn.tz).Hour()
		}
	}
	panic("no tenant " + ev.Tenant)
}

func TestDailyRhythm(t *testing.T) {
	res := sharedRun(t)
	var byHour [24]int
	for _, ev := range res.benign() {
		if strings.Contains(ev.Agent, "/support-copilot-") {
			byHour[localHour(res.sim, &ev)]++
		}
	}
	midday := byHour[11] + byHour[12] + byHour[13]
	night := byHour[2] + byHour[3] + byHour[4]
	require.Greater(t, midday, 10*night, "support copilots work office hours: %v", byHour)
	require.Positive(t, night, "but not only")

	// data agents run their jobs at night, on a schedule
	nightly := 0
	for _, ev := range res.benign() {
		if strings.HasPrefix(ev.Principal, "svc-scheduler@") {
			require.Contains(t, ev.Agent, "/data-analyst-")
			require.Contains(t, []int{1, 2, 3, 4}, localHour(res.sim, &ev), "%+v", ev)
			nightly++
		}
	}
	require.Greater(t, nightly, 100)
}

// TestRateScalesActivity: Rate sets the mean benign event rate, even over
// a short run (the run starts with sessions in progress).
func TestRateScalesActivity(t *testing.T) {
	for _, tc := range []struct {
		rate     float64
		duration time.Duration
	}{{20, 90 * time.Second}, {100, 10 * time.Second}, {5, time.Hour}} {
		res := generate(t, Config{Seed: 1, Agents: 8, Rate: tc.rate, Duration: tc.duration})
		want := tc.rate * tc.duration.Seconds()
		require.InDelta(t, want, len(res.events), want*0.25, "%v events/s for %s", tc.rate, tc.duration)
		require.Less(t, res.offsets[0], 2*time.Second, "busy from the start")
	}
}

// TestShortRunHoldsAttacks: a one-minute demo still has every attack,
// compressed into the second half of the run.
func TestShortRunHoldsAttacks(t *testing.T) {
	res := generate(t, Config{Seed: 2, Agents: 20, Rate: 20, Duration: time.Minute, Scenarios: ScenarioNames()})
	require.Len(t, res.labels, len(ScenarioNames()))
	for _, l := range res.labels {
		require.Positive(t, l.Events)
		require.False(t, l.FirstEventTime.Before(DefaultStart.Add(30*time.Second)), l.ID)
		require.True(t, l.LastEventTime.Before(DefaultStart.Add(time.Minute)), l.ID)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Scenarios: []string{"runaway-loop", "nope"}}, `scenario "nope" is unknown (have injected-exfil, runaway-loop, scope-creep, credential-reuse, slow-exfil, privilege-probe, mass-delete, cross-tenant, prod-unapproved, subagent-sprawl, resource-scan, bulk-read)`},
		{Config{Scenarios: []string{"runaway-loop", "runaway-loop"}}, `scenario "runaway-loop" is listed twice`},
		{Config{Scenarios: []string{"runaway-loop"}, Duration: 20 * time.Second}, "duration 20s is too short for attack scenarios: use at least 1m0s"},
		{Config{Scenarios: []string{"runaway-loop"}, Duration: time.Hour, AttackFrom: 59*time.Minute + 50*time.Second}, "attacks from 59m50s leave less than 20s of the 1h0m0s run for them"},
		{Config{Rate: -1}, "rate: -1 events/s"},
		{Config{Agents: 2, Tenants: 3}, "tenants: 3 is not between 1 and the number of agents (2)"},
		{Config{Run: "Bad.Run"}, `run: "Bad.Run" may hold only`},
		{Config{Agents: 3, Scenarios: []string{"subagent-sprawl"}}, "scenario subagent-sprawl needs a orchestrator agent, and none of the 3 agents is one (use at least 4 agents)"},
	} {
		_, err := New(tc.cfg)
		require.ErrorContains(t, err, tc.want)
	}
	_, err := New(Config{Agents: 4, Tenants: 1, Duration: time.Minute, Scenarios: ScenarioNames()})
	require.NoError(t, err, "four agents have every role")
}

func TestDefaults(t *testing.T) {
	s, err := New(Config{})
	require.NoError(t, err)
	cfg := s.Config()
	require.Equal(t, DefaultAgents, cfg.Agents)
	require.Equal(t, DefaultTenants, cfg.Tenants)
	require.Equal(t, DefaultDuration, cfg.Duration)
	require.Equal(t, 24*time.Hour, cfg.AttackFrom)
	require.Equal(t, "sim0", cfg.Run)
	require.Equal(t, DefaultStart, cfg.Start)
	roles := map[string]int{}
	for _, a := range s.agents {
		roles[a.role.name]++
	}
	require.Equal(t, map[string]int{"support": 32, "coding": 22, "data": 18, "orchestrator": 18}, roles)
}

// BenchmarkGenerate measures the events a simulation produces per second,
// with and without their JSON encoding.
func BenchmarkGenerate(b *testing.B) {
	for _, encodeJSON := range []bool{false, true} {
		b.Run(fmt.Sprint("json=", encodeJSON), func(b *testing.B) {
			var (
				ev  pipeline.Event
				s   *Sim
				buf []byte
				n   int
			)
			b.ReportAllocs()
			for b.Loop() {
				if s == nil {
					var err error
					s, err = New(Config{Seed: 1, Scenarios: ScenarioNames(), Repeat: 3})
					require.NoError(b, err)
				}
				if _, _, ok := s.Next(&ev); !ok {
					s = nil
					continue
				}
				n++
				if encodeJSON {
					buf = ev.AppendJSON(buf[:0])
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
