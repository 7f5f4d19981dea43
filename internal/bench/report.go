package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/tripline/tripline/internal/textfmt"
)

// WriteJSON writes the report as one indented JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for people: the machine and parameters, an
// aligned table of the figures with their references, ratios and targets,
// then what missed its target, the references and the notes.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	m, p := r.Machine, r.Params
	fmt.Fprintf(&b, "tripline bench: %d run(s) on %d cores (GOMAXPROCS %d), %s %s/%s", p.Runs, m.Cores, m.GOMAXPROCS, m.Go, m.OS, m.Arch)
	if m.CPU != "" {
		fmt.Fprintf(&b, ", %s", m.CPU)
	}
	if m.LoadAvg != "" {
		fmt.Fprintf(&b, ", load %s", m.LoadAvg)
	}
	b.WriteString("\n")
	rate := fmt.Sprintf("%.0f%% of each run's pipeline throughput", 100*p.RateShare)
	if p.Rate > 0 {
		rate = group(int64(p.Rate)) + " events/s"
	}
	fmt.Fprintf(&b, "parameters: %s events, %s per latency phase, %s agents, %s sessions, %d partitions, JetStream %s storage;\n",
		group(int64(p.Events)), fmtSeconds(p.DurationSec), group(int64(p.Agents)), group(int64(p.Sessions)), p.Partitions, p.Storage)
	fmt.Fprintf(&b, "  background load %s, %g attacks/s, %g fresh decisions/s; backtest %s events; state %s sessions; %s revocations;\n",
		rate, p.AttackRate, p.DecideRate, group(int64(p.BacktestEvents)), group(int64(p.StateSessions)), group(int64(p.Revocations)))
	fmt.Fprintf(&b, "  history: %s rows per run, %s", group(int64(p.HistoryRows)), p.History)
	if s := r.Setup; s.ClickHouseVersion != "" {
		fmt.Fprintf(&b, " (ClickHouse %s)", s.ClickHouseVersion)
	}
	fmt.Fprintf(&b, "; rules: %d (%s, set %s)\n\n", p.RuleCount, p.Rules, p.RuleSet)

	rows := [][]string{{"FIGURE", "MEDIAN", "MIN – MAX", "REFERENCE (same run)", "MEDIAN", "RATIO", "TARGET", ""}}
	for _, f := range r.Figures {
		row := []string{f.Name + ", " + f.Unit, "n/a", "", f.Reference.Name, "", "", "—", ""}
		if f.Skipped != "" {
			row[1] = "skipped"
		}
		if f.Value != nil {
			row[1] = fmtVal(f.Unit, f.Value.Median)
			if len(f.Value.Runs) > 1 {
				row[2] = fmtVal(f.Unit, f.Value.Min) + " – " + fmtVal(f.Unit, f.Value.Max)
			}
		}
		if f.Reference.Value != nil {
			row[4] = fmtVal(f.Unit, f.Reference.Value.Median)
		}
		if f.Ratio != nil {
			row[5] = fmt.Sprintf("%.2f×", f.Ratio.Median)
		}
		if f.Target != nil {
			row[6] = f.Target.Text
		}
		if f.Met != nil {
			row[7] = mark(*f.Met)
		}
		rows = append(rows, row)
	}
	right := map[int]bool{1: true, 2: true, 4: true, 5: true}
	textfmt.Align(&b, rows, func(i int) bool { return right[i] })

	targets, met := 0, 0
	var missed, skipped []string
	for _, f := range r.Figures {
		if f.Skipped != "" {
			skipped = append(skipped, fmt.Sprintf("– %s: skipped: %s", f.Name, f.Skipped))
			continue
		}
		if f.Target == nil {
			continue
		}
		targets++
		switch {
		case f.Met != nil && *f.Met:
			met++
		case f.Value == nil:
			missed = append(missed, fmt.Sprintf("✗ %s: not measured: %s", f.Name, f.Error))
		case f.Target.On == "ratio":
			missed = append(missed, fmt.Sprintf("✗ %s: %.2f× the %s reference (median of %s), target %s",
				f.Name, f.Ratio.Median, f.Reference.Name, runs(len(f.Value.Runs)), f.Target.Text))
		default:
			missed = append(missed, fmt.Sprintf("✗ %s: %s %s (median of %s), target %s",
				f.Name, fmtVal(f.Unit, f.Value.Median), f.Unit, runs(len(f.Value.Runs)), f.Target.Text))
		}
	}
	for _, f := range r.Figures {
		if f.Target == nil && f.Value == nil && f.Skipped == "" {
			missed = append(missed, fmt.Sprintf("✗ %s: not measured: %s", f.Name, f.Error))
		}
	}
	fmt.Fprintf(&b, "\n%d of %d targets met", met, targets)
	if len(skipped) > 0 {
		fmt.Fprintf(&b, " (%d skipped)", len(skipped))
	}
	b.WriteString(".\n")
	for _, s := range append(missed, skipped...) {
		fmt.Fprintf(&b, "  %s\n", s)
	}

	b.WriteString("\nreferences, each measured in the same run on the same machine:\n")
	seen := map[string]bool{}
	for _, f := range r.Figures {
		name := strings.TrimSuffix(strings.TrimSuffix(f.Reference.Name, " p50"), " p99")
		if seen[f.Reference.About] {
			continue
		}
		seen[f.Reference.About] = true
		if name != f.Reference.Name {
			name += " p50/p99"
		}
		fmt.Fprintf(&b, "  %-23s %s\n", name, f.Reference.About)
	}

	b.WriteString("\nper run:\n")
	for _, d := range r.Runs {
		fmt.Fprintf(&b, "  run %d:", d.Run)
		var parts []string
		if pd := d.Pipeline; pd != nil && pd.EventsPerSec > 0 {
			hist := "history writer off"
			if pd.HistoryWriter {
				hist = fmt.Sprintf("history written at %s events/s, %s rows", group(int64(pd.HistoryEventsPerSec)), group(pd.HistoryRows))
			}
			parts = append(parts, fmt.Sprintf("pipeline %s events/s (raw %s; %s decisions, %s dead letters; %s)",
				group(int64(pd.EventsPerSec)), group(int64(pd.RawEventsPerSec)), group(pd.Decisions), group(pd.DeadLetters), hist))
		}
		if hd := d.History; hd != nil && hd.RowsPerSec > 0 {
			parts = append(parts, fmt.Sprintf("history writer %s rows/s (raw insert %s; %s of its %s in inserts; %s rows stored)",
				group(int64(hd.RowsPerSec)), group(int64(hd.RawRowsPerSec)), fmtSeconds(hd.InsertSeconds), fmtSeconds(hd.Seconds), group(int64(hd.StoredRows))))
		}
		if ld := d.Latency; ld != nil {
			parts = append(parts, fmt.Sprintf("load %s events/s; revocation p50/p99 %.2f/%.2f ms, max %.2f (%d of %d attacks; issued %.2f/%.2f, in KV %.2f/%.2f; raw %.2f/%.2f); fresh decision %.2f/%.2f ms (echo %.2f/%.2f, %d requests)",
				group(int64(ld.Rate)), ld.P50Ms, ld.P99Ms, ld.MaxMs, ld.Revoked, ld.Attacks, ld.IssueP50Ms, ld.IssueP99Ms, ld.KVP50Ms, ld.KVP99Ms, ld.RawP50Ms, ld.RawP99Ms,
				ld.DecideP50Ms, ld.DecideP99Ms, ld.EchoP50Ms, ld.EchoP99Ms, ld.Decides))
		}
		if bd := d.Backtest; bd != nil && bd.EventsPerSec > 0 {
			parts = append(parts, fmt.Sprintf("backtest %s events/s (decode %s)", group(int64(bd.EventsPerSec)), group(int64(bd.DecodeEventsPerSec))))
		}
		if sd := d.State; sd != nil {
			parts = append(parts, fmt.Sprintf("state %s B/session (%s groups)", group(int64(sd.BytesPerSession)), group(sd.Groups)))
		}
		if ed := d.Enforcer; ed != nil {
			parts = append(parts, fmt.Sprintf("check %.1f ns (map %.1f ns, %s active)", ed.NsPerOp, ed.RefNsPerOp, group(int64(ed.Active))))
		}
		parts = append(parts, d.Errors...)
		fmt.Fprintf(&b, " %s\n", strings.Join(parts, "; "))
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nnotes:\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	fmt.Fprintf(&b, "\nelapsed %s\n", fmtSeconds(r.ElapsedSeconds))
	_, err := io.WriteString(w, b.String())
	return err
}

// addNotes records what a reader needs to trust (or distrust) the figures.
func (r *Report) addNotes(cfg Config) {
	add := func(format string, args ...any) { r.Notes = append(r.Notes, fmt.Sprintf(format, args...)) }
	var rates []string
	var missed, benign, dead, attacks int64
	minRevoked := -1
	verdicts := map[string]int{}
	for _, d := range r.Runs {
		if ld := d.Latency; ld != nil {
			rates = append(rates, group(int64(ld.Rate)))
			missed += int64(ld.Missed)
			if minRevoked < 0 || ld.Revoked < minRevoked {
				minRevoked = ld.Revoked
			}
			attacks += int64(ld.Attacks)
			benign += ld.BenignEnforce
			for k, v := range ld.Verdicts {
				verdicts[k] += v
			}
		}
		if pd := d.Pipeline; pd != nil {
			dead += pd.DeadLetters
			benign += pd.EnforceDecisions
		}
	}
	if len(rates) > 0 {
		add("latency phases ran at %s background events/s (run by run), plus the attacks and fresh-decision requests", strings.Join(rates, ", "))
	}
	add("latency is from the publish of the triggering send to the enforcer's applied time (its ack's applied_at, same clock); the enforcer held %s revocations, loaded in %s with every signature verified",
		group(int64(r.Setup.EnforcerActive)), fmtSeconds(r.Setup.EnforcerLoadSeconds))
	if minRevoked >= 0 && minRevoked < 100 {
		add("a run's revocation p99 is taken over its %d-odd revocations: with fewer than 100 samples it is the slowest one", minRevoked)
	}
	add("the detector's guard rail is raised for the benchmark: the attacks revoke %g sessions a second by design", cfg.AttackRate)
	if missed > 0 {
		add("✗ %d of %d attacks were not revoked within %s", missed, attacks, latencyTimeout)
	}
	if benign > 0 {
		add("✗ benign traffic drew %d enforce-mode decisions: raise --sessions (per-session rate too high for runaway-loop) or check the --rules", benign)
	}
	if dead > 0 {
		add("✗ %d generated events were dead-lettered", dead)
	}
	r.addHistoryNotes(cfg, add)
	if n := total(verdicts) - verdicts["allow"]; n > 0 {
		add("fresh decisions on benign calls were not all allow: %v", verdicts)
	}
}

// addHistoryNotes says how history was written, or that it was not.
func (r *Report) addHistoryNotes(cfg Config, add func(string, ...any)) {
	var rates []string
	var insertErrs int64
	withWriter, phases := 0, 0
	for _, d := range r.Runs {
		if pd := d.Pipeline; pd != nil {
			phases++
			if pd.HistoryWriter {
				withWriter++
				if pd.HistoryEventsPerSec > 0 {
					rates = append(rates, group(int64(pd.HistoryEventsPerSec)))
				}
				insertErrs += pd.HistoryInsertErrors
			}
		}
	}
	switch {
	case phases == 0:
	case withWriter == phases:
		add("the pipeline phase ran with a history writer copying events, decisions, revocations, acks and dead letters into ClickHouse %s as `tripline serve` does (batches of 20,000, flush 1s); it caught up with the backlog before each phase and after each tripline half, untimed: first publish → every row written at %s events/s (run by run)",
			r.Setup.ClickHouseVersion, strings.Join(rates, ", "))
	case cfg.NoHistory:
		add("the pipeline phase ran without the history writer (--no-history)")
	default:
		add("✗ the pipeline phase ran without the history writer in %d of %d runs (see the errors)", phases-withWriter, phases)
	}
	if insertErrs > 0 {
		add("✗ the history writer of the pipeline phase had %d failed inserts (retried)", insertErrs)
	}
	if f := r.Figure(FigHistory); f != nil && f.Value != nil {
		add("history writer figure: %s testgen events per run, the same each run, into freshly migrated databases on %s; the writer's flush interval is %s there (default 1s) so that the last, partial batch of a half does not wait a second",
			group(int64(cfg.HistoryRows)), r.Setup.ClickHouse, histFlush)
	}
}

func runs(n int) string {
	if n == 1 {
		return "1 run"
	}
	return strconv.Itoa(n) + " runs"
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func mark(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

// fmtVal formats a value of unit for the table.
func fmtVal(unit string, v float64) string {
	switch unit {
	case "ms":
		return fmtFloat(v)
	case "ns/op":
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return group(int64(math.Round(v)))
	}
}

// fmtFloat gives three significant digits for small values.
func fmtFloat(v float64) string {
	switch a := math.Abs(v); {
	case a < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

func fmtSeconds(s float64) string {
	if s < 10 {
		return strconv.FormatFloat(s, 'f', 1, 64) + "s"
	}
	return strconv.FormatFloat(s, 'f', 0, 64) + "s"
}

// group writes n with thousands separators: 1234567 → 1,234,567.
func group(n int64) string { return textfmt.Thousands(n) }
