package sim

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/pipeline"
)

// The properties of the benign populations that docs/simulator.md and the
// package documentation promise, checked on the shared run.

func TestSubAgents(t *testing.T) {
	res := sharedRun(t)
	taskOf := map[string]pipeline.Event{} // task → an event of it
	for _, ev := range res.benign() {
		taskOf[ev.Task] = ev
	}
	depths := map[int]int{}
	instances := map[string]string{} // instance → agent
	for _, ev := range res.benign() {
		if prev, ok := instances[ev.Instance]; ok {
			require.Equal(t, prev, ev.Agent, "instance %s belongs to one agent", ev.Instance)
		}
		instances[ev.Instance] = ev.Agent
		if ev.ParentAgent == "" {
			require.Zero(t, ev.DelegationDepth)
			require.NotContains(t, ev.Agent, "/sub/")
			continue
		}
		depths[ev.DelegationDepth]++
		require.True(t, strings.HasPrefix(ev.Agent, ev.ParentAgent+"/sub/"), "%s's parent is %s", ev.Agent, ev.ParentAgent)
		require.NotContains(t, strings.TrimPrefix(ev.Agent, ev.ParentAgent+"/sub/"), "/")
		require.Equal(t, strings.Count(ev.Agent, "/sub/"), ev.DelegationDepth)
		// task "<parent task>/<n>", same principal, the parent's session is
		// another one
		i := strings.LastIndexByte(ev.Task, '/')
		require.Positive(t, i, ev.Task)
		parent, ok := taskOf[ev.Task[:i]]
		require.True(t, ok, "the parent task of %s", ev.Task)
		require.Equal(t, ev.ParentAgent, parent.Agent)
		require.Equal(t, parent.Principal, ev.Principal)
		require.NotEqual(t, parent.Session, ev.Session)
		require.NotEqual(t, parent.Instance, ev.Instance)
	}
	require.Greater(t, depths[1], 1000)
	require.Positive(t, depths[2], "researchers spawn fetchers")
	require.Zero(t, depths[3])
}

func TestCredentialsRotate(t *testing.T) {
	res := sharedRun(t)
	type use struct {
		agent, instance string
		first, last     time.Time
	}
	creds := map[string]*use{}
	perInstance := map[string]map[string]bool{}
	for _, ev := range res.benign() {
		if ev.Credential == "" {
			continue
		}
		if e := ev.Attrs["error"]; e == "token_expired" || e == "idp_unavailable" {
			// an agent back from idle tries its old token once
			if u := creds[ev.Credential]; u != nil {
				require.Equal(t, []string{u.agent, u.instance}, []string{ev.Agent, ev.Instance})
			}
			continue
		}
		u := creds[ev.Credential]
		if u == nil {
			u = &use{agent: ev.Agent, instance: ev.Instance, first: ev.Time}
			creds[ev.Credential] = u
		}
		require.Equal(t, []string{u.agent, u.instance}, []string{ev.Agent, ev.Instance},
			"credential %s belongs to one agent and instance", ev.Credential)
		u.last = ev.Time
		if perInstance[ev.Instance] == nil {
			perInstance[ev.Instance] = map[string]bool{}
		}
		perInstance[ev.Instance][ev.Credential] = true
	}
	for cred, u := range creds {
		require.LessOrEqual(t, u.last.Sub(u.first), 71*time.Minute, "credential %s of %s is used for too long", cred, u.instance)
	}
	// a busy support instance goes through a token an hour
	most := 0
	for inst, cs := range perInstance {
		if strings.HasPrefix(inst, "support-copilot-") {
			most = max(most, len(cs))
		}
	}
	require.Greater(t, most, 25)

	// instances restart: an agent has more pod names than instances
	names := map[string]map[string]bool{}
	for _, ev := range res.benign() {
		if ev.ParentAgent == "" {
			if names[ev.Agent] == nil {
				names[ev.Agent] = map[string]bool{}
			}
			names[ev.Agent][ev.Instance] = true
		}
	}
	restarted := 0
	for _, a := range res.sim.agents {
		if len(names[a.id]) > len(a.insts) {
			restarted++
		}
	}
	require.Greater(t, restarted, len(res.sim.agents)/4)
}

func TestBenignCallsStayInScope(t *testing.T) {
	res := sharedRun(t)
	undeclared := map[string]int{}
	for _, ev := range res.benign() {
		if len(ev.TaskScope) == 0 {
			if ev.Action != pipeline.ActionAuth {
				name := ev.Agent[strings.Index(ev.Agent, "/agents/")+len("/agents/"):]
				undeclared[strings.SplitN(name, "-", 2)[0]]++ // support-copilot-3 → support
			}
			continue
		}
		require.Contains(t, ev.TaskScope, ev.Tool, "%+v", ev)
	}
	// data analysts declare no scope, nor do some coding sessions; the
	// others always do
	require.Positive(t, undeclared["data"])
	require.Positive(t, undeclared["coding"])
	require.Zero(t, undeclared["support"])
	require.Zero(t, undeclared["orchestrator"])
}

func TestBenignAttributes(t *testing.T) {
	res := sharedRun(t)
	untrustedTools := []string{"ticket.get", "ticket.comments", "http.get", "web.fetch", "web.search"}
	envTools := []string{"deploy.run", "db.query", "db.schema", "secrets.read"}
	seen := map[string]int{}
	for _, ev := range res.benign() {
		trust := ev.Attrs["trust"]
		if slices.Contains(untrustedTools, ev.Tool) {
			require.Equal(t, "untrusted", trust, "%+v", ev)
		} else {
			require.Empty(t, trust, "%+v", ev)
		}
		if rt, ok := ev.Attrs["resource_tenant"]; ok {
			require.Equal(t, ev.Tenant, rt, "benign agents stay in their tenant")
			seen["resource_tenant"]++
		}
		if ev.Environment != "" {
			require.Contains(t, envTools, ev.Tool, "environment only on deployed systems: %+v", ev)
			seen[ev.Environment]++
		}
		privileged := ev.Attrs["privileged"] == "true"
		require.Equal(t, privileged, slices.Contains([]string{"payments.refund", "secrets.read"}, ev.Tool))
		if privileged {
			require.Equal(t, pipeline.ApprovalApproved, ev.Approval, "privileged calls are approved: %+v", ev)
			seen["privileged"]++
		}
		if ev.Environment == "prod" && ev.Action != pipeline.ActionRead {
			require.Equal(t, pipeline.ApprovalApproved, ev.Approval, "production changes are approved: %+v", ev)
			seen["prod change"]++
		}
	}
	for _, k := range []string{"resource_tenant", "prod", "staging", "privileged", "prod change"} {
		require.Positive(t, seen[k], k)
	}
}

// TestHardNegatives: what makes the benign traffic hard for naive rules
// is there.
func TestHardNegatives(t *testing.T) {
	res := sharedRun(t)
	benign := res.benign()
	bySession := map[string][]pipeline.Event{}
	for _, ev := range benign {
		bySession[ev.Session] = append(bySession[ev.Session], ev)
	}

	// support copilots: untrusted ticket → confidential CRM read → mail to a
	// customer the agent never wrote to, small
	dests := map[string]map[string]bool{}
	sends, newDest, chains := 0, 0, 0
	for _, ev := range benign {
		if ev.Tool != "mail.send" || !strings.Contains(ev.Agent, "/support-copilot-") {
			continue
		}
		sends++
		if dests[ev.Agent] == nil {
			dests[ev.Agent] = map[string]bool{}
		}
		if !dests[ev.Agent][ev.Destination] {
			newDest++
			dests[ev.Agent][ev.Destination] = true
		}
		untrustedFirst, confidential := false, false
		for _, e := range bySession[ev.Session] {
			if e.Time.After(ev.Time) {
				break
			}
			untrustedFirst = untrustedFirst || e.Attrs["trust"] == "untrusted"
			confidential = confidential || untrustedFirst && e.Action == pipeline.ActionRead && e.Sensitivity == pipeline.SensitivityConfidential
		}
		if confidential {
			chains++
		}
	}
	require.Greater(t, sends, 500)
	require.Greater(t, newDest, sends*9/10, "most replies go to new addresses")
	require.Greater(t, chains, sends*9/10, "after an untrusted ticket and a confidential read")

	// coding agents: refactors read 100+ distinct files; test runs fail in
	// bursts
	wide, bursts := 0, 0
	for _, evs := range bySession {
		files := map[string]bool{}
		var fails []time.Time
		for _, e := range evs {
			if e.Tool == "fs.read" {
				files[e.Resource] = true
			}
			if e.Tool == "shell.exec" && e.Outcome == pipeline.OutcomeError {
				fails = append(fails, e.Time)
			}
		}
		if len(files) >= 100 {
			wide++
		}
		for i := 2; i < len(fails); i++ {
			if fails[i].Sub(fails[i-2]) < 15*time.Second {
				bursts++
				break
			}
		}
	}
	require.Positive(t, wide)
	require.Greater(t, bursts, 20)

	// outages: errors across a tenant's agents within minutes, with retries
	type key struct{ tenant, hour string }
	outageAgents := map[key]map[string]bool{}
	retried := 0
	for _, evs := range bySession {
		for i, e := range evs {
			if e.Attrs["error"] != "503 service unavailable" {
				continue
			}
			k := key{e.Tenant, e.Time.Truncate(15 * time.Minute).String()}
			if outageAgents[k] == nil {
				outageAgents[k] = map[string]bool{}
			}
			outageAgents[k][e.Agent] = true
			if i+1 < len(evs) && evs[i+1].Tool == e.Tool && evs[i+1].Resource == e.Resource {
				retried++
			}
		}
	}
	widest := 0
	for _, agents := range outageAgents {
		widest = max(widest, len(agents))
	}
	require.GreaterOrEqual(t, widest, 3, "an outage hits several agents of a tenant")
	require.Greater(t, retried, 50)

	// tokens expire: the call fails, the agent exchanges a new token, with
	// another credential, and calls again
	expired := 0
	for _, evs := range bySession {
		for i, e := range evs {
			if e.Attrs["error"] == "token_expired" && i+1 < len(evs) {
				expired++
				j := slices.IndexFunc(evs[i+1:], func(x pipeline.Event) bool { return x.Tool == "oauth.token" && x.Outcome == pipeline.OutcomeOK })
				require.GreaterOrEqual(t, j, 0)
				require.NotEqual(t, e.Credential, evs[i+1+j].Credential)
			}
		}
	}
	require.Positive(t, expired)

	// a few single denied calls, never in bursts
	denied := 0
	for _, evs := range bySession {
		isDenied := func(e *pipeline.Event) bool { return e.Outcome == pipeline.OutcomeDenied }
		denied += count(evs, isDenied)
		require.LessOrEqual(t, maxIn(evs, 10*time.Minute, isDenied), 3)
	}
	require.Positive(t, denied)

	// data agents: heavy-tailed results
	most := int64(0)
	for _, e := range benign {
		if e.Tool == "db.query" {
			most = max(most, e.Records)
		}
	}
	require.Greater(t, most, int64(200_000))
}

// TestNewToolOnDay2: support copilots get translate.text on day 2, in
// their scope from then on.
func TestNewToolOnDay2(t *testing.T) {
	res := sharedRun(t)
	first := time.Time{}
	for _, ev := range res.benign() {
		if ev.Tool == "translate.text" {
			if first.IsZero() {
				first = ev.Time
			}
			require.Contains(t, ev.Agent, "/support-copilot-")
		}
		if strings.Contains(ev.Agent, "/support-copilot-") && ev.Time.Before(DefaultStart.Add(24*time.Hour)) {
			require.NotContains(t, ev.TaskScope, "translate.text")
		}
	}
	require.False(t, first.IsZero())
	require.True(t, first.After(DefaultStart.Add(24*time.Hour)), "first used at %s", first)
}
