// Package sim simulates agent traffic for demos, load tests and detection
// tests: benign agents calling a realistic mix of tools, with attack
// scenarios mixed in (prompt-injected exfiltration, runaway loop, privilege
// probing, scope creep, leaked credential). Every attack runs in a session
// of its own and comes with a Label, so a run can be scored against what
// the detectors decided.
//
// A simulation is a schedule: each event has an offset from the start of
// the run. The same Config always yields the same events at the same
// offsets; the caller owns the clock, a synthetic one (Config.Start plus
// the offset, the default) or the wall clock when publishing live.
//
// Benign traffic is shaped to stay clear of the example rules: sessions
// are short and slow (about 30 calls a minute, fewer than 50 calls in
// all), every tool an agent calls is in its task's scope, each agent has
// its own credential, and an agent only ever sends to destinations it has
// used before (its first calls introduce them). Only the attacks should
// fire.
package sim

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tripline/tripline/pipeline"
)

// DefaultStart is offset 0 of a simulation when Config.Start is zero.
var DefaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Defaults of Config.
const (
	DefaultAgents   = 20
	DefaultRate     = 50.0
	DefaultDuration = time.Minute
)

// sessionRate is the mean call rate of one benign session, in calls per
// second; the number of concurrent sessions grows with Config.Rate so that
// no benign session runs away.
const sessionRate = 0.5

// Config describes a simulation. Zero fields take the defaults noted.
type Config struct {
	Seed    uint64 // random seed (0 is a valid seed)
	Agents  int    // benign agents (default DefaultAgents)
	Tenants int    // tenants the agents are spread over (default 1)
	// Rate is the benign traffic in events per second (default
	// DefaultRate). Attacks add their own events, at their own pace.
	Rate float64
	// Duration of the run (default DefaultDuration). Benign events are
	// scheduled within it, and every attack starts and ends within it.
	Duration time.Duration
	// Scenarios are the names of the attacks to mix in (see Scenarios);
	// empty means benign traffic only.
	Scenarios []string
	// Repeat is the number of instances of each scenario (default 1).
	Repeat int
	// Start is the time of offset 0 (default DefaultStart): the synthetic
	// clock of Event.Time and Label.FirstEventTime.
	Start time.Time
	// Run prefixes event, session and task ids (default "sim<seed>"). Runs
	// published to the same engine should use different ones, so that ids
	// are not deduplicated and sessions do not carry over between runs.
	// Lower-case letters, digits and '-' only.
	Run string
}

func (c *Config) fill() error {
	if c.Agents == 0 {
		c.Agents = DefaultAgents
	}
	if c.Tenants == 0 {
		c.Tenants = 1
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Repeat == 0 {
		c.Repeat = 1
	}
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	if c.Run == "" {
		c.Run = "sim" + strconv.FormatUint(c.Seed, 10)
	}
	var errs []error
	if c.Agents < 1 || c.Agents > 1_000_000 {
		errs = append(errs, fmt.Errorf("agents: %d is not between 1 and 1000000", c.Agents))
	}
	if c.Tenants < 1 || c.Tenants > c.Agents {
		errs = append(errs, fmt.Errorf("tenants: %d is not between 1 and the number of agents (%d)", c.Tenants, c.Agents))
	}
	if !(c.Rate > 0 && c.Rate <= 1e7) { // also catches NaN
		errs = append(errs, fmt.Errorf("rate: %v events/s is not between 0 and 10000000", c.Rate))
	}
	if c.Duration < 0 {
		errs = append(errs, fmt.Errorf("duration: %s is negative", c.Duration))
	}
	if c.Repeat < 1 {
		errs = append(errs, fmt.Errorf("repeat: %d is less than 1", c.Repeat))
	}
	if c.Run == "" || strings.Trim(c.Run, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" || len(c.Run) > 64 {
		errs = append(errs, fmt.Errorf("run: %q may hold only lower-case letters, digits and '-' (at most 64)", c.Run))
	}
	seen := map[string]bool{}
	for _, name := range c.Scenarios {
		if scenarioByName(name) == nil {
			errs = append(errs, fmt.Errorf("scenario %q is unknown (have %s)", name, strings.Join(ScenarioNames(), ", ")))
		} else if seen[name] {
			errs = append(errs, fmt.Errorf("scenario %q is listed twice (use Repeat for more instances)", name))
		}
		seen[name] = true
	}
	return errors.Join(errs...)
}

// Label describes one attack session, for scoring a run: which scenario,
// and the identities a detector's decision about it would name.
type Label struct {
	Scenario   string `json:"scenario"`
	Tenant     string `json:"tenant"`
	Agent      string `json:"agent"`
	Session    string `json:"session"`
	Credential string `json:"credential"`
	// FirstEventTime is the time of the attack's first event: synthetic,
	// or set by the caller to the wall clock when it publishes live.
	FirstEventTime time.Time `json:"first_event_time"`
}

// Sim produces the events of a simulation, in offset order, one at a
// time. It is not safe for concurrent use.
type Sim struct {
	cfg    Config
	r      *rand.Rand
	agents []*agent
	perAg  int // concurrent sessions per agent

	gap    float64       // mean gap between benign events, in ns
	nextAt time.Duration // offset of the next benign event

	steps  []step  // attack events, by offset
	labels []Label // one per attack instance
	n      int     // events produced
}

// New checks cfg and plans the simulation.
func New(cfg Config) (*Sim, error) {
	if err := cfg.fill(); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	s := &Sim{
		cfg: cfg,
		r:   rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		gap: float64(time.Second) / cfg.Rate,
	}
	s.perAg = max(2, int(math.Ceil(cfg.Rate/float64(cfg.Agents)/sessionRate)))
	for i := range cfg.Agents {
		s.agents = append(s.agents, s.newAgent(i))
	}
	if err := s.plan(); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	s.nextAt = s.benignGap()
	return s, nil
}

// Config returns the configuration with its defaults filled in.
func (s *Sim) Config() Config { return s.cfg }

// Labels returns the labels of every attack instance, in the order their
// first events come, with synthetic first-event times.
func (s *Sim) Labels() []Label { return slices.Clone(s.labels) }

// Next writes the next event into ev, with Time = Config.Start + its
// offset (to the millisecond), and returns the offset. For the first event
// of an attack it also returns the attack's label (a copy the caller may
// change, e.g. to set the wall-clock time). ok is false when the run is
// over.
func (s *Sim) Next(ev *pipeline.Event) (offset time.Duration, label *Label, ok bool) {
	switch {
	case len(s.steps) > 0 && (s.steps[0].at <= s.nextAt || s.nextAt >= s.cfg.Duration):
		st := s.steps[0]
		s.steps = s.steps[1:]
		*ev = st.ev
		offset = st.at
		if st.label >= 0 {
			l := s.labels[st.label]
			label = &l
		}
	case s.nextAt < s.cfg.Duration:
		offset = s.nextAt
		s.benign(ev)
		s.nextAt += s.benignGap()
	default:
		return 0, nil, false
	}
	s.n++
	ev.ID = s.cfg.Run + "-" + strconv.Itoa(s.n)
	ev.Time = s.cfg.Start.Add(offset).UTC()
	return offset, label, true
}

// benignGap draws the gap to the next benign event, to the millisecond.
func (s *Sim) benignGap() time.Duration {
	return time.Duration(s.r.ExpFloat64() * s.gap).Round(time.Millisecond)
}

var tenantNames = []string{"acme", "globex", "initech", "umbrella", "hooli"}

func tenantName(i int) string {
	if i < len(tenantNames) {
		return tenantNames[i]
	}
	return "tenant" + strconv.Itoa(i+1)
}

// agent is one benign agent identity.
type agent struct {
	idx       int
	tenant    string
	id        string
	name      string
	instance  string
	principal string
	cred      string
	role      *role
	scope     []string // the tools of its role: every session's task scope
	dests     []string // destinations it sends to
	warm      []int    // sends still to make to introduce dests (indexes into dests)
	sessions  []*session
	seq       int // sessions started
}

type session struct {
	id, task string
	left     int // calls before it ends
}

func (s *Sim) newAgent(i int) *agent {
	ro := roles[i%len(roles)]
	tenant := tenantName(i % s.cfg.Tenants)
	name := ro.name + "-" + strconv.Itoa(i)
	a := &agent{
		idx:       i,
		tenant:    tenant,
		id:        "spiffe://" + tenant + ".example/agents/" + name,
		name:      name,
		instance:  name + "-pod-" + strconv.Itoa(s.r.IntN(4)),
		principal: "user" + strconv.Itoa(i%7) + "@" + tenant + ".example",
		cred:      "cred-" + tenant + "-" + name,
		role:      ro,
	}
	for _, t := range ro.tools {
		a.scope = append(a.scope, t.name)
	}
	a.dests = ro.dests(s.r, a)
	for d := range a.dests {
		a.warm = append(a.warm, d)
	}
	for range s.perAg {
		a.sessions = append(a.sessions, s.newSession(a))
	}
	return a
}

func (s *Sim) newSession(a *agent) *session {
	a.seq++
	suffix := strconv.Itoa(a.idx) + "-" + strconv.Itoa(a.seq)
	// fewer than 50 calls: a benign session never looks like a scan
	return &session{id: s.cfg.Run + "-s" + suffix, task: s.cfg.Run + "-t" + suffix, left: 20 + s.r.IntN(30)}
}

// base is an event of agent a in session sess with everything but the call.
func (a *agent) base(sess, task string) pipeline.Event {
	return pipeline.Event{
		Tenant:      a.tenant,
		Agent:       a.id,
		Instance:    a.instance,
		Principal:   a.principal,
		Session:     sess,
		Task:        task,
		TaskScope:   a.scope,
		Environment: "prod",
		Credential:  a.cred,
		Outcome:     pipeline.OutcomeOK,
	}
}

// benign writes a benign call into ev (without id and time).
func (s *Sim) benign(ev *pipeline.Event) {
	a := s.agents[s.r.IntN(len(s.agents))]
	slot := s.r.IntN(len(a.sessions))
	sess := a.sessions[slot]
	*ev = a.base(sess.id, sess.task)
	if sess.left--; sess.left <= 0 {
		a.sessions[slot] = s.newSession(a)
	}

	var t *tool
	dest := ""
	if len(a.warm) > 0 {
		// introduce a destination before any data could precede it
		dest = a.dests[a.warm[0]]
		a.warm = a.warm[1:]
		t = a.role.sender()
	} else {
		t = s.pickTool(a.role)
		if t.action == pipeline.ActionSend {
			dest = a.dests[s.r.IntN(len(a.dests))]
		}
	}
	ev.Tool = t.name
	ev.Action = t.action
	ev.Resource = t.resource(s.r)
	ev.Destination = dest
	ev.Sensitivity = sensitivities[weighted(s.r, t.sens[:])]
	size := int64(math.Exp(t.bytesMu + s.r.NormFloat64()))
	if t.action == pipeline.ActionRead {
		ev.BytesIn = size // returned by the tool to the agent
	} else {
		ev.BytesOut = size // sent by the agent to the tool
	}
	if t.records {
		ev.Records = 1 + int64(s.r.ExpFloat64()*20)
	}
	switch x := s.r.IntN(1000); {
	case x < 3:
		ev.Outcome = pipeline.OutcomeDenied
	case x < 30:
		ev.Outcome = pipeline.OutcomeError
	}
	if s.r.IntN(4) == 0 {
		ev.Attrs = map[string]string{"model": models[s.r.IntN(len(models))]}
	}
}

var models = []string{"gpt-x", "claude-y", "llama-z"}

func (s *Sim) pickTool(r *role) *tool {
	x := s.r.IntN(r.total)
	for i := range r.tools {
		if x < r.tools[i].weight {
			return &r.tools[i]
		}
		x -= r.tools[i].weight
	}
	return &r.tools[len(r.tools)-1]
}

func weighted(r *rand.Rand, w []int) int {
	total := 0
	for _, x := range w {
		total += x
	}
	x := r.IntN(total)
	for i, v := range w {
		if x < v {
			return i
		}
		x -= v
	}
	return len(w) - 1
}

var sensitivities = [4]string{pipeline.SensitivityPublic, pipeline.SensitivityInternal, pipeline.SensitivityConfidential, pipeline.SensitivityRestricted}

// step is one event of an attack at its offset in the run.
type step struct {
	at    time.Duration
	ev    pipeline.Event
	label int // index into labels for the first event of an attack, else -1
}

// warmUp is how long benign traffic runs before the first attack: long
// enough for the agents to introduce their destinations at most rates.
func warmUp(d time.Duration) time.Duration { return min(d/10, 30*time.Second) }

// plan places the attack instances over the run.
func (s *Sim) plan() error {
	var list []*Scenario
	for range s.cfg.Repeat {
		for _, name := range s.cfg.Scenarios {
			list = append(list, scenarioByName(name))
		}
	}
	if len(list) == 0 {
		return nil
	}
	var longest *Scenario
	for _, sc := range list {
		if longest == nil || sc.Span > longest.Span {
			longest = sc
		}
	}
	warm := warmUp(s.cfg.Duration)
	window := s.cfg.Duration - warm - longest.Span
	if window <= 0 {
		need := longest.Span.Truncate(time.Second)
		for need-warmUp(need)-longest.Span <= 0 {
			need += time.Second
		}
		return fmt.Errorf("duration %s is too short for scenario %s, which takes %s after a warm-up: use at least %s",
			s.cfg.Duration, longest.Name, longest.Span, need)
	}
	s.r.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
	slot := window / time.Duration(len(list))
	for k, sc := range list {
		start := warm + time.Duration(k)*slot
		if slot > 0 {
			start += time.Duration(s.r.Int64N(int64(slot)))
		}
		start = start.Round(time.Millisecond)
		x := &instance{
			r:      s.r,
			run:    s.cfg.Run,
			k:      k + 1,
			victim: s.agents[s.r.IntN(len(s.agents))],
		}
		x.session = s.cfg.Run + "-" + sc.Name + "-" + strconv.Itoa(x.k)
		x.task = s.cfg.Run + "-" + sc.Name + "-task-" + strconv.Itoa(x.k)
		x.label = Label{Scenario: sc.Name, Tenant: x.victim.tenant, Agent: x.victim.id, Session: x.session, Credential: x.victim.cred}
		steps := sc.build(x)
		if len(steps) == 0 {
			continue
		}
		slices.SortStableFunc(steps, func(a, b attackStep) int { return cmp.Compare(a.at, b.at) })
		x.label.FirstEventTime = s.cfg.Start.Add(start + steps[0].at).UTC()
		li := len(s.labels)
		s.labels = append(s.labels, x.label)
		for i, st := range steps {
			at := start + st.at
			if at >= s.cfg.Duration { // cannot happen: Span bounds the steps
				return fmt.Errorf("scenario %s: step at %s is beyond its span %s", sc.Name, st.at, sc.Span)
			}
			l := -1
			if i == 0 {
				l = li
			}
			s.steps = append(s.steps, step{at: at, ev: st.ev, label: l})
		}
	}
	slices.SortStableFunc(s.steps, func(a, b step) int { return cmp.Compare(a.at, b.at) })
	// labels in the order of their first events
	order := make([]int, len(s.labels))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return s.labels[a].FirstEventTime.Compare(s.labels[b].FirstEventTime) })
	sorted := make([]Label, len(order))
	newIdx := make([]int, len(order))
	for n, old := range order {
		sorted[n] = s.labels[old]
		newIdx[old] = n
	}
	s.labels = sorted
	for i := range s.steps {
		if l := s.steps[i].label; l >= 0 {
			s.steps[i].label = newIdx[l]
		}
	}
	return nil
}
