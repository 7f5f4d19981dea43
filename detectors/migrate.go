package detectors

import "github.com/tripline/tripline/rules"

// NewEngineFrom builds an engine for set that carries over old's state, for
// a hot rule reload. old must not be used afterwards: its state is moved,
// not copied.
//
// What is kept:
//   - every aggregate the new set shares with the old one (same group key,
//     same canonical text: kind, field, window, filter), with its windows,
//     distinct values, first-seen terms, sequence progress and baselines —
//     whichever rules read it;
//   - the cooldown state (last firing, suppressed count) and counters of
//     every rule whose id and version did not change;
//   - the engine's counters, watermark and the groups' recent evidence.
//
// A rule that is new or whose version changed starts with an empty cooldown;
// an aggregate that is new starts empty and warms up over its window.
func NewEngineFrom(set *rules.Set, opt Options, old *Engine) *Engine {
	e := NewEngine(set, opt)
	if old == nil {
		return e
	}
	e.watermark, e.nextSweep = old.watermark, old.nextSweep
	e.stats = old.stats
	e.stats.Groups = 0

	// rules that did not change: their local fire slot in old and new
	type ruleMove struct{ oldLocal, newLocal int }
	oldRules := map[string]*rules.CompiledRule{}
	for _, r := range old.set.Rules {
		oldRules[r.ID] = r
	}
	for _, r := range set.Rules {
		if o := oldRules[r.ID]; o != nil && o.Version == r.Version {
			e.ruleStats[r.Index] = old.ruleStats[o.Index]
		}
	}

	oldKinds := map[string]*kind{}
	for _, k := range old.kinds {
		oldKinds[k.key.Name()] = k
	}
	for ki, k := range e.kinds {
		ok := oldKinds[k.key.Name()]
		if ok == nil {
			continue
		}
		// aggregates present in both, by canonical key
		oldAgg := map[string]*aggRef{}
		for i := range ok.aggs {
			oldAgg[ok.aggs[i].spec.Key] = &ok.aggs[i]
		}
		type aggMove struct{ from, to *aggRef }
		var moves []aggMove
		for i := range k.aggs {
			to := &k.aggs[i]
			if from := oldAgg[to.spec.Key]; from != nil && from.spec.Kind == to.spec.Kind && from.rs.width == to.rs.width && from.rs.n == to.rs.n {
				moves = append(moves, aggMove{from, to})
			}
		}
		var rmoves []ruleMove
		for _, r := range set.Rules {
			if e.ruleKind[r.Index] != ki {
				continue
			}
			if o := oldRules[r.ID]; o != nil && o.Version == r.Version && old.kinds[old.ruleKind[o.Index]] == ok {
				rmoves = append(rmoves, ruleMove{old.ruleLocal[o.Index], e.ruleLocal[r.Index]})
			}
		}
		if len(moves) == 0 && len(rmoves) == 0 {
			continue // nothing to carry: the groups come back on their next event
		}
		for key, og := range ok.groups {
			g := k.newGroup(key, e.opt.Evidence)
			g.last, g.evid, g.nEv = og.last, og.evid, og.nEv
			for _, m := range moves {
				from, to := m.from, m.to
				switch to.spec.Kind {
				case rules.AggCount, rules.AggSum:
					copy(g.slab[to.rs.off:to.rs.off+1+int(to.rs.n)], og.slab[from.rs.off:from.rs.off+1+int(from.rs.n)])
				case rules.AggDistinct:
					g.dist[to.local] = og.dist[from.local]
				case rules.AggFirstSeen:
					g.terms[to.local] = og.terms[from.local]
				case rules.AggSeq:
					g.seqs[to.local] = og.seqs[from.local]
				case rules.AggBaseline:
					g.bases[to.local] = og.bases[from.local]
				}
			}
			if og.fire != nil {
				for _, m := range rmoves {
					if fs := og.fire[m.oldLocal]; fs != (fireState{}) {
						if g.fire == nil {
							g.fire = make([]fireState, k.nRules)
						}
						g.fire[m.newLocal] = fs
					}
				}
			}
			k.groups[key] = g
		}
	}
	return e
}
