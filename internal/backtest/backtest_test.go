package backtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/internal/testgen"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

const samplePath = "../../testdata/events/sample.jsonl"

func goodRules(t testing.TB) *rules.Set {
	t.Helper()
	set, err := rules.LoadPaths("../../testdata/rules/good")
	require.NoError(t, err)
	return set
}

// direct runs the events of a JSON Lines file through an engine one by
// one, the reference a backtest must agree with.
func direct(t *testing.T, set *rules.Set, data []byte) ([]detectors.Decision, *detectors.Engine) {
	t.Helper()
	eng := detectors.NewEngine(set, detectors.Options{})
	var out []detectors.Decision
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var ev pipeline.Event
		if pipeline.Decode(sc.Bytes(), &ev, nil) == nil {
			out = eng.Process(&ev, out)
		}
	}
	require.NoError(t, sc.Err())
	return out, eng
}

func readDecisions(t *testing.T, data []byte) []detectors.Decision {
	t.Helper()
	var out []detectors.Decision
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l == "" {
			continue
		}
		var d detectors.Decision
		require.NoError(t, json.Unmarshal([]byte(l), &d))
		out = append(out, d)
	}
	return out
}

func TestSampleFile(t *testing.T) {
	set := goodRules(t)
	data, err := os.ReadFile(samplePath)
	require.NoError(t, err)
	var decisions bytes.Buffer
	var progress []Progress
	res, err := Run(context.Background(), set, bytes.NewReader(data), Config{
		Decisions:     &decisions,
		Total:         int64(len(data)),
		Progress:      func(p Progress) { progress = append(progress, p) },
		ProgressEvery: 50,
		BatchSize:     16,
	})
	require.NoError(t, err)
	require.EqualValues(t, 200, res.Lines)
	require.EqualValues(t, 196, res.Events)
	require.EqualValues(t, 4, res.Malformed)
	require.Len(t, res.Messages, 4)
	for i, n := range []string{"line 20: invalid event JSON", "line 55: invalid event JSON", "line 90: invalid event: tenant: missing", "line 140: invalid event JSON: bytes_out"} {
		require.True(t, strings.HasPrefix(res.Messages[i], n), res.Messages[i])
	}
	require.EqualValues(t, len(data), res.Bytes)
	require.Positive(t, res.EventsPerSec)

	want, eng := direct(t, set, data)
	got := readDecisions(t, decisions.Bytes())
	require.Equal(t, len(want), len(got))
	for i := range want {
		require.Equal(t, want[i].ID, got[i].ID)
		require.Equal(t, want[i].EventID, got[i].EventID)
	}
	require.EqualValues(t, len(want), res.Decisions)
	require.Equal(t, eng.Stats(), res.Stats)
	require.EqualValues(t, 196, res.Stats.Events)

	// The exfiltration scenario in the sample fires both rules.
	byRule := map[string]RuleSummary{}
	for _, r := range res.Rules {
		byRule[r.Rule] = r
	}
	require.Len(t, byRule, 2)
	require.GreaterOrEqual(t, byRule["exfil"].Fired, int64(1))
	require.GreaterOrEqual(t, byRule["bulk-read"].Fired, int64(1))
	exfilSession := false
	for _, d := range got {
		if d.Rule == "exfil" && d.Subject.Session == "s-exfil-0" {
			exfilSession = true
		}
	}
	require.True(t, exfilSession, "exfil fires on the scenario's session")
	for _, r := range res.Rules {
		rs := eng.RuleStats(r.Rule)
		require.Equal(t, rs.Fired, r.Fired, r.Rule)
		require.Equal(t, rs.Suppressed, r.Suppressed, r.Rule)
		require.Equal(t, rs.Groups, r.Groups, r.Rule)
		require.Equal(t, "revoke", r.Action)
		require.Equal(t, "enforce", r.Mode)
	}

	require.NotEmpty(t, progress)
	last := progress[len(progress)-1]
	require.True(t, last.Done)
	require.EqualValues(t, 196, last.Events)
	require.EqualValues(t, len(data), last.Total)
	require.GreaterOrEqual(t, len(progress), 4, "every 50 events, then the end")
}

func TestGzipInput(t *testing.T) {
	set := goodRules(t)
	data, err := os.ReadFile(samplePath)
	require.NoError(t, err)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err = zw.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())

	plain, err := Run(context.Background(), set, bytes.NewReader(data), Config{})
	require.NoError(t, err)
	zipped, err := Run(context.Background(), set, bytes.NewReader(gz.Bytes()), Config{})
	require.NoError(t, err)
	require.Equal(t, plain.Rules, zipped.Rules)
	require.Equal(t, plain.Messages, zipped.Messages)
	require.Equal(t, plain.Events, zipped.Events)
	require.EqualValues(t, gz.Len(), zipped.Bytes, "bytes count the compressed input")

	// A gzip file opened by name.
	path := filepath.Join(t.TempDir(), "events.jsonl.gz")
	require.NoError(t, os.WriteFile(path, gz.Bytes(), 0o644))
	f, size, err := OpenFile(path, nil)
	require.NoError(t, err)
	defer f.Close()
	require.EqualValues(t, gz.Len(), size)
	fromFile, err := Run(context.Background(), set, f, Config{Total: size})
	require.NoError(t, err)
	require.Equal(t, plain.Rules, fromFile.Rules)

	// A corrupt gzip stream is an error, not malformed lines.
	bad := append([]byte{}, gz.Bytes()[:gz.Len()/2]...)
	_, err = Run(context.Background(), set, bytes.NewReader(bad), Config{})
	require.Error(t, err)
}

func TestStrict(t *testing.T) {
	set := goodRules(t)
	data, err := os.ReadFile(samplePath)
	require.NoError(t, err)
	res, err := Run(context.Background(), set, bytes.NewReader(data), Config{Strict: true, BatchSize: 4})
	var me *MalformedError
	require.ErrorAs(t, err, &me)
	require.EqualValues(t, 20, me.Line)
	require.Regexp(t, `^line 20: invalid event JSON: `, err.Error())
	var de *pipeline.DecodeError
	require.ErrorAs(t, err, &de)
	require.EqualValues(t, 19, res.Events, "the events before the bad line are processed")
	require.EqualValues(t, 1, res.Malformed)
}

func TestLines(t *testing.T) {
	set := goodRules(t)
	ev := func(id string) string {
		return `{"id":"` + id + `","time":"2026-01-01T00:00:00Z","tenant":"acme","agent":"spiffe://acme.example/a","tool":"t","action":"read"}`
	}
	huge := `{"id":"x","attrs":{"k":"` + strings.Repeat("a", 2<<20) + `"}}`
	// one byte over the limit: fits the read buffer, the decoder rejects it
	big := `{"id":"y","attrs":{"k":"` + strings.Repeat("a", 65537-27) + `"}}`
	input := strings.Join([]string{
		ev("a"),
		"",
		"   ",
		ev("b") + "\r",
		huge,
		ev("c"),
		big,
		"{",
		ev("d"), // no final newline
	}, "\n")
	res, err := Run(context.Background(), set, strings.NewReader(input), Config{})
	require.NoError(t, err)
	require.EqualValues(t, 9, res.Lines)
	require.EqualValues(t, 4, res.Events)
	require.EqualValues(t, 3, res.Malformed)
	require.Len(t, res.Messages, 3)
	require.Equal(t, "line 5: line longer than the 65536-byte event limit", res.Messages[0])
	require.Regexp(t, `^line 7: invalid event JSON: event is \d+ bytes, larger than the 65536-byte limit`, res.Messages[1])
	require.Regexp(t, `^line 8: invalid event JSON`, res.Messages[2])

	// Only the first MaxMessages messages are kept; all are counted.
	res, err = Run(context.Background(), set, strings.NewReader(strings.Repeat("nope\n", 50)), Config{})
	require.NoError(t, err)
	require.EqualValues(t, 50, res.Malformed)
	require.Len(t, res.Messages, MaxMessages)
	require.Equal(t, "line 20: invalid event JSON: invalid character 'n', expected a JSON object (at byte 0)", res.Messages[19])

	// Empty input.
	res, err = Run(context.Background(), set, strings.NewReader(""), Config{})
	require.NoError(t, err)
	require.Zero(t, res.Lines)
	require.Len(t, res.Rules, 2)
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n += len(p); w.n > 100 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestDecisionWriteError(t *testing.T) {
	set := goodRules(t)
	var buf bytes.Buffer
	// many exfiltration scenarios: many decisions
	require.NoError(t, testgen.WriteJSONL(&buf, testgen.Config{Seed: 3, Events: 200_000, Exfil: 2000}))
	_, err := Run(context.Background(), set, &buf, Config{Decisions: &failWriter{}})
	require.ErrorContains(t, err, "disk full")
}

func TestCancel(t *testing.T) {
	set := goodRules(t)
	var buf bytes.Buffer
	require.NoError(t, testgen.WriteJSONL(&buf, testgen.Config{Seed: 3, Events: 20_000}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, set, &buf, Config{})
	require.ErrorIs(t, err, context.Canceled)
}

func TestProgressByWallTime(t *testing.T) {
	set := goodRules(t)
	var buf bytes.Buffer
	require.NoError(t, testgen.WriteJSONL(&buf, testgen.Config{Seed: 3, Events: 1000}))
	// A clock that advances one second per reading: a report every batch.
	clock := time.Unix(0, 0)
	now := func() time.Time { clock = clock.Add(time.Second); return clock }
	var n int
	_, err := Run(context.Background(), set, &buf, Config{Now: now, BatchSize: 100, Progress: func(Progress) { n++ }})
	require.NoError(t, err)
	require.Equal(t, 11, n, "10 batches and the end")
}

func FuzzRun(f *testing.F) {
	data, err := os.ReadFile(samplePath)
	require.NoError(f, err)
	lines := strings.Split(string(data), "\n")
	f.Add([]byte(strings.Join(lines[95:110], "\n")))
	f.Add([]byte("{\n\n}\r\n"))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	set := goodRules(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		res, err := Run(context.Background(), set, bytes.NewReader(in), Config{BatchSize: 3})
		if len(in) >= 2 && in[0] == 0x1f && in[1] == 0x8b {
			return // gzip: corrupt streams are errors
		}
		require.NoError(t, err)
		require.EqualValues(t, res.Lines, res.Malformed+res.Events+int64(blank(in)), "every line is an event, malformed or blank")
		require.LessOrEqual(t, len(res.Messages), MaxMessages)
	})
}

// blank counts the blank lines of in.
func blank(in []byte) int {
	n := 0
	if len(in) == 0 {
		return 0
	}
	for _, l := range bytes.Split(bytes.TrimSuffix(in, []byte("\n")), []byte("\n")) {
		if len(bytes.TrimSpace(l)) == 0 {
			n++
		}
	}
	return n
}

// BenchmarkBacktest1M replays a generated file of one million events
// through the test rules, and through the example pack.
func BenchmarkBacktest1M(b *testing.B) {
	path := generate(b, 1_000_000)
	b.Run("rules=testdata", func(b *testing.B) { benchFile(b, goodRules(b), path) })
	b.Run("rules=examples", func(b *testing.B) {
		set, err := rules.LoadPaths("../../rules/examples")
		require.NoError(b, err)
		require.NotEmpty(b, set.Rules, "the example rules are missing")
		benchFile(b, set, path)
	})
}

func generate(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "events.jsonl")
	f, err := os.Create(path)
	require.NoError(b, err)
	require.NoError(b, testgen.WriteJSONL(f, testgen.Config{Seed: 1, Events: n, Agents: 200, SessionsPerAgent: 5, Tenants: 4, Exfil: 50}))
	require.NoError(b, f.Close())
	return path
}

func benchFile(b *testing.B, set *rules.Set, path string) {
	st, err := os.Stat(path)
	require.NoError(b, err)
	b.SetBytes(st.Size())
	b.ReportAllocs()
	var events int64
	b.ResetTimer()
	for b.Loop() {
		f, err := os.Open(path)
		require.NoError(b, err)
		res, err := Run(context.Background(), set, f, Config{})
		require.NoError(b, err)
		require.NoError(b, f.Close())
		require.Zero(b, res.Malformed)
		events += res.Events
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}
