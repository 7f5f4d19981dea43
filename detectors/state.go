package detectors

import (
	"bytes"
	"math"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/expr-lang/expr/vm"

	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// kind is the engine's view of one group key: its aggregates, its rules and
// the state of every group of that key.
type kind struct {
	key    *rules.GroupKey
	rings  []ringSpec // sum/count aggregates, in slab order
	slab   int        // slab length
	aggs   []aggRef   // every aggregate of this kind, update order (inner before baseline)
	nDist  int
	nTerms int
	nSeq   int
	nBase  int
	nRules int
	idle   int64
	groups map[string]*group
}

// aggRef locates an aggregate's state within a group.
type aggRef struct {
	spec  *rules.AggSpec
	local int      // index within its type (ring, distinct, terms, seq, baseline)
	rs    ringSpec // count, sum, distinct (bucket layout), baseline (inner ring)
	inner *aggRef  // baseline
	win   int64    // window or horizon, ms
	kind  int      // index of its kind in Engine.kinds (its group key)
}

// group is the state of one group (e.g. one session).
type group struct {
	key   string
	last  int64 // newest event time, ms
	slab  []int64
	dist  []distinct
	terms []terms
	seqs  []seq
	bases []baseline
	fire  []fireState // per rule of the kind; allocated when a rule first fires
	// evid holds the most recent event ids, oldest first, each followed by
	// a 0 byte: one small buffer instead of a slice per id.
	evid []byte
	nEv  uint8
}

type fireState struct {
	last       int64
	suppressed int64
}

func (k *kind) newGroup(key string, nEvid int) *group {
	g := &group{key: key}
	if k.slab > 0 {
		g.slab = make([]int64, k.slab)
	}
	if k.nDist > 0 {
		g.dist = make([]distinct, k.nDist)
	}
	if k.nTerms > 0 {
		g.terms = make([]terms, k.nTerms)
	}
	if k.nSeq > 0 {
		g.seqs = make([]seq, k.nSeq)
	}
	if k.nBase > 0 {
		g.bases = make([]baseline, k.nBase)
	}
	return g
}

func (g *group) pushEvidence(id string, max int) {
	if int(g.nEv) >= max {
		i := bytes.IndexByte(g.evid, 0)
		n := copy(g.evid, g.evid[i+1:])
		g.evid = g.evid[:n]
	} else {
		g.nEv++
	}
	g.evid = append(append(g.evid, id...), 0)
}

// evidence returns the group's recent event ids, newest first.
func (g *group) evidence() []string {
	out := make([]string, 0, g.nEv)
	b := g.evid
	for len(b) > 0 {
		i := bytes.LastIndexByte(b[:len(b)-1], 0)
		out = append(out, string(b[i+1:len(b)-1]))
		b = b[:i+1]
	}
	return out
}

func hashStr(s string) uint64 { return xxhash.Sum64String(s) }

// update applies an event at t to every aggregate of the group. flags
// receives per-event results (first_seen, seq) by aggregate index.
func (e *Engine) update(k *kind, g *group, ev *pipeline.Event, t int64) {
	for i := range k.aggs {
		a := &k.aggs[i]
		s := a.spec
		switch s.Kind {
		case rules.AggCount, rules.AggSum:
			if s.Filter != nil && !e.pred(s.Filter) {
				continue
			}
			v := int64(1)
			if s.Kind == rules.AggSum {
				v = s.Field.Num(ev)
				if v == 0 {
					continue
				}
			}
			a.rs.add(g.slab, t, v)
		case rules.AggDistinct:
			if s.Filter != nil && !e.pred(s.Filter) {
				continue
			}
			val := s.Field.Str(ev)
			if val == "" {
				continue
			}
			g.dist[a.local].add(hashStr(val), t, a.win, e.opt.DistinctExact, a.rs)
		case rules.AggFirstSeen:
			val := s.Field.Str(ev)
			if val == "" {
				e.flags[s.Index] = false
				continue
			}
			e.flags[s.Index] = g.terms[a.local].seen(hashStr(val), t, a.win, e.opt.FirstSeenMax)
		case rules.AggSeq:
			m := e.stepBuf[:0]
			for _, st := range s.Steps {
				m = append(m, e.pred(st))
			}
			e.stepBuf = m
			e.flags[s.Index] = g.seqs[a.local].step(m, t, a.win, ev.ID)
		case rules.AggBaseline:
			g.bases[a.local].observe(e.value(a.inner, g, t), t, a.win)
		}
	}
}

// value reads a count, sum or distinct aggregate at t.
// Every read of an aggregate during one event gives the same value (each
// aggregate has one group per event, updated before any rule reads it), so
// it is computed once: a baseline rule reads its aggregate three or four
// times, and a distinct() past its exact cap merges a sketch per read.
func (e *Engine) value(a *aggRef, g *group, t int64) float64 {
	i := a.spec.Index
	if e.vstamp[i] == e.stats.Events {
		return e.vcache[i]
	}
	var v float64
	switch a.spec.Kind {
	case rules.AggCount, rules.AggSum:
		v = float64(a.rs.sum(g.slab, t))
	case rules.AggDistinct:
		v = float64(g.dist[a.local].count(t, a.win, a.rs))
	}
	e.vstamp[i], e.vcache[i] = e.stats.Events, v
	return v
}

func (e *Engine) slotValue(sl rules.Slot, g *group, t int64) float64 {
	a := e.refs[sl.Agg]
	switch sl.Out {
	case rules.OutValue:
		return e.value(a, g, t)
	case rules.OutRate:
		return e.value(a, g, t) / (float64(a.win) / 1000)
	case rules.OutFlag:
		if e.flags[sl.Agg] {
			return 1
		}
		return 0
	}
	b := &g.bases[a.local]
	switch sl.Out {
	case rules.OutMean:
		return b.mean
	case rules.OutStddev:
		return b.stddev()
	case rules.OutZ:
		return b.z(e.value(a.inner, g, t))
	case rules.OutN:
		return float64(b.n)
	}
	return math.NaN()
}

// pred evaluates a filter on the current event; a runtime error counts and
// reads as false.
func (e *Engine) pred(p *rules.Predicate) bool {
	ok, err := p.Eval(&e.env, &e.vm)
	if err != nil {
		e.stats.RuleErrors++
		return false
	}
	return ok
}

var _ = time.Millisecond
var _ vm.VM
