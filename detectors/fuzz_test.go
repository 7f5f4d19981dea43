package detectors

import (
	"bufio"
	"bytes"
	"os"
	"testing"

	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// FuzzDecodeEvaluate feeds arbitrary JSON Lines through the decoder and the
// engine with the example rules: no input may panic the worker, and
// decisions must always carry an id, a rule and a group.
func FuzzDecodeEvaluate(f *testing.F) {
	set, err := rules.Compile(rules.ExampleSources()...)
	if err != nil {
		f.Fatal(err)
	}
	if b, err := os.ReadFile("../testdata/events/sample.jsonl"); err == nil {
		lines := bytes.Split(b, []byte("\n"))
		for i := 0; i+4 <= len(lines); i += 25 {
			f.Add(bytes.Join(lines[i:i+4], []byte("\n")))
		}
	}
	f.Add([]byte(`{"id":"a","time":"2026-01-01T00:00:00Z","tenant":"t","agent":"spiffe://x/y","tool":"fs.read","action":"read","sensitivity":"restricted"}
{"id":"b","time":"2026-01-01T00:01:00Z","tenant":"t","agent":"spiffe://x/y","tool":"http.post","action":"send","destination":"evil.example"}
{"id":"c","time":"1970-01-01T00:00:00Z","tenant":"t","agent":"spiffe://x/y","tool":"x","action":"delete","bytes_in":9223372036854775807}`))
	lim := pipeline.DefaultLimits()
	f.Fuzz(func(t *testing.T, data []byte) {
		e := NewEngine(set, Options{DistinctExact: 4, FirstSeenMax: 8})
		dec := pipeline.NewDecoder(&lim)
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var out []Decision
		for sc.Scan() {
			var ev pipeline.Event
			if dec.Decode(sc.Bytes(), &ev) != nil {
				continue
			}
			out = e.Process(&ev, out[:0])
			for _, d := range out {
				if d.ID == "" || d.Rule == "" || d.Group == "" {
					t.Fatalf("incomplete decision %+v", d)
				}
			}
		}
	})
}
