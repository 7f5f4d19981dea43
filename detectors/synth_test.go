package detectors

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/tripline/tripline/pipeline"
)

// synth makes n events over sessions sessions with a mix of tools, actions
// and destinations, deterministic for the same arguments.
func synth(n, sessions int) []*pipeline.Event {
	r := rand.New(rand.NewPCG(1, 2))
	tools := []struct {
		tool   string
		action pipeline.Action
	}{{"kb.search", "read"}, {"crm.lookup", "read"}, {"fs.read", "read"}, {"ticket.update", "write"},
		{"email.send", "send"}, {"http.post", "send"}, {"shell.exec", "execute"}, {"iam.get", "auth"}}
	sens := []string{"public", "internal", "confidential", "restricted"}
	scope := []string{"kb.search", "crm.lookup", "fs.read", "ticket.update", "email.send", "http.post", "shell.exec", "iam.get"}
	out := make([]*pipeline.Event, n)
	at := t0
	for i := range n {
		at = at.Add(time.Duration(r.IntN(40)) * time.Millisecond)
		s := r.IntN(sessions)
		tl := tools[r.IntN(len(tools))]
		e := &pipeline.Event{
			ID: fmt.Sprintf("e-%d", i), Time: at, Tenant: "acme",
			Agent: fmt.Sprintf("spiffe://acme.dev/agent/%d", s%10), Instance: fmt.Sprintf("i-%d", s%20),
			Session: fmt.Sprintf("s-%d", s), Task: fmt.Sprintf("t-%d", s), TaskScope: scope,
			Tool: tl.tool, Action: tl.action, Resource: fmt.Sprintf("res/%d", r.IntN(200)),
			BytesIn: int64(r.IntN(20000)), Sensitivity: sens[r.IntN(4)], Outcome: "ok",
			Credential: fmt.Sprintf("tok-%d", s%15),
		}
		if tl.action == "send" {
			e.Destination = fmt.Sprintf("dest-%d.example", r.IntN(30))
			e.BytesOut = int64(r.IntN(5000))
		}
		if r.IntN(50) == 0 {
			e.Outcome = "denied"
		}
		if r.IntN(500) == 0 {
			e.Tool = "db.drop" // outside the task's scope
		}
		out[i] = e
	}
	return out
}
