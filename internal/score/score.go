// Package score measures a rule set against a labelled simulation: which
// injected attacks its decisions detect and would stop, how fast (in event
// time) and after how many calls, and how many benign sessions it
// disturbs on the way.
//
// A Scorer is pure bookkeeping: it is fed every event with the decisions
// the engine made on it, in stream order, and attributes them:
//
//   - a decision fired by an event of an attack's session is a detection
//     of that attack;
//   - a revoke or hold whose scope covers an attack (an agent, instance,
//     credential, principal or task the attack's label names or its events
//     carry, one of its sessions, or one tool its agent called in it),
//     issued between the attack's first and last event, also detects it:
//     it would have stopped it, whichever session's event fired it;
//   - a decision fired by an event of any other session is a decision on
//     that benign session.
//
// Run drives a detectors engine over a backtest.Source and feeds a Scorer.
package score

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// How a decision was attributed to an attack.
const (
	ByEvent = "event" // fired by one of the attack's events
	ByScope = "scope" // a revoke or hold whose scope covers the attack
)

// MaxBenignSamples is how many benign sessions a Rule lists as examples.
const MaxBenignSamples = 5

// Harmful reports whether an action changes or moves something: the calls
// an attack must not get through (send, write, delete, execute).
func Harmful(a pipeline.Action) bool {
	switch a {
	case pipeline.ActionSend, pipeline.ActionWrite, pipeline.ActionDelete, pipeline.ActionExecute:
		return true
	}
	return false
}

// Duration is a time.Duration written in JSON as seconds.
type Duration time.Duration

// MarshalJSON writes the duration in seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, time.Duration(d).Seconds(), 'f', -1, 64), nil
}

// UnmarshalJSON reads seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("score: duration %s is not a number of seconds", b)
	}
	*d = Duration(math.Round(s * float64(time.Second)))
	return nil
}

// Hit is a decision attributed to an attack.
type Hit struct {
	Decision string    `json:"decision"`
	Rule     string    `json:"rule"`
	Mode     string    `json:"mode"`
	Action   string    `json:"action"`
	Scope    string    `json:"scope,omitempty"`
	By       string    `json:"by"`   // ByEvent or ByScope
	Time     time.Time `json:"time"` // event time of the event that fired it
	// After is the event time from the attack's first event to the decision.
	After Duration `json:"after_seconds"`
	// Calls counts the attack's events up to the decision, the one that
	// fired it included; Harmful those of them that are harmful.
	Calls   int64 `json:"calls"`
	Harmful int64 `json:"harmful"`

	seq int64 // stream position of the decision
}

// Attack is the outcome for one label.
type Attack struct {
	ID       string   `json:"id"`
	Scenario string   `json:"scenario"`
	Tenant   string   `json:"tenant"`
	Agent    string   `json:"agent,omitempty"`
	Sessions []string `json:"sessions"`
	// Events are the attack's events found in the stream, Harmful those of
	// them that are harmful; First and Last their event times (the
	// label's when none was found).
	Events  int64     `json:"events"`
	Harmful int64     `json:"harmful"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`

	Detected  bool `json:"detected"`   // any decision, any mode
	WouldStop bool `json:"would_stop"` // a revoke or hold, any mode
	Stopped   bool `json:"stopped"`    // a revoke or hold in mode enforce
	// FirstDecision is the first decision attributed to it; Stop the first
	// revoke or hold (any mode); EnforcedStop the first in mode enforce.
	FirstDecision *Hit `json:"first_decision,omitempty"`
	Stop          *Hit `json:"stop,omitempty"`
	EnforcedStop  *Hit `json:"enforced_stop,omitempty"`
	// HarmfulThrough counts harmful calls at or before Stop (all of them
	// when nothing would stop it).
	HarmfulThrough int64    `json:"harmful_through"`
	Rules          []string `json:"rules"` // rules with a decision attributed to it, sorted
}

// RuleCount is a rule and how many attack instances it fired on.
type RuleCount struct {
	Rule      string `json:"rule"`
	Instances int    `json:"instances"`
}

// Scenario sums up the attacks of one scenario. Times and calls to stop are
// over the instances with a revoke or hold; harmful calls through are over
// every instance.
type Scenario struct {
	Scenario         string      `json:"scenario"`
	Instances        int         `json:"instances"`
	Unseen           int         `json:"unseen"` // instances with no event in the stream
	Detected         int         `json:"detected"`
	DetectedFraction float64     `json:"detected_fraction"`
	WouldStop        int         `json:"would_stop"`
	Stopped          int         `json:"stopped"`
	TimeToStopMedian Duration    `json:"time_to_stop_median_seconds"`
	TimeToStopMax    Duration    `json:"time_to_stop_max_seconds"`
	CallsToStop      float64     `json:"calls_to_stop_median"`
	HarmfulMedian    float64     `json:"harmful_through_median"`
	HarmfulTotal     int64       `json:"harmful_through_total"`
	Rules            []RuleCount `json:"rules"` // most instances first
}

// Benign sums up the sessions no label names. A session is counted in
// every line that applies: one with a shadow and an enforce revoke is in
// both.
type Benign struct {
	Sessions        int64 `json:"sessions"`
	WithDecision    int64 `json:"with_decision"`
	WithShadowStop  int64 `json:"with_shadow_stop"`  // would-be false positives
	WithEnforceStop int64 `json:"with_enforce_stop"` // false positives
	// Collateral counts benign sessions stopped by a revoke or hold that
	// was aimed at an attack: fired by the benign session's event, its
	// scope (a leaked credential, a hijacked agent) also covers an attack
	// under way. Revoking the leaked credential is right, and its owner's
	// session goes with it: not a false positive, but counted.
	Collateral        int64   `json:"collateral"`
	DecisionRate      float64 `json:"decision_rate"`
	ShadowStopRate    float64 `json:"shadow_stop_rate"`
	FalsePositiveRate float64 `json:"false_positive_rate"` // WithEnforceStop / Sessions
	// NoSession counts decisions fired by events without a session that
	// belong to no attack: neither a detection nor a benign session's.
	NoSession int64 `json:"no_session_decisions"`
}

// Rule is what one rule did: the attacks it detected and the benign
// sessions it fired on, the list an analyst tunes from.
type Rule struct {
	Rule            string   `json:"rule"`
	Version         string   `json:"version"`
	Mode            string   `json:"mode"`
	Action          string   `json:"action"`
	Decisions       int64    `json:"decisions"`
	Attacks         int      `json:"attacks"`
	BenignSessions  int64    `json:"benign_sessions"`
	BenignDecisions int64    `json:"benign_decisions"`
	BenignSamples   []string `json:"benign_samples"` // "tenant/session", first seen first
}

// Report is the score of a rule set.
type Report struct {
	SetHash      string `json:"set_hash"`
	Events       int64  `json:"events"`
	AttackEvents int64  `json:"attack_events"`
	Decisions    int64  `json:"decisions"`
	// ScenariosDetected counts the scenarios every instance of which was
	// detected.
	ScenariosDetected int        `json:"scenarios_detected"`
	Scenarios         []Scenario `json:"scenarios"` // by name
	Attacks           []Attack   `json:"attacks"`   // in label order
	Benign            Benign     `json:"benign"`
	Rules             []Rule     `json:"rules"` // noisiest on benign sessions first

	// Filled by Run.
	Lines          int64           `json:"lines"`
	Malformed      int64           `json:"malformed"`
	MalformedLines []string        `json:"malformed_lines"`
	First          time.Time       `json:"first_event"`
	Last           time.Time       `json:"last_event"`
	Stats          detectors.Stats `json:"-"`
	Elapsed        time.Duration   `json:"-"`
	EventsPerSec   float64         `json:"-"`
}

// Gates are the thresholds a CI run holds a report to.
type Gates struct {
	// MinDetect is the smallest detected fraction each scenario must reach
	// (0: no gate).
	MinDetect float64
	// MaxFP is the largest fraction of benign sessions that may get an
	// enforce revoke or hold (1: no gate).
	MaxFP float64
}

// Check returns why the report fails the gates, nothing when it passes.
func (r *Report) Check(g Gates) []string {
	var out []string
	if g.MinDetect > 0 {
		for _, s := range r.Scenarios {
			if s.DetectedFraction < g.MinDetect {
				out = append(out, fmt.Sprintf("scenario %s: %d of %d instances detected (%s), below the minimum %s",
					s.Scenario, s.Detected, s.Instances, Percent(s.DetectedFraction), Percent(g.MinDetect)))
			}
		}
	}
	if b := r.Benign; b.FalsePositiveRate > g.MaxFP {
		out = append(out, fmt.Sprintf("false positives: %d of %d benign sessions revoked or held in mode enforce (%s), above the maximum %s",
			b.WithEnforceStop, b.Sessions, Percent(b.FalsePositiveRate), Percent(g.MaxFP)))
	}
	return out
}

// Percent writes a fraction as a percentage: 0.5 → 50%, 0.0123 → 1.23%.
func Percent(f float64) string {
	p := 100 * f
	switch {
	case p > 0 && p < 0.01:
		return "<0.01%"
	case p == math.Trunc(p):
		return strconv.FormatFloat(p, 'f', 0, 64) + "%"
	case p >= 10:
		return strconv.FormatFloat(p, 'f', 1, 64) + "%"
	default:
		return strconv.FormatFloat(p, 'f', 2, 64) + "%"
	}
}

// Benign session flags.
const (
	flagDecision uint8 = 1 << iota
	flagShadowStop
	flagEnforceStop
	flagCollateral
)

type sessKey struct{ tenant, session string }

// scopeKey names what a revoke or hold scoped to kind covers.
type scopeKey struct{ tenant, kind, value string }

// attack is the running state of one label.
type attack struct {
	label       *Label
	events      int64
	harmful     int64
	first, last time.Time
	keys        map[scopeKey]bool // what a scoped revoke must name to cover it
	first1      *Hit              // first decision
	stop        *Hit              // first revoke or hold
	enforced    *Hit              // first revoke or hold in mode enforce
	rules       map[string]bool
	pending     []*Hit // scoped stops after its last event so far, one per rule
}

type ruleAcc struct {
	rule            *rules.CompiledRule
	decisions       int64
	attacks         map[*attack]bool
	benign          map[sessKey]bool
	benignDecisions int64
	samples         []string
}

// Scorer attributes decisions to attacks and benign sessions. Feed it with
// Event, in stream order, then read Report. It is not safe for concurrent
// use.
type Scorer struct {
	set       *rules.Set
	attacks   []*attack
	bySession map[sessKey][]*attack
	byScope   map[scopeKey][]*attack
	benign    map[sessKey]uint8
	atkIDs    map[string]bool // ids of the attack events read so far
	rules     map[string]*ruleAcc
	seq       int64
	events    int64
	atkEvents int64
	decisions int64
	noSession int64
}

// NewScorer scores the rules of set against labels.
func NewScorer(set *rules.Set, labels []Label) *Scorer {
	s := &Scorer{
		set:       set,
		bySession: map[sessKey][]*attack{},
		byScope:   map[scopeKey][]*attack{},
		benign:    map[sessKey]uint8{},
		atkIDs:    map[string]bool{},
		rules:     map[string]*ruleAcc{},
	}
	for _, r := range set.Rules {
		s.rules[r.ID] = &ruleAcc{rule: r, attacks: map[*attack]bool{}, benign: map[sessKey]bool{}}
	}
	for i := range labels {
		l := &labels[i]
		a := &attack{label: l, keys: map[scopeKey]bool{}, rules: map[string]bool{}}
		s.attacks = append(s.attacks, a)
		for _, sess := range l.sessions() {
			k := sessKey{l.Tenant, sess}
			s.bySession[k] = append(s.bySession[k], a)
			s.learn(a, "session", sess)
		}
		s.learn(a, "agent", l.Agent)
		s.learn(a, "instance", l.Instance)
		s.learn(a, "credential", l.Credential)
	}
	return s
}

// learn records that a revoke or hold scoped to kind and naming value
// covers a.
func (s *Scorer) learn(a *attack, kind, value string) {
	if value == "" {
		return
	}
	k := scopeKey{a.label.Tenant, kind, value}
	if a.keys[k] {
		return
	}
	k.value = strings.Clone(value) // the event's strings may share a buffer
	a.keys[k] = true
	s.byScope[k] = append(s.byScope[k], a)
}

// Event records one event of the stream and the decisions the engine made
// on it.
func (s *Scorer) Event(ev *pipeline.Event, decs []detectors.Decision) {
	s.events++
	key := sessKey{ev.Tenant, ev.Session}
	atks := s.bySession[key]
	if len(atks) > 0 {
		s.atkEvents++
		s.atkIDs[strings.Clone(ev.ID)] = true
		for _, a := range atks {
			s.observe(a, ev)
		}
	} else if ev.Session != "" {
		if _, ok := s.benign[key]; !ok {
			s.benign[sessKey{strings.Clone(ev.Tenant), strings.Clone(ev.Session)}] = 0
		}
	}
	for i := range decs {
		d := &decs[i]
		s.seq++
		s.decisions++
		ra := s.rule(d)
		ra.decisions++
		stop := d.Action == rules.ActionRevoke || d.Action == rules.ActionHold
		switch {
		case len(atks) > 0:
			for _, a := range atks {
				s.hit(a, d, ByEvent)
			}
		case ev.Session != "":
			f := flagDecision
			switch {
			case stop && s.aimsAtAttack(d):
				f |= flagCollateral
			case stop && d.Mode == rules.ModeEnforce:
				f |= flagEnforceStop
			case stop:
				f |= flagShadowStop
			}
			// Assigning to a string key replaces the key: clone it so that
			// the map never holds an event's strings.
			s.benign[sessKey{strings.Clone(ev.Tenant), strings.Clone(ev.Session)}] |= f
			ra.benignDecisions++
			if !ra.benign[key] {
				ra.benign[sessKey{strings.Clone(ev.Tenant), strings.Clone(ev.Session)}] = true
				if len(ra.samples) < MaxBenignSamples {
					ra.samples = append(ra.samples, ev.Tenant+"/"+ev.Session)
				}
			}
		default:
			s.noSession++
		}
		if !stop {
			continue
		}
		k, ok := covers(d)
		if !ok {
			continue
		}
		for _, a := range s.byScope[k] {
			if !slices.Contains(atks, a) { // attributed by its event already
				s.hit(a, d, ByScope)
			}
		}
	}
}

// aimsAtAttack reports whether a revoke or hold fired in a benign session
// is aimed at an attack: its scope is an identity the attack shares with
// its victim (a credential or an instance), the attack has begun, and the
// firing's evidence holds attack events. A broader scope (agent,
// principal) that happens to cover an attack stays a false positive.
func (s *Scorer) aimsAtAttack(d *detectors.Decision) bool {
	if d.Scope != "credential" && d.Scope != "instance" {
		return false
	}
	k, ok := covers(d)
	if !ok || !slices.ContainsFunc(d.Evidence, func(id string) bool { return s.atkIDs[id] }) {
		return false
	}
	for _, a := range s.byScope[k] {
		if a.events > 0 && !d.Time.Before(a.first) {
			return true
		}
	}
	return false
}

// covers is what a revoke or hold covers, as a scope key.
func covers(d *detectors.Decision) (scopeKey, bool) {
	k := scopeKey{tenant: d.Tenant, kind: d.Scope}
	switch d.Scope {
	case "session":
		k.value = d.Subject.Session
	case "agent":
		k.value = d.Subject.Agent
	case "instance":
		k.value = d.Subject.Instance
	case "credential":
		k.value = d.Subject.Credential
	case "principal":
		k.value = d.Subject.Principal
	case "task":
		k.value = d.Subject.Task
	case "tool":
		if d.Subject.Agent != "" && d.Subject.Tool != "" {
			k.value = d.Subject.Agent + "\x00" + d.Subject.Tool
		}
	}
	return k, k.value != ""
}

func (s *Scorer) rule(d *detectors.Decision) *ruleAcc {
	ra := s.rules[d.Rule]
	if ra == nil { // a decision of a rule the set does not hold: keep it anyway
		ra = &ruleAcc{rule: &rules.CompiledRule{Rule: &rules.Rule{ID: d.Rule, Mode: d.Mode, Action: d.Action}, Version: d.RuleVersion},
			attacks: map[*attack]bool{}, benign: map[sessKey]bool{}}
		s.rules[d.Rule] = ra
	}
	return ra
}

// observe counts one of a's events.
func (s *Scorer) observe(a *attack, ev *pipeline.Event) {
	a.events++
	if Harmful(ev.Action) {
		a.harmful++
	}
	if a.events == 1 || ev.Time.Before(a.first) {
		a.first = ev.Time
	}
	if a.events == 1 || ev.Time.After(a.last) {
		a.last = ev.Time
	}
	s.learn(a, "agent", ev.Agent)
	s.learn(a, "instance", ev.Instance)
	s.learn(a, "credential", ev.Credential)
	s.learn(a, "principal", ev.Principal)
	s.learn(a, "task", ev.Task)
	if ev.Agent != "" && ev.Tool != "" {
		if k := (scopeKey{a.label.Tenant, "tool", ev.Agent + "\x00" + ev.Tool}); !a.keys[k] {
			a.keys[k] = true
			s.byScope[k] = append(s.byScope[k], a)
		}
	}
	// A scoped stop issued after the attack's last event so far covers it
	// once the attack goes on past it.
	if len(a.pending) > 0 {
		a.pending = slices.DeleteFunc(a.pending, func(h *Hit) bool {
			if h.Time.After(a.last) {
				return false
			}
			s.confirm(a, h)
			return true
		})
	}
}

// hit attributes d to a.
func (s *Scorer) hit(a *attack, d *detectors.Decision, by string) {
	if by == ByScope && (a.events == 0 || d.Time.Before(a.first)) {
		return // before the attack began
	}
	h := &Hit{
		Decision: d.ID, Rule: d.Rule, Mode: d.Mode, Action: d.Action, Scope: d.Scope, By: by,
		Time: d.Time, Calls: a.events, Harmful: a.harmful, seq: s.seq,
	}
	if by == ByScope && d.Time.After(a.last) {
		// Issued after the attack's last event so far: it covers the attack
		// only if the attack goes on. One pending stop a rule is enough.
		if !slices.ContainsFunc(a.pending, func(p *Hit) bool { return p.Rule == h.Rule }) {
			a.pending = append(a.pending, h)
		}
		return
	}
	s.confirm(a, h)
}

// confirm records h as a detection of a.
func (s *Scorer) confirm(a *attack, h *Hit) {
	a.rules[h.Rule] = true
	if ra := s.rules[h.Rule]; ra != nil {
		ra.attacks[a] = true
	}
	earlier := func(cur *Hit) bool { return cur == nil || h.seq < cur.seq }
	if earlier(a.first1) {
		a.first1 = h
	}
	if h.Action != rules.ActionRevoke && h.Action != rules.ActionHold {
		return
	}
	if earlier(a.stop) {
		a.stop = h
	}
	if h.Mode == rules.ModeEnforce && earlier(a.enforced) {
		a.enforced = h
	}
}

// Report sums up what the Scorer was fed so far.
func (s *Scorer) Report() *Report {
	r := &Report{SetHash: s.set.Hash, Events: s.events, AttackEvents: s.atkEvents, Decisions: s.decisions, MalformedLines: []string{}}
	byScenario := map[string]*scenarioAcc{}
	for _, a := range s.attacks {
		out := a.result()
		r.Attacks = append(r.Attacks, out)
		sc := byScenario[out.Scenario]
		if sc == nil {
			sc = &scenarioAcc{s: Scenario{Scenario: out.Scenario}, rules: map[string]int{}}
			byScenario[out.Scenario] = sc
		}
		sc.add(out)
	}
	if r.Attacks == nil {
		r.Attacks = []Attack{}
	}
	r.Scenarios = []Scenario{}
	for _, sc := range byScenario {
		r.Scenarios = append(r.Scenarios, sc.result())
	}
	slices.SortFunc(r.Scenarios, func(x, y Scenario) int { return cmp.Compare(x.Scenario, y.Scenario) })
	for _, sc := range r.Scenarios {
		if sc.Detected == sc.Instances {
			r.ScenariosDetected++
		}
	}

	b := &r.Benign
	b.Sessions = int64(len(s.benign))
	for _, f := range s.benign {
		if f&flagDecision != 0 {
			b.WithDecision++
		}
		if f&flagShadowStop != 0 {
			b.WithShadowStop++
		}
		if f&flagEnforceStop != 0 {
			b.WithEnforceStop++
		}
		if f&flagCollateral != 0 {
			b.Collateral++
		}
	}
	if b.Sessions > 0 {
		n := float64(b.Sessions)
		b.DecisionRate, b.ShadowStopRate, b.FalsePositiveRate = float64(b.WithDecision)/n, float64(b.WithShadowStop)/n, float64(b.WithEnforceStop)/n
	}
	b.NoSession = s.noSession

	for _, ra := range s.rules {
		r.Rules = append(r.Rules, Rule{
			Rule: ra.rule.ID, Version: ra.rule.Version, Mode: ra.rule.Mode, Action: ra.rule.Action,
			Decisions: ra.decisions, Attacks: len(ra.attacks),
			BenignSessions: int64(len(ra.benign)), BenignDecisions: ra.benignDecisions,
			BenignSamples: append([]string{}, ra.samples...),
		})
	}
	if r.Rules == nil {
		r.Rules = []Rule{}
	}
	slices.SortFunc(r.Rules, func(x, y Rule) int {
		return cmp.Or(cmp.Compare(y.BenignSessions, x.BenignSessions), cmp.Compare(y.BenignDecisions, x.BenignDecisions), cmp.Compare(x.Rule, y.Rule))
	})
	return r
}

// result is the Attack a's state adds up to.
func (a *attack) result() Attack {
	l := a.label
	out := Attack{
		ID: l.ID, Scenario: l.Scenario, Tenant: l.Tenant, Agent: l.Agent, Sessions: slices.Clone(l.sessions()),
		Events: a.events, Harmful: a.harmful, First: a.first, Last: a.last,
		Detected: a.first1 != nil, WouldStop: a.stop != nil, Stopped: a.enforced != nil,
		HarmfulThrough: a.harmful, Rules: []string{},
	}
	if a.events == 0 {
		out.First, out.Last = l.FirstEventTime, l.LastEventTime
	}
	hit := func(h *Hit) *Hit {
		if h == nil {
			return nil
		}
		c := *h
		c.seq = 0
		c.After = Duration(max(0, h.Time.Sub(a.first)))
		return &c
	}
	out.FirstDecision, out.Stop, out.EnforcedStop = hit(a.first1), hit(a.stop), hit(a.enforced)
	if a.stop != nil {
		out.HarmfulThrough = a.stop.Harmful
	}
	for r := range a.rules {
		out.Rules = append(out.Rules, r)
	}
	slices.Sort(out.Rules)
	return out
}

type scenarioAcc struct {
	s       Scenario
	ttr     []time.Duration
	calls   []float64
	harmful []float64
	rules   map[string]int
}

func (sc *scenarioAcc) add(a Attack) {
	sc.s.Instances++
	if a.Events == 0 {
		sc.s.Unseen++
	}
	if a.Detected {
		sc.s.Detected++
	}
	if a.Stopped {
		sc.s.Stopped++
	}
	if a.Stop != nil {
		sc.s.WouldStop++
		sc.ttr = append(sc.ttr, time.Duration(a.Stop.After))
		sc.calls = append(sc.calls, float64(a.Stop.Calls))
	}
	sc.harmful = append(sc.harmful, float64(a.HarmfulThrough))
	sc.s.HarmfulTotal += a.HarmfulThrough
	for _, r := range a.Rules {
		sc.rules[r]++
	}
}

func (sc *scenarioAcc) result() Scenario {
	s := sc.s
	if s.Instances > 0 {
		s.DetectedFraction = float64(s.Detected) / float64(s.Instances)
	}
	if len(sc.ttr) > 0 {
		ttr := make([]float64, len(sc.ttr))
		for i, d := range sc.ttr {
			ttr[i] = float64(d)
		}
		s.TimeToStopMedian = Duration(math.Round(median(ttr)))
		s.TimeToStopMax = Duration(slices.Max(sc.ttr))
	}
	s.CallsToStop = median(sc.calls)
	s.HarmfulMedian = median(sc.harmful)
	s.Rules = []RuleCount{}
	for r, n := range sc.rules {
		s.Rules = append(s.Rules, RuleCount{Rule: r, Instances: n})
	}
	slices.SortFunc(s.Rules, func(x, y RuleCount) int {
		return cmp.Or(cmp.Compare(y.Instances, x.Instances), cmp.Compare(x.Rule, y.Rule))
	})
	return s
}

// median is the middle value, the mean of the two middle ones for an even
// count, 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
