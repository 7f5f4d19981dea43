package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
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
	days       float64
	scenarios  string
	repeat     int
	seed       uint64
	out        string
	labels     string
	start      string
	attackFrom time.Duration
	speed      float64
	partitions int
	progress   bool
}

// Defaults that differ between a labelled file (a scoring run) and a live
// run (a demo).
const (
	simFileDuration = sim.DefaultDuration
	simLiveDuration = time.Minute
	simFileRepeat   = 3
	simLiveRepeat   = 1
	simLiveRate     = 50.0
)

func newSimulateCmd(a *app) *cobra.Command {
	var f simulateFlags
	var list strings.Builder
	for _, s := range sim.Scenarios() {
		fmt.Fprintf(&list, "  %-17s %s\n", s.Name, s.Description)
	}
	c := &cobra.Command{
		Use:   "simulate",
		Short: "Generate realistic agent traffic with labelled attack scenarios",
		Long: `Simulate generates the tool-call events of a population of agents —
support copilots, coding agents, data-analysis agents and orchestrators
with their sub-agents — spread over tenants in different time zones, each
role with its own tools, payload sizes, pacing and daily rhythm. The
benign traffic holds the hard negatives of real deployments (customer
e-mail to new addresses after confidential reads, refactors touching
hundreds of files, failing test bursts, nightly jobs, big extracts,
outages with retries, expired tokens, restarts, a tool rolled out on day
2), so that rules can be tuned on it and their false positives measured.
docs/simulator.md describes it all.

Attack scenarios are mixed in, each instance in sessions of its own
against a victim of a suitable role, on the last day of the run (the
second half of runs shorter than two days):

` + list.String() + `
The same --seed always gives the same events; the benign events do not
depend on the scenarios.

With --out, events are written as JSON Lines (gzip-compressed if the name
ends in .gz; - for stdout) on a synthetic clock starting at --start, as
fast as they can be written. The defaults make a scoring run: two days,
90 agents in 3 tenants, every scenario three times.

Without --out, events are published live to the events stream, by default
for a minute at about 50 events/s with every scenario once (compressed in
time to fit), paced at the wall clock or --speed times faster; event
times follow the simulated clock, which starts now (interrupt to stop
early; what was sent is flushed). Live runs get fresh event and session
ids, so running again never collides with an earlier run.

--labels writes one JSON line per attack instance, to score a run:
  {"id":"injected-exfil-1","scenario":"injected-exfil","tenant":"acme",
   "agent":"spiffe://…","session":"…","sessions":["…"],"credential":"…",
   "instance":"…","first_event_time":"…","last_event_time":"…","events":7}
The events of the tenant's sessions listed are the attack's; every other
session is benign. Score with:
  tripline rules score --events events.jsonl.gz --labels labels.jsonl
` + opsPartitionsHelp() + opsNATSHelp,
		Example: `  # a labelled scoring run: 2 days, 90 agents, 3 tenants, every scenario 3 times
  tripline simulate --out events.jsonl.gz --labels labels.jsonl

  # a week of benign traffic from 300 agents in 5 tenants
  tripline simulate --days 7 --agents 300 --tenants 5 --scenarios none --out week.jsonl.gz

  # a minute of live traffic with every attack, published to tripline dev
  tripline simulate

  # two hours of simulated time published in two minutes
  tripline simulate --duration 2h --speed 60 --scenarios runaway-loop,credential-reuse

  # ten minutes at about 500 events/s
  tripline simulate --agents 200 --rate 500 --duration 10m --repeat 2`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.opsSimulate(cmd, f) },
	}
	f.nats.add(c)
	fl := c.Flags()
	fl.IntVar(&f.agents, "agents", sim.DefaultAgents, "agents of the populations (sub-agents not counted)")
	fl.IntVar(&f.tenants, "tenants", sim.DefaultTenants, "tenants the agents are spread over")
	fl.Float64Var(&f.rate, "rate", 0, "scale activity to about this many benign events per second (default: the populations' natural activity with --out, 50 live)")
	fl.DurationVar(&f.duration, "duration", 0, "simulated length of the run (default 48h with --out, 1m live)")
	fl.Float64Var(&f.days, "days", 0, "simulated length of the run in days (instead of --duration)")
	fl.StringVar(&f.scenarios, "scenarios", "all", "attack scenarios, comma-separated, or all or none")
	fl.IntVar(&f.repeat, "repeat", 0, "instances of each scenario (default 3 with --out, 1 live)")
	fl.Uint64Var(&f.seed, "seed", 1, "random seed")
	fl.StringVar(&f.out, "out", "", "write events to this JSON Lines file (.gz: compressed; -: stdout) instead of publishing")
	fl.StringVar(&f.labels, "labels", "", "write one JSON line per attack instance to this file")
	fl.StringVar(&f.start, "start", sim.DefaultStart.Format(time.RFC3339), "simulated time of offset 0, RFC 3339 (with --out; live runs start now)")
	fl.DurationVar(&f.attackFrom, "attack-from", 0, "earliest offset of an attack (default: the start of the last day, or half the run if shorter than two days)")
	fl.Float64Var(&f.speed, "speed", 1, "live: simulated seconds per wall-clock second")
	fl.IntVar(&f.partitions, "partitions", 0, "event partitions, as the engine's topology.partitions (live; default: see below)")
	fl.BoolVar(&f.progress, "progress", false, "report progress on stderr even when it is not a terminal")
	return c
}

func (a *app) opsSimulate(cmd *cobra.Command, f simulateFlags) error {
	live := f.out == ""
	changed := cmd.Flags().Changed
	cfg := sim.Config{Seed: f.seed, Agents: f.agents, Tenants: f.tenants, Rate: f.rate, Duration: f.duration,
		Repeat: f.repeat, AttackFrom: f.attackFrom}
	for _, v := range []struct {
		name string
		bad  bool
	}{
		{"--agents", f.agents < 1}, {"--tenants", f.tenants < 1}, {"--rate", changed("rate") && !(f.rate > 0)},
		{"--duration", changed("duration") && f.duration <= 0}, {"--days", changed("days") && !(f.days > 0)},
		{"--repeat", changed("repeat") && f.repeat < 1}, {"--partitions", f.partitions < 0},
		{"--speed", !(f.speed > 0)}, {"--attack-from", changed("attack-from") && f.attackFrom <= 0},
	} {
		if v.bad {
			return usageError(fmt.Errorf("%s must be positive", v.name))
		}
	}
	if changed("days") {
		if changed("duration") {
			return usageError(fmt.Errorf("--days and --duration say the same thing: give one"))
		}
		if f.days > 366 {
			return usageError(fmt.Errorf("--days: %v is more than a year", f.days))
		}
		cfg.Duration = time.Duration(f.days * float64(24*time.Hour)).Round(time.Second)
	}
	if cfg.Duration == 0 {
		cfg.Duration = simFileDuration
		if live {
			cfg.Duration = simLiveDuration
		}
	}
	if cfg.Repeat == 0 {
		cfg.Repeat = simFileRepeat
		if live {
			cfg.Repeat = simLiveRepeat
		}
	}
	if live && !changed("rate") {
		cfg.Rate = simLiveRate
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
	if f.out == "-" && f.labels == "-" {
		return usageError(fmt.Errorf("--out and --labels cannot both be stdout"))
	}
	if live {
		if changed("start") {
			return usageError(fmt.Errorf("--start goes with --out: live runs start now"))
		}
		now := time.Now()
		cfg.Start = now
		cfg.Run = "sim" + strconv.FormatUint(f.seed, 10) + "-" + strconv.FormatInt(now.Unix(), 36)
	} else {
		for _, name := range []string{"nats", "config", "partitions", "speed"} {
			if changed(name) {
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
	cfg := s.Config()
	prog := newOpsProgress(a.stderr, a.tty, f.progress || a.tty)
	began := time.Now()
	var (
		ev   pipeline.Event
		buf  []byte
		last time.Time
	)
	for {
		off, l, ok := s.Next(&ev)
		if !ok {
			break
		}
		if st.events%8192 == 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			prog.report(func() string {
				return fmt.Sprintf("%s events, %d attacks, simulated %s of %s, %s events/s", group(st.events), st.attacks,
					off.Truncate(time.Minute), cfg.Duration, group(int64(opsRate(st.events, time.Since(began)))))
			})
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
	prog.clear()
	if err := out.Close(); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "wrote %s events (%d attacks) to %s, %s to %s, in %s\n",
		group(st.events), st.attacks, f.out, cfg.Start.Format(time.RFC3339), last.Format(time.RFC3339), time.Since(began).Round(time.Millisecond))
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
	a.log.Info().Str("run", cfg.Run).Int("partitions", parts).Int("agents", cfg.Agents).Dur("duration", cfg.Duration).
		Float64("speed", f.speed).Strs("scenarios", cfg.Scenarios).Msg("simulation started")
	prog := newOpsProgress(a.stderr, a.tty, f.progress || a.tty)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	// Offset d is due d/speed after the start. The clock starts when the
	// first event is ready, once the simulation has filled the run with
	// sessions in progress (which takes a moment).
	var (
		start       time.Time
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
		if start.IsZero() {
			start = time.Now()
		}
		if d := time.Until(start.Add(time.Duration(float64(off) / f.speed))); d > time.Millisecond {
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
		if l != nil {
			st.attacks++
			if err := writeLabel(l); err != nil {
				return err
			}
			a.log.Info().Str("scenario", l.Scenario).Str("tenant", l.Tenant).Str("agent", l.Agent).Str("session", l.Session).
				Int("events", l.Events).Msg("attack started")
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
			return fmt.Sprintf("%s events, %d attacks, simulated %s of %s, %s events/s, %s behind schedule",
				group(st.events), st.attacks, off.Truncate(time.Second), cfg.Duration,
				group(int64(opsRate(st.events, time.Since(start)))), lag.Round(time.Millisecond))
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
	elapsed := time.Duration(0)
	if !start.IsZero() {
		elapsed = time.Since(start)
	}
	how := "published"
	if interrupted {
		how = "interrupted after publishing"
	}
	fmt.Fprintf(a.stderr, "%s %s events (%d attacks, %s duplicates) to %s with %d partitions in %s (%s events/s), run %s\n",
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
