package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tripline/tripline/internal/sim"
	"github.com/tripline/tripline/pipeline"
)

type simulateFlags struct {
	nats       opsNATSFlags
	agents     int
	tenants    int
	rate       float64
	duration   time.Duration
	scenarios  string
	repeat     int
	seed       uint64
	out        string
	labels     string
	start      string
	partitions int
	progress   bool
}

func newSimulateCmd(a *app) *cobra.Command {
	var f simulateFlags
	var list strings.Builder
	for _, s := range sim.Scenarios() {
		fmt.Fprintf(&list, "  %-11s %s\n", s.Name, s.Description)
	}
	c := &cobra.Command{
		Use:   "simulate",
		Short: "Generate agent traffic with attack scenarios",
		Long: `Simulate generates tool-call events of benign agents (support, coding,
analytics and ops agents calling a realistic mix of tools) at --rate
events per second for --duration, with attack scenarios mixed in, each in
a session of its own:

` + list.String() + `
Attacks add their own events, at their own pace, to the benign rate; each
one starts after a short warm-up and ends within the run. The same --seed
always gives the same events.

With --out, events are written as JSON Lines (gzip-compressed if the name
ends in .gz; - for stdout) on a synthetic clock starting at --start, as
fast as they can be written. Without it, they are published live to the
events stream, paced at the given rate, with the wall clock as event time
(interrupt to stop early; what was sent is flushed). Live runs get fresh
event and session ids, so running again never collides with an earlier run.

--labels writes one JSON line per attack session, to score a run against
what the detectors decided:
  {"scenario":"exfil","tenant":"acme","agent":"spiffe://…","session":"…",
   "credential":"…","first_event_time":"…"}
For the credential scenario, agent is the second identity using the
victim's credential.
` + opsPartitionsHelp() + opsNATSHelp,
		Example: `  # a minute of traffic with every attack, published to tripline dev
  tripline simulate

  # ten minutes at 500 events/s from 200 agents in 3 tenants, two of each attack
  tripline simulate --agents 200 --tenants 3 --rate 500 --duration 10m --repeat 2

  # a labelled file, for backtests
  tripline simulate --duration 1h --scenarios exfil,credential --seed 7 \
    --out sim.jsonl.gz --labels sim-labels.jsonl

  # benign traffic only
  tripline simulate --scenarios none --rate 100 --duration 5m`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.opsSimulate(cmd, f) },
	}
	f.nats.add(c)
	fl := c.Flags()
	fl.IntVar(&f.agents, "agents", sim.DefaultAgents, "benign agents")
	fl.IntVar(&f.tenants, "tenants", 1, "tenants the agents are spread over")
	fl.Float64Var(&f.rate, "rate", sim.DefaultRate, "benign events per second")
	fl.DurationVar(&f.duration, "duration", sim.DefaultDuration, "length of the run")
	fl.StringVar(&f.scenarios, "scenarios", strings.Join(sim.ScenarioNames(), ","), "attack scenarios, comma-separated, or all or none")
	fl.IntVar(&f.repeat, "repeat", 1, "instances of each scenario")
	fl.Uint64Var(&f.seed, "seed", 1, "random seed")
	fl.StringVar(&f.out, "out", "", "write events to this JSON Lines file (.gz: compressed; -: stdout) instead of publishing")
	fl.StringVar(&f.labels, "labels", "", "write one JSON line per attack session to this file")
	fl.StringVar(&f.start, "start", sim.DefaultStart.Format(time.RFC3339), "time of the first event, RFC 3339 (with --out)")
	fl.IntVar(&f.partitions, "partitions", 0, "event partitions, as the engine's topology.partitions (live; default: see below)")
	fl.BoolVar(&f.progress, "progress", false, "report progress on stderr even when it is not a terminal (live)")
	return c
}

func (a *app) opsSimulate(cmd *cobra.Command, f simulateFlags) error {
	cfg := sim.Config{
		Seed: f.seed, Agents: f.agents, Tenants: f.tenants, Rate: f.rate, Duration: f.duration, Repeat: f.repeat,
	}
	switch strings.TrimSpace(f.scenarios) {
	case "all":
		cfg.Scenarios = sim.ScenarioNames()
	case "none", "":
	default:
		for _, s := range strings.Split(f.scenarios, ",") {
			cfg.Scenarios = append(cfg.Scenarios, strings.TrimSpace(s))
		}
	}
	for _, v := range []struct {
		name string
		bad  bool
	}{
		{"--agents", f.agents < 1}, {"--tenants", f.tenants < 1}, {"--rate", !(f.rate > 0)},
		{"--duration", f.duration <= 0}, {"--repeat", f.repeat < 1}, {"--partitions", f.partitions < 0},
	} {
		if v.bad {
			return usageError(fmt.Errorf("%s must be positive", v.name))
		}
	}
	live := f.out == ""
	if f.out == "-" && f.labels == "-" {
		return usageError(fmt.Errorf("--out and --labels cannot both be stdout"))
	}
	if live {
		if cmd.Flags().Changed("start") {
			return usageError(fmt.Errorf("--start goes with --out: live events carry the wall clock"))
		}
		cfg.Run = "sim" + strconv.FormatUint(f.seed, 10) + "-" + strconv.FormatInt(time.Now().Unix(), 36)
	} else {
		for _, name := range []string{"nats", "config", "partitions", "progress"} {
			if cmd.Flags().Changed(name) {
				return usageError(fmt.Errorf("--%s is for live runs; with --out nothing is published", name))
			}
		}
		t, err := time.Parse(time.RFC3339, f.start)
		if err != nil {
			return usageError(fmt.Errorf("--start: %w", err))
		}
		cfg.Start = t.UTC()
	}
	s, err := sim.New(cfg)
	if err != nil {
		return usageError(err)
	}

	var labels *opsOutput
	if f.labels != "" {
		if labels, err = opsCreateOutput(f.labels, a.stdout); err != nil {
			return err
		}
		defer labels.abort()
	}
	writeLabel := func(l *sim.Label) error {
		if labels == nil {
			return nil
		}
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		_, err = labels.Write(append(b, '\n'))
		return err
	}

	var st simStats
	if live {
		err = a.opsSimulateLive(cmd, f, s, writeLabel, &st)
	} else {
		err = a.opsSimulateFile(cmd.Context(), f, s, writeLabel, &st)
	}
	if err != nil {
		return err
	}
	if labels != nil {
		if err := labels.Close(); err != nil {
			return err
		}
	}
	return nil
}

type simStats struct {
	events, attacks int64
}

func (a *app) opsSimulateFile(ctx context.Context, f simulateFlags, s *sim.Sim, writeLabel func(*sim.Label) error, st *simStats) error {
	out, err := opsCreateOutput(f.out, a.stdout)
	if err != nil {
		return err
	}
	defer out.abort()
	var (
		ev   pipeline.Event
		buf  []byte
		last time.Time
	)
	for {
		_, l, ok := s.Next(&ev)
		if !ok {
			break
		}
		if st.events%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if l != nil {
			st.attacks++
			if err := writeLabel(l); err != nil {
				return err
			}
		}
		buf = append(ev.AppendJSON(buf[:0]), '\n')
		if _, err := out.Write(buf); err != nil {
			return err
		}
		st.events++
		last = ev.Time
	}
	if err := out.Close(); err != nil {
		return err
	}
	cfg := s.Config()
	fmt.Fprintf(a.stderr, "wrote %s events (%d attack sessions) to %s, %s to %s\n",
		group(st.events), st.attacks, f.out, cfg.Start.Format(time.RFC3339), last.Format(time.RFC3339))
	return nil
}

func (a *app) opsSimulateLive(cmd *cobra.Command, f simulateFlags, s *sim.Sim, writeLabel func(*sim.Label) error, st *simStats) error {
	ctx := cmd.Context()
	prod, reg, parts, done, err := a.opsProducer(cmd, f.nats, f.partitions)
	if err != nil {
		return err
	}
	defer done()

	cfg := s.Config()
	a.log.Info().Str("run", cfg.Run).Int("partitions", parts).Float64("rate", cfg.Rate).Dur("duration", cfg.Duration).
		Strs("scenarios", cfg.Scenarios).Msg("simulation started")
	prog := newOpsProgress(a.stderr, a.tty, f.progress || a.tty)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	start := time.Now()
	var (
		ev          pipeline.Event
		interrupted bool
		lag         time.Duration
	)
loop:
	for {
		off, l, ok := s.Next(&ev)
		if !ok {
			break
		}
		if d := time.Until(start.Add(off)); d > time.Millisecond {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				interrupted = true
				break loop
			}
		} else {
			lag = max(-d, 0)
		}
		ev.Time = time.Now().UTC().Truncate(time.Millisecond)
		if l != nil {
			st.attacks++
			l.FirstEventTime = ev.Time
			if err := writeLabel(l); err != nil {
				return err
			}
			a.log.Info().Str("scenario", l.Scenario).Str("tenant", l.Tenant).Str("agent", l.Agent).Str("session", l.Session).Msg("attack started")
		}
		if err := prod.Publish(ctx, &ev); err != nil {
			if ctx.Err() != nil {
				interrupted = true
				break
			}
			return err
		}
		st.events++
		prog.report(func() string {
			return fmt.Sprintf("%s events, %d attacks, %s events/s, %s behind schedule",
				group(st.events), st.attacks, group(int64(opsRate(st.events, time.Since(start)))), lag.Round(time.Millisecond))
		})
	}
	prog.clear()
	fctx := ctx
	if interrupted {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
	}
	if err := prod.Flush(fctx); err != nil {
		return fmt.Errorf("not every event was acknowledged: %w", err)
	}
	elapsed := time.Since(start)
	how := "published"
	if interrupted {
		how = "interrupted after publishing"
	}
	fmt.Fprintf(a.stderr, "%s %s events (%d attack sessions, %s duplicates) to %s with %d partitions in %s (%s events/s), run %s\n",
		how, group(st.events), st.attacks, group(opsCounterValue(reg, "tripline_producer_events_duplicate_total")),
		pipeline.EventsStream, parts, elapsed.Round(time.Millisecond), group(int64(opsRate(st.events, elapsed))), cfg.Run)
	return nil
}

// opsOutput is an output file: gzip-compressed when its name ends in .gz,
// stdout for "-".
type opsOutput struct {
	f  *os.File // nil for stdout
	zw *gzip.Writer
	bw *bufio.Writer
	ok bool // closed
}

func opsCreateOutput(path string, stdout io.Writer) (*opsOutput, error) {
	o := &opsOutput{}
	var w io.Writer = stdout
	if path != "-" {
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		o.f, w = f, f
		if strings.HasSuffix(path, ".gz") {
			o.zw = gzip.NewWriter(f)
			w = o.zw
		}
	}
	o.bw = bufio.NewWriterSize(w, 256<<10)
	return o, nil
}

func (o *opsOutput) Write(p []byte) (int, error) { return o.bw.Write(p) }

// Close flushes and closes the output.
func (o *opsOutput) Close() error {
	o.ok = true
	err := o.bw.Flush()
	if o.zw != nil {
		if zerr := o.zw.Close(); err == nil {
			err = zerr
		}
	}
	if o.f != nil {
		if cerr := o.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// abort closes the file if Close was not called (an error path).
func (o *opsOutput) abort() {
	if !o.ok && o.f != nil {
		o.f.Close()
	}
}
