package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tripline/tripline/internal/backtest"
	"github.com/tripline/tripline/rules"
)

// diffSets are what rules diff calls its two sets in the impact report.
var diffSets = setNames{new: "the new rules", old: "the old rules"}

func newRulesDiffCmd(a *app) *cobra.Command {
	var (
		f        backtestFlags
		exitCode bool
	)
	c := &cobra.Command{
		Use:   "diff OLD NEW [--events FILE | --since DURATION | --from TIME [--to TIME]]",
		Short: "Show what changes between two rule sets, and what it would change in a backtest",
		Long: `Diff compares two rule sets rule by rule, by id: the rules only in NEW
(+), only in OLD (-), and those whose version changed (~) with every field
that changed, old → new: mode, action, scope, severity, condition, match,
group, each param, overrides (by tenant and agent), exceptions (by match:
added, removed, new expiry or comment), cooldown, revoke_for,
hold_timeout, on_timeout, tags and description. Rules of the same version
are only counted. Tests, comments and rationale are not part of a rule's
version and are not compared; a rule whose version changed with no field
listed was only respelled (a default written out, 120 as 120.0).

OLD and NEW are a rule file or a directory each, or "builtin" for the
default rule pack shipped in the binary (write ./builtin for a path of
that name).

With --events, or --since or --from (and --to) to read the history in
ClickHouse, both sets are also replayed over the same events in one pass
and compared as rules backtest --against does: per rule and per agent,
the groups that fire with the new rules only, with the old ones only, or
with both, and sample decisions of each — what would fire more or less,
and on which agents. The event flags are those of rules backtest.

The exit status is 0 whatever the difference; 1 for invalid rule files
(or, with --strict, a malformed line of --events); 2 for bad arguments or
unreadable files. With --exit-code, as in git diff, it is also 1 when the
sets differ.`,
		Example: `  tripline rules diff builtin rules/
  tripline rules diff rules/ tuned/ --events last-week.jsonl.gz
  tripline rules diff rules/ tuned/ --since 7d --tenant acme
  tripline rules diff deployed.yaml candidate.yaml --exit-code --json`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.rulesDiff(cmd, argv[0], argv[1], f, exitCode)
		},
	}
	f.addEventFlags(c)
	fl := c.Flags()
	fl.BoolVar(&f.json, "json", false, "print the diff (and the impact) as one JSON object")
	fl.BoolVar(&exitCode, "exit-code", false, "exit with status 1 when the rule sets differ")
	return c
}

// rulesDiffJSON is the --json output of rules diff.
type rulesDiffJSON struct {
	Old    string          `json:"old"`
	New    string          `json:"new"`
	Diff   *rules.SetDiff  `json:"diff"`
	Impact *jsonComparison `json:"impact,omitempty"`
}

func (a *app) rulesDiff(cmd *cobra.Command, oldPath, newPath string, f backtestFlags, exitCode bool) error {
	impact := f.events != "" || f.since != "" || f.from != "" || f.to != ""
	var from, to time.Time
	if impact {
		var err error
		if from, to, err = f.window(cmd, time.Now()); err != nil {
			return err
		}
	} else {
		for _, name := range append([]string{"strict", "progress", "lateness"}, historyFlags...) {
			if cmd.Flags().Changed(name) {
				return usageError(fmt.Errorf("--%s applies to the backtest impact: give --events FILE, or --since or --from", name))
			}
		}
	}
	oldSet, err := a.loadRulesOrPack([]string{oldPath})
	if err != nil {
		return err
	}
	newSet, err := a.loadRulesOrPack([]string{newPath})
	if err != nil {
		return err
	}
	d := rules.Diff(oldSet, newSet)

	var comparison *backtest.Comparison
	if impact {
		src, cfg, input, closeSrc, err := a.openEvents(cmd, &f, from, to)
		if err != nil {
			return err
		}
		defer closeSrc()
		a.log.Debug().Str("input", input).Msg("rules diff: backtest started")
		comparison, err = backtest.Compare(cmd.Context(), newSet, oldSet, src, cfg)
		if err := a.replayError(&f, err); err != nil {
			return err
		}
	}

	if f.json {
		out := rulesDiffJSON{Old: oldPath, New: newPath, Diff: d}
		if comparison != nil {
			c := newJSONComparison(newSet, oldSet, comparison, f.tenant)
			out.Impact = &c
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		writeRulesDiff(a.stdout, oldPath, newPath, oldSet, newSet, d)
		if comparison != nil {
			what := f.events
			if what == "" {
				what = "the history"
			}
			fmt.Fprintf(a.stdout, "\nBacktest on %s:\n\n", what)
			writeComparisonOf(a.stdout, comparison, f.tenant, diffSets)
		}
	}
	if exitCode && !d.Empty() {
		return findings()
	}
	return nil
}

// writeRulesDiff prints the two sets and the diff between them.
func writeRulesDiff(w io.Writer, oldPath, newPath string, oldSet, newSet *rules.Set, d *rules.SetDiff) {
	var b strings.Builder
	fmt.Fprintf(&b, "old: %s (set %s, %s)\n", oldPath, oldSet.Hash, plural(int64(len(oldSet.Rules)), "rule"))
	fmt.Fprintf(&b, "new: %s (set %s, %s)\n\n", newPath, newSet.Hash, plural(int64(len(newSet.Rules)), "rule"))
	b.WriteString(d.String())
	io.WriteString(w, b.String())
}
