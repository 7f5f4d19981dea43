package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/tripline/tripline/internal/detect"
	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/internal/ruletest"
	"github.com/tripline/tripline/internal/textfmt"
	"github.com/tripline/tripline/rules"
)

// The rule-set commands that talk to a running engine: push, status, log,
// rollback. See internal/detect (ruleset.go) for the protocol.

const rulesPushHelp = `
A push is transactional. The set is compiled and its tests run here first;
then it is proposed to every live detector worker through the ` + "tl_rules" + ` KV
bucket, each worker compiles it and reports; only when all of them accept
it is it committed (a compare-and-set on the revision the push started
from, so two pushes cannot overwrite each other), and each worker swaps it
in between two batches, keeping the windows, baselines and cooldowns of the
rules and aggregates that did not change. If any worker refuses it, nothing
changes anywhere; if a worker cannot apply a committed set, the previous set
is committed again. Each commit is a revision of the bucket's "active" key:
'tripline rules log' lists them, and the history role stores them in
ClickHouse (rule_changes).
`

type rulesPushFlags struct {
	nats    opsNATSFlags
	as      string
	comment string
	timeout time.Duration
}

func (f *rulesPushFlags) add(c *cobra.Command) {
	f.nats.add(c)
	c.Flags().StringVar(&f.as, "as", "", "who is changing the rules, for the change log (default $USER)")
	c.Flags().StringVarP(&f.comment, "comment", "m", "", "why: kept in the change log (required)")
	c.Flags().DurationVar(&f.timeout, "timeout", 30*time.Second, "how long each phase waits for the workers")
}

func (f *rulesPushFlags) author() (string, error) {
	name := f.as
	if name == "" {
		name = os.Getenv("USER")
	}
	if name == "" {
		return "", usageError(errors.New("no author: pass --as NAME ($USER is not set)"))
	}
	if strings.TrimSpace(f.comment) == "" {
		return "", usageError(errors.New("--comment is required: say why the rules change"))
	}
	return name, nil
}

func newRulesPushCmd(a *app) *cobra.Command {
	var f rulesPushFlags
	c := &cobra.Command{
		Use:   "push PATH...",
		Short: "Validate a rule set and swap it in on every detector worker",
		Long: `Push compiles the rule files (PATH: files or directories; "builtin" for
the default pack), runs their tests, shows what changes against the set the
engine runs, and distributes the set to every detector worker.
` + rulesPushHelp + opsNATSHelp,
		Example: `  tripline rules push rules/ -m "raise bulk-read for bigdata (SOC-42)"
  tripline rules push builtin -m "back to the default pack"`,
		Args: args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, paths []string) error {
			author, err := f.author()
			if err != nil {
				return err
			}
			srcs, set, err := a.loadRuleSources(paths)
			if err != nil {
				return err
			}
			if rep := ruletest.Run(set, ruletest.Config{}); !rep.OK() {
				fmt.Fprintf(a.stderr, "rule tests fail (%s): run tripline rules test %s\n", rep.Summary(), strings.Join(paths, " "))
				return findings()
			}
			return a.pushRules(cmd, f, detect.NewBundle(srcs, set, author, f.comment))
		},
	}
	f.add(c)
	return c
}

// loadRuleSources reads and compiles rule paths ("builtin": the default
// pack), printing compile errors as loadRules does.
func (a *app) loadRuleSources(paths []string) ([]rules.Source, *rules.Set, error) {
	if len(paths) == 1 && paths[0] == builtinRules {
		set, err := a.loadRulesOrPack(nil)
		return defaultPackSources(), set, err
	}
	srcs, err := rules.ReadSources(paths...)
	if err != nil {
		return nil, nil, err
	}
	set, err := a.loadRules(paths)
	return srcs, set, err
}

func (a *app) pushRules(cmd *cobra.Command, f rulesPushFlags, b *detect.Bundle) error {
	conn, err := a.opsConnect(cmd, f.nats)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx := cmd.Context()
	cur, err := runningSet(ctx, conn.js)
	if err != nil {
		return err
	}
	if cur != nil {
		next, err := b.Compile()
		if err != nil {
			return err
		}
		d := rules.Diff(cur, next)
		if d.Empty() {
			fmt.Fprintln(a.stdout, "no change: the engine runs this rule set")
			return nil
		}
		fmt.Fprintln(a.stdout, strings.TrimRight(d.String(), "\n"))
	}
	res, err := detect.PushRules(ctx, conn.js, b, detect.PushOptions{
		Timeout:  f.timeout,
		Progress: func(format string, args ...any) { fmt.Fprintf(a.stderr, format+"\n", args...) },
	})
	if err != nil {
		var perr *detect.PushError
		if errors.As(err, &perr) {
			fmt.Fprintln(a.stderr, err)
			return findings()
		}
		return err
	}
	if res.Unchanged {
		fmt.Fprintf(a.stdout, "no change: revision %d already holds set %s\n", res.Revision, b.Hash)
		return nil
	}
	fmt.Fprintf(a.stdout, "revision %d: set %s runs on %d worker(s) (all confirmed %s after the commit)\n",
		res.Revision, b.Hash, len(res.Workers), res.Applied.Round(100*time.Microsecond))
	return nil
}

// runningSet is the set the engine runs, to diff a push against: the
// bucket's active set, or, before the first push, the built-in pack when
// the workers report running it (nil when neither is known).
func runningSet(ctx context.Context, js jetstream.JetStream) (*rules.Set, error) {
	hist, err := detect.RuleHistory(ctx, js)
	if err != nil {
		return nil, err
	}
	if len(hist) > 0 {
		return hist[len(hist)-1].Bundle.Compile()
	}
	sts, err := detect.RuleStatuses(ctx, js)
	if err != nil || len(sts) == 0 {
		return nil, err
	}
	pack, err := rules.Compile(defaultPackSources()...)
	if err != nil {
		return nil, err
	}
	live := 0
	for _, st := range sts {
		if !st.Live {
			continue
		}
		if st.Hash != pack.Hash {
			return nil, nil // the workers run their own files
		}
		live++
	}
	if live == 0 {
		return nil, nil
	}
	return pack, nil
}

func newRulesStatusCmd(a *app) *cobra.Command {
	var nf opsNATSFlags
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the rule set the engine runs, worker by worker",
		Long: `Status shows the active rule set (its revision in the tl_rules bucket,
hash, author, time and comment) and, for every detector worker that has
reported, the revision and hash it runs and any set it refused. A worker
running revision 0 runs its configured files: nothing was pushed since it
started, or no set was ever pushed.` + opsNATSHelp,
		Example: `  tripline rules status
  tripline rules status --config /etc/tripline/tripline.yaml`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := a.opsConnect(cmd, nf)
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx := cmd.Context()
			hist, err := detect.RuleHistory(ctx, conn.js)
			if err != nil {
				return err
			}
			if len(hist) == 0 {
				fmt.Fprintln(a.stdout, "active: none pushed; workers run their configured rule files")
			} else {
				h := hist[len(hist)-1]
				fmt.Fprintf(a.stdout, "active: revision %d, set %s, by %s at %s: %s\n", h.Revision, h.Bundle.Hash,
					h.Bundle.Author, textfmt.Time(h.Bundle.Time), h.Bundle.Comment)
			}
			sts, err := detect.RuleStatuses(ctx, conn.js)
			if err != nil {
				return err
			}
			rows := [][]string{{"WORKER", "REVISION", "SET", "REPORTED", "PROBLEM"}}
			for _, s := range sts {
				problem := s.ActiveError
				switch {
				case !s.Live:
					problem = "not running (last report kept)"
				case problem == "" && s.ProposalError != "":
					problem = "refused proposal " + strconv.FormatUint(s.Proposal, 10) + ": " + s.ProposalError
				}
				rows = append(rows, []string{s.Worker, strconv.FormatUint(s.Active, 10), s.Hash, textfmt.Time(s.Time), textfmt.OrDash(problem)})
			}
			opsTable(a.stdout, rows, 1)
			return nil
		},
	}
	nf.add(c)
	return c
}

func newRulesLogCmd(a *app) *cobra.Command {
	var (
		nf     opsNATSFlags
		diffs  bool
		fromCH bool
		ch     chFlags
		limit  int
	)
	c := &cobra.Command{
		Use:   "log",
		Short: "List the rule-set changes the engine keeps (who, when, why, what)",
		Long: `Log lists the committed rule sets still in the tl_rules bucket (the last
64), oldest first: revision, time, author, set hash, rule count and comment.
With --diff, each is followed by what changed against the one before it.

The history role keeps every change in ClickHouse (table rule_changes), for
as long as the history lasts: --history reads it from there instead, newest
first (--limit rows), each with its diff. ClickHouse is --clickhouse
(default $CLICKHOUSE_ADDR, else 127.0.0.1:9000), database --database.` + opsNATSHelp,
		Example: `  tripline rules log
  tripline rules log --diff
  tripline rules log --history --limit 100`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fromCH {
				return a.ruleChangesFromHistory(cmd, &ch, limit)
			}
			conn, err := a.opsConnect(cmd, nf)
			if err != nil {
				return err
			}
			defer conn.Close()
			hist, err := detect.RuleHistory(cmd.Context(), conn.js)
			if err != nil {
				return err
			}
			if len(hist) == 0 {
				fmt.Fprintln(a.stdout, "no rule set was pushed")
				return nil
			}
			var prev *rules.Set
			rows := [][]string{{"REVISION", "TIME", "AUTHOR", "SET", "RULES", "COMMENT"}}
			for _, h := range hist {
				set, err := h.Bundle.Compile()
				n := "?"
				if err == nil {
					n = strconv.Itoa(len(set.Rules))
				}
				row := []string{strconv.FormatUint(h.Revision, 10), textfmt.Time(h.Bundle.Time), h.Bundle.Author, h.Bundle.Hash, n, h.Bundle.Comment}
				if !diffs {
					rows = append(rows, row)
					continue
				}
				fmt.Fprintln(a.stdout, strings.Join(row, "  "))
				switch {
				case err != nil:
					fmt.Fprintf(a.stdout, "    (does not compile with this version: %v)\n", err)
				case prev != nil:
					fmt.Fprintln(a.stdout, indent(strings.TrimRight(rules.Diff(prev, set).String(), "\n"), "    "))
				}
				prev = set
			}
			if !diffs {
				opsTable(a.stdout, rows, 0, 4)
			}
			return nil
		},
	}
	nf.add(c)
	c.Flags().BoolVar(&diffs, "diff", false, "show what each change changed")
	c.Flags().BoolVar(&fromCH, "history", false, "read the change log from ClickHouse (every change the history kept) instead of NATS")
	c.Flags().IntVar(&limit, "limit", 50, "with --history: most changes to show")
	ch.add(c.Flags())
	return c
}

// ruleChangesFromHistory prints the rule_changes table, newest first.
func (a *app) ruleChangesFromHistory(cmd *cobra.Command, ch *chFlags, limit int) error {
	if limit < 1 || limit > 10000 {
		return usageError(errors.New("--limit must be between 1 and 10000"))
	}
	conn, err := ch.connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	s := &history.Schema{Conn: conn, Database: ch.database}
	cs, err := s.RuleChanges(cmd.Context(), limit)
	if err != nil {
		return fmt.Errorf("%w (ClickHouse at %s, database %s)", err, ch.addr, ch.database)
	}
	if len(cs) == 0 {
		fmt.Fprintln(a.stdout, "no rule change in the history")
		return nil
	}
	for _, c := range cs {
		fmt.Fprintf(a.stdout, "%d  %s  %s  %s  %d rules  %s\n", c.Revision, textfmt.Time(c.Time), c.Author, c.Hash, c.Rules, c.Comment)
		fmt.Fprintln(a.stdout, indent(strings.TrimRight(c.Diff, "\n"), "    "))
	}
	return nil
}

func newRulesRollbackCmd(a *app) *cobra.Command {
	var (
		f  rulesPushFlags
		to uint64
	)
	c := &cobra.Command{
		Use:   "rollback",
		Short: "Push an earlier rule set again (by default the one before the active one)",
		Long: `Rollback takes an earlier committed rule set from the tl_rules bucket
(--to REVISION, default the one before the active set) and pushes it again,
as a new revision with its own author and comment: the log keeps both.
` + rulesPushHelp + opsNATSHelp,
		Example: `  tripline rules rollback -m "bulk-read too noisy after SOC-42"
  tripline rules rollback --to 12 -m "back to last week's set"`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			author, err := f.author()
			if err != nil {
				return err
			}
			conn, err := a.opsConnect(cmd, f.nats)
			if err != nil {
				return err
			}
			hist, err := detect.RuleHistory(cmd.Context(), conn.js)
			conn.Close()
			if err != nil {
				return err
			}
			var target *detect.RuleRevision
			switch {
			case to != 0:
				for i := range hist {
					if hist[i].Revision == to {
						target = &hist[i]
					}
				}
				if target == nil {
					return usageError(fmt.Errorf("--to %d: no such revision in the bucket (tripline rules log lists them)", to))
				}
			case len(hist) < 2:
				return usageError(errors.New("no earlier rule set in the bucket to roll back to"))
			default:
				target = &hist[len(hist)-2]
			}
			b := *target.Bundle
			b.Author, b.Time, b.Proposal, b.Previous = author, time.Now().UTC(), 0, ""
			b.Comment = fmt.Sprintf("rollback to revision %d: %s", target.Revision, f.comment)
			return a.pushRules(cmd, f, &b)
		},
	}
	f.add(c)
	c.Flags().Uint64Var(&to, "to", 0, "the revision to return to (default: the one before the active set)")
	return c
}
