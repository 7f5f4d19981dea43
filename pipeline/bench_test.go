package pipeline

import (
	"encoding/json"
	"testing"
)

// benchEventJSON is a realistic event of about 300 bytes.
const benchEventJSON = `{"id":"01HZX3J8K2Q9V7M4N6P5R8T2WC","time":"2024-05-01T12:34:56.789Z","tenant":"acme","agent":"spiffe://acme.example/agents/support","task_scope":["crm.search","mail.send"],"tool":"crm.search","action":"GET","resource":"crm://contacts?q=overdue","bytes_out":18234,"records":42,"attrs":{"model":"gpt-x"}}`

var benchEvent = []byte(benchEventJSON)

func BenchmarkDecode(b *testing.B) {
	d := NewDecoder(nil)
	var ev Event
	b.SetBytes(int64(len(benchEvent)))
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Decode(benchEvent, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeFunc measures the package-level Decode, which has no
// reusable scratch space.
func BenchmarkDecodeFunc(b *testing.B) {
	var ev Event
	b.SetBytes(int64(len(benchEvent)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(benchEvent, &ev, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// stdEvent has Event's fields without its JSON methods, so encoding/json
// decodes it by reflection: the reference the hand-written decoder is
// measured against.
type stdEvent Event

func BenchmarkDecodeStdlib(b *testing.B) {
	b.SetBytes(int64(len(benchEvent)))
	b.ReportAllocs()
	for b.Loop() {
		var ev stdEvent
		if err := json.Unmarshal(benchEvent, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	var ev Event
	if err := Decode(benchEvent, &ev, nil); err != nil {
		b.Fatal(err)
	}
	buf := ev.AppendJSON(nil)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = ev.AppendJSON(buf[:0])
	}
}
