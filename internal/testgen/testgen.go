// Package testgen generates synthetic, deterministic tool-call events for
// tests and benchmarks: a population of agents with different roles, each
// running a few sessions, calling a realistic mix of tools, with event time
// advancing monotonically. The same Config always yields the same events.
package testgen

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/tripline/tripline/pipeline"
)

// DefaultStart is the time of the first event when Config.Start is zero.
var DefaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Config describes the traffic to generate. Zero fields take the defaults
// given in their comments.
type Config struct {
	Seed             uint64        // random seed (0 is a valid seed)
	Events           int           // events to generate (default 1000)
	Tenants          int           // tenants, agents are spread over them (default 1)
	Agents           int           // agents in total (default 10)
	SessionsPerAgent int           // concurrent sessions per agent (default 3)
	Start            time.Time     // time of the first event (default DefaultStart)
	MeanGap          time.Duration // mean time between two events (default 50ms)
	// Exfil is the number of exfiltration scenarios mixed in: a session of
	// its own (id "s-exfil-N") reads restricted records in bulk and then
	// sends a large payload to an external domain never used before
	// (ExfilDestination). Scenario events count towards Events.
	Exfil int
}

// ExfilDestination is where the exfiltration scenarios send data.
const ExfilDestination = "https://drop.exfil-example.net/upload"

func (c *Config) fill() {
	if c.Events <= 0 {
		c.Events = 1000
	}
	if c.Tenants <= 0 {
		c.Tenants = 1
	}
	if c.Agents <= 0 {
		c.Agents = 10
	}
	if c.SessionsPerAgent <= 0 {
		c.SessionsPerAgent = 3
	}
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	if c.MeanGap <= 0 {
		c.MeanGap = 50 * time.Millisecond
	}
}

// Events returns the events cfg describes.
func Events(cfg Config) []pipeline.Event {
	g := newGen(cfg)
	out := make([]pipeline.Event, 0, g.cfg.Events)
	var ev pipeline.Event
	for g.next(&ev) {
		out = append(out, ev)
	}
	return out
}

// WriteJSONL writes the events cfg describes to w as JSON Lines, in the
// canonical form of pipeline.Event.AppendJSON.
func WriteJSONL(w io.Writer, cfg Config) error {
	g := newGen(cfg)
	bw := bufio.NewWriterSize(w, 256<<10)
	var (
		ev  pipeline.Event
		buf []byte
	)
	for g.next(&ev) {
		buf = ev.AppendJSON(buf[:0])
		buf = append(buf, '\n')
		if _, err := bw.Write(buf); err != nil {
			return fmt.Errorf("testgen: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("testgen: %w", err)
	}
	return nil
}

// tool is one tool an agent role uses.
type tool struct {
	name     string
	action   pipeline.Action
	weight   int
	resource func(g *gen, a *agent) string
	dest     func(g *gen, a *agent) string // outbound tools only
	sens     [4]int                        // weights of public, internal, confidential, restricted
	bytesMu  float64                       // log-normal size: bytes_in of a read, bytes_out otherwise
	records  bool
}

// role is a kind of agent: the tools it calls and how often.
type role struct {
	name  string
	tools []tool
	total int
}

var projects = []string{"billing", "checkout", "search", "auth", "infra"}
var tables = []string{"orders", "customers", "invoices", "tickets", "payments", "audit_log"}
var channels = []string{"#support", "#eng", "#ops-alerts", "#sales"}
var customerDomains = []string{"example.com", "example.org", "corp.example", "mail.example.net"}

func (g *gen) pick(list []string) string { return list[g.r.IntN(len(list))] }

var roles = []*role{
	{name: "support", tools: []tool{
		{name: "crm.search", action: pipeline.ActionRead, weight: 40, sens: [4]int{0, 30, 70, 0}, bytesMu: 8, records: true,
			resource: func(g *gen, a *agent) string { return "crm://contacts?q=" + strconv.Itoa(g.r.IntN(500)) }},
		{name: "crm.update", action: pipeline.ActionWrite, weight: 10, sens: [4]int{0, 20, 80, 0}, bytesMu: 6,
			resource: func(g *gen, a *agent) string { return "crm://contacts/" + strconv.Itoa(g.r.IntN(5000)) }},
		{name: "kb.search", action: pipeline.ActionRead, weight: 30, sens: [4]int{60, 40, 0, 0}, bytesMu: 9,
			resource: func(g *gen, a *agent) string { return "kb://articles/" + strconv.Itoa(g.r.IntN(200)) }},
		{name: "mail.send", action: pipeline.ActionSend, weight: 20, sens: [4]int{0, 60, 40, 0}, bytesMu: 7.5,
			resource: func(g *gen, a *agent) string { return "mail://outbox" },
			dest: func(g *gen, a *agent) string {
				return "customer" + strconv.Itoa(g.r.IntN(300)) + "@" + g.pick(customerDomains)
			}},
	}},
	{name: "coder", tools: []tool{
		{name: "fs.read_file", action: pipeline.ActionRead, weight: 45, sens: [4]int{0, 95, 5, 0}, bytesMu: 8.5,
			resource: func(g *gen, a *agent) string {
				return "/repo/" + g.pick(projects) + "/src/file" + strconv.Itoa(g.r.IntN(80)) + ".go"
			}},
		{name: "fs.write_file", action: pipeline.ActionWrite, weight: 20, sens: [4]int{0, 100, 0, 0}, bytesMu: 8,
			resource: func(g *gen, a *agent) string {
				return "/repo/" + g.pick(projects) + "/src/file" + strconv.Itoa(g.r.IntN(80)) + ".go"
			}},
		{name: "shell.exec", action: pipeline.ActionExecute, weight: 20, sens: [4]int{0, 100, 0, 0}, bytesMu: 7,
			resource: func(g *gen, a *agent) string {
				return g.pick([]string{"go test ./...", "go build ./...", "git status", "ls -la"})
			}},
		{name: "http.get", action: pipeline.ActionRead, weight: 10, sens: [4]int{100, 0, 0, 0}, bytesMu: 10,
			resource: func(g *gen, a *agent) string { return "https://pkg.go.dev/" + g.pick(projects) }},
		{name: "git.push", action: pipeline.ActionSend, weight: 5, sens: [4]int{0, 100, 0, 0}, bytesMu: 9,
			resource: func(g *gen, a *agent) string { return "git://" + g.pick(projects) },
			dest:     func(g *gen, a *agent) string { return "https://git.internal.example/" + g.pick(projects) }},
	}},
	{name: "analyst", tools: []tool{
		{name: "db.query", action: pipeline.ActionRead, weight: 50, sens: [4]int{0, 40, 50, 10}, bytesMu: 10, records: true,
			resource: func(g *gen, a *agent) string { return "db://prod/" + g.pick(tables) }},
		{name: "s3.get_object", action: pipeline.ActionRead, weight: 20, sens: [4]int{0, 50, 50, 0}, bytesMu: 12,
			resource: func(g *gen, a *agent) string {
				return "s3://analytics/exports/" + g.pick(tables) + "-" + strconv.Itoa(g.r.IntN(30)) + ".parquet"
			}},
		{name: "report.write", action: pipeline.ActionWrite, weight: 15, sens: [4]int{0, 80, 20, 0}, bytesMu: 9,
			resource: func(g *gen, a *agent) string { return "s3://analytics/reports/r" + strconv.Itoa(g.r.IntN(100)) + ".md" }},
		{name: "slack.post", action: pipeline.ActionSend, weight: 15, sens: [4]int{0, 100, 0, 0}, bytesMu: 6,
			resource: func(g *gen, a *agent) string { return "slack://message" },
			dest:     func(g *gen, a *agent) string { return g.pick(channels) }},
	}},
	{name: "ops", tools: []tool{
		{name: "k8s.get", action: pipeline.ActionRead, weight: 50, sens: [4]int{0, 100, 0, 0}, bytesMu: 8,
			resource: func(g *gen, a *agent) string {
				return "k8s://prod/pods/" + g.pick(projects) + "-" + strconv.Itoa(g.r.IntN(10))
			}},
		{name: "k8s.delete", action: pipeline.ActionDelete, weight: 5, sens: [4]int{0, 100, 0, 0}, bytesMu: 5,
			resource: func(g *gen, a *agent) string {
				return "k8s://prod/pods/" + g.pick(projects) + "-" + strconv.Itoa(g.r.IntN(10))
			}},
		{name: "vault.read", action: pipeline.ActionAuth, weight: 10, sens: [4]int{0, 0, 20, 80}, bytesMu: 6,
			resource: func(g *gen, a *agent) string { return "vault://secret/" + g.pick(projects) }},
		{name: "shell.exec", action: pipeline.ActionExecute, weight: 25, sens: [4]int{0, 100, 0, 0}, bytesMu: 7,
			resource: func(g *gen, a *agent) string {
				return g.pick([]string{"kubectl get pods", "df -h", "uptime", "journalctl -n 100"})
			}},
		{name: "pagerduty.notify", action: pipeline.ActionSend, weight: 10, sens: [4]int{0, 100, 0, 0}, bytesMu: 6,
			resource: func(g *gen, a *agent) string { return "pagerduty://incidents" },
			dest:     func(g *gen, a *agent) string { return "https://events.pagerduty.example/v2/enqueue" }},
	}},
}

func init() {
	for _, r := range roles {
		for _, t := range r.tools {
			r.total += t.weight
		}
	}
}

var sensitivities = [4]string{pipeline.SensitivityPublic, pipeline.SensitivityInternal, pipeline.SensitivityConfidential, pipeline.SensitivityRestricted}

// agent is one generated agent identity with its sessions.
type agent struct {
	tenant    string
	id        string
	instance  string
	principal string
	cred      string
	role      *role
	sessions  []string
	tasks     []string
	scope     []string
}

// gen produces events one at a time, so that WriteJSONL streams.
type gen struct {
	cfg    Config
	r      *rand.Rand
	agents []*agent
	n      int   // events produced
	t      int64 // current time, unix ms
	gapMs  float64
	// exfil scenarios: start index → scenario number, and the queue of the
	// scenario being emitted.
	exfilAt map[int]int
	queue   []pipeline.Event
}

func newGen(cfg Config) *gen {
	cfg.fill()
	g := &gen{
		cfg:   cfg,
		r:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		t:     cfg.Start.UnixMilli(),
		gapMs: float64(cfg.MeanGap) / float64(time.Millisecond),
	}
	for i := range cfg.Agents {
		ro := roles[i%len(roles)]
		tenant := "tenant" + strconv.Itoa(i%cfg.Tenants+1)
		name := ro.name + "-" + strconv.Itoa(i)
		a := &agent{
			tenant:    tenant,
			id:        "spiffe://" + tenant + ".example/agents/" + name,
			instance:  name + "-pod-" + strconv.Itoa(g.r.IntN(4)),
			principal: "user" + strconv.Itoa(i%7) + "@" + tenant + ".example",
			cred:      "cred-" + name,
			role:      ro,
		}
		for s := range cfg.SessionsPerAgent {
			a.sessions = append(a.sessions, "s-"+strconv.Itoa(i)+"-"+strconv.Itoa(s))
			a.tasks = append(a.tasks, "task-"+strconv.Itoa(i)+"-"+strconv.Itoa(s))
		}
		for _, t := range ro.tools {
			a.scope = append(a.scope, t.name)
		}
		g.agents = append(g.agents, a)
	}
	if cfg.Exfil > 0 {
		g.exfilAt = map[int]int{}
		span := max(cfg.Events-exfilLen, 1)
		for i := range cfg.Exfil {
			// spread scenarios evenly with jitter so they do not overlap
			slot := span / cfg.Exfil
			at := i*slot + g.r.IntN(max(slot-exfilLen, 1))
			g.exfilAt[at] = i
		}
	}
	return g
}

// exfilLen is the number of events of one exfiltration scenario.
const exfilLen = 8

func (g *gen) advance() time.Time {
	gap := g.r.ExpFloat64() * g.gapMs
	g.t += int64(math.Round(gap))
	return time.UnixMilli(g.t).UTC()
}

// next writes the next event into ev; it reports false when done.
func (g *gen) next(ev *pipeline.Event) bool {
	if g.n >= g.cfg.Events {
		return false
	}
	if len(g.queue) == 0 {
		if s, ok := g.exfilAt[g.n]; ok {
			g.queue = g.exfil(s)
		}
	}
	if len(g.queue) > 0 {
		*ev = g.queue[0]
		ev.ID = g.id()
		ev.Time = g.advance()
		g.queue = g.queue[1:]
		g.n++
		return true
	}
	a := g.agents[g.r.IntN(len(g.agents))]
	s := g.r.IntN(len(a.sessions))
	t := g.pickTool(a.role)
	*ev = pipeline.Event{
		ID:          g.id(),
		Time:        g.advance(),
		Tenant:      a.tenant,
		Agent:       a.id,
		Instance:    a.instance,
		Principal:   a.principal,
		Session:     a.sessions[s],
		Task:        a.tasks[s],
		TaskScope:   a.scope,
		Tool:        t.name,
		Action:      t.action,
		Resource:    t.resource(g, a),
		Sensitivity: sensitivities[g.weighted(t.sens[:])],
		Outcome:     pipeline.OutcomeOK,
		Environment: "prod",
		Credential:  a.cred,
	}
	if t.dest != nil {
		ev.Destination = t.dest(g, a)
	}
	size := int64(math.Exp(t.bytesMu + g.r.NormFloat64()))
	// bytes_in: returned by the tool to the agent; bytes_out: sent by the
	// agent to the tool.
	switch t.action {
	case pipeline.ActionRead:
		ev.BytesIn = size
	default:
		ev.BytesOut = size
	}
	if t.records {
		ev.Records = 1 + int64(g.r.ExpFloat64()*20)
	}
	switch x := g.r.IntN(1000); {
	case x < 8:
		ev.Outcome = pipeline.OutcomeDenied
	case x < 40:
		ev.Outcome = pipeline.OutcomeError
	}
	if g.r.IntN(4) == 0 {
		ev.Attrs = map[string]string{"model": g.pick([]string{"gpt-x", "claude-y", "llama-z"})}
	}
	g.n++
	return true
}

func (g *gen) id() string { return "e-" + strconv.Itoa(g.n+1) }

func (g *gen) pickTool(r *role) *tool {
	x := g.r.IntN(r.total)
	for i := range r.tools {
		if x < r.tools[i].weight {
			return &r.tools[i]
		}
		x -= r.tools[i].weight
	}
	return &r.tools[len(r.tools)-1]
}

func (g *gen) weighted(w []int) int {
	total := 0
	for _, x := range w {
		total += x
	}
	x := g.r.IntN(total)
	for i, v := range w {
		if x < v {
			return i
		}
		x -= v
	}
	return len(w) - 1
}

// exfil builds scenario s: bulk reads of restricted customer data followed
// by a large send to a new external destination, in one session.
func (g *gen) exfil(s int) []pipeline.Event {
	a := g.agents[g.r.IntN(len(g.agents))]
	base := pipeline.Event{
		Tenant:      a.tenant,
		Agent:       a.id,
		Instance:    a.instance,
		Principal:   a.principal,
		Session:     "s-exfil-" + strconv.Itoa(s),
		Task:        "task-exfil-" + strconv.Itoa(s),
		Environment: "prod",
		Credential:  a.cred,
		Outcome:     pipeline.OutcomeOK,
	}
	var out []pipeline.Event
	for i := range exfilLen - 1 {
		ev := base
		ev.Tool = "db.query"
		ev.Action = pipeline.ActionRead
		ev.Resource = "db://prod/customers?page=" + strconv.Itoa(i)
		ev.Sensitivity = pipeline.SensitivityRestricted
		ev.Records = 5000
		ev.BytesIn = 2_000_000 + int64(g.r.IntN(500_000))
		out = append(out, ev)
	}
	ev := base
	ev.Tool = "http.post"
	ev.Action = pipeline.ActionSend
	ev.Resource = "https://drop.exfil-example.net/upload"
	ev.Destination = ExfilDestination
	ev.Sensitivity = pipeline.SensitivityRestricted
	ev.BytesOut = 14_000_000
	out = append(out, ev)
	return out
}
