package enforce

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/embednats"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline"
)

func TestNewValidatesConfig(t *testing.T) {
	v := newEnv(t)
	good := Config{ID: "p1", Keyring: v.keys, FailPolicy: FailClosed}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no id", func(c *Config) { c.ID = "" }, "Config.ID"},
		{"id with a dot", func(c *Config) { c.ID = "a.b" }, "Config.ID"},
		{"no keys", func(c *Config) { c.Keyring = nil }, "Keyring is empty"},
		{"no fail policy", func(c *Config) { c.FailPolicy = 0 }, "FailPolicy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			_, err := New(v.nc, cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := New(nil, good)
	require.Error(t, err)
}

func TestCheckBeforeStart(t *testing.T) {
	v := newEnv(t)
	for _, tc := range []struct {
		policy FailPolicy
		want   Verdict
	}{
		{FailClosed, Verdict{Decision: Deny, Reason: ReasonNotStarted}},
		{FailOpen, Verdict{Decision: Allow}},
	} {
		e, err := New(v.nc, Config{ID: "p1", Keyring: v.keys, FailPolicy: tc.policy})
		require.NoError(t, err)
		require.Equal(t, tc.want, e.Check(&Call{Tenant: "acme", Agent: "a"}))
		require.True(t, e.Stale())
		e.Close()
	}
}

func TestStartWithoutBucket(t *testing.T) {
	v := newEnv(t)
	require.NoError(t, v.js.DeleteKeyValue(context.Background(), pipeline.RevocationsBucket))
	e, err := New(v.nc, Config{ID: "p1", Keyring: v.keys, FailPolicy: FailOpen})
	require.NoError(t, err)
	err = e.Start(context.Background())
	require.ErrorContains(t, err, "tripline nats init")
	e.Close()
}

func TestInitialLoad(t *testing.T) {
	v := newEnv(t)
	rv := v.command(KindRevoke, "acme", ScopeSession, "s-1")
	hold := v.command(KindHold, "acme", ScopeAgent, "spiffe://acme.example/agents/bot")
	lifted := v.command(KindRevoke, "acme", ScopeSession, "s-2")
	v.put(rv)
	v.put(hold)
	v.put(lifted)
	v.put(v.liftOf(lifted))
	v.putRaw("rv-junk", []byte("not a command"))

	e := v.enforcer(nil)

	// Start returned: the state is in, no waiting needed.
	require.Equal(t, 2, e.Active())
	require.False(t, e.Stale())
	require.Equal(t, Verdict{Decision: Deny, CommandID: rv.ID, Reason: rv.Reason},
		e.Check(&Call{Tenant: "acme", Session: "s-1", Agent: "spiffe://acme.example/agents/x", Action: "read"}))
	require.Equal(t, Verdict{Decision: Hold, CommandID: hold.ID, Reason: hold.Reason},
		e.Check(&Call{Tenant: "acme", Agent: hold.Value, Action: "delete"}))
	require.Equal(t, Allow, e.Check(&Call{Tenant: "acme", Agent: hold.Value, Action: "read"}).Decision)
	require.Equal(t, Allow, e.Check(&Call{Tenant: "acme", Session: "s-2"}).Decision, "the lift in the bucket wins")
	require.Equal(t, 1.0, rejected(t, e, RejectMalformed))
	require.Zero(t, sampleCount(t, e), "the start-up load is not a time-to-apply sample")

	// The revoke, the hold and the lift are acknowledged; the lifted revoke
	// was never applied here.
	require.Equal(t, 3, settledAcks(t, e))
	acks := v.acks()
	require.Len(t, acks, 3)
	a := acks[AckMsgID(rv.ID, "proxy-1")]
	require.Equal(t, Ack{CommandID: rv.ID, Kind: KindRevoke, Tenant: "acme", Enforcer: "proxy-1", AppliedAt: epoch, IssuedAt: rv.IssuedAt}, a)
}

func TestLiveRevokeDenies(t *testing.T) {
	v := newEnv(t)
	e := v.enforcer(nil)
	call := &Call{Tenant: "acme", Agent: "spiffe://acme.example/agents/bot", Session: "s-9", Tool: "crm.export", Action: "read"}
	require.Equal(t, Allow, e.Check(call).Decision)

	rv := v.command(KindRevoke, "acme", ScopeSession, "s-9")
	t0 := time.Now()
	v.put(rv)
	require.Eventually(t, func() bool { return e.Check(call).Decision == Deny }, waitFor, tick)
	t.Logf("revocation enforced %s after the KV put", time.Since(t0))
	require.Equal(t, Verdict{Decision: Deny, CommandID: rv.ID, Reason: rv.Reason}, e.Check(call))
	require.Equal(t, 1, e.Active())
	require.Equal(t, 1.0, applied(t, e, KindRevoke))
}

func TestHoldBlocksWritesNotReads(t *testing.T) {
	v := newEnv(t)
	e := v.enforcer(nil)
	hold := v.command(KindHold, "acme", ScopeTask, "t-7")
	v.put(hold)
	require.Eventually(t, func() bool { return e.Active() == 1 }, waitFor, tick)

	for _, tc := range []struct {
		action string
		want   Decision
	}{
		{"read", Allow},
		{"write", Hold},
		{"delete", Hold},
		{"send", Hold},
		{"execute", Hold},
		{"auth", Hold},
		{"", Hold}, // unknown verbs are treated as state-changing
	} {
		t.Run("action="+tc.action, func(t *testing.T) {
			got := e.Check(&Call{Tenant: "acme", Agent: "a", Task: "t-7", Action: tc.action})
			require.Equal(t, tc.want, got.Decision)
			if tc.want == Hold {
				require.Equal(t, hold.ID, got.CommandID)
				require.Equal(t, hold.Reason, got.Reason)
			}
		})
	}
}

func TestSignedLiftRestoresAllow(t *testing.T) {
	v := newEnv(t)
	e := v.enforcer(nil)
	rv := v.command(KindRevoke, "acme", ScopeCredential, "cred-9f2a")
	call := callFor(rv)
	v.put(rv)
	require.Eventually(t, func() bool { return e.Check(call).Decision == Deny }, waitFor, tick)

	v.put(v.liftOf(rv))
	require.Eventually(t, func() bool { return e.Check(call).Decision == Allow }, waitFor, tick)
	require.Equal(t, 0, e.Active())
	require.Equal(t, 1.0, applied(t, e, KindLift))
}

func TestKVDeleteDoesNotLift(t *testing.T) {
	v := newEnv(t)
	e := v.enforcer(nil)
	rv := v.command(KindRevoke, "acme", ScopeInstance, "pod-7f9c")
	call := callFor(rv)
	v.put(rv)
	require.Eventually(t, func() bool { return e.Check(call).Decision == Deny }, waitFor, tick)

	ctx := context.Background()
	require.NoError(t, v.kv.Delete(ctx, rv.ID))
	require.Eventually(t, func() bool { return rejected(t, e, RejectUnsigned) == 1 }, waitFor, tick)
	require.Equal(t, Deny, e.Check(call).Decision)

	require.NoError(t, v.kv.Purge(ctx, rv.ID))
	require.Eventually(t, func() bool { return rejected(t, e, RejectUnsigned) == 2 }, waitFor, tick)
	require.Equal(t, Deny, e.Check(call).Decision)
	require.Equal(t, 1, e.Active())
}

func TestRejectedCommands(t *testing.T) {
	v := newEnv(t)
	e := v.enforcer(nil)
	strangeSigner, _ := keysFor(t) // a key the enforcer does not trust

	for _, tc := range []struct {
		name   string
		make   func() *Command
		reason string
	}{
		{"forged", func() *Command {
			c := v.command(KindRevoke, "acme", ScopeAgent, "spiffe://acme.example/agents/a")
			c.Value = "spiffe://acme.example/agents/b" // altered after signing
			return c
		}, RejectForged},
		{"unknown key", func() *Command {
			c := v.command(KindRevoke, "acme", ScopeAgent, "spiffe://acme.example/agents/c")
			strangeSigner.Sign(c)
			return c
		}, RejectUnknownKey},
		{"unsigned", func() *Command {
			c := v.command(KindRevoke, "acme", ScopeAgent, "spiffe://acme.example/agents/d")
			c.Sig, c.KeyID = "", ""
			return c
		}, RejectUnsigned},
		{"expired", func() *Command {
			c := v.command(KindRevoke, "acme", ScopeAgent, "spiffe://acme.example/agents/e")
			c.IssuedAt = epoch.Add(-2 * time.Hour)
			c.ExpiresAt = epoch.Add(-time.Hour)
			v.signer.Sign(c)
			return c
		}, RejectExpired},
		{"issued in the future", func() *Command {
			c := v.command(KindRevoke, "acme", ScopeAgent, "spiffe://acme.example/agents/f")
			c.IssuedAt = epoch.Add(10 * time.Minute)
			c.ExpiresAt = epoch.Add(time.Hour)
			v.signer.Sign(c)
			return c
		}, RejectFuture},
		{"malformed", func() *Command {
			c := v.command(KindRevoke, "acme", ScopeAgent, "")
			return c
		}, RejectMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.make()
			v.put(c)
			require.Eventually(t, func() bool { return rejected(t, e, tc.reason) == 1 }, waitFor, tick)
			require.Equal(t, Allow, e.Check(callFor(c)).Decision)
			require.Equal(t, 0, e.Active())
		})
	}
	require.Equal(t, 0.0, applied(t, e, KindRevoke))
	require.Equal(t, 0, settledAcks(t, e))
}

func TestReplayedCommandsAreIgnoredAndNotAckedAgain(t *testing.T) {
	v := newEnv(t)
	e := v.enforcer(nil)
	rv := v.command(KindRevoke, "acme", ScopePrincipal, "alice@acme.example")
	call := callFor(rv)
	v.put(rv)
	require.Eventually(t, func() bool { return e.Check(call).Decision == Deny }, waitFor, tick)

	v.put(rv) // the same signed command delivered again
	require.Eventually(t, func() bool { return rejected(t, e, RejectReplayed) == 1 }, waitFor, tick)

	lift := v.liftOf(rv)
	v.put(lift)
	require.Eventually(t, func() bool { return e.Check(call).Decision == Allow }, waitFor, tick)
	v.put(lift) // the lift again
	require.Eventually(t, func() bool { return rejected(t, e, RejectReplayed) == 2 }, waitFor, tick)
	v.put(rv) // the revoke of a lifted id
	require.Eventually(t, func() bool { return rejected(t, e, RejectReplayed) == 3 }, waitFor, tick)
	require.Equal(t, Allow, e.Check(call).Decision)

	require.Equal(t, 2, settledAcks(t, e), "one ack for the revoke, one for the lift")
	acks := v.acks()
	require.Len(t, acks, 2)
	require.Contains(t, acks, AckMsgID(rv.ID, "proxy-1"))
	require.Contains(t, acks, AckMsgID(lift.ID, "proxy-1"))
	require.Equal(t, KindLift, acks[AckMsgID(lift.ID, "proxy-1")].Kind)
}

func TestEveryScopeMatches(t *testing.T) {
	v := newEnv(t)
	e := v.enforcer(nil)
	scopes := []string{ScopeSession, ScopeInstance, ScopeAgent, ScopeTask, ScopePrincipal, ScopeCredential, ScopeTool}
	cmds := map[string]*Command{}
	for _, scope := range scopes {
		c := v.command(KindRevoke, "t-"+scope, scope, "v-"+scope)
		cmds[scope] = c
		v.put(c)
	}
	require.Eventually(t, func() bool { return e.Active() == len(scopes) }, waitFor, tick)

	for _, scope := range scopes {
		t.Run(scope, func(t *testing.T) {
			c := cmds[scope]
			hit := callFor(c)
			require.Equal(t, Verdict{Decision: Deny, CommandID: c.ID, Reason: c.Reason}, e.Check(hit))

			// The same call with the scope's value changed is allowed.
			miss := *hit
			switch scope {
			case ScopeSession:
				miss.Session = "other"
			case ScopeInstance:
				miss.Instance = "other"
			case ScopeAgent:
				miss.Agent = "other"
			case ScopeTask:
				miss.Task = "other"
			case ScopePrincipal:
				miss.Principal = "other"
			case ScopeCredential:
				miss.Credential = "other"
			case ScopeTool:
				miss.Tool = "other.tool" // same agent, another tool
				other := *hit
				other.Agent = "other" // same tool, another agent
				require.Equal(t, Allow, e.Check(&other).Decision)
			}
			require.Equal(t, Allow, e.Check(&miss).Decision)
		})
	}
}

func TestTenantIsolation(t *testing.T) {
	v := newEnv(t)
	e := v.enforcer(nil)
	agent := "spiffe://shared.example/agents/bot"
	rv := v.command(KindRevoke, "acme", ScopeAgent, agent)
	v.put(rv)
	require.Eventually(t, func() bool { return e.Active() == 1 }, waitFor, tick)

	require.Equal(t, Deny, e.Check(&Call{Tenant: "acme", Agent: agent, Action: "read"}).Decision)
	require.Equal(t, Allow, e.Check(&Call{Tenant: "globex", Agent: agent, Action: "read"}).Decision)
	require.Equal(t, Allow, e.Check(&Call{Agent: agent, Action: "read"}).Decision, "no tenant matches nothing")
}

func TestExpiryIsMeasuredOnTheInjectedClock(t *testing.T) {
	v := newEnv(t)
	e := v.enforcer(nil)
	rv := v.command(KindRevoke, "acme", ScopeSession, "s-1")
	rv.ExpiresAt = epoch.Add(10 * time.Second)
	v.signer.Sign(rv)
	v.put(rv)
	call := callFor(rv)
	require.Eventually(t, func() bool { return e.Check(call).Decision == Deny }, waitFor, tick)
	v.clock.Advance(11 * time.Second)
	require.Eventually(t, func() bool { return e.Check(call).Decision == Allow }, waitFor, tick)
}

func TestAcksOncePerAppliedCommand(t *testing.T) {
	v := newEnv(t)
	e := v.enforcer(func(c *Config) { c.ID = "gw-eu1" })
	rv := v.command(KindRevoke, "acme", ScopeSession, "s-1")
	hold := v.command(KindHold, "globex", ScopeAgent, "spiffe://globex.example/agents/bot")
	v.put(rv)
	v.put(hold)
	require.Eventually(t, func() bool { return e.Active() == 2 }, waitFor, tick)
	lift := v.liftOf(hold)
	v.put(lift)
	require.Eventually(t, func() bool { return e.Active() == 1 }, waitFor, tick)

	require.Equal(t, 3, settledAcks(t, e))
	acks := v.acks()
	require.Len(t, acks, 3)
	for _, c := range []*Command{rv, hold, lift} {
		a, ok := acks[AckMsgID(c.ID, "gw-eu1")]
		require.True(t, ok, "ack of %s", c.ID)
		require.Equal(t, c.ID, a.CommandID)
		require.Equal(t, c.Kind, a.Kind)
		require.Equal(t, c.Tenant, a.Tenant)
		require.Equal(t, "gw-eu1", a.Enforcer)
		require.True(t, c.IssuedAt.Equal(a.IssuedAt))
		require.True(t, epoch.Equal(a.AppliedAt))
	}
	require.Equal(t, uint64(3), sampleCount(t, e), "live applications feed the time-to-apply histogram")
}

func sampleCount(t *testing.T, e *Enforcer) uint64 {
	ch := make(chan prometheus.Metric, 1)
	e.m.timeToApply.Collect(ch)
	m := <-ch
	var d dto.Metric
	require.NoError(t, m.Write(&d))
	return d.GetHistogram().GetSampleCount()
}

func TestHeartbeat(t *testing.T) {
	v := newEnv(t)
	sub, err := v.nc.SubscribeSync(pipeline.HeartbeatSubjectPrefix + "hb-1")
	require.NoError(t, err)
	e := v.enforcer(func(c *Config) { c.ID = "hb-1"; c.HeartbeatEvery = 20 * time.Millisecond })
	v.put(v.command(KindRevoke, "acme", ScopeSession, "s-1"))
	require.Eventually(t, func() bool { return e.Active() == 1 }, waitFor, tick)

	deadline := time.Now().Add(waitFor)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		require.NoError(t, err, "no heartbeat with the revocation counted")
		var hb Heartbeat
		require.NoError(t, json.Unmarshal(m.Data, &hb))
		require.Equal(t, "hb-1", hb.Enforcer)
		require.Equal(t, StateOK, hb.State)
		require.True(t, epoch.Equal(hb.At))
		if hb.Active == 1 {
			require.True(t, epoch.Equal(hb.LastUpdate))
			break
		}
	}
}

// TestStaleFailClosedThenReconcile cuts the enforcer off from NATS (a real
// TCP close, reconnects refused), lets the injected clock pass StaleAfter,
// changes the bucket while the enforcer is away, and heals the partition.
func TestStaleFailClosedThenReconcile(t *testing.T) {
	for _, policy := range []FailPolicy{FailClosed, FailOpen} {
		t.Run(policy.String(), func(t *testing.T) {
			v := newEnv(t)
			d := &gateDialer{}
			e := v.enforcer(func(c *Config) { c.FailPolicy = policy; c.StaleAfter = 5 * time.Second }, nats.SetCustomDialer(d))
			before := v.command(KindRevoke, "acme", ScopeSession, "s-before")
			v.put(before)
			bystander := &Call{Tenant: "acme", Agent: "a", Session: "s-ok", Action: "read"}
			require.Eventually(t, func() bool { return e.Check(callFor(before)).Decision == Deny }, waitFor, tick)

			d.partition()
			require.Eventually(t, func() bool { return e.downSince.Load() != 0 }, waitFor, tick)
			require.Equal(t, Allow, e.Check(bystander).Decision, "not stale before StaleAfter")
			require.False(t, e.Stale())

			v.clock.Advance(6 * time.Second)
			require.Eventually(t, e.Stale, waitFor, tick)
			require.Equal(t, 1.0, counterValue(t, e.m.stale))
			switch policy {
			case FailClosed:
				require.Equal(t, Verdict{Decision: Deny, Reason: ReasonStale}, e.Check(bystander))
			case FailOpen:
				require.Equal(t, Allow, e.Check(bystander).Decision)
				require.Equal(t, Deny, e.Check(callFor(before)).Decision, "known revocations still hold")
			}

			// Meanwhile the engine revokes another session and an analyst
			// lifts the first revocation.
			during := v.command(KindRevoke, "acme", ScopeSession, "s-during")
			v.put(during)
			lift := v.liftOf(before)
			v.put(lift)

			d.heal()
			require.Eventually(t, func() bool { return !e.Stale() }, waitFor, tick)
			require.Equal(t, Allow, e.Check(bystander).Decision)
			require.Equal(t, Deny, e.Check(callFor(during)).Decision)
			require.Equal(t, Allow, e.Check(callFor(before)).Decision)
			require.Equal(t, 1, e.Active())
			require.Equal(t, 1.0, counterValue(t, e.m.reconciles.WithLabelValues("ok")))
			require.Equal(t, 0.0, counterValue(t, e.m.stale))
			require.Equal(t, 0.0, rejected(t, e, RejectReplayed), "a reload is not a replay")

			// The watch runs again, and every command was acked exactly once.
			after := v.command(KindRevoke, "acme", ScopeSession, "s-after")
			v.put(after)
			require.Eventually(t, func() bool { return e.Check(callFor(after)).Decision == Deny }, waitFor, tick)
			require.Equal(t, 4, settledAcks(t, e))
			acks := v.acks()
			require.Len(t, acks, 4)
			for _, c := range []*Command{before, during, lift, after} {
				require.Contains(t, acks, AckMsgID(c.ID, "proxy-1"))
			}
		})
	}
}

// TestReconcileAfterServerRestart stops the NATS server and starts a new
// one on the same port and store directory: the enforcer reconnects,
// reloads from the recovered bucket and watches the new server.
func TestReconcileAfterServerRestart(t *testing.T) {
	dir := t.TempDir()
	srv, err := embednats.Start(embednats.Options{StoreDir: dir})
	require.NoError(t, err)
	url := srv.ClientURL()
	t.Cleanup(func() { srv.Shutdown() })

	admin, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	v := &env{t: t, nc: admin, clock: newClock()}
	v.js, err = jetstream.New(admin)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, topology.Provision(ctx, v.js, topology.Config{})) // file storage: survives the restart
	v.kv, err = v.js.KeyValue(ctx, pipeline.RevocationsBucket)
	require.NoError(t, err)
	v.signer, v.keys = keysFor(t)

	enc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0))
	require.NoError(t, err)
	t.Cleanup(enc.Close)
	e, err := New(enc, Config{ID: "proxy-1", Keyring: v.keys, FailPolicy: FailClosed, StaleAfter: time.Second,
		Now: v.clock.Now, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	require.NoError(t, err)
	require.NoError(t, e.Start(ctx))
	t.Cleanup(e.Close)

	rv := v.command(KindRevoke, "acme", ScopeAgent, "spiffe://acme.example/agents/bot")
	v.put(rv)
	require.Eventually(t, func() bool { return e.Check(callFor(rv)).Decision == Deny }, waitFor, tick)

	addr := srv.Addr().String()
	srv.Shutdown()
	srv.WaitForShutdown()
	require.Eventually(t, func() bool { return e.downSince.Load() != 0 }, waitFor, tick)
	v.clock.Advance(2 * time.Second)
	require.Eventually(t, e.Stale, waitFor, tick)
	require.Equal(t, ReasonStale, e.Check(&Call{Tenant: "acme", Agent: "x"}).Reason)

	srv2, err := embednats.Start(embednats.Options{StoreDir: dir, Port: portOf(t, addr)})
	require.NoError(t, err)
	t.Cleanup(func() {
		e.Close() // before its server goes
		srv2.Shutdown()
		srv2.WaitForShutdown()
	})

	require.Eventually(t, func() bool { return !e.Stale() }, waitFor, tick)
	require.Equal(t, Deny, e.Check(callFor(rv)).Decision, "recovered from the new server's store")
	require.Equal(t, Allow, e.Check(&Call{Tenant: "acme", Agent: "x"}).Decision)

	// Live updates flow from the new server.
	require.Eventually(t, func() bool { return admin.IsConnected() }, waitFor, tick)
	v.put(v.liftOf(rv))
	require.Eventually(t, func() bool { return e.Check(callFor(rv)).Decision == Allow }, waitFor, tick)
}

func TestMetricsAreExposed(t *testing.T) {
	v := newEnv(t)
	reg := prometheus.NewRegistry()
	e := v.enforcer(func(c *Config) { c.ID = "m-1"; c.Registerer = reg })
	rv := v.command(KindRevoke, "acme", ScopeSession, "s-1")
	v.put(rv)
	require.Eventually(t, func() bool { return e.Active() == 1 }, waitFor, tick)
	e.Check(callFor(rv))
	e.Check(&Call{Tenant: "acme", Session: "s-2"})
	e.Check(&Call{Tenant: "acme", Session: "s-3"})

	fams, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "enforcer" {
					require.Equal(t, "m-1", l.GetValue())
					continue
				}
				name += "{" + l.GetValue() + "}"
			}
			got[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	require.Equal(t, 1.0, got["tripline_enforcer_checks_total{deny}"])
	require.Equal(t, 2.0, got["tripline_enforcer_checks_total{allow}"])
	require.Equal(t, 0.0, got["tripline_enforcer_checks_total{hold}"])
	require.Equal(t, 1.0, got["tripline_enforcer_commands_applied_total{revoke}"])
	require.Equal(t, 1.0, got["tripline_enforcer_active_commands"])
	require.Equal(t, 0.0, got["tripline_enforcer_stale"])
	require.Contains(t, got, "tripline_enforcer_commands_rejected_total{forged}")
	require.Contains(t, got, "tripline_enforcer_time_to_apply_seconds")

	// A second enforcer with another id shares the registerer.
	_, err = New(v.nc, Config{ID: "m-2", Keyring: v.keys, FailPolicy: FailOpen, Registerer: reg})
	require.NoError(t, err)
}
