package main

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tripline/tripline/internal/backtest"
	"github.com/tripline/tripline/internal/investigate"
	"github.com/tripline/tripline/internal/textfmt"
	"github.com/tripline/tripline/rules"
)

type backtestFlags struct {
	rules    []string
	against  []string
	events   string
	out      string
	strict   bool
	json     bool
	progress bool
	lateness time.Duration

	// history input
	since, from, to string
	tenant          string
	chFlags
	sliceRows int64
}

// historyFlags are the flags that only apply to a history backtest.
var historyFlags = []string{"tenant", "clickhouse", "database", "username", "password-file", "slice-rows"}

func newBacktestCmd(a *app) *cobra.Command {
	var f backtestFlags
	c := &cobra.Command{
		Use:   "backtest --rules PATH... (--events FILE | --since DURATION | --from TIME)",
		Short: "Replay recorded events through rules, offline",
		Long: `Backtest replays recorded events through rules on event time, exactly as a
detector worker would evaluate them, and reports what each rule would have
decided: how often it fired, how many firings its cooldown held back, and
in how many distinct groups.

The events come from a JSON Lines file (--events: plain or gzip-compressed,
or - for stdin) or from the history in ClickHouse (--since, or --from and
--to: every event of the period, across all agents, in time order;
--tenant keeps one tenant's). History is read from --clickhouse (default
$CLICKHOUSE_ADDR, else 127.0.0.1:9000), database --database.

With --against, a second rule set runs over the same events in the same
pass, and the report says, per rule and per agent, which groups fire only
with --rules (the new rules), only with --against (the old ones), or with
both, with sample decisions: the loop for tuning a threshold.

Lines of a file that are not valid events are counted and the first few
reported with their line numbers; --strict stops at the first one instead.
With --out, every decision (of --rules) is written as JSON Lines
(gzip-compressed if the file name ends in .gz).`,
		Example: `  tripline rules backtest --rules rules/ --events last-week.jsonl.gz
  tripline rules backtest --rules rules/ --since 7d
  tripline rules backtest --rules rules/ --from 2026-11-01T00:00:00Z --to 2026-11-08T00:00:00Z --tenant acme
  tripline rules backtest --rules tuned/ --against rules/ --since 7d
  tripline rules backtest --rules rules/exfil.yaml --events - --out decisions.jsonl < events.jsonl
  tripline rules backtest --rules rules/ --events events.jsonl --json --strict`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.backtest(cmd, f)
		},
	}
	fl := c.Flags()
	fl.StringArrayVar(&f.rules, "rules", nil, "rule file or directory (repeatable)")
	fl.StringArrayVar(&f.against, "against", nil, "rule file or directory to compare --rules with (repeatable)")
	f.addEventFlags(c)
	fl.StringVar(&f.out, "out", "", "write every decision of --rules to this file as JSON Lines (.gz: compressed)")
	fl.BoolVar(&f.json, "json", false, "print the result as one JSON object")
	_ = c.MarkFlagRequired("rules")
	return c
}

// addEventFlags registers the flags that say which events are replayed (a
// file or the history) and how: shared by backtest and rules diff.
func (f *backtestFlags) addEventFlags(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.events, "events", "", "events file: JSON Lines, plain or .gz, or - for stdin")
	fl.StringVar(&f.since, "since", "", "replay the history of this long back from --to or now: 90m, 24h, 7d")
	fl.StringVar(&f.from, "from", "", "replay the history from this time, RFC 3339 (e.g. 2026-11-01T00:00:00Z)")
	fl.StringVar(&f.to, "to", "", "end of the history replayed (exclusive), RFC 3339 (default now)")
	fl.StringVar(&f.tenant, "tenant", "", "replay only this tenant's history (default: every tenant)")
	f.chFlags.add(fl)
	fl.Int64Var(&f.sliceRows, "slice-rows", backtest.DefaultSliceRows, "history events read and sorted at a time; two slices are in memory, a few hundred bytes an event")
	fl.BoolVar(&f.strict, "strict", false, "stop at the first malformed line of --events (exit status 1)")
	fl.BoolVar(&f.progress, "progress", false, "report progress on stderr even when it is not a terminal")
	fl.DurationVar(&f.lateness, "lateness", time.Minute, "how late an event may be, behind its group's newest, and still count")
}

// window checks the input flags and returns the history window, or a zero
// window for --events.
func (f *backtestFlags) window(cmd *cobra.Command, now time.Time) (from, to time.Time, err error) {
	changed := cmd.Flags().Changed
	fromHistory := f.since != "" || f.from != "" || f.to != ""
	switch {
	case f.events != "" && fromHistory:
		return from, to, usageError(errors.New("--events and --since/--from/--to exclude each other: replay a file or the history, not both"))
	case f.events == "" && !fromHistory:
		return from, to, usageError(errors.New("no events to replay: give --events FILE, or --since or --from to replay the history in ClickHouse"))
	case f.since != "" && f.from != "":
		return from, to, usageError(errors.New("--since and --from exclude each other"))
	case f.events != "":
		for _, name := range historyFlags {
			if changed(name) {
				return from, to, usageError(fmt.Errorf("--%s applies to the history (--since or --from), not to --events", name))
			}
		}
		return from, to, nil
	case changed("strict"):
		return from, to, usageError(errors.New("--strict applies to --events: the history holds valid events only"))
	case f.sliceRows <= 0:
		return from, to, usageError(fmt.Errorf("--slice-rows %d must be positive", f.sliceRows))
	}
	if f.since == "" && f.from == "" {
		return from, to, usageError(errors.New("--to needs --since or --from"))
	}
	to = now.UTC().Truncate(time.Millisecond)
	if f.to != "" {
		if to, err = time.Parse(time.RFC3339Nano, f.to); err != nil {
			return from, to, usageError(fmt.Errorf("--to %q is not an RFC 3339 time such as 2026-11-08T00:00:00Z", f.to))
		}
	}
	if f.since != "" {
		d, err := investigate.ParseSince(f.since)
		if err != nil {
			return from, to, usageError(fmt.Errorf("--%w", err))
		}
		from = to.Add(-d)
	} else if from, err = time.Parse(time.RFC3339Nano, f.from); err != nil {
		return from, to, usageError(fmt.Errorf("--from %q is not an RFC 3339 time such as 2026-11-01T00:00:00Z", f.from))
	}
	if !from.Before(to) {
		return from, to, usageError(fmt.Errorf("--from %s is not before --to %s", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339)))
	}
	return from.UTC(), to.UTC(), nil
}

func (a *app) backtest(cmd *cobra.Command, f backtestFlags) error {
	from, to, err := f.window(cmd, time.Now())
	if err != nil {
		return err
	}
	set, err := a.loadRules(f.rules)
	if err != nil {
		return err
	}
	var old *rules.Set
	if len(f.against) > 0 {
		if old, err = a.loadRules(f.against); err != nil {
			return err
		}
	}

	src, cfg, input, closeSrc, err := a.openEvents(cmd, &f, from, to)
	if err != nil {
		return err
	}
	defer closeSrc()
	var out *decisionFile
	if f.out != "" {
		if out, err = createDecisionFile(f.out); err != nil {
			return err
		}
		defer out.abort()
		cfg.Decisions = out
	}
	a.log.Debug().Str("input", input).Int("rules", len(set.Rules)).Msg("backtest started")

	var (
		res        *backtest.Result
		comparison *backtest.Comparison
	)
	if old == nil {
		res, err = backtest.RunSource(cmd.Context(), set, src, cfg)
	} else {
		comparison, err = backtest.Compare(cmd.Context(), set, old, src, cfg)
	}
	if err := a.replayError(&f, err); err != nil {
		return err
	}
	if out != nil {
		if err := out.close(); err != nil {
			return err
		}
	}
	if comparison != nil {
		if f.json {
			return writeComparisonJSON(a.stdout, set, old, comparison, f.tenant)
		}
		writeComparison(a.stdout, comparison, f.tenant)
		return nil
	}
	if f.json {
		return writeJSON(a.stdout, set, res, f.tenant)
	}
	writeTable(a.stdout, res, f.tenant)
	return nil
}

// openEvents opens the events f replays: the --events file, or the
// history between from and to. cfg is the backtest configuration that goes
// with them (lateness, input size, progress); closeSrc releases them.
func (a *app) openEvents(cmd *cobra.Command, f *backtestFlags, from, to time.Time) (src backtest.Source, cfg backtest.Config, input string, closeSrc func(), err error) {
	cfg.Engine.Lateness = f.lateness
	if f.events != "" {
		in, size, err := backtest.OpenFile(f.events, a.stdin)
		if err != nil {
			return nil, cfg, "", nil, err
		}
		cfg.Total = size
		src = backtest.NewFileSource(in, cfg.Limits, f.strict)
		input = f.events
		closeSrc = func() { in.Close() }
	} else {
		conn, err := f.connect()
		if err != nil {
			return nil, cfg, "", nil, err
		}
		hs, err := backtest.NewHistorySource(cmd.Context(), conn, backtest.HistoryQuery{
			Database: f.database, From: from, To: to, Tenant: f.tenant, SliceRows: f.sliceRows,
		})
		if err != nil {
			conn.Close()
			return nil, cfg, "", nil, fmt.Errorf("%w (ClickHouse at %s)", err, f.addr)
		}
		src = hs
		input = fmt.Sprintf("history at %s", f.addr)
		closeSrc = func() {
			hs.Close()
			conn.Close()
		}
	}
	if f.progress || a.tty {
		cfg.Progress = progressPrinter(a.stderr, a.tty)
	}
	return src, cfg, input, closeSrc, nil
}

// replayError reports the error a replay of f's events ended with: a
// malformed line in strict mode is a finding (exit code 1), a history
// error says which server it came from.
func (a *app) replayError(f *backtestFlags, err error) error {
	var me *backtest.MalformedError
	if errors.As(err, &me) {
		fmt.Fprintf(a.stderr, "%s: %v\n", f.events, me)
		return findings()
	}
	if err != nil && f.events == "" {
		return fmt.Errorf("%w (ClickHouse at %s, database %s)", err, f.addr, f.database)
	}
	return err
}

// decisionFile is the --out file, compressed when its name ends in .gz.
type decisionFile struct {
	f  *os.File
	zw *gzip.Writer
	w  io.Writer
}

func createDecisionFile(path string) (*decisionFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	d := &decisionFile{f: f, w: f}
	if strings.HasSuffix(path, ".gz") {
		d.zw = gzip.NewWriter(f)
		d.w = d.zw
	}
	return d, nil
}

func (d *decisionFile) Write(p []byte) (int, error) { return d.w.Write(p) }

func (d *decisionFile) close() error {
	var err error
	if d.zw != nil {
		err = d.zw.Close()
	}
	if cerr := d.f.Close(); err == nil {
		err = cerr
	}
	d.f = nil
	return err
}

// abort closes the file if close was not called (an error path).
func (d *decisionFile) abort() {
	if d.f != nil {
		d.f.Close()
	}
}

// progressPrinter reports progress on w: one line rewritten in place on a
// terminal, a line per report otherwise.
func progressPrinter(w io.Writer, tty bool) func(backtest.Progress) {
	return func(p backtest.Progress) {
		var line string
		if p.From.IsZero() { // a file
			line = fmt.Sprintf("%s events, %s lines, %s", group(p.Events), group(p.Lines), sizeOf(p.Bytes))
			if p.Total > 0 {
				line += fmt.Sprintf(" of %s (%.0f%%)", sizeOf(p.Total), 100*float64(p.Bytes)/float64(p.Total))
			}
		} else { // the history
			line = fmt.Sprintf("%s events", group(p.Events))
			if p.Expected > 0 {
				line += fmt.Sprintf(" of %s (%.0f%%)", group(p.Expected), 100*float64(p.Events+p.Duplicates)/float64(p.Expected))
			}
			if !p.Through.IsZero() {
				line += ", through " + p.Through.Format(time.RFC3339)
			}
		}
		line += fmt.Sprintf(", %s events/s", group(int64(p.EventsPerSec)))
		switch {
		case tty && p.Done:
			fmt.Fprintf(w, "\r\033[K%s\n", line)
		case tty:
			fmt.Fprintf(w, "\r\033[K%s", line)
		default:
			fmt.Fprintln(w, line)
		}
	}
}

// table prints rows as aligned columns, those from num on right-aligned
// (numbers).
func table(w io.Writer, rows [][]string, num int) {
	writeAligned(w, rows, func(c int) bool { return c >= num })
}

// writeAligned prints rows with textfmt.Align.
func writeAligned(w io.Writer, rows [][]string, right func(col int) bool) {
	var b strings.Builder
	textfmt.Align(&b, rows, right)
	_, _ = io.WriteString(w, b.String())
}

// writeTable prints the per-rule table and the totals.
func writeTable(w io.Writer, res *backtest.Result, tenant string) {
	rows := [][]string{{"RULE", "MODE", "ACTION", "FIRED", "SUPPRESSED", "EXCEPTED", "GROUPS"}}
	for _, r := range res.Rules {
		rows = append(rows, []string{r.Rule, r.Mode, r.Action, group(r.Fired), group(r.Suppressed), group(r.Excepted), group(r.Groups)})
	}
	table(w, rows, 3)
	fmt.Fprintln(w)
	writeExceptions(w, res.Rules)
	writeTotals(w, res, group(res.Decisions), tenant)
}

// writeExceptions lists each rule exception with the firings it held back:
// an exception that holds back nothing may be stale, one that holds back
// thousands may hide an attack.
func writeExceptions(w io.Writer, rs []backtest.RuleSummary) {
	n := 0
	for _, r := range rs {
		for _, x := range r.Exceptions {
			if n == 0 {
				fmt.Fprintln(w, "exceptions:")
			}
			n++
			fmt.Fprintf(w, "  %s  %s firings held back by %q (expires %s): %s\n",
				r.Rule, group(x.Hits), x.Match, x.Expires.Format("2006-01-02"), x.Comment)
		}
	}
	if n > 0 {
		fmt.Fprintln(w)
	}
}

// writeTotals prints the line of totals, the window read from the history
// and the malformed lines of a file.
func writeTotals(w io.Writer, res *backtest.Result, decisions, tenant string) {
	skipped := "malformed " + group(res.Malformed)
	if !res.From.IsZero() {
		skipped = "duplicates " + group(res.Duplicates)
	}
	fmt.Fprintf(w, "events %s  %s  late %s  too late %s  decisions %s  elapsed %s  events/s %s\n",
		group(res.Events), skipped, group(res.Stats.Late), group(res.Stats.TooLate),
		decisions, res.Elapsed.Round(time.Millisecond), group(int64(res.EventsPerSec)))
	if !res.From.IsZero() {
		who := "every tenant"
		if tenant != "" {
			who = "tenant " + tenant
		}
		fmt.Fprintf(w, "history %s to %s, %s", res.From.Format(time.RFC3339), res.To.Format(time.RFC3339), who)
		if res.Events > 0 {
			fmt.Fprintf(w, ": events %s to %s", res.First.Format(time.RFC3339), res.Last.Format(time.RFC3339))
		}
		fmt.Fprintln(w)
	}
	if len(res.Messages) > 0 {
		fmt.Fprintf(w, "\nmalformed lines (first %d of %s):\n", len(res.Messages), group(res.Malformed))
		for _, m := range res.Messages {
			fmt.Fprintf(w, "  %s\n", m)
		}
	}
}

// maxAgentRows is how many agents the comparison table shows.
const maxAgentRows = 20

// setNames are what a comparison's text calls the new and the old rule set.
type setNames struct{ new, old string }

// backtestSets are the sets of rules backtest --against.
var backtestSets = setNames{new: "--rules", old: "--against"}

// writeComparison prints what fired with each rule set: per rule, per
// agent, then sample groups that fired with one set only.
func writeComparison(w io.Writer, c *backtest.Comparison, tenant string) {
	writeComparisonOf(w, c, tenant, backtestSets)
}

// writeComparisonOf is writeComparison calling the sets by names.
func writeComparisonOf(w io.Writer, c *backtest.Comparison, tenant string, names setNames) {
	rows := [][]string{{"RULE", "CHANGE", "NEW", "OLD", "ONLY NEW", "ONLY OLD", "BOTH"}}
	for _, d := range c.Rules {
		rows = append(rows, []string{d.Rule, d.Change, group(d.NewDecisions), group(d.OldDecisions), group(d.OnlyNew), group(d.OnlyOld), group(d.Both)})
	}
	table(w, rows, 2)
	fmt.Fprintf(w, `
NEW and OLD count decisions with %s and with %s. ONLY NEW,
ONLY OLD and BOTH count the groups a rule fired for with one set or both.
`, names.new, names.old)
	if len(c.Agents) > 0 {
		fmt.Fprintln(w)
		rows = [][]string{{"AGENT", "NEW", "OLD", "ONLY NEW", "ONLY OLD", "BOTH"}}
		for _, a := range c.Agents[:min(len(c.Agents), maxAgentRows)] {
			rows = append(rows, []string{a.Agent, group(a.NewDecisions), group(a.OldDecisions), group(a.OnlyNew), group(a.OnlyOld), group(a.Both)})
		}
		table(w, rows, 1)
		if n := len(c.Agents) - maxAgentRows; n > 0 {
			fmt.Fprintf(w, "... and %s more agents (--json lists them all)\n", group(int64(n)))
		}
	}
	same := true
	for _, d := range c.Rules {
		writeSamples(w, d.Rule, names.new, d.OnlyNew, d.OnlyNewSamples)
		writeSamples(w, d.Rule, names.old, d.OnlyOld, d.OnlyOldSamples)
		same = same && !d.Differs()
	}
	if same {
		fmt.Fprintln(w, "\nNo rule fires for a group with one set only.")
	}
	fmt.Fprintln(w)
	writeTotals(w, c.New, fmt.Sprintf("%s new, %s old", group(c.New.Decisions), group(c.Old.Decisions)), tenant)
}

// writeSamples prints the first groups a rule fired for with one set only.
func writeSamples(w io.Writer, rule, set string, n int64, fs []backtest.Firing) {
	if n == 0 {
		return
	}
	noun := "groups"
	if n == 1 {
		noun = "group"
	}
	fmt.Fprintf(w, "\n%s fires only with %s for %s %s", rule, set, group(n), noun)
	if int64(len(fs)) < n {
		fmt.Fprintf(w, ", the first %d", len(fs))
	}
	fmt.Fprintln(w, ":")
	rows := [][]string{}
	for _, f := range fs {
		decs := "1 decision"
		if f.Decisions != 1 {
			decs = group(f.Decisions) + " decisions"
		}
		rows = append(rows, []string{"  " + f.Time.Format("2006-01-02T15:04:05.000Z07:00"), f.Group, f.Agent, f.Decision, decs})
	}
	table(w, rows, len(rows[0]))
}

// jsonResult is the --json output.
type jsonResult struct {
	SetHash         string                 `json:"set_hash"`
	Rules           []backtest.RuleSummary `json:"rules"`
	Lines           int64                  `json:"lines"`
	Bytes           int64                  `json:"bytes"`
	Events          int64                  `json:"events"`
	Malformed       int64                  `json:"malformed"`
	MalformedLines  []string               `json:"malformed_lines"`
	Decisions       int64                  `json:"decisions"`
	Late            int64                  `json:"late"`
	TooLate         int64                  `json:"too_late"`
	MissingGroup    int64                  `json:"missing_group"`
	RuleErrors      int64                  `json:"rule_errors"`
	Suppressed      int64                  `json:"suppressed"`
	Excepted        int64                  `json:"excepted"`
	Groups          int64                  `json:"groups"`
	Evicted         int64                  `json:"evicted"`
	FirstEvent      *time.Time             `json:"first_event,omitempty"`
	LastEvent       *time.Time             `json:"last_event,omitempty"`
	History         *jsonHistory           `json:"history,omitempty"`
	ElapsedSeconds  float64                `json:"elapsed_seconds"`
	EventsPerSecond float64                `json:"events_per_second"`
}

// jsonHistory is what a history backtest read.
type jsonHistory struct {
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	Tenant     string    `json:"tenant,omitempty"`
	Duplicates int64     `json:"duplicates"`
}

func newJSONResult(set *rules.Set, res *backtest.Result, tenant string) jsonResult {
	out := jsonResult{
		SetHash: set.Hash, Rules: res.Rules, Lines: res.Lines, Bytes: res.Bytes,
		Events: res.Events, Malformed: res.Malformed, MalformedLines: res.Messages,
		Decisions: res.Decisions, Late: res.Stats.Late, TooLate: res.Stats.TooLate,
		MissingGroup: res.Stats.MissingGroup, RuleErrors: res.Stats.RuleErrors,
		Suppressed: res.Stats.Suppressed, Excepted: res.Stats.Excepted,
		Groups: res.Stats.Groups, Evicted: res.Stats.Evicted,
		ElapsedSeconds: res.Elapsed.Seconds(), EventsPerSecond: res.EventsPerSec,
	}
	if out.MalformedLines == nil {
		out.MalformedLines = []string{}
	}
	if res.Events > 0 {
		out.FirstEvent, out.LastEvent = &res.First, &res.Last
	}
	if !res.From.IsZero() {
		out.History = &jsonHistory{From: res.From, To: res.To, Tenant: tenant, Duplicates: res.Duplicates}
	}
	return out
}

func writeJSON(w io.Writer, set *rules.Set, res *backtest.Result, tenant string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(newJSONResult(set, res, tenant))
}

// jsonComparison is the --json output with --against.
type jsonComparison struct {
	New    jsonResult           `json:"new"`
	Old    jsonResult           `json:"old"`
	Rules  []backtest.RuleDiff  `json:"rules"`
	Agents []backtest.AgentDiff `json:"agents"`
}

func newJSONComparison(newSet, oldSet *rules.Set, c *backtest.Comparison, tenant string) jsonComparison {
	out := jsonComparison{New: newJSONResult(newSet, c.New, tenant), Old: newJSONResult(oldSet, c.Old, tenant), Rules: c.Rules, Agents: c.Agents}
	if out.Agents == nil {
		out.Agents = []backtest.AgentDiff{}
	}
	return out
}

func writeComparisonJSON(w io.Writer, newSet, oldSet *rules.Set, c *backtest.Comparison, tenant string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(newJSONComparison(newSet, oldSet, c, tenant))
}

// group writes n with thousands separators: 1234567 → 1,234,567.
func group(n int64) string { return textfmt.Thousands(n) }

// sizeOf formats a byte count: 512 B, 1.5 MB.
func sizeOf(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
