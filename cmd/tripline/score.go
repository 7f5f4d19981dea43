package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tripline/tripline/internal/backtest"
	"github.com/tripline/tripline/internal/score"
	"github.com/tripline/tripline/internal/textfmt"
	"github.com/tripline/tripline/rules"
)

// builtinRules is the name that stands for the default rule pack.
const builtinRules = "builtin"

// defaultPackSources is the rule set rules score and rules diff use when
// given none (or "builtin"): the default pack shipped in the binary.
func defaultPackSources() []rules.Source { return rules.PackSources() }

// loadRulesOrPack loads rule files, or the default pack when paths is
// empty or the single name "builtin".
func (a *app) loadRulesOrPack(paths []string) (*rules.Set, error) {
	if len(paths) > 0 && !(len(paths) == 1 && paths[0] == builtinRules) {
		return a.loadRules(paths)
	}
	set, err := rules.Compile(defaultPackSources()...)
	if err != nil {
		return nil, fmt.Errorf("the built-in rule pack does not compile (a bug): %w", err)
	}
	return set, nil
}

type scoreFlags struct {
	rules     []string
	events    string
	labels    string
	json      bool
	verbose   bool
	minDetect float64
	maxFP     float64
	progress  bool
	lateness  time.Duration
}

func newScoreCmd(a *app) *cobra.Command {
	var f scoreFlags
	c := &cobra.Command{
		Use:   "score --events FILE --labels FILE [--rules PATH...]",
		Short: "Score rules against a labelled simulation: attacks caught, benign sessions disturbed",
		Long: `Score replays a labelled simulation (tripline simulate --out events.jsonl
--labels labels.jsonl) through rules, exactly as a detector worker would,
and reports which injected attacks they catch, how fast, and how many
benign sessions they disturb. Without --rules it scores the default rule
pack shipped in the binary.

Each line of --labels is one attack instance: its scenario, tenant,
sessions and the identities it uses (agent, credential, instance). Its
events are those of its sessions; every other session is benign. A
decision detects an attack when the event that fired it is one of the
attack's; a revoke or hold also detects it, whatever fired it, when its
scope covers the attack (the agent, instance, credential, principal or
task the label names or the attack's events carry, or one tool its agent
called in it) and it was issued between the attack's first and last
event. A decision fired by an event of another session is a decision on
that benign session.

Per scenario: instances; DETECTED, by any decision in any mode; WOULD
STOP, by a revoke or hold in any mode; STOPPED, by one in mode enforce;
the time to the first revoke or hold from the attack's first event
(median and maximum); the attack's calls up to and including it (median);
and the harmful calls (send, write, delete, execute) at or before it
(median and total; every one of them when nothing would stop the attack).
Then the benign sessions with a decision, with a shadow revoke or hold
(would-be false positives) and with an enforce one (false positives), and
per rule the benign sessions it fired on: the rules to tune first. -v
adds a line per attack; --json prints everything as one object.

Times are event time, not wall-clock time: a score is deterministic, and
the same files always give the same score. Calls are counted in the order
of the events file.

Gates for CI: --min-detect fails (exit status 1) when a scenario's
detected fraction is below it, --max-fp when the fraction of benign
sessions revoked or held in mode enforce is above it; the reasons go to
stderr. By default nothing fails.`,
		Example: `  tripline simulate --out events.jsonl --labels labels.jsonl
  tripline rules score --events events.jsonl --labels labels.jsonl
  tripline rules score --events events.jsonl.gz --labels labels.jsonl --rules tuned/ -v
  tripline rules score --events events.jsonl --labels labels.jsonl --min-detect 1 --max-fp 0.01
  tripline rules score --events events.jsonl --labels labels.jsonl --json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.score(cmd, f)
		},
	}
	fl := c.Flags()
	fl.StringArrayVar(&f.rules, "rules", nil, `rule file or directory (repeatable; default: the built-in pack, also named "builtin")`)
	fl.StringVar(&f.events, "events", "", "events file: JSON Lines, plain or .gz, or - for stdin")
	fl.StringVar(&f.labels, "labels", "", "labels file: JSON Lines, one attack instance a line")
	fl.BoolVar(&f.json, "json", false, "print the score as one JSON object")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "also print a line per attack instance")
	fl.Float64Var(&f.minDetect, "min-detect", 0, "fail when a scenario's detected fraction is below this (0 to 1; 0: report only)")
	fl.Float64Var(&f.maxFP, "max-fp", 1, "fail when the fraction of benign sessions revoked or held in mode enforce is above this (0 to 1; 1: report only)")
	fl.BoolVar(&f.progress, "progress", false, "report progress on stderr even when it is not a terminal")
	fl.DurationVar(&f.lateness, "lateness", time.Minute, "how late an event may be, behind its group's newest, and still count")
	_ = c.MarkFlagRequired("events")
	_ = c.MarkFlagRequired("labels")
	return c
}

func (a *app) score(cmd *cobra.Command, f scoreFlags) error {
	switch {
	case f.minDetect < 0 || f.minDetect > 1:
		return usageError(fmt.Errorf("--min-detect %g is not a fraction between 0 and 1 (1 means every instance)", f.minDetect))
	case f.maxFP < 0 || f.maxFP > 1:
		return usageError(fmt.Errorf("--max-fp %g is not a fraction between 0 and 1 (0.01 means 1%% of benign sessions)", f.maxFP))
	case f.events == "-" && f.labels == "-":
		return usageError(errors.New("--events and --labels cannot both be stdin"))
	}
	set, err := a.loadRulesOrPack(f.rules)
	if err != nil {
		return err
	}
	labels, err := a.readLabels(f.labels)
	if err != nil {
		return err
	}
	in, size, err := backtest.OpenFile(f.events, a.stdin)
	if err != nil {
		return err
	}
	defer in.Close()
	cfg := score.Config{Total: size}
	cfg.Engine.Lateness = f.lateness
	if f.progress || a.tty {
		cfg.Progress = progressPrinter(a.stderr, a.tty)
	}
	rep, err := score.Run(cmd.Context(), set, backtest.NewFileSource(in, backtest.Config{}.Limits, false), labels, cfg)
	if err != nil {
		return err
	}
	gates := score.Gates{MinDetect: f.minDetect, MaxFP: f.maxFP}
	failures := rep.Check(gates)
	if f.json {
		if err := writeScoreJSON(a.stdout, rep, gates, failures); err != nil {
			return err
		}
	} else {
		writeScore(a.stdout, rep, f.verbose)
	}
	if len(failures) > 0 {
		for _, msg := range failures {
			fmt.Fprintf(a.stderr, "gate failed: %s\n", msg)
		}
		return findings()
	}
	return nil
}

func (a *app) readLabels(path string) ([]score.Label, error) {
	var r io.Reader = a.stdin
	if path != "-" {
		fh, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		r = fh
	}
	labels, err := score.ReadLabels(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return labels, nil
}

// writeScore prints the score as tables.
func writeScore(w io.Writer, r *score.Report, verbose bool) {
	var b strings.Builder
	numeric := func(first, last int) func(int) bool {
		return func(i int) bool { return i >= first && i <= last }
	}

	rows := [][]string{{"SCENARIO", "INSTANCES", "DETECTED", "WOULD STOP", "STOPPED", "TIME TO STOP", "MAX", "CALLS", "HARMFUL THROUGH", "TOTAL", "RULES"}}
	unseen := 0
	for _, s := range r.Scenarios {
		unseen += s.Unseen
		tts, ttsMax, calls := "-", "-", "-"
		if s.WouldStop > 0 {
			tts, ttsMax, calls = duration(s.TimeToStopMedian), duration(s.TimeToStopMax), number(s.CallsToStop)
		}
		rows = append(rows, []string{
			s.Scenario, itoa(s.Instances), fraction(s.Detected, s.Instances), fraction(s.WouldStop, s.Instances), fraction(s.Stopped, s.Instances),
			tts, ttsMax, calls, number(s.HarmfulMedian), group(s.HarmfulTotal), ruleCounts(s.Rules),
		})
	}
	if len(r.Scenarios) == 0 {
		b.WriteString("No labelled attacks.\n")
	} else {
		textfmt.Align(&b, rows, numeric(1, 9))
		b.WriteString(`
TIME TO STOP (median) and MAX: event time from an attack's first event to
the first revoke or hold, any mode. CALLS: the attack's calls up to and
including it (median). HARMFUL THROUGH: send, write, delete and execute
calls at or before it (median; TOTAL over all instances).
`)
		if unseen > 0 {
			fmt.Fprintf(&b, "%s labelled %s no event in the events file: counted as not detected.\n", plural(int64(unseen), "instance"), hasHave(unseen))
		}
	}

	if verbose && len(r.Attacks) > 0 {
		b.WriteString("\n")
		rows = [][]string{{"ATTACK", "SCENARIO", "TENANT", "EVENTS", "DETECTED", "STOP", "AFTER", "CALLS", "HARMFUL THROUGH", "RULES"}}
		for _, a := range r.Attacks {
			stop, after, calls := "-", "-", "-"
			if a.Stop != nil {
				stop = fmt.Sprintf("%s %s (%s, by %s)", a.Stop.Rule, a.Stop.Action, a.Stop.Mode, a.Stop.By)
				after, calls = duration(a.Stop.After), group(a.Stop.Calls)
			}
			rows = append(rows, []string{
				a.ID, a.Scenario, a.Tenant, group(a.Events), yesNo(a.Detected), stop, after, calls,
				fmt.Sprintf("%s of %s", group(a.HarmfulThrough), group(a.Harmful)), textfmt.OrDash(strings.Join(a.Rules, ", ")),
			})
		}
		textfmt.Align(&b, rows, func(i int) bool { return i == 3 || i == 6 || i == 7 || i == 8 })
	}

	bn := r.Benign
	b.WriteString("\n")
	benignRows := [][]string{
		{"BENIGN SESSIONS", "SESSIONS", "SHARE", ""},
		{"all", group(bn.Sessions), "", ""},
		{"with a decision", group(bn.WithDecision), score.Percent(bn.DecisionRate), ""},
		{"with a shadow revoke or hold", group(bn.WithShadowStop), score.Percent(bn.ShadowStopRate), "would-be false positives"},
		{"with an enforce revoke or hold", group(bn.WithEnforceStop), score.Percent(bn.FalsePositiveRate), "false positives"},
	}
	if bn.Collateral > 0 {
		benignRows = append(benignRows, []string{"stopped with an attack", group(bn.Collateral), "", "its leaked credential or instance was revoked"})
	}
	textfmt.Align(&b, benignRows, numeric(1, 2))
	if bn.NoSession > 0 {
		fmt.Fprintf(&b, "%s fired by events without a session, outside any attack.\n", plural(bn.NoSession, "decision"))
	}

	b.WriteString("\n")
	rows = [][]string{{"RULE", "MODE", "ACTION", "DECISIONS", "ATTACKS", "BENIGN SESSIONS", "BENIGN DECISIONS", "E.G."}}
	for _, ru := range r.Rules {
		rows = append(rows, []string{
			ru.Rule, ru.Mode, ru.Action, group(ru.Decisions), itoa(ru.Attacks), group(ru.BenignSessions), group(ru.BenignDecisions),
			textfmt.OrDash(strings.Join(ru.BenignSamples[:min(len(ru.BenignSamples), 2)], " ")),
		})
	}
	textfmt.Align(&b, rows, numeric(3, 6))

	fmt.Fprintf(&b, "\nscenarios fully detected %d/%d; false positives %s of benign sessions (%s of %s revoked or held in mode enforce)\n",
		r.ScenariosDetected, len(r.Scenarios), score.Percent(bn.FalsePositiveRate), group(bn.WithEnforceStop), group(bn.Sessions))
	fmt.Fprintf(&b, "events %s  attack events %s  malformed %s  decisions %s  elapsed %s  events/s %s\n",
		group(r.Events), group(r.AttackEvents), group(r.Malformed), group(r.Decisions),
		r.Elapsed.Round(time.Millisecond), group(int64(r.EventsPerSec)))
	if len(r.MalformedLines) > 0 {
		fmt.Fprintf(&b, "\nmalformed lines (first %d of %s):\n", len(r.MalformedLines), group(r.Malformed))
		for _, m := range r.MalformedLines {
			fmt.Fprintf(&b, "  %s\n", m)
		}
	}
	io.WriteString(w, b.String())
}

// scoreJSON is the --json output of rules score.
type scoreJSON struct {
	*score.Report
	Gates           scoreGatesJSON `json:"gates"`
	ElapsedSeconds  float64        `json:"elapsed_seconds"`
	EventsPerSecond float64        `json:"events_per_second"`
}

type scoreGatesJSON struct {
	MinDetect float64  `json:"min_detect"`
	MaxFP     float64  `json:"max_fp"`
	Passed    bool     `json:"passed"`
	Failures  []string `json:"failures"`
}

func writeScoreJSON(w io.Writer, r *score.Report, g score.Gates, failures []string) error {
	out := scoreJSON{
		Report:          r,
		Gates:           scoreGatesJSON{MinDetect: g.MinDetect, MaxFP: g.MaxFP, Passed: len(failures) == 0, Failures: append([]string{}, failures...)},
		ElapsedSeconds:  r.Elapsed.Seconds(),
		EventsPerSecond: r.EventsPerSec,
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// duration writes an event-time duration to the millisecond: 1.5s, 2m3s.
func duration(d score.Duration) string {
	return time.Duration(d).Round(time.Millisecond).String()
}

// number writes a median: 3, 2.5.
func number(f float64) string {
	if f == float64(int64(f)) {
		return group(int64(f))
	}
	return fmt.Sprintf("%.1f", f)
}

func fraction(n, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%d (%s)", n, score.Percent(float64(n)/float64(of)))
}

func ruleCounts(rs []score.RuleCount) string {
	if len(rs) == 0 {
		return "-"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%s (%d)", r.Rule, r.Instances)
	}
	return strings.Join(parts, ", ")
}

func itoa(n int) string { return group(int64(n)) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return group(n) + " " + noun + "s"
}

func hasHave(n int) string {
	if n == 1 {
		return "has"
	}
	return "have"
}
