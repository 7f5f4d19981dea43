package testgen

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/pipeline"
)

var update = flag.Bool("update", false, "rewrite testdata/events/sample.jsonl")

func TestEventsValidAndDeterministic(t *testing.T) {
	cfg := Config{Seed: 42, Events: 5000, Agents: 12, SessionsPerAgent: 4, Tenants: 2, Exfil: 3}
	a := Events(cfg)
	b := Events(cfg)
	require.Len(t, a, 5000)
	require.Equal(t, a, b, "same config, same events")

	other := Events(Config{Seed: 43, Events: 5000, Agents: 12, SessionsPerAgent: 4, Tenants: 2, Exfil: 3})
	require.NotEqual(t, a, other, "another seed, other events")

	lim := pipeline.DefaultLimits()
	ids := map[string]bool{}
	sessions := map[string]bool{}
	tools := map[string]bool{}
	actions := map[pipeline.Action]int{}
	exfilSends := 0
	for i := range a {
		ev := &a[i]
		require.NoError(t, ev.Validate(&lim), "event %d", i)
		require.False(t, ids[ev.ID], "duplicate id %s", ev.ID)
		ids[ev.ID] = true
		if i > 0 {
			require.False(t, ev.Time.Before(a[i-1].Time), "time goes back at %d", i)
		}
		sessions[ev.Tenant+"/"+ev.Session] = true
		tools[ev.Tool] = true
		actions[ev.Action]++
		if ev.Destination == ExfilDestination {
			exfilSends++
		}
	}
	require.Equal(t, 3, exfilSends)
	require.GreaterOrEqual(t, len(sessions), 12*4)
	require.GreaterOrEqual(t, len(tools), 15)
	for _, act := range []pipeline.Action{pipeline.ActionRead, pipeline.ActionWrite, pipeline.ActionSend, pipeline.ActionExecute, pipeline.ActionDelete, pipeline.ActionAuth} {
		require.Positive(t, actions[act], "action %s never generated", act)
	}
	require.Greater(t, actions[pipeline.ActionRead], actions[pipeline.ActionDelete])
}

func TestWriteJSONLRoundTrip(t *testing.T) {
	cfg := Config{Seed: 7, Events: 2000, Exfil: 1}
	var buf bytes.Buffer
	require.NoError(t, WriteJSONL(&buf, cfg))
	want := Events(cfg)

	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	i := 0
	for sc.Scan() {
		var ev pipeline.Event
		require.NoError(t, pipeline.Decode(sc.Bytes(), &ev, nil), "line %d", i+1)
		require.Equal(t, want[i], ev, "line %d", i+1)
		i++
	}
	require.NoError(t, sc.Err())
	require.Equal(t, len(want), i)
}

// sampleMalformed are the malformed lines of testdata/events/sample.jsonl,
// by line number (1-based).
var sampleMalformed = map[int]string{
	20:  `{"id":"bad-1","time":"2026-01-01T00:00:01.000Z","tenant":"tenant1"`,
	55:  `this is not json`,
	90:  `{"id":"bad-3","time":"2026-01-01T00:00:05.000Z","agent":"spiffe://tenant1.example/agents/x","tool":"db.query","action":"read"}`,
	140: `{"id":"bad-4","time":"2026-01-01T00:00:07.000Z","tenant":"tenant1","agent":"spiffe://tenant1.example/agents/x","tool":"db.query","action":"read","bytes_out":"many"}`,
}

// sampleConfig generates the valid events of testdata/events/sample.jsonl.
var sampleConfig = Config{Seed: 2026, Events: 196, Agents: 4, SessionsPerAgent: 2, MeanGap: 2 * time.Second, Exfil: 1}

// TestSampleFile checks testdata/events/sample.jsonl, the small event file
// the CLI tests replay: it holds the generated events plus the malformed
// lines above. Run with -update to rewrite it.
func TestSampleFile(t *testing.T) {
	path := filepath.Join("..", "..", "testdata", "events", "sample.jsonl")
	var want bytes.Buffer
	{
		var gen bytes.Buffer
		require.NoError(t, WriteJSONL(&gen, sampleConfig))
		lines := strings.SplitAfter(strings.TrimSuffix(gen.String(), "\n"), "\n")
		n := 1
		for _, l := range lines {
			for {
				bad, ok := sampleMalformed[n]
				if !ok {
					break
				}
				want.WriteString(bad + "\n")
				n++
			}
			want.WriteString(strings.TrimSuffix(l, "\n") + "\n")
			n++
		}
	}
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, want.Bytes(), 0o644))
	}
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, want.String(), string(got), "sample.jsonl is stale; run go test ./internal/testgen -run TestSampleFile -update")

	bad := 0
	for i, line := range strings.Split(strings.TrimSuffix(string(got), "\n"), "\n") {
		var ev pipeline.Event
		if err := pipeline.Decode([]byte(line), &ev, nil); err != nil {
			bad++
			_, listed := sampleMalformed[i+1]
			require.True(t, listed, "line %d unexpectedly malformed: %v", i+1, err)
		}
	}
	require.Equal(t, len(sampleMalformed), bad)
}

func BenchmarkWriteJSONL(b *testing.B) {
	cfg := Config{Seed: 1, Events: 10000}
	b.ReportAllocs()
	for b.Loop() {
		var buf bytes.Buffer
		if err := WriteJSONL(&buf, cfg); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(buf.Len()))
	}
	b.ReportMetric(float64(b.N*cfg.Events)/b.Elapsed().Seconds(), "events/s")
}
