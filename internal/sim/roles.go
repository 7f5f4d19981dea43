package sim

import (
	"math/rand/v2"
	"strconv"

	"github.com/tripline/tripline/pipeline"
)

// tool is one tool a benign role calls.
type tool struct {
	name     string
	action   pipeline.Action
	weight   int
	resource func(r *rand.Rand) string
	sens     [4]int  // weights of public, internal, confidential, restricted
	bytesMu  float64 // log-normal size: bytes_in of a read, bytes_out otherwise
	records  bool
}

// role is a kind of benign agent: the tools it calls, how often, and
// where it sends data.
type role struct {
	name  string
	tools []tool
	total int
	// dests returns the destinations an agent of this role sends to.
	dests func(r *rand.Rand, a *agent) []string
}

// sender returns the role's outbound tool.
func (ro *role) sender() *tool {
	for i := range ro.tools {
		if ro.tools[i].action == pipeline.ActionSend {
			return &ro.tools[i]
		}
	}
	panic("sim: role " + ro.name + " has no outbound tool")
}

var projects = []string{"billing", "checkout", "search", "auth", "infra"}
var tables = []string{"orders", "customers", "invoices", "tickets", "payments", "audit_log"}
var channels = []string{"#support", "#eng", "#ops-alerts", "#sales"}
var customerDomains = []string{"example.com", "example.org", "corp.example", "mail.example.net"}

func pick(r *rand.Rand, list []string) string { return list[r.IntN(len(list))] }

func itoa(n int) string { return strconv.Itoa(n) }

// The benign roles, after internal/testgen's tool mixes. Every role has
// exactly one outbound (send) tool.
var roles = []*role{
	{name: "support", tools: []tool{
		{name: "crm.search", action: pipeline.ActionRead, weight: 40, sens: [4]int{0, 30, 70, 0}, bytesMu: 8, records: true,
			resource: func(r *rand.Rand) string { return "crm://contacts?q=" + itoa(r.IntN(500)) }},
		{name: "crm.update", action: pipeline.ActionWrite, weight: 10, sens: [4]int{0, 20, 80, 0}, bytesMu: 6,
			resource: func(r *rand.Rand) string { return "crm://contacts/" + itoa(r.IntN(5000)) }},
		{name: "kb.search", action: pipeline.ActionRead, weight: 30, sens: [4]int{60, 40, 0, 0}, bytesMu: 9,
			resource: func(r *rand.Rand) string { return "kb://articles/" + itoa(r.IntN(200)) }},
		{name: "mail.send", action: pipeline.ActionSend, weight: 20, sens: [4]int{0, 60, 40, 0}, bytesMu: 7.5,
			resource: func(r *rand.Rand) string { return "mail://outbox" }},
	}, dests: func(r *rand.Rand, a *agent) []string {
		// the customers of its queue
		var out []string
		for range 3 {
			out = append(out, "customer"+itoa(r.IntN(300))+"@"+pick(r, customerDomains))
		}
		return out
	}},
	{name: "coder", tools: []tool{
		{name: "fs.read_file", action: pipeline.ActionRead, weight: 45, sens: [4]int{0, 95, 5, 0}, bytesMu: 8.5,
			resource: func(r *rand.Rand) string {
				return "/repo/" + pick(r, projects) + "/src/file" + itoa(r.IntN(80)) + ".go"
			}},
		{name: "fs.write_file", action: pipeline.ActionWrite, weight: 20, sens: [4]int{0, 100, 0, 0}, bytesMu: 8,
			resource: func(r *rand.Rand) string {
				return "/repo/" + pick(r, projects) + "/src/file" + itoa(r.IntN(80)) + ".go"
			}},
		{name: "shell.exec", action: pipeline.ActionExecute, weight: 20, sens: [4]int{0, 100, 0, 0}, bytesMu: 7,
			resource: func(r *rand.Rand) string {
				return pick(r, []string{"go test ./...", "go build ./...", "git status", "ls -la"})
			}},
		{name: "http.get", action: pipeline.ActionRead, weight: 10, sens: [4]int{100, 0, 0, 0}, bytesMu: 10,
			resource: func(r *rand.Rand) string { return "https://pkg.go.dev/" + pick(r, projects) }},
		{name: "git.push", action: pipeline.ActionSend, weight: 5, sens: [4]int{0, 100, 0, 0}, bytesMu: 9,
			resource: func(r *rand.Rand) string { return "git://" + pick(r, projects) }},
	}, dests: func(r *rand.Rand, a *agent) []string {
		return []string{"https://git.internal.example/" + pick(r, projects)}
	}},
	{name: "analyst", tools: []tool{
		{name: "db.query", action: pipeline.ActionRead, weight: 50, sens: [4]int{0, 40, 50, 10}, bytesMu: 10, records: true,
			resource: func(r *rand.Rand) string { return "db://prod/" + pick(r, tables) }},
		{name: "s3.get_object", action: pipeline.ActionRead, weight: 20, sens: [4]int{0, 50, 50, 0}, bytesMu: 12,
			resource: func(r *rand.Rand) string {
				return "s3://analytics/exports/" + pick(r, tables) + "-" + itoa(r.IntN(30)) + ".parquet"
			}},
		{name: "report.write", action: pipeline.ActionWrite, weight: 15, sens: [4]int{0, 80, 20, 0}, bytesMu: 9,
			resource: func(r *rand.Rand) string { return "s3://analytics/reports/r" + itoa(r.IntN(100)) + ".md" }},
		{name: "slack.post", action: pipeline.ActionSend, weight: 15, sens: [4]int{0, 100, 0, 0}, bytesMu: 6,
			resource: func(r *rand.Rand) string { return "slack://message" }},
	}, dests: func(r *rand.Rand, a *agent) []string {
		i := r.IntN(len(channels))
		return []string{channels[i], channels[(i+1)%len(channels)]}
	}},
	{name: "ops", tools: []tool{
		{name: "k8s.get", action: pipeline.ActionRead, weight: 50, sens: [4]int{0, 100, 0, 0}, bytesMu: 8,
			resource: func(r *rand.Rand) string { return "k8s://prod/pods/" + pick(r, projects) + "-" + itoa(r.IntN(10)) }},
		{name: "k8s.delete", action: pipeline.ActionDelete, weight: 5, sens: [4]int{0, 100, 0, 0}, bytesMu: 5,
			resource: func(r *rand.Rand) string { return "k8s://prod/pods/" + pick(r, projects) + "-" + itoa(r.IntN(10)) }},
		{name: "vault.read", action: pipeline.ActionAuth, weight: 10, sens: [4]int{0, 0, 20, 80}, bytesMu: 6,
			resource: func(r *rand.Rand) string { return "vault://secret/" + pick(r, projects) }},
		{name: "shell.exec", action: pipeline.ActionExecute, weight: 25, sens: [4]int{0, 100, 0, 0}, bytesMu: 7,
			resource: func(r *rand.Rand) string {
				return pick(r, []string{"kubectl get pods", "df -h", "uptime", "journalctl -n 100"})
			}},
		{name: "pagerduty.notify", action: pipeline.ActionSend, weight: 10, sens: [4]int{0, 100, 0, 0}, bytesMu: 6,
			resource: func(r *rand.Rand) string { return "pagerduty://incidents" }},
	}, dests: func(r *rand.Rand, a *agent) []string {
		return []string{"https://events.pagerduty.example/v2/enqueue"}
	}},
}

func init() {
	for _, r := range roles {
		for _, t := range r.tools {
			r.total += t.weight
		}
		r.sender() // every role has one
	}
}
