package backtest

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/tripline/tripline/rules"
)

// MaxSamples is how many firings of each kind a RuleDiff or an AgentDiff
// keeps as examples.
const MaxSamples = 5

// How a rule differs between the two sets of a Comparison.
const (
	RuleSame    = "same"    // the same version in both
	RuleChanged = "changed" // another version (condition, params, cooldown, …)
	RuleAdded   = "added"   // only in the new set
	RuleRemoved = "removed" // only in the old set
)

// Comparison is the outcome of two rule sets run over the same events: the
// new set (the rules being tuned) and the old one (what runs today).
//
// They are compared group by group: a rule fired "in both" for a group when
// it decided for that group at least once with each set, however many times
// and whenever; "only new" and "only old" when only one set did. A group is
// counted for the agent of its first decision.
type Comparison struct {
	New, Old *Result
	Rules    []RuleDiff  // the new set's rules in order, then the removed ones
	Agents   []AgentDiff // agents with a firing, most differences first
}

// Firing is a rule firing for one group with one of the sets: how many
// decisions, and the first of them.
type Firing struct {
	Rule      string    `json:"rule"`
	Group     string    `json:"group"`
	Agent     string    `json:"agent"`
	Decisions int64     `json:"decisions"`
	Decision  string    `json:"decision"` // the first decision's id
	Time      time.Time `json:"time"`     // the first decision's event time
}

// RuleDiff is how one rule fared with each set. Decision counts are per
// set; OnlyNew, OnlyOld and Both count groups.
type RuleDiff struct {
	Rule           string   `json:"rule"`
	Change         string   `json:"change"`
	NewDecisions   int64    `json:"new_decisions"`
	OldDecisions   int64    `json:"old_decisions"`
	OnlyNew        int64    `json:"only_new"`
	OnlyOld        int64    `json:"only_old"`
	Both           int64    `json:"both"`
	OnlyNewSamples []Firing `json:"only_new_samples"` // earliest first
	OnlyOldSamples []Firing `json:"only_old_samples"`
}

// AgentDiff is the same as RuleDiff for the groups counted for one agent,
// across rules.
type AgentDiff struct {
	Agent          string   `json:"agent"`
	NewDecisions   int64    `json:"new_decisions"`
	OldDecisions   int64    `json:"old_decisions"`
	OnlyNew        int64    `json:"only_new"`
	OnlyOld        int64    `json:"only_old"`
	Both           int64    `json:"both"`
	OnlyNewSamples []Firing `json:"only_new_samples"`
	OnlyOldSamples []Firing `json:"only_old_samples"`
}

// Differs reports whether the rule fired for a group with one set only.
func (d *RuleDiff) Differs() bool { return d.OnlyNew > 0 || d.OnlyOld > 0 }

// Compare runs newSet and oldSet over the events of src in one pass: both
// engines get the same batches. cfg.Decisions and cfg.Progress follow the
// new set. The error is as for RunSource; the Comparison then covers what
// was processed before it.
func Compare(ctx context.Context, newSet, oldSet *rules.Set, src Source, cfg Config) (*Comparison, error) {
	out, err := run(ctx, []*rules.Set{newSet, oldSet}, src, cfg)
	return compare(newSet, oldSet, out[0], out[1]), err
}

func compare(newSet, oldSet *rules.Set, nw, old outcome) *Comparison {
	c := &Comparison{New: nw.result, Old: old.result}
	agents := map[string]*AgentDiff{}
	agent := func(name string) *AgentDiff {
		a := agents[name]
		if a == nil {
			a = &AgentDiff{Agent: name}
			agents[name] = a
		}
		return a
	}
	diffRule := func(id, change string) {
		d := RuleDiff{Rule: id, Change: change}
		var onlyNew, onlyOld []Firing
		na, oa := nw.perRule[id], old.perRule[id]
		if na != nil {
			d.NewDecisions = na.fired
			for g, ng := range na.groups {
				f := firing(id, g, ng)
				a := agent(f.Agent)
				a.NewDecisions += ng.decisions
				if oa != nil && oa.groups[g] != nil {
					d.Both++
					a.Both++
					a.OldDecisions += oa.groups[g].decisions
					continue
				}
				d.OnlyNew++
				a.OnlyNew++
				onlyNew = append(onlyNew, f)
			}
		}
		if oa != nil {
			d.OldDecisions = oa.fired
			for g, og := range oa.groups {
				if na != nil && na.groups[g] != nil {
					continue // counted above
				}
				f := firing(id, g, og)
				a := agent(f.Agent)
				a.OldDecisions += og.decisions
				d.OnlyOld++
				a.OnlyOld++
				onlyOld = append(onlyOld, f)
			}
		}
		sortFirings(onlyNew)
		sortFirings(onlyOld)
		d.OnlyNewSamples, d.OnlyOldSamples = samples(onlyNew), samples(onlyOld)
		for _, f := range onlyNew {
			a := agents[f.Agent]
			a.OnlyNewSamples = append(a.OnlyNewSamples, f)
		}
		for _, f := range onlyOld {
			a := agents[f.Agent]
			a.OnlyOldSamples = append(a.OnlyOldSamples, f)
		}
		c.Rules = append(c.Rules, d)
	}
	for _, r := range newSet.Rules {
		change := RuleAdded
		if or := oldSet.Rule(r.ID); or != nil {
			change = RuleSame
			if or.Version != r.Version {
				change = RuleChanged
			}
		}
		diffRule(r.ID, change)
	}
	for _, r := range oldSet.Rules {
		if newSet.Rule(r.ID) == nil {
			diffRule(r.ID, RuleRemoved)
		}
	}
	for _, a := range agents {
		sortFirings(a.OnlyNewSamples)
		sortFirings(a.OnlyOldSamples)
		a.OnlyNewSamples, a.OnlyOldSamples = samples(a.OnlyNewSamples), samples(a.OnlyOldSamples)
		c.Agents = append(c.Agents, *a)
	}
	slices.SortFunc(c.Agents, func(x, y AgentDiff) int {
		return cmp.Or(
			cmp.Compare(y.OnlyNew+y.OnlyOld, x.OnlyNew+x.OnlyOld),
			cmp.Compare(y.Both, x.Both),
			cmp.Compare(x.Agent, y.Agent))
	})
	return c
}

func firing(rule, group string, g *groupAcc) Firing {
	return Firing{Rule: rule, Group: group, Agent: g.agent, Decisions: g.decisions, Decision: g.first, Time: g.time}
}

// sortFirings orders firings by first decision time, then rule and group.
func sortFirings(fs []Firing) {
	slices.SortFunc(fs, func(x, y Firing) int {
		return cmp.Or(x.Time.Compare(y.Time), cmp.Compare(x.Rule, y.Rule), cmp.Compare(x.Group, y.Group))
	})
}

// samples keeps the first MaxSamples firings, never nil.
func samples(fs []Firing) []Firing {
	return append([]Firing{}, fs[:min(len(fs), MaxSamples)]...)
}
