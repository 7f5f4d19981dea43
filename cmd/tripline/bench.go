package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/tripline/tripline/internal/bench"
)

type benchFlags struct {
	events, agents, sessions, runs int
	backtestEvents, stateSessions  int
	revocations, historyRows       int
	clickhouse                     string
	noHistory                      bool
	duration                       time.Duration
	rate                           float64
	rules                          []string
	json, quick                    bool
	cpuProfile                     string
}

func newBenchCmd(a *app) *cobra.Command {
	var f benchFlags
	d := bench.Defaults()
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput, latency and memory against the raw engines",
		Long: `Bench measures Tripline on this machine, each figure next to a reference
measured in the same run (on a shared, noisy machine only the ratio holds),
and prints min, median and max over --runs:

  pipeline throughput      publish → detector (the rules) → decisions published,
                           every event acked, the history writer on; vs raw
                           JetStream async publish and pull consume of the
                           same payloads                               target ≥ 0.6×
  history writer           rows/s from JetStream into ClickHouse (pull, decode,
                           columnar insert, ack); vs a raw clickhouse-go
                           batch insert of the same rows               target ≥ 0.8×
  publish → revocation     p50/p99 from the publish of an attack's triggering
                           event to an enforcer applying the revocation, under
                           a background load of 25% of the measured throughput;
                           vs raw JetStream publish → consume latency  p99 ≤ 10 ms
  fresh decision           p50/p99 request/reply to the detector under the
                           same load; vs an echo responder             p99 ≤ 2 ms
  offline backtest         events/s over a generated file; vs JSON decoding
                           alone of the same file                      target ≥ 0.5×
  detector state           heap bytes per active session              ≤ 1 KiB
  enforcer check           ns per Check with the revocations loaded    ≤ 200 ns

Everything runs in this process: an embedded NATS server with JetStream file
storage in a temporary directory, one detector worker (the built-in example
rules, or --rules), an enforcer loaded with --revocations signed commands,
and a history writer. ClickHouse is a clickhouse-server child process with
its data in the same directory, or the server of --clickhouse
($CLICKHOUSE_ADDR), in databases of the benchmark's own dropped at the end;
--no-history runs without it and marks the history figure skipped.
Progress goes to stderr; the table (or, with --json, one JSON
object) to stdout. A target that is not met is marked ✗. The defaults take
a few minutes on 2 cores; --quick runs tiny sizes in seconds.

Exit status 1 when a figure could not be measured.`,
		Example: `  tripline bench
  tripline bench --json > bench.json
  tripline bench --runs 5 --events 200000 --duration 20s
  tripline bench --rules ./rules --rate 2000
  tripline bench --no-history
  tripline bench --quick`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.bench(cmd, f)
		},
	}
	fl := c.Flags()
	fl.IntVar(&f.events, "events", d.Events, "events per run for the throughput figure (as many again to the raw reference)")
	fl.DurationVar(&f.duration, "duration", d.Duration, "time measured for each side of the latency figures (raw reference and tripline, in alternating one-second slices)")
	fl.IntVar(&f.agents, "agents", d.Agents, "agent identities in the generated traffic")
	fl.IntVar(&f.sessions, "sessions", d.Sessions, "sessions in the generated traffic, spread over the agents")
	fl.Float64Var(&f.rate, "rate", 0, "background events/s of the latency phases (default: 25% of the run's measured pipeline throughput)")
	fl.StringSliceVar(&f.rules, "rules", nil, "rule files or directories (default: the built-in examples)")
	fl.IntVar(&f.runs, "runs", d.Runs, "repetitions of every figure")
	fl.IntVar(&f.backtestEvents, "backtest-events", d.BacktestEvents, "events in the generated file of the backtest figure")
	fl.IntVar(&f.stateSessions, "state-sessions", d.StateSessions, "active sessions of the detector-state figure")
	fl.IntVar(&f.revocations, "revocations", d.Revocations, "signed revocations loaded into the enforcer")
	fl.IntVar(&f.historyRows, "history-rows", d.HistoryRows, "events per run for the history writer figure (as many again to the raw reference)")
	fl.StringVar(&f.clickhouse, "clickhouse", os.Getenv("CLICKHOUSE_ADDR"), "existing ClickHouse host:port to write to, in fresh databases (default $CLICKHOUSE_ADDR; empty: start a local clickhouse-server)")
	fl.BoolVar(&f.noHistory, "no-history", false, "run without ClickHouse: the history figure is skipped, the pipeline runs without the history writer")
	fl.BoolVar(&f.json, "json", false, "print the result as one JSON object")
	fl.BoolVar(&f.quick, "quick", false, "tiny sizes: every stage in seconds (for tests; the figures mean little)")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole benchmark to this file (go tool pprof)")
	return c
}

func (a *app) bench(cmd *cobra.Command, f benchFlags) error {
	cfg := bench.Defaults()
	if f.quick {
		cfg = bench.Quick()
	}
	fl := cmd.Flags()
	for _, o := range []struct {
		name string
		dst  *int
		v    int
	}{
		{"events", &cfg.Events, f.events}, {"agents", &cfg.Agents, f.agents}, {"sessions", &cfg.Sessions, f.sessions},
		{"runs", &cfg.Runs, f.runs}, {"backtest-events", &cfg.BacktestEvents, f.backtestEvents},
		{"state-sessions", &cfg.StateSessions, f.stateSessions}, {"revocations", &cfg.Revocations, f.revocations},
		{"history-rows", &cfg.HistoryRows, f.historyRows},
	} {
		if !fl.Changed(o.name) {
			continue
		}
		if o.v <= 0 {
			return usageError(fmt.Errorf("--%s must be positive", o.name))
		}
		*o.dst = o.v
	}
	if fl.Changed("duration") {
		if f.duration < 100*time.Millisecond {
			return usageError(errors.New("--duration must be at least 100ms"))
		}
		cfg.Duration = f.duration
	}
	if fl.Changed("rate") {
		if f.rate <= 0 {
			return usageError(errors.New("--rate must be positive (events/s)"))
		}
		cfg.Rate = f.rate
	}
	if f.noHistory && fl.Changed("clickhouse") {
		return usageError(errors.New("--no-history and --clickhouse exclude each other"))
	}
	cfg.NoHistory, cfg.ClickHouseAddr = f.noHistory, f.clickhouse
	if cfg.NoHistory {
		cfg.ClickHouseAddr = ""
	}
	if cfg.Sessions < cfg.Agents {
		return usageError(fmt.Errorf("--sessions (%d) must be at least --agents (%d)", cfg.Sessions, cfg.Agents))
	}
	if len(f.rules) > 0 {
		set, err := a.loadRules(f.rules)
		if err != nil {
			return err
		}
		cfg.Rules, cfg.RulesName = set, strings.Join(f.rules, ", ")
	}
	// The components log warnings and errors only, unless asked for more.
	lvl := a.log.GetLevel()
	if lvl > zerolog.DebugLevel {
		lvl = max(lvl, zerolog.WarnLevel)
	}
	cfg.Logger = a.log.Level(lvl)
	cfg.Progress = a.stderr

	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("--cpuprofile: %w", err)}
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("--cpuprofile: %w", err)}
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := bench.Run(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	if f.quick {
		rep.Notes = append(rep.Notes, "--quick: tiny sizes so that every stage runs in seconds; these figures are not the product's")
	}
	if f.json {
		err = rep.WriteJSON(a.stdout)
	} else {
		err = rep.WriteTable(a.stdout)
	}
	if err != nil {
		return err
	}
	if missing := rep.Missing(); len(missing) > 0 {
		for _, m := range missing {
			fmt.Fprintf(a.stderr, "%s: not measured: %s\n", m.Name, m.Error)
		}
		return findings()
	}
	return nil
}
