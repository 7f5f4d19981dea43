package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/internal/natstest"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
	"github.com/tripline/tripline/rules"
)

type env struct {
	t      *testing.T
	srv    *natstest.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	set    *rules.Set
	signer *enforce.Signer
	keys   enforce.Keyring
	topo   topology.Config
}

func setup(t *testing.T) *env {
	s := natstest.Start(t)
	nc, js := s.Connect(t)
	topo := topology.Config{Partitions: 4, Memory: true, LeaseTTL: 1500 * time.Millisecond}
	require.NoError(t, topology.Provision(context.Background(), js, topo))
	set, err := rules.LoadPaths("../../rules/examples")
	require.NoError(t, err)
	_, priv, err := enforce.GenerateKey()
	require.NoError(t, err)
	signer := enforce.NewSigner(priv)
	keys := enforce.Keyring{}
	keys.Add(signer.Public())
	return &env{t: t, srv: s, nc: nc, js: js, set: set, signer: signer, keys: keys, topo: topo}
}

// startWorker runs a worker on its own connection. stop cancels it
// gracefully; kill closes its connection first, as a crash would, so it
// cannot hand its leases back.
func (e *env) startWorker(id string) (stop, kill func()) {
	nc, _ := e.srv.Connect(e.t)
	w, err := New(context.Background(), nc, Config{
		WorkerID: id, Topology: e.topo, Rules: e.set, Signer: e.signer,
		AckWait: 2 * time.Second, Batch: 64, Logger: testLogger(e.t, id),
	})
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	stop = func() { cancel(); <-done }
	kill = func() { nc.Close(); cancel(); <-done }
	e.t.Cleanup(func() { cancel(); <-done })
	return stop, kill
}

func (e *env) publish(evs ...*pipeline.Event) {
	ctx := context.Background()
	for _, ev := range evs {
		_, err := e.js.Publish(ctx, pipeline.EventSubject(ev.Tenant, ev.Agent, e.topo.Partitions), ev.AppendJSON(nil), jetstream.WithMsgID(ev.ID))
		require.NoError(e.t, err)
	}
}

func (e *env) streamMsgs(stream string) []*jetstream.RawStreamMsg {
	ctx := context.Background()
	st, err := e.js.Stream(ctx, stream)
	require.NoError(e.t, err)
	info, err := st.Info(ctx)
	require.NoError(e.t, err)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err == nil {
			out = append(out, m)
		}
	}
	return out
}

var base = time.Now().UTC().Truncate(time.Second)

func event(id string, at time.Duration, agent, session string, mod ...func(*pipeline.Event)) *pipeline.Event {
	ev := &pipeline.Event{ID: id, Time: base.Add(at), Tenant: "acme", Agent: agent, Session: session,
		Tool: "crm.lookup", Action: pipeline.ActionRead, Outcome: "ok"}
	for _, m := range mod {
		m(ev)
	}
	return ev
}

func exfil(agent, session string, at time.Duration) []*pipeline.Event {
	return []*pipeline.Event{
		event(session+"-read", at, agent, session, func(e *pipeline.Event) { e.Sensitivity = "restricted"; e.Resource = "crm/customers" }),
		event(session+"-send", at+time.Minute, agent, session, func(e *pipeline.Event) {
			e.Tool, e.Action, e.Destination = "http.post", pipeline.ActionSend, "https://paste.example/"+session
		}),
	}
}

func TestAttackProducesSignedRevocation(t *testing.T) {
	e := setup(t)
	e.startWorker("w1")
	e.publish(exfil("spiffe://acme.dev/agent/support", "s-1", 0)...)

	kv, err := e.js.KeyValue(context.Background(), pipeline.RevocationsBucket)
	require.NoError(t, err)
	var cmd enforce.Command
	require.Eventually(t, func() bool {
		keys, err := kv.Keys(context.Background())
		if err != nil || len(keys) != 1 {
			return false
		}
		ent, err := kv.Get(context.Background(), keys[0])
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(ent.Value(), &cmd))
		return true
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, e.keys.Verify(&cmd), "the command verifies with the engine's key")
	require.Equal(t, enforce.KindRevoke, cmd.Kind)
	require.Equal(t, "session", cmd.Scope)
	require.Equal(t, "s-1", cmd.Value)
	require.Equal(t, "exfil-after-sensitive-read", cmd.Rule)
	require.Contains(t, cmd.Evidence, "s-1-read")
	require.True(t, cmd.ExpiresAt.After(cmd.IssuedAt))

	require.Eventually(t, func() bool { return len(e.streamMsgs(pipeline.RevocationsStream)) == 1 }, 5*time.Second, 20*time.Millisecond)
	decs := e.streamMsgs(pipeline.DecisionsStream)
	require.Len(t, decs, 1)
	var d detectors.Decision
	require.NoError(t, json.Unmarshal(decs[0].Data, &d))
	require.Equal(t, cmd.Decision, d.ID)
	require.Equal(t, "s-1-send", d.EventID)
}

func TestMalformedEventsAreDeadLettered(t *testing.T) {
	e := setup(t)
	e.startWorker("w1")
	ctx := context.Background()
	agent := "spiffe://acme.dev/agent/x"
	subj := pipeline.EventSubject("acme", agent, e.topo.Partitions)
	for i, body := range []string{
		`{not json`,
		`{"id":"e1","time":"2026-01-01T00:00:00Z","tenant":"acme","agent":"` + agent + `","tool":"t"}`,
		`{"id":"e2","time":"2026-01-01T00:00:00Z","tenant":"other","agent":"` + agent + `","tool":"t","action":"read"}`,
	} {
		_, err := e.js.Publish(ctx, subj, []byte(body), jetstream.WithMsgID(fmt.Sprint("bad-", i)))
		require.NoError(t, err)
	}
	e.publish(event("good", 0, agent, "s"))
	require.Eventually(t, func() bool { return len(e.streamMsgs(pipeline.DeadLetterStream)) == 3 }, 10*time.Second, 20*time.Millisecond)
	dl := e.streamMsgs(pipeline.DeadLetterStream)
	reasons := []string{}
	for _, m := range dl {
		reasons = append(reasons, m.Header.Get(pipeline.HeaderError))
		require.Equal(t, subj, m.Header.Get("Tripline-Subject"))
	}
	require.Contains(t, reasons[1], "action")
	require.Contains(t, reasons[2], `event says "other"`)
	// everything was acked: nothing waits in the partition
	part := pipeline.Partition(agent, e.topo.Partitions)
	c, err := e.js.Consumer(ctx, pipeline.EventsStream, ConsumerName(part))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, 5*time.Second, 20*time.Millisecond)
}

func TestFailoverLosesNothingAndDoesNotDuplicate(t *testing.T) {
	e := setup(t)
	_, killA := e.startWorker("a")
	e.startWorker("b")
	ctx := context.Background()
	// wait until both own partitions
	owners, err := e.js.KeyValue(ctx, pipeline.OwnersBucket)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		seen := map[string]bool{}
		for p := range e.topo.Partitions {
			if ent, err := owners.Get(ctx, leaseKey(p)); err == nil {
				seen[string(ent.Value())] = true
			}
		}
		return seen["a"] && seen["b"]
	}, 10*time.Second, 20*time.Millisecond)

	// 40 agents, each with an exfiltration pattern, published in two halves
	// with a crash of worker a between them.
	var all []*pipeline.Event
	for i := range 40 {
		all = append(all, exfil(fmt.Sprintf("spiffe://acme.dev/agent/%d", i), fmt.Sprintf("s-%d", i), time.Duration(i)*time.Second)...)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.publish(all[:40]...) }()
	wg.Wait()
	killA()
	e.publish(all[40:]...)
	// duplicates from producer retries are dropped by the stream
	e.publish(all[:5]...)

	kv, err := e.js.KeyValue(ctx, pipeline.RevocationsBucket)
	require.NoError(t, err)
	if !assertEventually(t, func() bool {
		keys, _ := kv.Keys(ctx)
		return len(keys) == 40
	}, 30*time.Second) {
		keys, _ := kv.Keys(ctx)
		got := map[string]bool{}
		for _, k := range keys {
			ent, _ := kv.Get(ctx, k)
			var c enforce.Command
			_ = json.Unmarshal(ent.Value(), &c)
			got[c.Value] = true
		}
		for i := range 40 {
			s := fmt.Sprintf("s-%d", i)
			if !got[s] {
				t.Logf("missing %s (agent partition %d)", s, pipeline.Partition(fmt.Sprintf("spiffe://acme.dev/agent/%d", i), e.topo.Partitions))
			}
		}
		for p := range e.topo.Partitions {
			c, err := e.js.Consumer(ctx, pipeline.EventsStream, ConsumerName(p))
			require.NoError(t, err)
			info, _ := c.Info(ctx)
			t.Logf("p%d floor=%d delivered=%d ackpending=%d pending=%d redelivered=%d waiting=%d", p, info.AckFloor.Stream, info.Delivered.Stream, info.NumAckPending, info.NumPending, info.NumRedelivered, info.NumWaiting)
		}
		t.FailNow()
	}
	// every event acked, in every partition
	for p := range e.topo.Partitions {
		c, err := e.js.Consumer(ctx, pipeline.EventsStream, ConsumerName(p))
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			info, err := c.Info(ctx)
			return err == nil && info.NumPending == 0 && info.NumAckPending == 0
		}, 20*time.Second, 50*time.Millisecond, "partition %d drained", p)
	}
	revs := e.streamMsgs(pipeline.RevocationsStream)
	ids := map[string]int{}
	for _, m := range revs {
		var c enforce.Command
		require.NoError(t, json.Unmarshal(m.Data, &c))
		ids[c.ID]++
		require.NoError(t, e.keys.Verify(&c))
	}
	require.Len(t, ids, 40)
	for id, n := range ids {
		require.Equal(t, 1, n, "revocation %s published once", id)
	}
	decs := e.streamMsgs(pipeline.DecisionsStream)
	require.Len(t, decs, 40, "one decision per attack, none duplicated")
}

func TestFreshDecisionFromLiveState(t *testing.T) {
	e := setup(t)
	e.startWorker("w1")
	agent := "spiffe://acme.dev/agent/fresh"
	evs := exfil(agent, "s-f", 0)
	e.publish(evs[0]) // the restricted read goes through the stream
	part := pipeline.Partition(agent, e.topo.Partitions)
	c, err := e.js.Consumer(context.Background(), pipeline.EventsStream, ConsumerName(part))
	require.Eventually(t, func() bool {
		if err != nil {
			c, err = e.js.Consumer(context.Background(), pipeline.EventsStream, ConsumerName(part))
			return false
		}
		info, ierr := c.Info(context.Background())
		return ierr == nil && info.AckFloor.Stream >= 1
	}, 10*time.Second, 20*time.Millisecond)

	// an unrelated send is allowed
	ok := event("ok-send", 30*time.Second, agent, "s-f", func(e *pipeline.Event) {
		e.Tool, e.Action, e.Destination = "email.send", pipeline.ActionSend, ""
	})
	v := decide(t, e, ok)
	require.Equal(t, "allow", v.Decision)
	// the exfiltrating send is denied from live state
	v = decide(t, e, evs[1])
	require.Equal(t, "deny", v.Decision)
	require.Equal(t, []string{"exfil-after-sensitive-read"}, v.Rules)
	// the call was recorded as an event, and not evaluated twice
	require.Eventually(t, func() bool { return len(e.streamMsgs(pipeline.DecisionsStream)) == 1 }, 5*time.Second, 20*time.Millisecond)
	msgs := e.streamMsgs(pipeline.EventsStream)
	require.Len(t, msgs, 3)
	require.Equal(t, "1", msgs[2].Header.Get(pipeline.HeaderDecided))
}

func decide(t *testing.T, e *env, ev *pipeline.Event) Verdict {
	part := pipeline.Partition(ev.Agent, e.topo.Partitions)
	var resp *nats.Msg
	var err error
	require.Eventually(t, func() bool {
		resp, err = e.nc.Request(pipeline.DecideSubjectPrefix+fmt.Sprint(part), ev.AppendJSON(nil), 2*time.Second)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	var v Verdict
	require.NoError(t, json.Unmarshal(resp.Data, &v))
	return v
}

func TestGuardRailDemotesARuleThatRevokesEveryone(t *testing.T) {
	g := newGuardRail(3, time.Now, zerolog.Nop(), newMetrics(nil))
	var decs []detectors.Decision
	for i := range 6 {
		decs = append(decs, detectors.Decision{ID: fmt.Sprint(i), Rule: "bad", Mode: "enforce", Action: "revoke"})
	}
	decs = append(decs, detectors.Decision{ID: "x", Rule: "good", Mode: "enforce", Action: "revoke"})
	out := g.apply(decs)
	modes := []string{}
	for _, d := range out {
		modes = append(modes, d.Mode)
	}
	require.Equal(t, []string{"enforce", "enforce", "enforce", "shadow", "shadow", "shadow", "enforce"}, modes)
	require.NotEmpty(t, out[3].GuardRail)
	require.True(t, g.isTripped("bad"))
}

func TestAssignmentIsBalancedAndStable(t *testing.T) {
	members := []string{"a", "b", "c"}
	count := map[string]int{}
	for p := range 48 {
		count[owner(p, members)]++
	}
	for _, m := range members {
		require.InDelta(t, 16, count[m], 8, "worker %s owns %d of 48", m, count[m])
	}
	moved := 0
	for p := range 48 {
		if owner(p, members) != owner(p, []string{"a", "b"}) && owner(p, members) != "c" {
			moved++
		}
	}
	require.Zero(t, moved, "removing a worker moves only its partitions")
}

func testLogger(t *testing.T, id string) zerolog.Logger {
	if testing.Verbose() {
		return zerolog.New(zerolog.NewTestWriter(t)).With().Str("w", id).Logger()
	}
	return zerolog.Nop()
}

func assertEventually(t *testing.T, f func() bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if f() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// Rules grouped by a key that spans agents (here a credential) see every
// partition: two identities on different partitions using one token.
func TestCrossAgentRulesSeeEveryPartition(t *testing.T) {
	e := setup(t)
	e.startWorker("a")
	e.startWorker("b")
	a1, a2 := "spiffe://acme.dev/agent/coder", ""
	for i := 0; a2 == ""; i++ {
		c := fmt.Sprintf("spiffe://evil.example/agent/%d", i)
		if pipeline.Partition(c, e.topo.Partitions) != pipeline.Partition(a1, e.topo.Partitions) {
			a2 = c
		}
	}
	cred := func(e *pipeline.Event) { e.Credential, e.Tool, e.Action = "tok-7f3a", "git.push", pipeline.ActionWrite }
	e.publish(event("c1", 0, a1, "s-1", cred), event("c2", time.Minute, a2, "s-2", cred))
	kv, err := e.js.KeyValue(context.Background(), pipeline.RevocationsBucket)
	require.NoError(t, err)
	var cmd enforce.Command
	require.Eventually(t, func() bool {
		keys, _ := kv.Keys(context.Background())
		if len(keys) != 1 {
			return false
		}
		ent, err := kv.Get(context.Background(), keys[0])
		return err == nil && json.Unmarshal(ent.Value(), &cmd) == nil
	}, 15*time.Second, 20*time.Millisecond)
	require.Equal(t, "shared-credential", cmd.Rule)
	require.Equal(t, "credential", cmd.Scope)
	require.Equal(t, "tok-7f3a", cmd.Value)
	// the malformed-event path is the agent partition's alone: nothing dead-lettered twice
	require.Empty(t, e.streamMsgs(pipeline.DeadLetterStream))
}

// The whole path: an attack published as events becomes a signed
// revocation that a real enforcer verifies, applies (the next call of the
// session is denied, other sessions are not) and acknowledges.
func TestEnforcerAppliesAndAcknowledges(t *testing.T) {
	e := setup(t)
	e.startWorker("w1")
	enc, _ := e.srv.Connect(t)
	enf, err := enforce.New(enc, enforce.Config{ID: "proxy-1", Keyring: e.keys, FailPolicy: enforce.FailOpen, Logger: zerolog.Nop()})
	require.NoError(t, err)
	require.NoError(t, enf.Start(context.Background()))
	t.Cleanup(enf.Close)

	agent := "spiffe://acme.dev/agent/support"
	call := &enforce.Call{Tenant: "acme", Agent: agent, Session: "s-1", Tool: "http.post", Action: "send"}
	other := &enforce.Call{Tenant: "acme", Agent: agent, Session: "s-2", Tool: "http.post", Action: "send"}
	require.Equal(t, enforce.Allow, enf.Check(call).Decision)
	e.publish(exfil(agent, "s-1", 0)...)
	require.Eventually(t, func() bool { return enf.Check(call).Decision == enforce.Deny }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, enforce.Allow, enf.Check(other).Decision, "only the offending session is revoked")

	require.Eventually(t, func() bool { return len(e.streamMsgs(pipeline.AcksStream)) == 1 }, 10*time.Second, 20*time.Millisecond)
	var ack enforce.Ack
	require.NoError(t, json.Unmarshal(e.streamMsgs(pipeline.AcksStream)[0].Data, &ack))
	require.Equal(t, "proxy-1", ack.Enforcer)
	require.Equal(t, enf.Check(call).CommandID, ack.CommandID)
	require.False(t, ack.AppliedAt.Before(ack.IssuedAt), "time-to-enforce is applied_at - issued_at")
}

func TestHoldCommandCarriesItsTimeoutPolicy(t *testing.T) {
	_, priv, err := enforce.GenerateKey()
	require.NoError(t, err)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := &Worker{cfg: Config{WorkerID: "w", Signer: enforce.NewSigner(priv), Now: func() time.Time { return now }}}
	d := &detectors.Decision{ID: "d-1", Tenant: "acme", Mode: "enforce", Action: "hold", Scope: "session",
		Subject: detectors.Subject{Agent: "a", Session: "s"}, RevokeFor: time.Hour, HoldTimeout: 15 * time.Minute, OnTimeout: rules.TimeoutDeny}
	c := w.command(d)
	require.Equal(t, enforce.KindHold, c.Kind)
	require.Equal(t, now.Add(15*time.Minute), c.HoldUntil)
	require.Equal(t, now.Add(75*time.Minute), c.ExpiresAt, "after the timeout the scope is refused for revoke_for")
	d.OnTimeout = rules.TimeoutRelease
	c = w.command(d)
	require.True(t, c.HoldUntil.IsZero())
	require.Equal(t, now.Add(15*time.Minute), c.ExpiresAt, "released: the hold simply ends")
}

// Command ids are predictable; a value planted at a future revocation's
// key (e.g. a reflected JetStream ack) must not stop the revocation.
func TestPlantedRevocationKeyIsOverwritten(t *testing.T) {
	e := setup(t)
	agent := "spiffe://acme.dev/agent/support"
	// Work out the id the engine will use by evaluating the attack offline.
	eng := detectors.NewEngine(e.set, detectors.Options{})
	var decs []detectors.Decision
	for _, ev := range exfil(agent, "s-1", 0) {
		decs = eng.Process(ev, decs)
	}
	require.Len(t, decs, 1)
	id := enforce.CommandID(decs[0].ID, decs[0].Scope)
	kv, err := e.js.KeyValue(context.Background(), pipeline.RevocationsBucket)
	require.NoError(t, err)
	_, err = kv.Create(context.Background(), id, []byte(`{"stream":"TL_EVENTS","seq":7}`))
	require.NoError(t, err)

	e.startWorker("w1")
	e.publish(exfil(agent, "s-1", 0)...)
	require.Eventually(t, func() bool {
		ent, err := kv.Get(context.Background(), id)
		if err != nil {
			return false
		}
		var c enforce.Command
		return json.Unmarshal(ent.Value(), &c) == nil && c.ID == id && e.keys.Verify(&c) == nil
	}, 10*time.Second, 20*time.Millisecond, "the signed command replaced the planted value")
}

// The ack watcher measures time-to-enforce from enforcer acks, and raises
// an alert for a revocation that no enforcer applied.
func TestAckWatcherTimeToEnforceAndUnapplied(t *testing.T) {
	e := setup(t)
	nc, _ := e.srv.Connect(t)
	w, err := New(context.Background(), nc, Config{WorkerID: "w", Topology: e.topo, Rules: e.set, Signer: e.signer,
		UnappliedAfter: 500 * time.Millisecond, Logger: zerolog.Nop()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.watchAcks(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	now := time.Now().UTC()
	pub := func(subject string, v any, id string) {
		b, _ := json.Marshal(v)
		_, err := e.js.Publish(context.Background(), subject, b, jetstream.WithMsgID(id))
		require.NoError(t, err)
	}
	applied := &enforce.Command{ID: "rv-a", Kind: enforce.KindRevoke, Tenant: "acme", Scope: "session", Value: "s1", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	ignored := &enforce.Command{ID: "rv-b", Kind: enforce.KindRevoke, Tenant: "acme", Scope: "session", Value: "s2", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	pub(pipeline.RevocationsSubjectPrefix+"acme", applied, applied.ID)
	pub(pipeline.RevocationsSubjectPrefix+"acme", ignored, ignored.ID)
	pub(pipeline.AcksSubjectPrefix+"acme", enforce.Ack{CommandID: "rv-a", Enforcer: "p1", AppliedAt: now.Add(3 * time.Millisecond), IssuedAt: now}, "rv-a/p1")

	require.Eventually(t, func() bool { return testutil.ToFloat64(w.m.unapplied) == 1 }, 10*time.Second, 20*time.Millisecond,
		"the revocation nobody applied raises one alert")
	require.Equal(t, uint64(1), histogramCount(t, w.m.timeToEnforce))
	require.Zero(t, testutil.ToFloat64(w.m.unappliedPending))
}

func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	var m dto.Metric
	require.NoError(t, h.Write(&m))
	return m.GetHistogram().GetSampleCount()
}

// A faulty rule that revokes every session trips the guard rail on a live
// worker: after RevokeLimit revocations in a minute its decisions turn to
// shadow (marked with the guard rail's reason), no further revocation is
// issued, the trip is counted and logged, and a healthy rule keeps
// enforcing.
func TestGuardRailTripsOnALiveWorker(t *testing.T) {
	e := setup(t)
	set, err := rules.Compile(rules.Source{Name: "faulty.yaml", Data: []byte(`rules:
  - id: revoke-everyone
    description: a bad deploy - matches every call
    severity: high
    group: [session]
    condition: count(1m) >= 1
    action: revoke
    scope: session
    mode: enforce
    cooldown: 1h
    tests:
      - name: fires
        defaults: {tenant: acme, agent: a, session: s, tool: t, action: read}
        events: [{at: 0s, event: {id: e1}}]
        expect: [{at: 0s, event: e1, action: revoke, scope: session}]
      - name: nothing without events
        events: []
        expect: []
`)})
	require.NoError(t, err)
	e.set = set
	reg := prometheus.NewRegistry()
	nc, _ := e.srv.Connect(t)
	w, err := New(context.Background(), nc, Config{
		WorkerID: "w1", Topology: e.topo, Rules: e.set, Signer: e.signer, RevokeLimit: 5,
		AckWait: 2 * time.Second, Batch: 64, Logger: testLogger(t, "w1"), Registerer: reg,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	const sessions = 20
	for i := range sessions {
		e.publish(event(fmt.Sprint("e-", i), time.Duration(i)*time.Second, "spiffe://acme.dev/agent/a", fmt.Sprint("s-", i)))
	}
	require.Eventually(t, func() bool { return len(e.streamMsgs(pipeline.DecisionsStream)) == sessions }, 20*time.Second, 20*time.Millisecond)
	var enforced, shadowed int
	for _, m := range e.streamMsgs(pipeline.DecisionsStream) {
		var d detectors.Decision
		require.NoError(t, json.Unmarshal(m.Data, &d))
		switch d.Mode {
		case "enforce":
			enforced++
		case "shadow":
			shadowed++
			require.NotEmpty(t, d.GuardRail)
		}
	}
	require.Equal(t, 5, enforced)
	require.Equal(t, sessions-5, shadowed)
	require.Len(t, e.streamMsgs(pipeline.RevocationsStream), 5, "no revocation after the trip")
	require.Equal(t, 1.0, testutil.ToFloat64(w.m.guardTrips.WithLabelValues("revoke-everyone")))
}
