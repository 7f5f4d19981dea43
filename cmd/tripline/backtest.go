package main

import (
	"github.com/tripline/tripline/internal/textfmt"

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
	"github.com/tripline/tripline/rules"
)

type backtestFlags struct {
	rules    []string
	events   string
	out      string
	strict   bool
	json     bool
	progress bool
	lateness time.Duration
}

func newBacktestCmd(a *app) *cobra.Command {
	var f backtestFlags
	c := &cobra.Command{
		Use:   "backtest --rules PATH... --events FILE",
		Short: "Replay recorded events through rules, offline",
		Long: `Backtest replays a JSON Lines file of events (plain or gzip-compressed,
or - for stdin) through rules on event time, exactly as a detector worker
would evaluate them, and reports what each rule would have decided: how
often it fired, how many firings its cooldown held back, and in how many
distinct groups.

Lines that are not valid events are counted and the first few reported
with their line numbers; --strict stops at the first one instead. With
--out, every decision is written as JSON Lines (gzip-compressed if the
file name ends in .gz).`,
		Example: `  tripline rules backtest --rules rules/ --events last-week.jsonl.gz
  tripline rules backtest --rules rules/exfil.yaml --events - --out decisions.jsonl < events.jsonl
  tripline rules backtest --rules rules/ --events events.jsonl --json --strict`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.backtest(cmd, f)
		},
	}
	fl := c.Flags()
	fl.StringArrayVar(&f.rules, "rules", nil, "rule file or directory (repeatable)")
	fl.StringVar(&f.events, "events", "", "events file: JSON Lines, plain or .gz, or - for stdin")
	fl.StringVar(&f.out, "out", "", "write every decision to this file as JSON Lines (.gz: compressed)")
	fl.BoolVar(&f.strict, "strict", false, "stop at the first malformed line (exit status 1)")
	fl.BoolVar(&f.json, "json", false, "print the result as one JSON object")
	fl.BoolVar(&f.progress, "progress", false, "report progress on stderr even when it is not a terminal")
	fl.DurationVar(&f.lateness, "lateness", time.Minute, "how late an event may be, behind its group's newest, and still count")
	_ = c.MarkFlagRequired("rules")
	_ = c.MarkFlagRequired("events")
	return c
}

func (a *app) backtest(cmd *cobra.Command, f backtestFlags) error {
	set, err := a.loadRules(f.rules)
	if err != nil {
		return err
	}
	in, size, err := backtest.OpenFile(f.events, a.stdin)
	if err != nil {
		return err
	}
	defer in.Close()

	cfg := backtest.Config{Strict: f.strict, Total: size}
	cfg.Engine.Lateness = f.lateness
	if f.progress || a.tty {
		cfg.Progress = progressPrinter(a.stderr, a.tty)
	}
	var out *decisionFile
	if f.out != "" {
		if out, err = createDecisionFile(f.out); err != nil {
			return err
		}
		defer out.abort()
		cfg.Decisions = out
	}
	a.log.Debug().Str("events", f.events).Int("rules", len(set.Rules)).Msg("backtest started")
	res, err := backtest.Run(cmd.Context(), set, in, cfg)
	var me *backtest.MalformedError
	if errors.As(err, &me) {
		fmt.Fprintf(a.stderr, "%s: %v\n", f.events, me)
		return findings()
	}
	if err != nil {
		return err
	}
	if out != nil {
		if err := out.close(); err != nil {
			return err
		}
	}
	if f.json {
		return writeJSON(a.stdout, set, res)
	}
	writeTable(a.stdout, res)
	return nil
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
		line := fmt.Sprintf("%s events, %s lines, %s", group(p.Events), group(p.Lines), sizeOf(p.Bytes))
		if p.Total > 0 {
			line += fmt.Sprintf(" of %s (%.0f%%)", sizeOf(p.Total), 100*float64(p.Bytes)/float64(p.Total))
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

// writeTable prints the per-rule table and the totals.
func writeTable(w io.Writer, res *backtest.Result) {
	rows := [][]string{{"RULE", "MODE", "ACTION", "FIRED", "SUPPRESSED", "GROUPS"}}
	for _, r := range res.Rules {
		rows = append(rows, []string{r.Rule, r.Mode, r.Action, group(r.Fired), group(r.Suppressed), group(r.Groups)})
	}
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, c := range row {
			if i > 0 {
				b.WriteString("  ")
			}
			if i >= 3 { // numbers right-aligned
				b.WriteString(strings.Repeat(" ", widths[i]-len(c)))
				b.WriteString(c)
			} else {
				b.WriteString(c)
				if i < len(row)-1 {
					b.WriteString(strings.Repeat(" ", widths[i]-len(c)))
				}
			}
		}
		fmt.Fprintln(w, b.String())
	}
	fmt.Fprintf(w, "\nevents %s  malformed %s  late %s  too late %s  decisions %s  elapsed %s  events/s %s\n",
		group(res.Events), group(res.Malformed), group(res.Stats.Late), group(res.Stats.TooLate),
		group(res.Decisions), res.Elapsed.Round(time.Millisecond), group(int64(res.EventsPerSec)))
	if len(res.Messages) > 0 {
		fmt.Fprintf(w, "\nmalformed lines (first %d of %s):\n", len(res.Messages), group(res.Malformed))
		for _, m := range res.Messages {
			fmt.Fprintf(w, "  %s\n", m)
		}
	}
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
	ElapsedSeconds  float64                `json:"elapsed_seconds"`
	EventsPerSecond float64                `json:"events_per_second"`
}

func writeJSON(w io.Writer, set *rules.Set, res *backtest.Result) error {
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
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
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
