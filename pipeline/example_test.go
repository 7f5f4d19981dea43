package pipeline_test

import (
	"errors"
	"fmt"

	"github.com/tripline/tripline/pipeline"
)

// Decode an event as a consumer does: one call parses, normalises and
// validates; any error is final and its text is the dead-letter reason.
func Example() {
	dec := pipeline.NewDecoder(nil) // one per worker goroutine; reuses scratch space

	msgs := []string{
		`{"id":"01HZX3J8K2","time":"2024-05-01T14:34:56.789+02:00","tenant":"acme",
		  "agent":"spiffe://acme.example/agents/support","tool":"crm.search",
		  "action":"GET","bytes_out":18234,"sensitivity":"Confidential","ticket":"T-1"}`,
		`{"id":"01HZX3J8K3","time":"2024-05-01T12:35:00Z","tenant":"acme.>",
		  "agent":"spiffe://acme.example/agents/support","tool":"crm.search","action":"read","bytes_in":-1}`,
		`{"id":"01HZX3J8K4","bytes_in":"12"}`,
	}
	for _, msg := range msgs {
		var ev pipeline.Event
		if err := dec.Decode([]byte(msg), &ev); err != nil {
			var ve *pipeline.ValidationError
			if errors.As(err, &ve) {
				fmt.Printf("dead-letter %s (%d problems): %v\n", ev.ID, len(ve.Problems), err)
			} else {
				fmt.Println("dead-letter:", err)
			}
			continue
		}
		fmt.Println(ev.Time, ev.Agent, ev.Action, ev.ActionRaw, ev.Sensitivity, string(ev.Unknown))
		fmt.Println(string(ev.AppendJSON(nil)))
	}
	// Output:
	// 2024-05-01 12:34:56.789 +0000 UTC spiffe://acme.example/agents/support read GET confidential {"ticket":"T-1"}
	// {"id":"01HZX3J8K2","time":"2024-05-01T12:34:56.789Z","tenant":"acme","agent":"spiffe://acme.example/agents/support","tool":"crm.search","action":"read","action_raw":"GET","bytes_out":18234,"sensitivity":"confidential","ticket":"T-1"}
	// dead-letter 01HZX3J8K3 (2 problems): invalid event: tenant: contains '.'; a tenant may hold only ASCII letters, digits, '-' and '_' (it is a NATS subject token); bytes_in: negative
	// dead-letter: invalid event JSON: bytes_in: expected an integer, got a string (at byte 30)
}
