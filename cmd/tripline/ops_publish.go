package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

// opsMaxReported is how many malformed lines publish reports one by one.
const opsMaxReported = 20

type publishFlags struct {
	nats       opsNATSFlags
	file       string
	strict     bool
	partitions int
	progress   bool
}

func newPublishCmd(a *app) *cobra.Command {
	var f publishFlags
	c := &cobra.Command{
		Use:   "publish --file FILE",
		Short: "Publish tool-call events from a JSON Lines file",
		Long: `Publish reads tool-call events as JSON Lines (plain or gzip-compressed, or
- for stdin), decodes and validates each one exactly as the engine does,
and publishes the valid ones to the events stream: on the subject of the
event's tenant and agent partition, with the event id as Nats-Msg-Id, so
publishing the same file twice within the stream's duplicate window (10
minutes by default) adds nothing.

Invalid lines are not sent: they are counted, and the first ` + fmt.Sprint(opsMaxReported) + ` are
reported on stderr with their line numbers. With --strict, the first
invalid line stops the command (exit status 1) after the events before it
have been acknowledged; fix the line and publish again.

Publishing is asynchronous with a bounded window of unacknowledged events;
the command ends when every event is acknowledged by the stream. Progress
(events/s) goes to stderr on a terminal, or with --progress.
` + opsPartitionsHelp() + opsNATSHelp,
		Example: `  tripline publish --file events.jsonl
  zcat events.jsonl.gz | tripline publish --file - --partitions 16 --nats nats://nats:4222
  tripline publish --file events.jsonl.gz --config /etc/tripline/tripline.yaml --strict`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.opsPublish(cmd, f) },
	}
	f.nats.add(c)
	fl := c.Flags()
	fl.StringVar(&f.file, "file", "", "events: JSON Lines, plain or gzip, or - for stdin")
	fl.BoolVar(&f.strict, "strict", false, "stop at the first invalid line (exit status 1)")
	fl.IntVar(&f.partitions, "partitions", 0, "event partitions, as the engine's topology.partitions (default: see below)")
	fl.BoolVar(&f.progress, "progress", false, "report progress on stderr even when it is not a terminal")
	_ = c.MarkFlagRequired("file")
	return c
}

// publishStats is what publish did.
type publishStats struct {
	lines, events, malformed, bytes int64
}

func (a *app) opsPublish(cmd *cobra.Command, f publishFlags) error {
	if f.partitions < 0 {
		return usageError(fmt.Errorf("--partitions %d is negative", f.partitions))
	}
	ctx := cmd.Context()
	in, err := opsOpenInput(f.file, a.stdin)
	if err != nil {
		return err
	}
	defer in.Close()
	prod, reg, parts, done, err := a.opsProducer(cmd, f.nats, f.partitions)
	if err != nil {
		return err
	}
	defer done()

	var st publishStats
	start := time.Now()
	prog := newOpsProgress(a.stderr, a.tty, f.progress || a.tty)
	lim := pipeline.DefaultLimits()
	dec := pipeline.NewDecoder(&lim)
	var (
		ev  pipeline.Event
		buf []byte
	)
	rerr := opsReadLines(in, lim.MaxEventBytes, &st.bytes, func(n int64, line []byte, lerr error) error {
		st.lines = n
		if err := ctx.Err(); err != nil {
			return err
		}
		if lerr == nil {
			if lerr = dec.Decode(line, &ev); lerr == nil {
				// the engine refuses what does not fit once re-encoded
				if buf = ev.AppendJSON(buf[:0]); len(buf) > lim.MaxEventBytes {
					lerr = fmt.Errorf("event %s is %d bytes once encoded, more than %d", ev.ID, len(buf), lim.MaxEventBytes)
				}
			}
		}
		if lerr != nil {
			st.malformed++
			if st.malformed <= opsMaxReported || f.strict {
				prog.clear()
				fmt.Fprintf(a.stderr, "%s: line %d: %v\n", f.file, n, lerr)
			}
			if f.strict {
				return errOpsStrict
			}
			return nil
		}
		if err := prod.Publish(ctx, &ev); err != nil {
			var ve *pipeline.ValidationError
			if errors.As(err, &ve) { // Decode validated it: not expected
				st.malformed++
				return nil
			}
			return err
		}
		st.events++
		prog.report(func() string {
			return fmt.Sprintf("%s events sent, %s lines, %s, %s events/s",
				group(st.events), group(st.lines), sizeOf(st.bytes), group(int64(opsRate(st.events, time.Since(start)))))
		})
		return nil
	})
	prog.clear()
	if rerr != nil && !errors.Is(rerr, errOpsStrict) {
		// what was sent may still land: wait for it briefly, then report
		fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = prod.Flush(fctx)
		cancel()
		return rerr
	}
	if err := prod.Flush(ctx); err != nil {
		return fmt.Errorf("not every event was acknowledged: %w (publishing again is safe: event ids are deduplicated)", err)
	}
	elapsed := time.Since(start)
	if st.malformed > opsMaxReported && !f.strict {
		fmt.Fprintf(a.stderr, "%s: %s invalid lines in all (the first %d shown)\n", f.file, group(st.malformed), opsMaxReported)
	}
	dups := opsCounterValue(reg, "tripline_producer_events_duplicate_total")
	fmt.Fprintf(a.stdout, "published %s events from %s lines (%s invalid, %s duplicates) to %s with %d partitions in %s (%s events/s)\n",
		group(st.events), group(st.lines), group(st.malformed), group(dups), pipeline.EventsStream, parts,
		elapsed.Round(time.Millisecond), group(int64(opsRate(st.events, elapsed))))
	if errors.Is(rerr, errOpsStrict) {
		return findings()
	}
	return nil
}

// errOpsStrict stops reading at an invalid line in strict mode.
var errOpsStrict = errors.New("invalid line in strict mode")

func opsRate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// opsCounterValue reads a counter from reg, 0 if it is not there.
func opsCounterValue(reg prometheus.Gatherer, name string) int64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
		return int64(sum)
	}
	return 0
}

// opsOpenInput opens a file, or stdin for "-".
func opsOpenInput(path string, stdin io.Reader) (io.ReadCloser, error) {
	if path == "-" {
		return io.NopCloser(stdin), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// opsByteCounter counts the bytes read through it.
type opsByteCounter struct {
	r io.Reader
	n *int64
}

func (c opsByteCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

// opsReadLines calls fn with each non-blank line of r (JSON Lines, plain or
// gzip-compressed, detected by its magic bytes) and its 1-based number,
// without the line ending. A line longer than maxLine is passed with a nil
// line and an error. It stops at fn's first error and returns it; the
// line slice is valid only during the call. read counts the bytes read
// (compressed bytes for gzip input).
func opsReadLines(r io.Reader, maxLine int, read *int64, fn func(n int64, line []byte, err error) error) error {
	bufSize := max(64<<10, maxLine+2)
	raw := bufio.NewReaderSize(opsByteCounter{r: r, n: read}, bufSize)
	br := raw
	if magic, _ := raw.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(raw)
		if err != nil {
			return fmt.Errorf("gzip input: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, bufSize)
	}
	var n int64
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			n++
			if ferr := fn(n, nil, fmt.Errorf("line longer than the %d-byte event limit", maxLine)); ferr != nil {
				return ferr
			}
		} else if len(line) > 0 {
			n++
			if line = bytes.TrimRight(line, "\r\n"); len(bytes.TrimSpace(line)) > 0 {
				if ferr := fn(n, line, nil); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading events: %w", err)
		}
	}
}

// opsProgress reports progress on stderr at most once a second: one line
// rewritten in place on a terminal, a line per report otherwise.
type opsProgress struct {
	w       io.Writer
	tty, on bool
	last    time.Time
	shown   bool
}

func newOpsProgress(w io.Writer, tty, on bool) *opsProgress {
	return &opsProgress{w: w, tty: tty, on: on, last: time.Now()}
}

// report prints line() if a second has passed since the last report.
func (p *opsProgress) report(line func() string) {
	if !p.on || time.Since(p.last) < time.Second {
		return
	}
	p.last = time.Now()
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line())
		p.shown = true
		return
	}
	fmt.Fprintln(p.w, line())
}

// clear ends the in-place line, before other output.
func (p *opsProgress) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}

// opsProducer connects to NATS (checking the events stream exists and the
// partition count matches the engine's) and returns a producer with its
// metrics registry, and a function that flushes and closes both.
func (a *app) opsProducer(cmd *cobra.Command, nf opsNATSFlags, partitions int) (*enforce.Producer, *prometheus.Registry, int, func(), error) {
	ctx := cmd.Context()
	c, err := a.opsConnect(cmd, nf)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	if err := opsRequireStream(ctx, c.js, pipeline.EventsStream); err != nil {
		c.Close()
		return nil, nil, 0, nil, err
	}
	parts := c.partitions(partitions)
	a.opsCheckPartitions(ctx, c, parts)
	reg := prometheus.NewRegistry()
	prod := enforce.NewProducer(c.js, enforce.ProducerConfig{Partitions: parts, Logger: a.log, Registerer: reg})
	return prod, reg, parts, func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = prod.Close(cctx)
		c.Close()
	}, nil
}
