// Package bench measures Tripline against the raw engines it is built on,
// in one run on one machine: every figure is measured next to a reference
// taken in the same run, because on a shared, noisy machine only the ratio
// holds. It backs `tripline bench`.
//
// Everything runs in process: an embedded nats-server with JetStream file
// storage in a temporary directory, the topology, one detector worker, an
// enforcer, a history writer, and the offline engine; ClickHouse is a
// clickhouse-server child process with its data in the same directory (or
// an existing server, in databases of the benchmark's own). The figures:
//
//   - pipeline events/s (publish → detect → decisions published, every event
//     acked by the detector, with the history writer copying the streams
//     into ClickHouse) vs raw JetStream async publish + pull consume;
//   - history writer rows/s (JetStream → decode → columnar insert → ack) vs
//     a raw clickhouse-go columnar batch insert of the same rows;
//   - publish → revocation applied by an enforcer, p50/p99, at a quarter of
//     the measured pipeline throughput, vs raw JetStream publish → consume
//     latency at the same rate;
//   - fresh-decision round trip p50/p99 under the same load vs a raw NATS
//     request/reply to an echo responder, interleaved with it;
//   - offline backtest events/s vs JSON decoding alone of the same file;
//   - detector state bytes per active session vs a bare map of the sessions;
//   - enforcer Check ns/op with the revocations loaded vs one map lookup.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// Config sets the sizes of a benchmark. Zero fields take the defaults
// below (Defaults); Quick gives the tiny sizes tests use.
type Config struct {
	// Events published per run for the pipeline throughput figure, in two
	// halves (and as many to the raw reference).
	Events int
	// Duration of each latency phase (raw reference, then the pipeline).
	Duration time.Duration
	// Agents and Sessions are the cardinality of the live traffic:
	// sessions are spread evenly over the agents. The latency phases use
	// more sessions when their rate needs it, so that no session calls
	// more than once every two seconds (see LatencyDetail.Sessions).
	Agents   int
	Sessions int
	// Rate of the background events during the latency phases, events/s.
	// Zero: RateShare of the pipeline throughput measured in the same run.
	Rate      float64
	RateShare float64
	// AttackRate is the number of attacks (a restricted read, then a send
	// to a new destination) per second during the latency phase.
	AttackRate float64
	// DecideRate is the number of fresh-decision requests per second during
	// the latency phase; as many echo requests are interleaved with them.
	DecideRate float64
	// BacktestEvents is the size of the generated JSON Lines file.
	BacktestEvents int
	// StateSessions is the number of active sessions for the state figure.
	StateSessions int
	// HistoryRows is the number of events the history writer figure writes
	// per run, in two halves (and as many to the raw reference).
	HistoryRows int
	// NoHistory runs without ClickHouse: the history writer figure is
	// skipped and the pipeline runs without the history writer.
	NoHistory bool
	// ClickHouseAddr is an existing ClickHouse server (host:port) to write
	// to, in fresh databases dropped at the end; "" starts a local
	// clickhouse-server child process in the data directory.
	ClickHouseAddr string
	// Revocations is the number of signed revocations loaded into the
	// enforcer for the check figure (and present during the latency phase).
	Revocations int
	// CheckFor is how long Check (and its reference) is timed per run.
	CheckFor time.Duration
	// Partitions of the events stream.
	Partitions int
	// Runs is the number of repetitions of every figure.
	Runs int
	// Rules is the rule set the detector and the engine run; RulesName
	// describes it in the report. Default: the built-in examples.
	Rules     *rules.Set
	RulesName string
	// Dir is where the temporary data directory goes ("" = os.TempDir).
	Dir string
	// Logger receives the components' logs (NATS client errors, the
	// detector's warnings).
	Logger zerolog.Logger
	// Progress receives a line per stage as the benchmark goes; nil = none.
	Progress io.Writer
}

// Defaults are the sizes of `tripline bench` without flags: a full run
// takes a few minutes on a 2-core machine.
func Defaults() Config {
	return Config{
		Events:         100_000,
		Duration:       10 * time.Second,
		Agents:         1000,
		Sessions:       10_000,
		RateShare:      0.25,
		AttackRate:     5,
		DecideRate:     50,
		BacktestEvents: 200_000,
		StateSessions:  100_000,
		HistoryRows:    120_000,
		Revocations:    100_000,
		CheckFor:       300 * time.Millisecond,
		Partitions:     pipeline.DefaultPartitions,
		Runs:           3,
	}
}

// Quick are tiny sizes: every stage runs, in seconds, so that a test can
// keep the command from rotting. Its figures mean little.
func Quick() Config {
	return Config{
		Events:         2000,
		Duration:       1500 * time.Millisecond,
		Agents:         50,
		Sessions:       1000,
		RateShare:      0.25,
		AttackRate:     5,
		DecideRate:     50,
		BacktestEvents: 5000,
		StateSessions:  2000,
		HistoryRows:    2000,
		Revocations:    2000,
		CheckFor:       30 * time.Millisecond,
		Partitions:     pipeline.DefaultPartitions,
		Runs:           1,
	}
}

func (c Config) withDefaults() (Config, error) {
	d := Defaults()
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt(&c.Events, d.Events)
	setInt(&c.Agents, d.Agents)
	setInt(&c.Sessions, d.Sessions)
	setInt(&c.BacktestEvents, d.BacktestEvents)
	setInt(&c.StateSessions, d.StateSessions)
	setInt(&c.HistoryRows, d.HistoryRows)
	setInt(&c.Revocations, d.Revocations)
	setInt(&c.Partitions, d.Partitions)
	setInt(&c.Runs, d.Runs)
	if c.CheckFor <= 0 {
		c.CheckFor = d.CheckFor
	}
	if c.Duration <= 0 {
		c.Duration = d.Duration
	}
	if c.RateShare <= 0 {
		c.RateShare = d.RateShare
	}
	if c.AttackRate <= 0 {
		c.AttackRate = d.AttackRate
	}
	if c.DecideRate <= 0 {
		c.DecideRate = d.DecideRate
	}
	if c.Sessions < c.Agents {
		return c, fmt.Errorf("sessions (%d) must be at least agents (%d): every agent runs at least one session", c.Sessions, c.Agents)
	}
	if c.Rules == nil {
		set, err := rules.Compile(rules.ExampleSources()...)
		if err != nil {
			return c, fmt.Errorf("built-in rules: %w", err)
		}
		c.Rules, c.RulesName = set, "built-in examples"
	}
	if c.RulesName == "" {
		c.RulesName = "custom"
	}
	return c, nil
}

// Report is the outcome of a benchmark: the machine, the parameters, every
// figure with its reference, and per-run details.
type Report struct {
	Machine        Machine     `json:"machine"`
	Params         Params      `json:"params"`
	Figures        []*Figure   `json:"figures"`
	Runs           []RunDetail `json:"runs"`
	Setup          SetupDetail `json:"setup"`
	Notes          []string    `json:"notes"`
	ElapsedSeconds float64     `json:"elapsed_seconds"`
}

// Machine describes where the benchmark ran.
type Machine struct {
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Go         string `json:"go"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	CPU        string `json:"cpu,omitempty"`
	LoadAvg    string `json:"load_avg,omitempty"` // at the start, from /proc/loadavg
}

// Params are the parameters the benchmark ran with.
type Params struct {
	Runs           int     `json:"runs"`
	Events         int     `json:"events"`
	DurationSec    float64 `json:"duration_seconds"`
	Agents         int     `json:"agents"`
	Sessions       int     `json:"sessions"`
	Partitions     int     `json:"partitions"`
	Rate           float64 `json:"rate,omitempty"` // fixed background rate (events/s), 0 when RateShare applies
	RateShare      float64 `json:"rate_share"`
	AttackRate     float64 `json:"attack_rate"`
	DecideRate     float64 `json:"decide_rate"`
	BacktestEvents int     `json:"backtest_events"`
	StateSessions  int     `json:"state_sessions"`
	Revocations    int     `json:"revocations"`
	HistoryRows    int     `json:"history_rows"`
	History        string  `json:"history"` // ClickHouse child process, existing server, or off
	Rules          string  `json:"rules"`
	RuleCount      int     `json:"rule_count"`
	RuleSet        string  `json:"rule_set"`
	Storage        string  `json:"storage"`
}

// Figure is one measured figure and its reference.
type Figure struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Unit   string `json:"unit"`
	Better string `json:"better"` // higher or lower
	// Value over the runs; nil when the figure could not be measured
	// (Error says why).
	Value     *Summary  `json:"value"`
	Reference Reference `json:"reference"`
	// Ratio is value / reference, run by run.
	Ratio  *Summary `json:"ratio"`
	Target *Target  `json:"target,omitempty"`
	// Met is whether the median meets the target; absent without a target
	// and for a skipped figure.
	Met   *bool  `json:"met,omitempty"`
	Error string `json:"error,omitempty"`
	// Skipped says why the figure was not measured on purpose (a skipped
	// figure is not missing).
	Skipped string `json:"skipped,omitempty"`

	vals, refs, ratios []float64
}

// Reference is what a figure is compared with, measured in the same run.
type Reference struct {
	Name  string   `json:"name"`
	About string   `json:"about"`
	Value *Summary `json:"value"`
}

// Target is the goal a figure should meet.
type Target struct {
	On    string  `json:"on"` // "ratio" or "value"
	Op    string  `json:"op"` // ">=" or "<="
	Value float64 `json:"value"`
	Text  string  `json:"text"`
}

func (t *Target) met(v float64) bool {
	if t.Op == ">=" {
		return v >= t.Value
	}
	return v <= t.Value
}

// add records one run's value and reference.
func (f *Figure) add(v, ref float64) {
	f.vals = append(f.vals, v)
	f.refs = append(f.refs, ref)
	if ref > 0 {
		f.ratios = append(f.ratios, v/ref)
	}
}

// fail records why a run could not measure the figure.
func (f *Figure) fail(run int, err error) {
	msg := fmt.Sprintf("run %d: %v", run, err)
	if f.Error == "" {
		f.Error = msg
	} else if !strings.Contains(f.Error, err.Error()) {
		f.Error += "; " + msg
	}
}

func (f *Figure) finish() {
	if f.Skipped != "" {
		return
	}
	f.Value, f.Reference.Value, f.Ratio = summarize(f.vals), summarize(f.refs), summarize(f.ratios)
	if f.Target == nil || f.Value == nil {
		if f.Target != nil {
			no := false
			f.Met = &no
		}
		return
	}
	v := f.Value.Median
	if f.Target.On == "ratio" {
		v = 0
		if f.Ratio != nil {
			v = f.Ratio.Median
		}
	}
	ok := f.Target.met(v)
	f.Met = &ok
}

// Figure ids.
const (
	FigPipeline   = "pipeline_events_per_second"
	FigRevokeP50  = "revocation_latency_p50_ms"
	FigRevokeP99  = "revocation_latency_p99_ms"
	FigDecideP50  = "fresh_decision_p50_ms"
	FigDecideP99  = "fresh_decision_p99_ms"
	FigHistory    = "history_writer_rows_per_second"
	FigBacktest   = "backtest_events_per_second"
	FigStateBytes = "state_bytes_per_session"
	FigCheckNanos = "enforcer_check_ns_per_op"
)

// latencyTimeout is how long after the last attack its revocation may take
// before the attacks not yet revoked count as missed.
const latencyTimeout = 5 * time.Second

func newFigures() []*Figure {
	return []*Figure{
		{ID: FigPipeline, Name: "pipeline throughput", Unit: "events/s", Better: "higher",
			Reference: Reference{Name: "raw JetStream", About: "async publish of the same payloads to a stream of the same configuration on the same server, consumed concurrently as the detector does minus the processing (a pull consumer per partition acking each message); N / (first publish → all acked); ABBA order"},
			Target:    &Target{On: "ratio", Op: ">=", Value: 0.6, Text: "≥ 0.6× ref"}},
		{ID: FigHistory, Name: "history writer", Unit: "rows/s", Better: "higher",
			Reference: Reference{Name: "raw ClickHouse insert", About: "clickhouse-go columnar batch insert (history.Schema.InsertEvents, batches of the writer's 20,000) of the same rows, decoded, into an identically migrated database of its own; the writer's figure is writer start → every message of a stream holding the rows pulled, decoded, inserted and acked; ABBA order"},
			Target:    &Target{On: "ratio", Op: ">=", Value: 0.8, Text: "≥ 0.8× ref"}},
		{ID: FigRevokeP50, Name: "publish → revocation p50", Unit: "ms", Better: "lower",
			Reference: Reference{Name: "raw JetStream p50", About: "publish → consume latency of a pull consumer acking each message, at the same rate, publish time in a header; in one-second slices alternating with the pipeline's, so both meet the same noise"}},
		{ID: FigRevokeP99, Name: "publish → revocation p99", Unit: "ms", Better: "lower",
			Reference: Reference{Name: "raw JetStream p99", About: "publish → consume latency of a pull consumer acking each message, at the same rate, publish time in a header; in one-second slices alternating with the pipeline's, so both meet the same noise"},
			Target:    &Target{On: "value", Op: "<=", Value: 10, Text: "≤ 10 ms"}},
		{ID: FigDecideP50, Name: "fresh decision p50", Unit: "ms", Better: "lower",
			Reference: Reference{Name: "NATS req/reply p50", About: "request/reply to an echo responder on its own connection, interleaved with the decisions under the same load"}},
		{ID: FigDecideP99, Name: "fresh decision p99", Unit: "ms", Better: "lower",
			Reference: Reference{Name: "NATS req/reply p99", About: "request/reply to an echo responder on its own connection, interleaved with the decisions under the same load"},
			Target:    &Target{On: "value", Op: "<=", Value: 2, Text: "≤ 2 ms"}},
		{ID: FigBacktest, Name: "offline backtest", Unit: "events/s", Better: "higher",
			Reference: Reference{Name: "JSON decode alone", About: "reading the same file line by line and decoding each event with pipeline.Decoder, nothing else; ABBA order"},
			Target:    &Target{On: "ratio", Op: ">=", Value: 0.5, Text: "≥ 0.5× ref"}},
		{ID: FigStateBytes, Name: "detector state / session", Unit: "bytes", Better: "lower",
			Reference: Reference{Name: "bare session map", About: "heap of a map[string]int64 holding each session id (the least any detector must keep); same GC'd HeapAlloc method"},
			Target:    &Target{On: "value", Op: "<=", Value: 1024, Text: "≤ 1 KiB"}},
		{ID: FigCheckNanos, Name: "enforcer check", Unit: "ns/op", Better: "lower",
			Reference: Reference{Name: "one map lookup", About: "one Go map lookup of (tenant, session) among as many keys, same calls, same loop; ABBA order"},
			Target:    &Target{On: "value", Op: "<=", Value: 200, Text: "≤ 200 ns"}},
	}
}

// Figure returns the figure with id, or nil.
func (r *Report) Figure(id string) *Figure {
	for _, f := range r.Figures {
		if f.ID == id {
			return f
		}
	}
	return nil
}

// Missing returns the figures that could not be measured (skipped ones
// are not missing).
func (r *Report) Missing() []*Figure {
	var out []*Figure
	for _, f := range r.Figures {
		if f.Value == nil && f.Skipped == "" {
			out = append(out, f)
		}
	}
	return out
}

// RunDetail holds what one run saw besides the figures.
type RunDetail struct {
	Run      int             `json:"run"`
	Pipeline *PipelineDetail `json:"pipeline,omitempty"`
	History  *HistoryDetail  `json:"history,omitempty"`
	Latency  *LatencyDetail  `json:"latency,omitempty"`
	Backtest *BacktestDetail `json:"backtest,omitempty"`
	State    *StateDetail    `json:"state,omitempty"`
	Enforcer *EnforcerDetail `json:"enforcer,omitempty"`
	Errors   []string        `json:"errors,omitempty"`
}

// SetupDetail describes the one-off setup.
type SetupDetail struct {
	StoreDir            string  `json:"store_dir"`
	EnforcerLoadSeconds float64 `json:"enforcer_load_seconds"`
	EnforcerActive      int     `json:"enforcer_active"`
	FillSeconds         float64 `json:"fill_seconds"`
	// ClickHouse: where history went, its version, the benchmark's
	// databases, and the time to start (or reach) it and migrate.
	ClickHouse             string  `json:"clickhouse,omitempty"`
	ClickHouseVersion      string  `json:"clickhouse_version,omitempty"`
	ClickHouseDatabases    string  `json:"clickhouse_databases,omitempty"`
	ClickHouseStartSeconds float64 `json:"clickhouse_start_seconds,omitempty"`
}

// Run runs the benchmark.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	rep := &Report{Machine: machine(), Params: params(cfg), Figures: newFigures(), Notes: []string{}}
	p := progress{w: cfg.Progress}
	p.printf("bench: %d cores, GOMAXPROCS %d, %s; %d run(s); rules: %d (%s)",
		rep.Machine.Cores, rep.Machine.GOMAXPROCS, rep.Machine.Go, cfg.Runs, len(cfg.Rules.Rules), cfg.RulesName)
	for i := range cfg.Runs {
		rep.Runs = append(rep.Runs, RunDetail{Run: i + 1})
	}

	if err := runOnline(ctx, cfg, rep, p); err != nil {
		return nil, err
	}
	if err := runOffline(ctx, cfg, rep, p); err != nil {
		return nil, err
	}
	for _, f := range rep.Figures {
		f.finish()
	}
	rep.addNotes(cfg)
	rep.ElapsedSeconds = round(time.Since(t0).Seconds())
	p.printf("bench: done in %s", time.Since(t0).Round(100*time.Millisecond))
	return rep, nil
}

// runOnline runs the figures that need NATS: one server, worker and
// enforcer for all runs, so that later runs see a warm detector.
func runOnline(ctx context.Context, cfg Config, rep *Report, p progress) error {
	e, err := startEnv(ctx, cfg, p)
	if err != nil {
		return err
	}
	defer e.close()
	rep.Setup.StoreDir = e.dir
	if err := e.startEnforcer(ctx, cfg.Revocations, &rep.Setup); err != nil {
		return err
	}
	hf := rep.Figure(FigHistory)
	if cfg.NoHistory {
		hf.Skipped = NoHistoryReason
		p.printf("bench: no ClickHouse (%s): no history writer figure, and the pipeline runs without the history writer", NoHistoryReason)
	} else if err := e.startHistory(ctx, &rep.Setup); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		hf.Error = fmt.Sprintf("ClickHouse: %v (--no-history runs without it)", err)
		p.printf("bench: ✗ ClickHouse: %v; no history writer figure, and the pipeline runs without the history writer", err)
	}
	for i := range cfg.Runs {
		run := i + 1
		d := &rep.Runs[i]
		rate, err := e.throughput(ctx, run, rep.Figure(FigPipeline), d)
		if err := abort(ctx, err); err != nil {
			return err
		}
		if cfg.Rate > 0 {
			rate = cfg.Rate
		} else {
			rate *= cfg.RateShare
		}
		if rate <= 0 {
			// no throughput measured: fall back to a modest load
			rate = 1000
			d.Errors = append(d.Errors, "no pipeline rate measured; latency phase at 1000 events/s")
		}
		if err := abort(ctx, e.latency(ctx, run, rate, rep, d)); err != nil {
			return err
		}
		if err := abort(ctx, e.checkCost(run, rep.Figure(FigCheckNanos), d)); err != nil {
			return err
		}
		if e.hist != nil {
			if err := abort(ctx, e.writerFigure(ctx, run, hf, d)); err != nil {
				return err
			}
		}
	}
	p.printf("bench: stopping the detector, enforcer, NATS and ClickHouse")
	return nil
}

// abort returns err if the context ended (the benchmark stops) and nil
// otherwise: a failed stage is recorded in its figure and the others go on.
func abort(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && errors.Is(err, errFatal) {
		return err
	}
	return nil
}

// NoHistoryReason is why the history figure is skipped with NoHistory.
const NoHistoryReason = "ClickHouse not used (--no-history)"

// errFatal marks an error that stops the benchmark.
var errFatal = errors.New("benchmark aborted")

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

func params(c Config) Params {
	return Params{
		Runs: c.Runs, Events: c.Events, DurationSec: c.Duration.Seconds(), Agents: c.Agents, Sessions: c.Sessions,
		Partitions: c.Partitions, Rate: c.Rate, RateShare: c.RateShare, AttackRate: c.AttackRate, DecideRate: c.DecideRate,
		BacktestEvents: c.BacktestEvents, StateSessions: c.StateSessions, Revocations: c.Revocations,
		HistoryRows: c.HistoryRows, History: historyWhere(c), Rules: c.RulesName, RuleCount: len(c.Rules.Rules), RuleSet: c.Rules.Hash, Storage: "file",
	}
}

func historyWhere(c Config) string {
	switch {
	case c.NoHistory:
		return "off (--no-history)"
	case c.ClickHouseAddr != "":
		return "ClickHouse at " + c.ClickHouseAddr
	default:
		return "clickhouse-server child process"
	}
}

// progress writes stage lines to the progress writer.
type progress struct{ w io.Writer }

func (p progress) printf(format string, args ...any) {
	if p.w == nil {
		return
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}
