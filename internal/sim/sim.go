// Package sim simulates the tool calls of a population of AI agents, with
// labelled attacks mixed in, to tune detection rules on and to measure
// their false positives honestly.
//
// The benign traffic is meant to be hard: it contains what real agents do
// that looks like an attack to a naive rule. Support copilots read
// customer-written tickets (untrusted), look customers up (confidential)
// and e-mail them, usually at an address they never wrote to before.
// Coding agents read hundreds of files in a refactor and run tests in
// bursts of failing calls. Data agents move large results, work at night
// on schedule and sometimes pull a big extract. Orchestrators spawn
// sub-agents. Outages make a whole tenant retry, tokens expire, pods
// restart, a new tool appears on day 2.
//
// Populations (agent roles), in the proportions of roleOrder:
//
//	role          agents  tools (the task's scope, when declared)     pacing and rhythm
//	------------  ------  ------------------------------------------  ----------------------------------
//	support       ~35%    ticket.get and ticket.comments (untrusted,  many short sessions (5–30 calls,
//	                      customer-written),                          ~5 s think time) during the
//	                      crm.lookup/search/update, orders.lookup,    tenant's office hours, weekends
//	                      kb.search, ticket.draft_reply/update,       ×0.3; 2–3 instances
//	                      mail.send to the ticket's customer (a new
//	                      address most of the time, small),
//	                      payments.refund (privileged, approved);
//	                      translate.text from day 2
//	coding        ~25%    fs.search/read/write, shell.exec test runs  long sessions (30–400 calls);
//	                      in bursts (failures, reruns), http.get      refactors read 100–250 distinct
//	                      docs (untrusted), git.commit, git.push to   files; developer hours with an
//	                      its remote, deploy.run to staging and,      evening tail; 15% of sessions
//	                      with approval, prod; secrets.read           declare no scope
//	                      (privileged, approved)
//	data          ~20%    db.schema/query on the prod warehouse       ad-hoc sessions (8–80 calls, ~12 s
//	                      (heavy-tailed records and bytes),           think time) that declare no scope;
//	                      s3.get/put, notebook.run, chart.render,     a nightly job at a fixed local
//	                      report.write, slack.post to known channels  hour; 3% of sessions are 5–10×
//	                                                                  bigger extracts
//	orchestrator  ~20%    memory.read, plan.create, agent.spawn,      tasks of 2–5 sub-agents
//	                      agent.result, docs.write, slack.post,       (researcher, writer, reviewer,
//	                      mail.send to its principal                  analyst, coder), each its own
//	                                                                  identity, instance and session; a
//	                                                                  researcher may spawn a fetcher
//	                                                                  (depth 2)
//
// Tenants live in different time zones (the Americas, Europe, Asia); an
// agent's sessions arrive at a rate that follows its role's hourly curve
// in its tenant's local time, scaled by how busy that agent is. Every
// agent has 1–3 instances whose credential rotates every 50–70 minutes
// and changes when the instance restarts (about once a day). Noise on
// top: per tenant and day, an outage of everything its agents call and
// one of a single downstream system (3–12 minutes of errors, retried with
// backoff, sometimes given up); transient errors with retries; a rare
// single denied call; expired tokens (the call fails, the agent exchanges
// a new token and calls again); now and then a legitimate new destination
// (a fork, a new channel).
//
// Attack scenarios, each instance in sessions of its own (see Scenarios
// for the full list and their signals): injected-exfil, runaway-loop,
// scope-creep, credential-reuse, slow-exfil, privilege-probe,
// mass-delete, cross-tenant, prod-unapproved, subagent-sprawl,
// resource-scan and bulk-read. Each instance comes with a Label naming
// every session that carries its events; no benign event is in those
// sessions, and no attack event is outside them.
//
// A simulation is a schedule: every event has an offset from Config.Start.
// The same Config always yields the same events at the same offsets, and
// the benign events do not depend on the scenarios mixed in. Events come
// in offset order from a priority queue of sessions, so memory grows with
// the number of concurrent sessions, not with the length of the run.
package sim

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/tripline/tripline/pipeline"
)

// DefaultStart is offset 0 of a simulation when Config.Start is zero.
var DefaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Defaults of Config.
const (
	DefaultAgents   = 90
	DefaultTenants  = 3
	DefaultDuration = 48 * time.Hour
	// MinAttackDuration is the shortest run that can hold attacks: they are
	// compressed in time to fit, but not below this.
	MinAttackDuration = time.Minute
)

// Config describes a simulation. Zero fields take the defaults noted.
type Config struct {
	Seed    uint64 // random seed (0 is a valid seed)
	Agents  int    // agents of the populations, not counting sub-agents (default DefaultAgents)
	Tenants int    // tenants the agents are spread over (default DefaultTenants, at most Agents)
	// Duration of the run (default DefaultDuration). Every attack starts and
	// ends within it.
	Duration time.Duration
	// Rate, when set, scales the activity of every agent so that the benign
	// traffic averages this many events per second over the run (0: the
	// populations' natural activity, a few events per second per hundred
	// agents). It trades realism for volume: per-agent rates grow with it.
	Rate float64
	// Scenarios are the names of the attacks to mix in (see Scenarios);
	// empty means benign traffic only.
	Scenarios []string
	// Repeat is the number of instances of each scenario (default 1).
	Repeat int
	// AttackFrom is the earliest offset an attack starts at, so that agents
	// have a history first (default: the start of the run's last day for
	// runs of two days or more, else half the run).
	AttackFrom time.Duration
	// Start is the time of offset 0 (default DefaultStart), truncated to the
	// millisecond. Local hours of the tenants, hence the daily rhythm,
	// follow from it.
	Start time.Time
	// Run prefixes event, session and task ids (default "sim<seed>"). Runs
	// published to the same engine should use different ones, so that ids
	// are not deduplicated and sessions do not carry over between runs.
	// Lower-case letters, digits and '-' only.
	Run string
}

func (c *Config) fill() error {
	var errs []error
	if c.Agents == 0 {
		c.Agents = DefaultAgents
	}
	if c.Tenants == 0 {
		c.Tenants = min(DefaultTenants, max(c.Agents, 1))
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
	c.Start = c.Start.UTC().Truncate(time.Millisecond)
	if c.Run == "" {
		c.Run = "sim" + strconv.FormatUint(c.Seed, 10)
	}
	if c.AttackFrom == 0 {
		if c.Duration >= 48*time.Hour {
			c.AttackFrom = c.Duration - 24*time.Hour
		} else {
			c.AttackFrom = c.Duration / 2
		}
	}
	if c.Agents < 1 || c.Agents > 100_000 {
		errs = append(errs, fmt.Errorf("agents: %d is not between 1 and 100000", c.Agents))
	}
	if c.Tenants < 1 || c.Tenants > c.Agents {
		errs = append(errs, fmt.Errorf("tenants: %d is not between 1 and the number of agents (%d)", c.Tenants, c.Agents))
	}
	if c.Duration < 0 || c.Duration > 366*24*time.Hour {
		errs = append(errs, fmt.Errorf("duration: %s is not between 0 and a year", c.Duration))
	}
	if !(c.Rate >= 0 && c.Rate <= 1e6) { // also catches NaN
		errs = append(errs, fmt.Errorf("rate: %v events/s is not between 0 and 1000000", c.Rate))
	}
	if c.Repeat < 1 || c.Repeat > 1000 {
		errs = append(errs, fmt.Errorf("repeat: %d is not between 1 and 1000", c.Repeat))
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
	if len(c.Scenarios) > 0 && c.Duration > 0 {
		if c.Duration < MinAttackDuration {
			errs = append(errs, fmt.Errorf("duration %s is too short for attack scenarios: use at least %s", c.Duration, MinAttackDuration))
		} else if c.AttackFrom < 0 || c.Duration-c.AttackFrom < minAttackWindow {
			errs = append(errs, fmt.Errorf("attacks from %s leave less than %s of the %s run for them", c.AttackFrom, minAttackWindow, c.Duration))
		}
	}
	return errors.Join(errs...)
}

// minAttackWindow is the least time attacks may be spread over.
const minAttackWindow = 20 * time.Second

// Label describes one attack instance, for scoring a run: the events of
// Tenant in Sessions are the attack's, every other session is benign.
type Label struct {
	ID       string `json:"id"` // unique in the run: <scenario>-<n>
	Scenario string `json:"scenario"`
	Tenant   string `json:"tenant"`
	// Agent, Instance and Credential are those of the primary session's
	// first event: the identity a decision about the attack would name.
	// For credential-reuse they are the attacker's, holding the victim's
	// credential.
	Agent      string   `json:"agent"`
	Session    string   `json:"session"`  // the primary session
	Sessions   []string `json:"sessions"` // every session carrying the attack's events, the primary first
	Credential string   `json:"credential"`
	Instance   string   `json:"instance"`
	// FirstEventTime and LastEventTime are the times of the attack's first
	// and last events.
	FirstEventTime time.Time `json:"first_event_time"`
	LastEventTime  time.Time `json:"last_event_time"`
	Events         int       `json:"events"` // events of the attack
}

// Sim produces the events of a simulation, in offset order, one at a
// time. It is not safe for concurrent use.
type Sim struct {
	cfg     Config
	clk     clock
	burn    time.Duration // benign traffic starts this long before offset 0
	scale   float64       // activity multiplier (Config.Rate)
	tenants []*tenant
	agents  []*agent
	stats   map[*role]roleStats
	natural float64          // expected benign events of the run at natural activity
	horizon time.Duration    // restarts and outages are planned up to it
	uses    map[*agent][]use // victims' calls, for placing attacks

	q     []item // the schedule: a binary heap of actors
	qseq  uint64
	label int // label of the event being produced, or -1

	labels []Label
	n      int // events produced
}

// New checks cfg and plans the simulation.
func New(cfg Config) (*Sim, error) {
	if err := cfg.fill(); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	s := &Sim{cfg: cfg, clk: clock{start: cfg.Start.UnixNano()}, scale: 1}
	s.build()
	if err := s.plan(); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	return s, nil
}

// Config returns the configuration with its defaults filled in.
func (s *Sim) Config() Config { return s.cfg }

// Labels returns the labels of every attack instance, in the order of
// their first events.
func (s *Sim) Labels() []Label {
	out := slices.Clone(s.labels)
	for i := range out {
		out[i].Sessions = slices.Clone(out[i].Sessions)
	}
	return out
}

// Next writes the next event into ev, with Time = Config.Start + its
// offset (to the millisecond), and returns the offset. For the first event
// of an attack it also returns the attack's label (a copy). ok is false
// when the run is over.
//
// ev.TaskScope and ev.Attrs may be shared with other events: do not modify
// them in place.
func (s *Sim) Next(ev *pipeline.Event) (offset time.Duration, label *Label, ok bool) {
	for len(s.q) > 0 {
		it := s.q[0]
		if it.at >= s.cfg.Duration {
			s.q = nil
			return 0, nil, false
		}
		s.label = -1
		emitted, next, keep := it.act.fire(s, it.at, ev)
		// what fire scheduled comes at or after it.at with a later sequence
		// number, so the actor is still at the top
		if keep {
			s.q[0].at, s.q[0].seq = next, s.qseq
			s.qseq++
			s.down(0)
		} else {
			s.popTop()
		}
		if !emitted || it.at < 0 {
			continue
		}
		s.n++
		ev.ID = s.cfg.Run + "-" + strconv.Itoa(s.n)
		ev.Time = s.cfg.Start.Add(it.at.Truncate(time.Millisecond))
		if s.label >= 0 {
			l := s.labels[s.label]
			l.Sessions = slices.Clone(l.Sessions)
			label = &l
		}
		return it.at, label, true
	}
	return 0, nil, false
}

// item is an actor at its next time.
type item struct {
	at  time.Duration
	seq uint64
	act actor
}

// actor is something that acts at scheduled times: an agent's arrival
// process, a session, an attack.
type actor interface {
	// fire acts at now: it may write an event into ev (emitted) and
	// schedule other actors; keep says whether it acts again, at next.
	fire(s *Sim, now time.Duration, ev *pipeline.Event) (emitted bool, next time.Duration, keep bool)
}

func (a item) before(b item) bool { return a.at < b.at || a.at == b.at && a.seq < b.seq }

func (s *Sim) push(at time.Duration, act actor) {
	if at >= s.cfg.Duration {
		return // never fires
	}
	s.q = append(s.q, item{at: at, seq: s.qseq, act: act})
	s.qseq++
	i := len(s.q) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s.q[i].before(s.q[p]) {
			break
		}
		s.q[i], s.q[p] = s.q[p], s.q[i]
		i = p
	}
}

func (s *Sim) popTop() {
	last := len(s.q) - 1
	s.q[0] = s.q[last]
	s.q[last] = item{}
	s.q = s.q[:last]
	if last > 0 {
		s.down(0)
	}
}

func (s *Sim) down(i int) {
	n := len(s.q)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && s.q[r].before(s.q[l]) {
			m = r
		}
		if !s.q[m].before(s.q[i]) {
			return
		}
		s.q[i], s.q[m] = s.q[m], s.q[i]
		i = m
	}
}

// build creates the tenants and agents and schedules their activity.
func (s *Sim) build() {
	cfg := s.cfg
	// restarts and outages are planned over the whole run and its margins
	horizon := cfg.Duration + 6*time.Hour
	for i := range cfg.Tenants {
		r := newRand(cfg.Seed, nsTenant, uint64(i))
		tn := &tenant{idx: i, name: tenantName(i), tz: time.Duration(tenantZones[i%len(tenantZones)]) * time.Minute}
		tn.domain = tn.name + ".example"
		for j := range 6 + r.IntN(10) {
			tn.staff = append(tn.staff, person(mix(uint64(i), uint64(j)))+"@"+tn.domain)
		}
		tn.initAttrs()
		tn.rollout = time.Duration(math.MaxInt64)
		if cfg.Duration > 24*time.Hour {
			if at := s.clk.next(tn.tz, 24*time.Hour, 9, 0); at < cfg.Duration {
				tn.rollout = at
			}
		}
		s.tenants = append(s.tenants, tn)
	}
	s.horizon = horizon
	counts := map[*role]int{}
	for i := range cfg.Agents {
		ro := roleOrder[i%len(roleOrder)]
		counts[ro]++
		s.agents = append(s.agents, s.newAgent(i, ro, counts[ro], horizon))
	}
	s.computeStats()
	s.plotOutages(horizon)

	// Rate scaling and the burn-in that fills the run with sessions in
	// progress at offset 0.
	fromArrivals, fromNightly := s.expected(0, cfg.Duration)
	s.natural = fromArrivals + fromNightly
	rate := s.natural / cfg.Duration.Seconds()
	if cfg.Rate > 0 {
		want := cfg.Rate * cfg.Duration.Seconds()
		s.scale = max(want-fromNightly, want*0.05) / max(fromArrivals, 1e-9)
		rate = cfg.Rate
	}
	s.burn = 2 * time.Hour
	if rate > 0 {
		s.burn = min(max(time.Duration(100_000/rate*float64(time.Second)), 10*time.Minute), 2*time.Hour)
	}
	for _, a := range s.agents {
		s.schedule(a)
	}
}

// schedule starts agent a's activity at the start of the burn-in.
func (s *Sim) schedule(a *agent) {
	s.push(s.nextArrival(a, -s.burn), &arrivals{a})
	if a.role == dataRole {
		n := &nightly{ag: a, hh: 1 + a.r.IntN(3), mm: a.r.IntN(60)}
		s.push(s.clk.next(a.tenant.tz, -s.burn, n.hh, n.mm), n)
	}
}

// use is a benign call of an agent: when, and with which credential.
type use struct {
	at   time.Duration
	cred string
}

// usesOf returns the calls agent a makes in [Config.AttackFrom,
// Config.Duration). An agent's benign traffic depends on nothing but the
// configuration and its own draws, so a twin of it simulated alone makes
// the same calls.
func (s *Sim) usesOf(a *agent) []use {
	if u, ok := s.uses[a]; ok {
		return u
	}
	twin := &Sim{cfg: s.cfg, clk: s.clk, burn: s.burn, scale: s.scale, tenants: s.tenants, stats: s.stats, horizon: s.horizon}
	ta := twin.newAgent(a.idx, a.role, a.n, s.horizon)
	twin.agents = []*agent{ta}
	twin.schedule(ta)
	var (
		ev  pipeline.Event
		out []use
	)
	for {
		off, _, ok := twin.Next(&ev)
		if !ok {
			break
		}
		if off >= s.cfg.AttackFrom && ev.Agent == a.id {
			out = append(out, use{at: off, cred: ev.Credential})
		}
	}
	if s.uses == nil {
		s.uses = map[*agent][]use{}
	}
	s.uses[a] = out
	return out
}

func (s *Sim) newAgent(i int, ro *role, n int, horizon time.Duration) *agent {
	tn := s.tenants[i%len(s.tenants)]
	key := mix(s.cfg.Seed, nsAgent, uint64(i))
	r := newRand(key)
	a := &agent{
		idx: i, n: n, tenant: tn, role: ro, name: ro.title + "-" + itoa(n), key: key, r: r,
		busy: lognorm(r, 1, 0.45), scale: lognorm(r, 1, 0.5), subs: map[*role]*agent{},
	}
	a.id = "spiffe://" + tn.domain + "/agents/" + a.name
	owners := map[*role][2]int{supportRole: {3, 6}, codingRole: {1, 2}, dataRole: {1, 3}, orchestratorRole: {2, 5}}[ro]
	for range owners[0] + r.IntN(owners[1]-owners[0]+1) {
		a.owners = append(a.owners, pick(r, tn.staff))
	}
	for range 1 + r.IntN(2) {
		name := pick(r, repoNames)
		a.repos = append(a.repos, repo{name: name, remote: "https://git." + tn.domain + "/" + pick(r, []string{"eng", "platform", "web"}) + "/" + name + ".git", files: 400 + r.IntN(2600)})
	}
	if ro == dataRole {
		a.channels = []string{"#data-alerts"}
	}
	for range 1 + r.IntN(2) {
		a.channels = append(a.channels, pick(r, channelNames))
	}
	for k := range ro.instances[0] + r.IntN(ro.instances[1]-ro.instances[0]+1) {
		a.insts = append(a.insts, newInstance(a.name, mix(key, nsInstance, uint64(k)), r, -3*time.Hour, horizon, 0.8))
	}
	return a
}

// plotOutages plans, per tenant and day, outages during local office
// hours: of everything the tenant's agents call (its egress or tool
// gateway; with probability 0.7) and of one downstream system (0.5).
func (s *Sim) plotOutages(horizon time.Duration) {
	deps := []dependency{depTicketing, depCRM, depWarehouse, depLake, depGit, depWeb}
	for _, tn := range s.tenants {
		r := newRand(s.cfg.Seed, nsTenant, uint64(tn.idx), 1)
		for day := -time.Duration(24 * time.Hour); day < horizon; day += 24 * time.Hour {
			if r.Float64() < 0.7 {
				from := s.clk.next(tn.tz, day, 10, 0) + between(r, 0, 6*time.Hour)
				tn.outages = append(tn.outages, outage{from: from, to: from + between(r, 3*time.Minute, 10*time.Minute), dep: depAll})
			}
			if r.Float64() < 0.5 {
				from := s.clk.next(tn.tz, day, 9, 0) + between(r, 0, 8*time.Hour)
				tn.outages = append(tn.outages, outage{from: from, to: from + between(r, 3*time.Minute, 12*time.Minute), dep: pick(r, deps)})
			}
		}
	}
}

// activity is the weight (0–1) of agent a's rhythm at t.
func (s *Sim) activity(a *agent, t time.Duration) float64 {
	h, we, _ := s.clk.local(a.tenant.tz, t)
	return a.role.rhythm.weight(h, we)
}

// nextArrival draws the start of a's next session after t: a Poisson
// process whose rate follows the rhythm hour by hour.
func (s *Sim) nextArrival(a *agent, t time.Duration) time.Duration {
	for t < s.cfg.Duration {
		h, we, end := s.clk.local(a.tenant.tz, t)
		perHour := a.role.peak * a.busy * s.scale * a.role.rhythm.weight(h, we)
		if perHour > 0 {
			if at := t + time.Duration(a.r.ExpFloat64()/perHour*float64(time.Hour)); at < end {
				return at
			}
		}
		t = end
	}
	return s.cfg.Duration
}

// expected returns the expected number of benign events in [from, to),
// from session arrivals (at the current scale) and from nightly jobs. A
// session's calls are spread over its length, so the events of a window
// follow the arrivals of about half a session earlier.
func (s *Sim) expected(from, to time.Duration) (arrivals, nightly float64) {
	for _, a := range s.agents {
		st := s.stats[a.role]
		lag := time.Duration(st.length / 2)
		sessions := 0.0
		for t := from - lag; t < to-lag; {
			h, we, end := s.clk.local(a.tenant.tz, t)
			seg := min(end, to-lag) - t
			sessions += a.role.peak * a.busy * a.role.rhythm.weight(h, we) * seg.Hours()
			t += seg
		}
		arrivals += sessions * st.calls
		if a.role == dataRole {
			nightly += (to - from).Hours() / 24 * s.stats[nightlyRole].calls
		}
	}
	return arrivals * s.scale, nightly
}

// nightlyRole stands for the data agents' nightly jobs in stats.
var nightlyRole = &role{name: "nightly", plan: planNightly}

// roleStats are the means of a role's sessions, for rate scaling and for
// the baselines attacks are measured against.
type roleStats struct {
	calls     float64 // events per session, sub-agents' included
	readBytes float64 // bytes_in per session
	length    float64 // duration of a session, in nanoseconds
}

// computeStats samples sessions of each role.
func (s *Sim) computeStats() {
	s.stats = map[*role]roleStats{}
	for _, ro := range append(topRoles[:len(topRoles):len(topRoles)], nightlyRole) {
		var proto *agent
		for _, a := range s.agents {
			if a.role == ro || ro == nightlyRole && a.role == dataRole {
				proto = a
				break
			}
		}
		if proto == nil {
			continue
		}
		r := newRand(s.cfg.Seed, nsRoleStats, xxhash.Sum64String(ro.name))
		tmp := *proto
		tmp.subs, tmp.r, tmp.scale = map[*role]*agent{}, r, 1
		const samples = 200
		var st roleStats
		for range samples {
			c, b, l := sampleSession(&tmp, ro)
			st.calls += c
			st.readBytes += b
			st.length += float64(l)
		}
		st.calls /= samples
		st.readBytes /= samples
		st.length /= samples
		s.stats[ro] = st
	}
}

// sampleSession plans one session of a (with its sub-agents') and returns
// its calls (plus one token exchange per sub-agent), bytes read and
// length.
func sampleSession(a *agent, ro *role) (calls, bytes float64, length time.Duration) {
	p := planner{r: a.r, ag: a}
	ro.plan(&p)
	var wait time.Duration // until the sub-agents spawned so far are done
	for _, c := range p.calls {
		length += c.gap
		switch c.t {
		case waitBarrier:
			length = max(length, wait)
		case spawnMarker:
			sub := subRoleByName(c.res)
			sc, sb, sl := sampleSession(a.sub(sub), sub)
			calls += sc + 1
			bytes += sb
			wait = max(wait, length+sl)
		default:
			calls++
			bytes += float64(c.in)
		}
	}
	return calls, bytes, length
}

// arrivals starts an agent's sessions.
type arrivals struct{ ag *agent }

func (x *arrivals) fire(s *Sim, now time.Duration, _ *pipeline.Event) (bool, time.Duration, bool) {
	s.startSession(x.ag, x.ag.role.plan, now, nil, 0)
	next := s.nextArrival(x.ag, now)
	return false, next, next < s.cfg.Duration
}

// nightly starts a data agent's scheduled job every night at hh:mm local
// time, give or take a few minutes.
type nightly struct {
	ag     *agent
	hh, mm int
}

func (x *nightly) fire(s *Sim, now time.Duration, _ *pipeline.Event) (bool, time.Duration, bool) {
	s.startSession(x.ag, planNightly, now, nil, 0)
	next := s.clk.next(x.ag.tenant.tz, now+time.Hour, x.hh, x.mm) + between(x.ag.r, 0, 10*time.Minute)
	return false, next, next < s.cfg.Duration
}

// who is the identity and context of a session's events.
type who struct {
	ag        *agent
	inst      *instance
	session   string
	task      string
	principal string
	scope     []string
}

// session is a benign session running its plan.
type session struct {
	who
	gen     int // the instance's generation: a restart ends the session
	calls   []call
	head    int
	parent  *session
	pending int  // sub-agent sessions still running
	waiting bool // for them
	spawned int
	ended   bool
}

func (s *Sim) sessionID(key uint64, seq int) string {
	return s.cfg.Run + "-" + hexID(mix(key, nsSession, uint64(seq)), 16)
}

// startSession plans a session of a at now; parent is the session of the
// orchestrator (or sub-agent) that spawns it, as its n-th sub-agent.
func (s *Sim) startSession(a *agent, plan func(*planner), now time.Duration, parent *session, n int) {
	a.seq++
	p := planner{s: s, r: a.r, ag: a, at: now}
	plan(&p)
	if len(p.calls) == 0 {
		return
	}
	ss := &session{calls: p.calls}
	ss.ag, ss.scope = a, p.scope
	ss.session = s.sessionID(a.key, a.seq)
	if parent == nil {
		ss.inst = a.insts[a.r.IntN(len(a.insts))]
		ss.gen = ss.inst.gen(now)
		ss.principal = p.principal
		ss.task = s.cfg.Run + "-task-" + hexID(mix(a.key, nsTask, uint64(a.seq)), 12)
	} else {
		// a sub-agent runs in an instance of its own, for this task only
		ss.inst = newInstance(a.name, mix(a.key, nsInstance, uint64(a.seq)), a.r, 0, 0, 0)
		ss.principal = parent.principal
		ss.task = parent.task + "/" + itoa(n)
		ss.parent = parent
		parent.pending++
	}
	s.push(now+ss.calls[0].gap, ss)
}

// end ends a session and wakes its parent when it was the last sub-agent
// the parent waited for.
func (s *Sim) end(ss *session, now time.Duration) {
	ss.ended = true
	p := ss.parent
	if p == nil {
		return
	}
	p.pending--
	if p.pending == 0 && p.waiting && !p.ended {
		p.waiting = false
		gap := between(ss.ag.r, 500*time.Millisecond, 3*time.Second)
		s.push(now+gap, p)
	}
}

// Noise of the benign traffic, per call.
const (
	pTransient     = 0.006  // a transient error (timeout), retried
	pDenied        = 0.0008 // a single denied call, not retried
	pExpiredToken  = 0.15   // of rotations: the old token is used once and fails
	pFailedRefresh = 0.3    // of those: the first refresh fails too
	pOutageError   = 0.9    // of calls to a system that is down
)

func (ss *session) fire(s *Sim, now time.Duration, ev *pipeline.Event) (bool, time.Duration, bool) {
	r := ss.ag.r
	for {
		if ss.ended || ss.head >= len(ss.calls) || ss.inst.gen(now) != ss.gen {
			// done, or the pod restarted under it
			if !ss.ended {
				s.end(ss, now)
			}
			return false, 0, false
		}
		c := &ss.calls[ss.head]
		switch c.t {
		case waitBarrier:
			ss.head++
			if ss.pending > 0 {
				ss.waiting = true
				return false, 0, false
			}
			continue
		case spawnMarker:
			ss.head++
			ss.spawned++
			ro := subRoleByName(c.res)
			s.startSession(ss.ag.sub(ro), ro.plan, now, ss, ss.spawned)
			if ss.head < len(ss.calls) && ss.calls[ss.head].gap > 0 {
				return false, now + ss.calls[ss.head].gap, true
			}
			continue
		}
		// a new credential: exchange for it before the call
		if !c.noAuth {
			if key := ss.inst.credKey(now) + 1; ss.inst.seen != key {
				old, oldGen := ss.inst.seenCred, ss.inst.seenGen
				_, cred := ss.inst.at(now)
				ss.inst.seen, ss.inst.seenCred, ss.inst.seenGen = key, cred, ss.gen
				var pre []call
				// a restarted pod starts with a fresh token; a running one may
				// try its expired token first
				if old != "" && oldGen == ss.gen && r.Float64() < pExpiredToken {
					failed := *c
					failed.gap, failed.cred, failed.noAuth = 0, old, true
					failed.outcome, failed.errAttr = pipeline.OutcomeError, "token_expired"
					pre = append(pre, failed)
					if r.Float64() < pFailedRefresh {
						pre = append(pre, call{gap: between(r, 200*time.Millisecond, time.Second), t: oauthToken, res: "oauth://" + ss.ag.tenant.name + "/token",
							outcome: pipeline.OutcomeError, errAttr: "idp_unavailable", cred: old, noAuth: true})
					}
				}
				pre = append(pre, call{gap: between(r, 100*time.Millisecond, time.Second), t: oauthToken, res: "oauth://" + ss.ag.tenant.name + "/token",
					outcome: pipeline.OutcomeOK, noAuth: true})
				pre[0].gap = 0
				c.gap = between(r, 200*time.Millisecond, time.Second)
				c.noAuth = true
				ss.calls = slices.Insert(ss.calls, ss.head, pre...)
				continue
			}
		}
		outcome, errAttr := c.outcome, c.errAttr
		retries := 0
		if outcome == "" {
			outcome = pipeline.OutcomeOK
			switch x := r.Float64(); {
			case c.t.action != pipeline.ActionAuth && ss.ag.tenant.outageOf(c.t.dep, now) && r.Float64() < pOutageError:
				outcome, errAttr, retries = pipeline.OutcomeError, "503 service unavailable", 5
			case x < pTransient:
				outcome, errAttr, retries = pipeline.OutcomeError, "timeout", 2
			case x < pTransient+pDenied && c.t.action != pipeline.ActionAuth:
				outcome, errAttr = pipeline.OutcomeDenied, "permission denied"
			}
		}
		s.fill(ev, &ss.who, c, now, outcome, errAttr)
		switch {
		case outcome != pipeline.OutcomeError || retries == 0:
		case c.retries < retries:
			// retry with exponential backoff
			again := *c
			again.retries++
			again.gap = time.Second<<c.retries + between(r, 0, time.Second)
			ss.calls = slices.Insert(ss.calls, ss.head+1, again)
		case retries == 5 && r.Float64() < 0.5:
			// the system stays down: the agent gives up the task
			ss.calls = ss.calls[:ss.head+1]
			if ss.pending > 0 {
				ss.calls = append(ss.calls, call{t: waitBarrier})
			}
		}
		ss.head++
		if ss.head >= len(ss.calls) {
			s.end(ss, now)
			return true, 0, false
		}
		return true, now + ss.calls[ss.head].gap, true
	}
}

// fill writes the event of call c made at t by w (without id and time).
func (s *Sim) fill(ev *pipeline.Event, w *who, c *call, t time.Duration, outcome, errAttr string) {
	a := w.ag
	tn := a.tenant
	inst, cred := w.inst.at(t)
	if c.cred != "" {
		cred = c.cred
	}
	*ev = pipeline.Event{
		Tenant:          tn.name,
		Agent:           a.id,
		Instance:        inst,
		DelegationDepth: a.depth,
		Principal:       w.principal,
		Session:         w.session,
		Task:            w.task,
		TaskScope:       w.scope,
		Tool:            c.t.name,
		Action:          c.t.action,
		Resource:        c.res,
		Destination:     c.dest,
		BytesIn:         c.in,
		BytesOut:        c.out,
		Records:         c.records,
		Sensitivity:     c.sens,
		Outcome:         outcome,
		Approval:        c.approval,
		Environment:     c.env,
		Credential:      cred,
		Attrs:           tn.attrsFor(c.t.flags),
	}
	if c.attrs != nil {
		ev.Attrs = c.attrs
	}
	if a.parent != nil {
		ev.ParentAgent = a.parent.id
	}
	if c.t.action == pipeline.ActionAuth {
		ev.TaskScope = nil // a token exchange is not a tool of the task
	}
	if outcome != pipeline.OutcomeOK {
		ev.BytesIn, ev.Records = min(ev.BytesIn, 300), 0
	}
	if errAttr != "" {
		m := make(map[string]string, len(ev.Attrs)+1)
		for k, v := range ev.Attrs {
			m[k] = v
		}
		m["error"] = errAttr
		ev.Attrs = m
	}
}
