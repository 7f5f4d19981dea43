package detectors

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

func benchSet(b *testing.B) *rules.Set {
	set, err := rules.LoadPaths("../testdata/rules/bench20")
	if err != nil {
		b.Fatal(err)
	}
	if len(set.Rules) != 20 {
		b.Fatalf("bench set has %d rules, want 20", len(set.Rules))
	}
	return set
}

func packSet(b *testing.B) *rules.Set {
	set, err := rules.Compile(rules.PackSources()...)
	if err != nil {
		b.Fatal(err)
	}
	return set
}

// BenchmarkEngine20Rules: one goroutine, 20 rules with mixed aggregates,
// events already decoded. Target ≥ 500,000 events/s.
func BenchmarkEngine20Rules(b *testing.B) { benchEngine(b, benchSet(b)) }

// BenchmarkEnginePack: the same with the default rule pack (24 rules,
// baselines, sequences, first_seen, by() groups).
//
//	go test ./detectors -run '^$' -bench 'Engine(20Rules|Pack)$' -benchmem
func BenchmarkEnginePack(b *testing.B) { benchEngine(b, packSet(b)) }

func benchEngine(b *testing.B, set *rules.Set) {
	evs := synth(200000, 2000)
	e := NewEngine(set, Options{})
	for _, x := range evs[:50000] { // warm the groups
		e.Process(x, nil)
	}
	var out []Decision
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		x := evs[i%len(evs)]
		if i > 0 && i%len(evs) == 0 {
			// next pass: move every event three hours on, outside all windows
			for _, y := range evs {
				y.Time = y.Time.Add(3 * time.Hour)
			}
		}
		out = e.Process(x, out[:0])
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64(e.Stats().Fired)/float64(e.Stats().Events), "decisions/event")
}

// BenchmarkEngineStatePerSession measures retained heap per active session
// with the 20-rule set and 100k sessions. Target ≤ 1 KiB.
func BenchmarkEngineStatePerSession(b *testing.B) { benchState(b, benchSet(b)) }

// BenchmarkEngineStatePerSessionPack: the same with the default pack.
func BenchmarkEngineStatePerSessionPack(b *testing.B) { benchState(b, packSet(b)) }

func benchState(b *testing.B, set *rules.Set) {
	const sessions = 100_000
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		e := NewEngine(set, Options{})
		at := t0
		x := pipeline.Event{Tenant: "acme", Tool: "kb.search", Action: pipeline.ActionRead, Outcome: "ok",
			TaskScope: []string{"kb.search"}, Sensitivity: "internal", BytesIn: 2000}
		for s := range sessions {
			for k := range 3 { // a few calls each
				at = at.Add(time.Millisecond)
				x.ID = fmt.Sprintf("e-%d-%d", s, k)
				x.Time = at
				x.Session = fmt.Sprintf("sess-%08d", s)
				x.Agent = fmt.Sprintf("spiffe://acme.dev/agent/%d", s%500)
				x.Instance = fmt.Sprintf("i-%d", s%1000)
				x.Credential = fmt.Sprintf("tok-%d", s%2000)
				x.Task = fmt.Sprintf("task-%d", s)
				y := x
				e.Process(&y, nil)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		st := e.Stats()
		perSession := float64(after.HeapAlloc-before.HeapAlloc) / sessions
		b.ReportMetric(perSession, "bytes/session")
		b.ReportMetric(float64(st.Groups), "groups")
		runtime.KeepAlive(e)
	}
}

// BenchmarkAggregate measures rule evaluation with the window update of
// each aggregate kind alone: one rule, grouped by session, over the same
// decoded events as BenchmarkEngine20Rules. The condition never fires, so
// the figure is the cost of keeping and reading the aggregate.
//
//	go test ./detectors -run '^$' -bench Aggregate -benchmem
func BenchmarkAggregate(b *testing.B) {
	for _, c := range []struct{ name, cond string }{
		{"count", `count(5m) > 1000000`},
		{"rate", `rate(1m) > 1000000`},
		{"sum", `sum(bytes_out, 10m) > 1e15`},
		{"distinct", `distinct(resource, 10m) > 1000000`},
		{"seq", `seq(action == "read", action == "send", 10m) && tool == "never"`},
		{"first_seen", `first_seen(destination) && tool == "never"`},
		{"zscore", `zscore(count(5m)) > 1000`},
	} {
		b.Run(c.name, func(b *testing.B) {
			set, err := rules.Compile(rules.Source{Name: "bench.yaml", Data: []byte(fmt.Sprintf(`rules:
  - id: bench-%s
    description: benchmark
    severity: low
    group: [session]
    condition: '%s'
    action: alert
    tests:
      - {name: quiet, events: [], expect: []}
      - {name: quiet too, events: [], expect: []}
`, c.name, c.cond))})
			if err != nil {
				b.Fatal(err)
			}
			evs := synth(200000, 2000)
			e := NewEngine(set, Options{})
			var out []Decision
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				x := evs[i%len(evs)]
				if i > 0 && i%len(evs) == 0 {
					for _, y := range evs {
						y.Time = y.Time.Add(3 * time.Hour)
					}
				}
				out = e.Process(x, out[:0])
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
