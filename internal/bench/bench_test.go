package bench

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

func TestSummarize(t *testing.T) {
	require.Nil(t, summarize(nil))
	s := summarize([]float64{3, 1, 2})
	require.Equal(t, &Summary{Min: 1, Median: 2, Max: 3, Runs: []float64{3, 1, 2}}, s)
	require.Equal(t, 2.5, summarize([]float64{4, 1, 3, 2}).Median)
}

func TestPercentileIsNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 200; i++ {
		ds = append(ds, time.Duration(201-i)*time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 100 * time.Millisecond}, {0.99, 198 * time.Millisecond}, {1, 200 * time.Millisecond}} {
		require.Equal(t, c.want, percentile(ds, c.q), "q=%v", c.q)
	}
	require.Equal(t, 7*time.Millisecond, percentile([]time.Duration{time.Millisecond, 7 * time.Millisecond}, 0.99), "few samples: the max")
	require.Zero(t, percentile(nil, 0.5))
}

func TestFigureTargets(t *testing.T) {
	for _, c := range []struct {
		name    string
		target  Target
		v, ref  float64
		wantMet bool
	}{
		{"ratio met", Target{On: "ratio", Op: ">=", Value: 0.6}, 70, 100, true},
		{"ratio missed", Target{On: "ratio", Op: ">=", Value: 0.6}, 50, 100, false},
		{"value met", Target{On: "value", Op: "<=", Value: 10}, 9, 1, true},
		{"value missed", Target{On: "value", Op: "<=", Value: 10}, 11, 100, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &Figure{Target: &c.target}
			f.add(c.v, c.ref)
			f.finish()
			require.NotNil(t, f.Met)
			require.Equal(t, c.wantMet, *f.Met)
			require.InDelta(t, c.v/c.ref, f.Ratio.Median, 1e-12)
		})
	}
	f := &Figure{Target: &Target{On: "value", Op: "<=", Value: 1}}
	f.fail(2, errTest("no samples"))
	f.finish()
	require.Nil(t, f.Value)
	require.False(t, *f.Met, "a figure not measured does not meet its target")
	require.Equal(t, "run 2: no samples", f.Error)
}

type errTest string

func (e errTest) Error() string { return string(e) }

// TestTableMarksMissedTargets checks the table says plainly what missed
// its target and what could not be measured.
func TestTableMarksMissedTargets(t *testing.T) {
	set, err := rules.Compile(rules.ExampleSources()...)
	require.NoError(t, err)
	cfg, err := Config{Rules: set}.withDefaults()
	require.NoError(t, err)
	rep := &Report{Machine: machine(), Params: params(cfg), Figures: newFigures(), Runs: []RunDetail{{Run: 1}, {Run: 2}}}
	rep.Figure(FigPipeline).add(9000, 20000)
	rep.Figure(FigPipeline).add(11000, 20000)
	rep.Figure(FigCheckNanos).add(90, 30)
	rep.Figure(FigCheckNanos).add(110, 30)
	rep.Figure(FigRevokeP99).fail(1, errTest("no revocation observed"))
	for _, f := range rep.Figures {
		f.finish()
	}
	var b strings.Builder
	require.NoError(t, rep.WriteTable(&b))
	out := b.String()
	require.Contains(t, out, "1 of 7 targets met.")
	require.Contains(t, out, "✗ history writer: not measured: ")
	require.Contains(t, out, "✗ pipeline throughput: 0.50× the raw JetStream reference (median of 2 runs), target ≥ 0.6× ref")
	require.Contains(t, out, "✗ publish → revocation p99: not measured: run 1: no revocation observed")
	require.Regexp(t, `enforcer check, ns/op +100\.0 +90\.0 – 110\.0 +one map lookup +30\.0 +3\.33× +≤ 200 ns +✓`, out)
	require.Regexp(t, `pipeline throughput, events/s +10,000 +9,000 – 11,000 +raw JetStream +20,000 +0\.50× +≥ 0\.6× ref +✗`, out)
}

// TestSkippedFigure checks that a skipped figure is reported as skipped,
// with its reason, and is neither missing nor counted against the targets.
func TestSkippedFigure(t *testing.T) {
	set, err := rules.Compile(rules.ExampleSources()...)
	require.NoError(t, err)
	cfg, err := Config{Rules: set, NoHistory: true}.withDefaults()
	require.NoError(t, err)
	rep := &Report{Machine: machine(), Params: params(cfg), Figures: newFigures(), Runs: []RunDetail{{Run: 1}}}
	for _, f := range rep.Figures {
		if f.ID == FigHistory {
			f.Skipped = NoHistoryReason
			continue
		}
		f.add(1, 1)
	}
	for _, f := range rep.Figures {
		f.finish()
	}
	f := rep.Figure(FigHistory)
	require.Nil(t, f.Value)
	require.Nil(t, f.Met)
	require.Empty(t, rep.Missing(), "a skipped figure is not missing")

	var b strings.Builder
	require.NoError(t, rep.WriteTable(&b))
	out := b.String()
	require.Contains(t, out, "targets met (1 skipped).")
	require.Contains(t, out, "– history writer: skipped: ClickHouse not used (--no-history)")
	require.Regexp(t, `history writer, rows/s +skipped +raw ClickHouse insert +≥ 0\.8× ref\n`, out)
	require.Contains(t, out, "history: 120,000 rows per run, off (--no-history)")

	var js strings.Builder
	require.NoError(t, rep.WriteJSON(&js))
	require.Contains(t, js.String(), `"skipped": "ClickHouse not used (--no-history)"`)
}

// TestTrafficIsValidAndBenign runs the generated traffic through the
// example rules: the benign events draw shadow decisions only (some, so the
// pipeline publishes decisions), and each attack revokes its session.
func TestTrafficIsValidAndBenign(t *testing.T) {
	set, err := rules.Compile(rules.ExampleSources()...)
	require.NoError(t, err)
	eng := detectors.NewEngine(set, detectors.Options{})
	tr := newTraffic(10, 40, pipeline.DefaultPartitions)
	lim := pipeline.DefaultLimits()
	shadow := 0
	for _, p := range tr.payloads("e-", 4000) { // 100 calls per session
		var ev pipeline.Event
		require.NoError(t, pipeline.Decode(p.data, &ev, &lim))
		require.NoError(t, ev.Validate(&lim))
		require.Equal(t, pipeline.Partition(ev.Agent, pipeline.DefaultPartitions), p.part)
		for _, d := range eng.Process(&ev, nil) {
			require.Equal(t, rules.ModeShadow, d.Mode, "benign traffic fired %s", d.Rule)
			shadow++
		}
	}
	require.Equal(t, 4000/outOfScopeEvery, shadow)

	for i := range 3 {
		read, send, subj := attack("x-"+strconv.Itoa(i), time.Now(), pipeline.DefaultPartitions)
		require.NoError(t, read.Validate(&lim))
		require.NoError(t, send.Validate(&lim))
		require.Equal(t, pipeline.EventSubject(benchTenant, send.Agent, pipeline.DefaultPartitions), subj)
		require.Empty(t, eng.Process(&read, nil))
		decs := eng.Process(&send, nil)
		require.Len(t, decs, 1)
		require.Equal(t, "exfil-after-sensitive-read", decs[0].Rule)
		require.Equal(t, rules.ModeEnforce, decs[0].Mode)
		require.Equal(t, send.Session, decs[0].Subject.Session)
	}
}
