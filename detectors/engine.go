// Package detectors evaluates compiled rules over a stream of events, on
// event time: it keeps per-group windowed state for exactly the aggregates
// the rule set needs and turns rule firings into decisions. It does no I/O
// and never reads the wall clock, so the same engine runs inside streaming
// workers, backtests and rule tests, and the same input gives the same
// decisions.
package detectors

import (
	"math"
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// Options tune the engine. The zero value is usable: defaults are filled in.
type Options struct {
	// Lateness is how far behind a group's newest event an event may be and
	// still be counted. Later events are reported as too late (Stats.TooLate)
	// and do not change state. Default 1m.
	Lateness time.Duration
	// Buckets per sliding window. More buckets, sharper window edges, more
	// memory. Default 6.
	Buckets int
	// DistinctExact is how many distinct values a distinct() keeps exactly
	// before switching to a HyperLogLog sketch. Default 64.
	DistinctExact int
	// FirstSeenMax caps the terms a first_seen() remembers per group; the
	// least recently seen term is forgotten first. Default 4096.
	FirstSeenMax int
	// Evidence is how many recent event ids a group keeps as evidence.
	// Default 4.
	Evidence int
	// IdleAfter evicts a group that has seen no event for this long (event
	// time), unless its rules need longer. Default: the group's longest
	// window plus Lateness; 7 days for groups with first_seen or baselines.
	IdleAfter time.Duration
}

var minEventMS = pipeline.MinEventTime.UnixMilli()

// Stats are the engine's counters. They only grow.
type Stats struct {
	Events       int64 // events processed
	Late         int64 // events older than their group's newest, within Lateness
	TooLate      int64 // events older than Lateness: not counted, reported
	OutOfRange   int64 // events timed before pipeline.MinEventTime: not counted
	MissingGroup int64 // rule evaluations skipped because a group key field was empty
	RuleErrors   int64 // runtime errors evaluating a rule or filter
	Fired        int64 // decisions emitted
	Suppressed   int64 // firings held back by cooldown
	Excepted     int64 // firings held back by an exception
	Evicted      int64 // idle groups evicted
	Groups       int64 // groups currently held
}

// RuleStats are per-rule counters.
type RuleStats struct {
	Fired      int64
	Suppressed int64
	Excepted   int64
	Errors     int64
	Groups     int64 // distinct groups that fired at least once
	// ExceptionHits counts, per exception of the rule (in file order), the
	// firings it held back; nil until one does.
	ExceptionHits []int64
}

// Engine evaluates a rule set over events. It is not safe for concurrent
// use: run one engine per partition or worker goroutine.
type Engine struct {
	set   *rules.Set
	opt   Options
	kinds []*kind
	refs  []*aggRef // by aggregate index
	// per rule: index into kinds, local index for fire state
	ruleKind  []int
	ruleLocal []int
	byAction  map[pipeline.Action][]*rules.CompiledRule
	anyAction []*rules.CompiledRule

	env   rules.Env
	vm    vm.VM
	flags []bool // per aggregate: first_seen / seq result for the current event
	// per aggregate: its value for the event numbered vstamp (see value)
	vcache  []float64
	vstamp  []int64
	cur     []*group
	stepBuf []bool
	keyBuf  []byte
	aggs    []float64
	fl      []bool

	watermark int64
	nextSweep int64
	stats     Stats
	ruleStats []RuleStats
}

// NewEngine builds an engine for a compiled rule set.
func NewEngine(set *rules.Set, opt Options) *Engine {
	if opt.Lateness <= 0 {
		opt.Lateness = time.Minute
	}
	if opt.Buckets <= 0 {
		opt.Buckets = 6
	}
	if opt.DistinctExact <= 0 {
		opt.DistinctExact = 64
	}
	if opt.FirstSeenMax <= 0 {
		opt.FirstSeenMax = 4096
	}
	if opt.Evidence <= 0 {
		opt.Evidence = 4
	}
	e := &Engine{
		set:       set,
		opt:       opt,
		refs:      make([]*aggRef, len(set.Aggs)),
		flags:     make([]bool, len(set.Aggs)),
		vcache:    make([]float64, len(set.Aggs)),
		vstamp:    make([]int64, len(set.Aggs)),
		byAction:  map[pipeline.Action][]*rules.CompiledRule{},
		ruleStats: make([]RuleStats, len(set.Rules)),
		ruleKind:  make([]int, len(set.Rules)),
		ruleLocal: make([]int, len(set.Rules)),
	}
	kindOf := map[int]int{}
	getKind := func(g int) *kind {
		if i, ok := kindOf[g]; ok {
			return e.kinds[i]
		}
		kindOf[g] = len(e.kinds)
		k := &kind{key: set.Groups[g], groups: map[string]*group{}}
		e.kinds = append(e.kinds, k)
		return k
	}
	lateMs := opt.Lateness.Milliseconds()
	// Maintain only the aggregates this set's rules read (a set may be a
	// subset sharing its parent's aggregate list).
	used := make([]bool, len(set.Aggs))
	for _, r := range set.Rules {
		for _, v := range r.Variants {
			for _, sl := range v.Cond.Slots {
				used[sl.Agg] = true
				if a := set.Aggs[sl.Agg]; a.Kind == rules.AggBaseline {
					used[a.Inner] = true
				}
			}
		}
	}
	for _, a := range set.Aggs {
		if !used[a.Index] {
			continue
		}
		k := getKind(a.Group)
		win := a.Window.Milliseconds()
		ref := aggRef{spec: a, win: win, kind: kindOf[a.Group]}
		nb := int64(opt.Buckets)
		ref.rs = ringSpec{width: max(win/nb, 1), n: nb}
		longLived := false
		switch a.Kind {
		case rules.AggCount, rules.AggSum:
			ref.rs.off = k.slab
			k.slab += 1 + int(nb)
			ref.local = len(k.rings)
			k.rings = append(k.rings, ref.rs)
		case rules.AggDistinct:
			ref.local = k.nDist
			k.nDist++
		case rules.AggFirstSeen:
			ref.local = k.nTerms
			k.nTerms++
			longLived = true
		case rules.AggSeq:
			ref.local = k.nSeq
			k.nSeq++
		case rules.AggBaseline:
			ref.local = k.nBase
			k.nBase++
			longLived = true
		}
		idle := win + lateMs
		if longLived {
			idle = max(idle, (7 * 24 * time.Hour).Milliseconds())
			if a.Kind == rules.AggFirstSeen {
				idle = max(idle, win)
			}
		}
		if opt.IdleAfter > 0 {
			idle = max(opt.IdleAfter.Milliseconds(), win+lateMs)
		}
		k.idle = max(k.idle, idle)
		k.aggs = append(k.aggs, ref)
	}
	// refs point into the kinds' slices, which no longer grow.
	for _, k := range e.kinds {
		for i := range k.aggs {
			e.refs[k.aggs[i].spec.Index] = &k.aggs[i]
		}
	}
	for _, k := range e.kinds {
		for i := range k.aggs {
			if k.aggs[i].spec.Kind == rules.AggBaseline && e.refs[k.aggs[i].spec.Inner] != nil {
				k.aggs[i].inner = e.refs[k.aggs[i].spec.Inner]
			}
		}
	}
	maxSlots := 0
	for _, r := range set.Rules {
		k := getKind(r.Group)
		e.ruleKind[r.Index] = kindOf[r.Group]
		e.ruleLocal[r.Index] = k.nRules
		k.nRules++
		if k.idle == 0 {
			k.idle = lateMs + time.Minute.Milliseconds()
		}
		if cd := time.Duration(r.Cooldown).Milliseconds(); cd > k.idle {
			k.idle = cd
		}
		for _, v := range r.Variants {
			maxSlots = max(maxSlots, len(v.Cond.Slots))
		}
		if r.Actions == nil {
			e.anyAction = append(e.anyAction, r)
			continue
		}
		for _, a := range r.Actions {
			e.byAction[a] = append(e.byAction[a], r)
		}
	}
	// A rule that accepts any action must still be evaluated in set order
	// with the indexed ones, so each action's list holds both, sorted.
	for a, rs := range e.byAction {
		merged := append(append([]*rules.CompiledRule(nil), rs...), e.anyAction...)
		sortRules(merged)
		e.byAction[a] = merged
	}
	e.cur = make([]*group, len(e.kinds))
	e.aggs = make([]float64, maxSlots)
	e.fl = make([]bool, maxSlots)
	return e
}

func sortRules(rs []*rules.CompiledRule) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Index < rs[j-1].Index; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// Set returns the rule set the engine evaluates.
func (e *Engine) Set() *rules.Set { return e.set }

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	s := e.stats
	for _, k := range e.kinds {
		s.Groups += int64(len(k.groups))
	}
	return s
}

// RuleStats returns one rule's counters.
func (e *Engine) RuleStats(id string) RuleStats {
	if r := e.set.Rule(id); r != nil {
		s := e.ruleStats[r.Index]
		s.ExceptionHits = slices.Clone(s.ExceptionHits)
		return s
	}
	return RuleStats{}
}

const keySep = '\x1f'

// groupKey builds the group key of ev for k into e.keyBuf; ok is false when
// a key field is empty.
func (e *Engine) groupKey(k *kind, ev *pipeline.Event) bool {
	b := e.keyBuf[:0]
	for i, get := range k.key.Get {
		v := get(ev)
		if v == "" {
			return false
		}
		if i > 0 {
			b = append(b, keySep)
		}
		b = append(b, v...)
	}
	e.keyBuf = b
	return true
}

// Process evaluates one event and appends the decisions it causes to out.
// Events should arrive roughly in event-time order per group; see
// Options.Lateness.
func (e *Engine) Process(ev *pipeline.Event, out []Decision) []Decision {
	e.stats.Events++
	t := ev.Time.UnixMilli()
	if t < minEventMS {
		// Decoded events are validated against this already; events from
		// other sources (history rows, Go callers) are not.
		e.stats.OutOfRange++
		return out
	}
	e.env.Reset(ev)
	late, tooLate := false, false
	for i, k := range e.kinds {
		e.cur[i] = nil
		if !e.groupKey(k, ev) {
			continue
		}
		g := k.groups[string(e.keyBuf)]
		if g == nil {
			g = k.newGroup(string(e.keyBuf), e.opt.Evidence)
			k.groups[g.key] = g
		}
		if t < g.last {
			if t < g.last-e.opt.Lateness.Milliseconds() {
				tooLate = true
				continue
			}
			late = true
		} else {
			g.last = t
		}
		e.update(k, g, ev, t)
		g.pushEvidence(ev.ID, e.opt.Evidence)
		e.cur[i] = g
	}
	if tooLate {
		e.stats.TooLate++
	} else if late {
		e.stats.Late++
	}
	candidates := e.anyAction
	if rs, ok := e.byAction[ev.Action]; ok {
		candidates = rs
	}
	for _, r := range candidates {
		out = e.eval(r, ev, t, out)
	}
	if t > e.watermark {
		e.watermark = t
		if t >= e.nextSweep {
			e.sweep(t)
		}
	}
	return out
}

func (e *Engine) eval(r *rules.CompiledRule, ev *pipeline.Event, t int64, out []Decision) []Decision {
	g := e.cur[e.ruleKind[r.Index]]
	if g == nil {
		if !e.groupKey(e.kinds[e.ruleKind[r.Index]], ev) {
			e.stats.MissingGroup++
		}
		return out
	}
	rs := &e.ruleStats[r.Index]
	if r.MatchPred != nil {
		ok, err := r.MatchPred.Eval(&e.env, &e.vm)
		if err != nil {
			e.stats.RuleErrors++
			rs.Errors++
			return out
		}
		if !ok {
			return out
		}
	}
	v := &r.Variants[len(r.Variants)-1]
	for i := range r.Variants[:len(r.Variants)-1] {
		o := &r.Variants[i]
		if (o.Tenant == "" || o.Tenant == ev.Tenant) && (o.Agent == "" || o.Agent == ev.Agent) {
			v = o
			break
		}
	}
	c := v.Cond
	for i, sl := range c.Slots {
		// An aggregate reads the current event's group of its own key: the
		// rule's, or a by() group. An event without that group (a key field
		// empty, or too late for it) reads 0.
		x := 0.0
		if ag := e.cur[e.refs[sl.Agg].kind]; ag != nil {
			x = e.slotValue(sl, ag, t)
		}
		e.aggs[i] = x
		e.fl[i] = x != 0
	}
	e.env.Aggs, e.env.Flags = e.aggs, e.fl
	var fired bool
	if c.Native != nil {
		fired = c.Native(&e.env)
	} else {
		res, err := e.vm.Run(c.Program, &e.env)
		if err != nil {
			e.stats.RuleErrors++
			rs.Errors++
			return out
		}
		fired, _ = res.(bool)
	}
	if !fired {
		return out
	}
	for i, x := range r.Exceptions {
		if t < x.Expires.UnixMilli() && e.pred(x.Match) {
			e.stats.Excepted++
			rs.Excepted++
			if rs.ExceptionHits == nil {
				rs.ExceptionHits = make([]int64, len(r.Exceptions))
			}
			rs.ExceptionHits[i]++
			return out
		}
	}
	if g.fire == nil {
		g.fire = make([]fireState, e.kinds[e.ruleKind[r.Index]].nRules)
	}
	fs := &g.fire[e.ruleLocal[r.Index]]
	cd := time.Duration(r.Cooldown).Milliseconds()
	if fs.last != 0 && cd > 0 && t-fs.last < cd && t >= fs.last {
		fs.suppressed++
		e.stats.Suppressed++
		rs.Suppressed++
		return out
	}
	if fs.last == 0 {
		rs.Groups++
	}
	d := e.decision(r, c, g, ev, t, fs.suppressed)
	fs.last, fs.suppressed = t, 0
	e.stats.Fired++
	rs.Fired++
	return append(out, d)
}

func (e *Engine) decision(r *rules.CompiledRule, c *rules.Condition, g *group, ev *pipeline.Event, t int64, suppressed int64) Decision {
	k := e.kinds[e.ruleKind[r.Index]]
	var gk strings.Builder
	parts := strings.Split(g.key, string(keySep))
	for i, f := range k.key.Fields {
		if i > 0 {
			gk.WriteByte(',')
		}
		gk.WriteString(f)
		gk.WriteByte('=')
		if i < len(parts) {
			gk.WriteString(parts[i])
		}
	}
	group := gk.String()
	cd := time.Duration(r.Cooldown).Milliseconds()
	anchor := t
	id := ""
	if cd > 0 {
		anchor = t - t%cd
		id = decisionID(r.ID, r.Version, group, anchor)
	} else {
		id = decisionID(r.ID, r.Version, group+"\x00"+ev.ID, anchor)
	}
	d := Decision{
		ID:          id,
		Time:        time.UnixMilli(t).UTC(),
		Rule:        r.ID,
		RuleVersion: r.Version,
		Severity:    r.Severity,
		Tags:        r.Tags,
		Mode:        r.Mode,
		Action:      r.Action,
		Scope:       r.Scope,
		Tenant:      ev.Tenant,
		Group:       group,
		Subject: Subject{
			Agent: ev.Agent, Instance: ev.Instance, Session: ev.Session, Task: ev.Task,
			Principal: ev.Principal, Credential: ev.Credential, Tool: ev.Tool, ParentAgent: ev.ParentAgent,
		},
		EventID:    ev.ID,
		Evidence:   g.evidence(),
		Suppressed: suppressed,
		Anchor:     anchor,
		Reason:     r.Description,
	}
	if r.Rule.Action != rules.ActionAlert {
		d.RevokeFor = time.Duration(r.RevokeFor)
	}
	if r.Rule.Action == rules.ActionHold {
		d.HoldTimeout, d.OnTimeout = time.Duration(r.HoldTimeout), r.OnTimeout
	}
	for _, x := range c.Explain {
		val := Value{Name: x.Text, Value: e.aggs[x.Slot]}
		if math.IsNaN(val.Value) || math.IsInf(val.Value, 0) {
			val.Value = 0
		}
		if x.HasThresh {
			th := x.Threshold
			val.Op, val.Threshold = x.Op, &th
		}
		// An aggregate written several times (count(5m) > 50 && count(5m) >
		// 3 * baseline(count(5m))) is shown once per comparison.
		if slices.ContainsFunc(d.Values, func(v Value) bool { return sameValue(v, val) }) {
			continue
		}
		d.Values = append(d.Values, val)
		if sl := c.Slots[x.Slot]; sl.Out == rules.OutFlag && e.refs[sl.Agg].spec.Kind == rules.AggSeq && e.cur[e.refs[sl.Agg].kind] != nil {
			s := &e.cur[e.refs[sl.Agg].kind].seqs[e.refs[sl.Agg].local]
			for _, id := range s.ids {
				if len(id) > 0 && string(id) != ev.ID {
					d.Evidence = appendUnique(d.Evidence, string(id))
				}
			}
		}
	}
	return d
}

func sameValue(a, b Value) bool {
	if a.Name != b.Name || a.Op != b.Op || (a.Threshold == nil) != (b.Threshold == nil) {
		return false
	}
	return a.Threshold == nil || *a.Threshold == *b.Threshold
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// sweep evicts idle groups. It runs when event time passes nextSweep.
func (e *Engine) sweep(now int64) {
	next := int64(math.MaxInt64)
	for _, k := range e.kinds {
		for key, g := range k.groups {
			if g.last < now-k.idle {
				delete(k.groups, key)
				e.stats.Evicted++
			}
		}
		next = min(next, now+max(k.idle/2, time.Minute.Milliseconds()))
	}
	e.nextSweep = next
}
