package bench

import (
	"strconv"
	"time"

	"github.com/tripline/tripline/pipeline"
)

// benchTenant is the tenant of the live traffic.
const benchTenant = "bench"

// outOfScopeEvery: one event in this many calls a tool its task did not
// declare, which the example rule tool-outside-task-scope flags in shadow
// mode, so the pipeline publishes some decisions.
const outOfScopeEvery = 100

// traffic generates benign live traffic that no enforce-mode example rule
// revokes: data is internal (no sensitive read precedes a send), each agent
// has its own credential, destinations are a few known ones per agent,
// nothing is denied, resources are few per session, and sessions are
// visited round robin so that each sees at most one call per second of
// event time in the throughput phase (runaway-loop allows 120 a minute).
type traffic struct {
	sessions   int
	partitions int
	agents     []agentInfo
}

type agentInfo struct {
	id, instance, principal, cred, subject string
	part                                   int
}

// payload is one event ready to publish.
type payload struct {
	id   string
	part int
	data []byte
}

var benignTools = [...]struct {
	tool   string
	action pipeline.Action
}{
	{"kb.search", pipeline.ActionRead},
	{"crm.lookup", pipeline.ActionRead},
	{"doc.write", pipeline.ActionWrite},
	{"mail.send", pipeline.ActionSend},
	{"shell.exec", pipeline.ActionExecute},
}

func newTraffic(agents, sessions, partitions int) *traffic {
	t := &traffic{sessions: sessions, partitions: partitions}
	for i := range agents {
		n := strconv.Itoa(i)
		id := "spiffe://bench.example/agent/" + n
		t.agents = append(t.agents, agentInfo{
			id:        id,
			instance:  "agent-" + n + "-pod",
			principal: "user-" + strconv.Itoa(i%100) + "@bench.example",
			cred:      "cred-" + n,
			subject:   pipeline.EventSubject(benchTenant, id, partitions),
			part:      pipeline.Partition(id, partitions),
		})
	}
	return t
}

// atRate returns the traffic to send at rate events/s: the same agents,
// with enough sessions that each sees at most one call every two seconds
// (added to the throughput phase's one a second, a session stays well under
// runaway-loop's 120 calls a minute).
func (t *traffic) atRate(rate float64) *traffic {
	c := *t
	c.sessions = max(t.sessions, int(2*rate)+1)
	return &c
}

// event fills ev with the n-th benign event (n ≥ 0) at time at.
func (t *traffic) event(ev *pipeline.Event, id string, n int64, at time.Time) *agentInfo {
	s := int(n % int64(t.sessions))
	round := n / int64(t.sessions)
	a := &t.agents[s%len(t.agents)]
	k := benignTools[int(round+int64(s))%len(benignTools)]
	*ev = pipeline.Event{
		ID: id, Time: at, Tenant: benchTenant,
		Agent: a.id, Instance: a.instance, Principal: a.principal, Credential: a.cred,
		Session: "s-" + strconv.Itoa(s), Task: "task-" + strconv.Itoa(s),
		Tool: k.tool, Action: k.action,
		Resource:    "doc/" + strconv.Itoa(int(round%20)),
		Sensitivity: pipeline.SensitivityInternal, Outcome: pipeline.OutcomeOK, Environment: "prod",
	}
	switch k.action {
	case pipeline.ActionRead:
		ev.BytesIn = 2000
	case pipeline.ActionSend:
		ev.Destination = "team-" + strconv.Itoa(s%4) + "@bench.example"
		ev.BytesOut = 500
	default:
		ev.BytesOut = 800
	}
	if n%outOfScopeEvery == outOfScopeEvery-1 {
		ev.TaskScope = []string{"kb.search"}
		ev.Tool, ev.Action, ev.Resource = "shell.exec", pipeline.ActionExecute, "ls -la"
	}
	return a
}

// payloads generates n benign events whose event times end now and are
// spaced so that a session sees one call per second.
func (t *traffic) payloads(prefix string, n int) []payload {
	gap := time.Second / time.Duration(t.sessions)
	start := time.Now().UTC().Add(-time.Duration(n) * gap)
	out := make([]payload, n)
	var ev pipeline.Event
	for i := range out {
		id := prefix + strconv.Itoa(i)
		a := t.event(&ev, id, int64(i), start.Add(time.Duration(i)*gap))
		out[i] = payload{id: id, part: a.part, data: ev.AppendJSON(nil)}
	}
	return out
}

// attack returns the two events of an exfiltration attempt by a new agent:
// a restricted read, then a send to a destination it never used. The
// example rule exfil-after-sensitive-read revokes the session on the send.
func attack(name string, at time.Time, partitions int) (read, send pipeline.Event, subject string) {
	agent := "spiffe://bench.example/attacker/" + name
	base := pipeline.Event{
		Tenant: benchTenant, Agent: agent, Instance: name + "-pod", Principal: "mallory@bench.example",
		Credential: "cred-" + name, Session: "atk-" + name, Task: "task-" + name, Outcome: pipeline.OutcomeOK,
		Environment: "prod",
	}
	read, send = base, base
	read.ID, read.Time = "a-"+name+"-read", at
	read.Tool, read.Action, read.Resource = "crm.export", pipeline.ActionRead, "crm/customers"
	read.Sensitivity, read.BytesIn, read.Records = pipeline.SensitivityRestricted, 2_000_000, 5000
	send.ID, send.Time = "a-"+name+"-send", at.Add(time.Millisecond)
	send.Tool, send.Action, send.Resource = "http.post", pipeline.ActionSend, "https://drop-"+name+".exfil.example/upload"
	send.Destination, send.Sensitivity, send.BytesOut = send.Resource, pipeline.SensitivityRestricted, 2_000_000
	return read, send, pipeline.EventSubject(benchTenant, agent, partitions)
}
