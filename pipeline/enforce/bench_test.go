package enforce

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// benchEnforcer is an enforcer holding n active commands spread over
// tenants and every scope (one in five a hold), with no NATS behind it, and
// a set of calls: a quarter denied, the rest touching every scope of a
// populated tenant without a match (the most lookups a call can cost).
func benchEnforcer(tb testing.TB, n, tenants int) (*Enforcer, []Call) {
	m, err := newEnforcerMetrics(prometheus.NewRegistry(), "bench")
	require.NoError(tb, err)
	e := &Enforcer{cfg: Config{FailPolicy: FailClosed}, m: m, st: newState()}
	e.health.Store(healthOK)
	e.now.Store(epoch.UnixNano())
	exp := epoch.Add(time.Hour).UnixNano()
	slots := numSlots + 1 // the six value scopes and the tool scope
	for i := range n {
		en := &entry{
			id:      fmt.Sprintf("rv-%06d", i),
			kind:    KindRevoke,
			tenant:  fmt.Sprintf("tenant-%04d", i%tenants),
			slot:    (i / tenants) % slots,
			value:   fmt.Sprintf("value-%06d", i),
			reason:  "bench",
			expires: exp,
		}
		if i%5 == 3 {
			en.kind, en.hold = KindHold, true
		}
		if en.slot == slotTool {
			en.tool = "mail.send"
		}
		e.st.insert(en)
	}
	calls := make([]Call, 1024)
	for i := range calls {
		j := (i * 7919) % n // a command to hit
		tenant := fmt.Sprintf("tenant-%04d", j%tenants)
		c := Call{
			Tenant: tenant, Agent: "agent-x", Instance: "pod-x", Session: "session-x", Task: "task-x",
			Principal: "alice", Credential: "cred-x", Tool: "mail.send", Action: "write",
		}
		if i%4 == 0 {
			switch v := fmt.Sprintf("value-%06d", j); (j / tenants) % slots {
			case slotSession:
				c.Session = v
			case slotInstance:
				c.Instance = v
			case slotAgent:
				c.Agent = v
			case slotTask:
				c.Task = v
			case slotPrincipal:
				c.Principal = v
			case slotCredential:
				c.Credential = v
			case slotTool:
				c.Agent = v
			}
		}
		calls[i] = c
	}
	return e, calls
}

func TestBenchEnforcerShape(t *testing.T) {
	e, calls := benchEnforcer(t, 100_000, 1000)
	require.Len(t, e.st.byID, 100_000)
	require.Len(t, e.st.tenants, 1000)
	denied, held := 0, 0
	for i := range calls {
		switch e.Check(&calls[i]).Decision {
		case Deny:
			denied++
		case Hold:
			held++
		}
	}
	require.Equal(t, 256, denied+held, "a quarter of the calls match a command")
	require.NotZero(t, held)
	require.Zero(t, testing.AllocsPerRun(100, func() { e.Check(&calls[0]); e.Check(&calls[1]) }))
}

func BenchmarkCheck(b *testing.B) {
	e, calls := benchEnforcer(b, 100_000, 1000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.Check(&calls[i&1023])
		i++
	}
}

func BenchmarkCheckParallel(b *testing.B) {
	e, calls := benchEnforcer(b, 100_000, 1000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			e.Check(&calls[i&1023])
			i++
		}
	})
}

// BenchmarkVerifyCommand is the cost of taking in one KV update (decode
// and Ed25519 verification): it bounds how fast a reload goes.
func BenchmarkVerifyCommand(b *testing.B) {
	s, kr := keysFor(b)
	c := signed(s, Command{ID: CommandID("d-1", ScopeSession), Kind: KindRevoke, Tenant: "acme", Scope: ScopeSession, Value: "s-4c1f9e",
		Reason: "runaway loop: 400 calls/min", Rule: "runaway-loop", RuleVersion: "3", Decision: "d-1",
		Evidence: []string{"01HZX3J8K2Q9V7M4N6P5R8T2WC", "01HZX3J8K2Q9V7M4N6P5R8T2WD"}, Tags: []string{"ASI02", "T4"},
		IssuedAt: epoch, ExpiresAt: epoch.Add(time.Hour), Issuer: "engine/w1"})
	data := mustJSON(b, c)
	st := newState()
	b.ReportAllocs()
	for b.Loop() {
		if p := st.parse(c.ID, 0, data, kr, epoch, time.Minute); p.cmd == nil {
			b.Fatal(p.err)
		}
	}
}
