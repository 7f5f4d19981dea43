package natscluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/tripline/tripline/internal/detect"
	"github.com/tripline/tripline/internal/natscluster"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
	"github.com/tripline/tripline/rules"
)

func TestMain(m *testing.M) { natscluster.Main(m) }

// Waits are polls with generous bounds: a crashed leader is replaced only
// after Raft's election timeout (4–9 s), a request sent while there is no
// leader gets no answer at all (so each attempt has its own short
// deadline), and a pull whose consumer leader died is re-issued after two
// missed heartbeats (up to 30 s).
const (
	waitLong = 90 * time.Second
	attempt  = 5 * time.Second
	poll     = 50 * time.Millisecond
)

// The cluster runs the production files: their names, limits and
// authorization are in force.
func TestClusterRunsTheProductionFiles(t *testing.T) {
	c := natscluster.Start(t)
	for i := range natscluster.Size {
		require.Equal(t, fmt.Sprintf("tripline-nats-%d", i+1), c.Name(i))
		info, err := c.Jsz(i)
		require.NoError(t, err)
		require.EqualValues(t, 200<<30, info.Config.MaxStore, "max_file_store of node%d.conf", i+1)
		require.EqualValues(t, 2<<30, info.Config.MaxMemory, "max_memory_store of node%d.conf", i+1)
		require.NotNil(t, info.Meta)
		require.Equal(t, "tripline", info.Meta.Name)
		require.Equal(t, natscluster.Size, info.Meta.Size)
	}
	require.NotEqual(t, -1, c.MetaLeader())

	// auth.conf is included: no anonymous client, and the engine is in.
	_, err := nats.Connect(c.URL(0), nats.MaxReconnects(0))
	require.ErrorContains(t, err, "Authorization Violation")
	nc := c.Connect(t, natscluster.Engine)
	require.Equal(t, int64(1<<20), nc.MaxPayload(), "max_payload of the files")
}

// TestNodeLossUnderLoad is guarantee 3 (docs/guarantees.md): on the
// production three-node cluster with every stream and bucket R3, a node is
// crashed (SIGKILL) while producers publish a steady stream of tool calls
// with attacks among them. The node crashed is the JetStream meta leader,
// and before the crash it is made the leader of every stream, bucket and
// detector consumer too; one detector and one enforcer are connected to it,
// and the other enforcer, connected elsewhere, watches the bucket through
// a consumer that lives on it. Then: every event is in TL_EVENTS exactly
// once, the detectors consumed and acked all of them, every attack produced
// exactly one signed revocation (bucket and audit stream) and one decision,
// and both enforcers applied every revocation, those issued after the
// crash included, and acknowledged each once. The node is restarted and
// catches up, and with another node then stopped cleanly, it and the third
// keep the pipeline going.
func TestNodeLossUnderLoad(t *testing.T) {
	start := time.Now()
	c := natscluster.Start(t)
	t.Logf("cluster formed after %s: %s", time.Since(start).Round(time.Millisecond), c)
	victim := c.MetaLeader()
	require.NotEqual(t, -1, victim)
	var others []int
	for i := range natscluster.Size {
		if i != victim {
			others = append(others, i)
		}
	}

	set, err := rules.LoadPaths("../../rules/examples")
	require.NoError(t, err)
	_, priv, err := enforce.GenerateKey()
	require.NoError(t, err)
	signer := enforce.NewSigner(priv)
	keys := enforce.Keyring{}
	keys.Add(signer.Public())
	x := &chaos{t: t, c: c, topo: topology.Config{Replicas: 3, Partitions: 8}, set: set, signer: signer}
	x.nc = x.connect(natscluster.Engine, others[0])
	x.js, err = jetstream.New(x.nc)
	require.NoError(t, err)
	x.retry("provision the topology", func(ctx context.Context) error { return topology.Provision(ctx, x.js, x.topo) })

	// Two workers and two enforcers. One worker and enforcer-1 connect to
	// the node that will crash, so they must reconnect elsewhere;
	// enforcer-2 stays connected to a surviving node, but the consumer
	// behind its watch of the bucket lives on the node that will crash.
	x.startWorker("w1", victim)
	x.startWorker("w2", others[0])
	enfs := []*enforce.Enforcer{
		x.startEnforcer("enforcer-1", victim, -1, keys),
		x.startEnforcer("enforcer-2", others[1], victim, keys),
	}

	// Both workers own partitions, and every detector consumer exists.
	consumers := []string{detect.ConsumerName(detect.GlobalPartition)}
	for p := range x.topo.Partitions {
		consumers = append(consumers, detect.ConsumerName(p))
	}
	x.retry("both workers own partitions and every detector consumer exists", func(ctx context.Context) error {
		owners, err := x.js.KeyValue(ctx, pipeline.OwnersBucket)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for p := range x.topo.Partitions {
			if e, err := owners.Get(ctx, fmt.Sprintf("p.%d", p)); err == nil {
				seen[string(e.Value())] = true
			}
		}
		if !seen["w1"] || !seen["w2"] {
			return fmt.Errorf("partition owners %v", seen)
		}
		for _, name := range consumers {
			if _, err := x.js.Consumer(ctx, pipeline.EventsStream, name); err != nil {
				return fmt.Errorf("consumer %s: %w", name, err)
			}
		}
		return nil
	})

	// Make it hard: the meta leader also leads every stream, bucket and
	// detector consumer when it crashes.
	assets := []string{pipeline.EventsStream, pipeline.DeadLetterStream, pipeline.DecisionsStream,
		pipeline.RevocationsStream, pipeline.AcksStream, "KV_" + pipeline.RevocationsBucket, "KV_" + pipeline.OwnersBucket}
	groups := make([]raftGroup, 0, len(assets)+len(consumers))
	for _, s := range assets {
		groups = append(groups, raftGroup{stream: s})
	}
	for _, cons := range consumers {
		groups = append(groups, raftGroup{stream: pipeline.EventsStream, consumer: cons})
	}
	x.moveLeaders(groups, c.Name(victim))
	require.Equal(t, victim, c.MetaLeader(), "the meta leader did not move")
	t.Logf("%s leads the meta group, %d streams and %d consumers (setup took %s)",
		c.Name(victim), len(assets), len(consumers), time.Since(start).Round(time.Millisecond))

	// The load: benign calls of 16 agents and 48 exfiltration attacks (a
	// restricted read, then a send to a new destination, on a session of
	// its own) interleaved, published by four producers, each owning a
	// quarter of the agents and publishing their calls in order. The node
	// is killed when a third of the events are in.
	plan := newPlan(16, 40, 48)
	const producers = 4
	var published, retries, duplicates atomic.Int64
	killAt := int64(len(plan.events) / 3)
	crash := make(chan struct{})
	var crashOnce sync.Once
	var g errgroup.Group
	pubCtx := ctxFor(t, 2*waitLong)
	for k := range producers {
		js, err := jetstream.New(x.connect(natscluster.ProducerAcme, k%natscluster.Size))
		require.NoError(t, err)
		g.Go(func() error {
			for _, ev := range plan.events {
				if plan.agentIndex[ev.Agent]%producers != k {
					continue
				}
				r, dup, err := publish(pubCtx, js, x.topo.Partitions, ev)
				if err != nil {
					return err
				}
				retries.Add(int64(r))
				if dup {
					duplicates.Add(1)
				}
				if published.Add(1) == killAt {
					crashOnce.Do(func() { close(crash) })
				}
			}
			return nil
		})
	}
	<-crash
	c.Kill(victim)
	crashedAt := time.Now()
	t.Logf("killed %s after %d of %d events", c.Name(victim), killAt, len(plan.events))
	require.NoError(t, g.Wait(), "every event published (with retries)")
	t.Logf("all %d events published %s after the crash (%d retries, %d acks flagged duplicate)",
		len(plan.events), since(crashedAt), retries.Load(), duplicates.Load())

	// Every published event is in TL_EVENTS exactly once.
	x.retry("TL_EVENTS holds as many messages as events were published", func(ctx context.Context) error {
		return x.wantMsgs(ctx, pipeline.EventsStream, len(plan.events))
	})
	ids := map[string]int{}
	for _, m := range x.readStream(pipeline.EventsStream) {
		ids[m.Header.Get(jetstream.MsgIDHeader)]++
	}
	for _, ev := range plan.events {
		require.Equal(t, 1, ids[ev.ID], "event %s in TL_EVENTS", ev.ID)
		delete(ids, ev.ID)
	}
	require.Empty(t, ids, "TL_EVENTS holds only published events")

	// The detectors consumed and acked everything: no backlog anywhere.
	for _, name := range consumers {
		x.retry("consumer "+name+" drained", func(ctx context.Context) error {
			cons, err := x.js.Consumer(ctx, pipeline.EventsStream, name)
			if err != nil {
				return err
			}
			info, err := cons.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumPending != 0 || info.NumAckPending != 0 {
				return fmt.Errorf("%d pending, %d awaiting ack", info.NumPending, info.NumAckPending)
			}
			return nil
		})
	}
	t.Logf("every consumer drained %s after the crash", since(crashedAt))

	// Exactly one revocation per attack in the bucket, verified and scoped
	// to the attack's session; the audit stream and the decisions agree.
	var entries [][]byte
	x.retry("a revocation per attack in the bucket", func(ctx context.Context) error {
		kv, err := x.js.KeyValue(ctx, pipeline.RevocationsBucket)
		if err != nil {
			return err
		}
		ks, err := kv.Keys(ctx)
		if err != nil {
			return err
		}
		if len(ks) < len(plan.attacks) {
			return fmt.Errorf("%d keys", len(ks))
		}
		entries = entries[:0]
		for _, k := range ks {
			e, err := kv.Get(ctx, k)
			if err != nil {
				return err
			}
			entries = append(entries, e.Value())
		}
		return nil
	})
	require.Len(t, entries, len(plan.attacks), "one revocation per attack, no more")
	bySession := map[string]*enforce.Command{}
	for _, b := range entries {
		var cmd enforce.Command
		require.NoError(t, json.Unmarshal(b, &cmd))
		require.NoError(t, keys.Verify(&cmd), "command %s verifies", cmd.ID)
		require.Equal(t, enforce.KindRevoke, cmd.Kind)
		require.Equal(t, "exfil-after-sensitive-read", cmd.Rule)
		require.Equal(t, enforce.ScopeSession, cmd.Scope)
		require.Nil(t, bySession[cmd.Value], "session %s revoked twice", cmd.Value)
		bySession[cmd.Value] = &cmd
	}
	for _, a := range plan.attacks {
		require.NotNil(t, bySession[a.Session], "attack on session %s revoked", a.Session)
	}
	x.requireUniqueIDs(pipeline.RevocationsStream, len(plan.attacks))
	x.requireUniqueIDs(pipeline.DecisionsStream, len(plan.attacks))
	x.retry("nothing dead-lettered", func(ctx context.Context) error { return x.wantMsgs(ctx, pipeline.DeadLetterStream, 0) })

	// Both enforcers applied every revocation — those issued after the
	// crash included — and acknowledged each exactly once.
	afterCrash := 0
	for _, a := range plan.attacks {
		if bySession[a.Session].IssuedAt.After(crashedAt) {
			afterCrash++
		}
		call := &enforce.Call{Tenant: a.Tenant, Agent: a.Agent, Session: a.Session, Tool: "http.post", Action: "send"}
		for i, enf := range enfs {
			require.Eventually(t, func() bool { return enf.Check(call).Decision == enforce.Deny },
				waitLong, poll, "enforcer-%d denies session %s", i+1, a.Session)
		}
	}
	require.GreaterOrEqual(t, afterCrash, len(plan.attacks)/3, "a good share of the revocations were issued after the crash")
	benign := plan.events[0]
	for _, enf := range enfs {
		require.Equal(t, enforce.Allow, enf.Check(&enforce.Call{Tenant: benign.Tenant, Agent: benign.Agent,
			Session: benign.Session, Tool: benign.Tool, Action: "read"}).Decision, "benign sessions are not revoked")
	}
	x.retry("an ack per revocation and enforcer", func(ctx context.Context) error {
		return x.wantMsgs(ctx, pipeline.AcksStream, len(enfs)*len(plan.attacks))
	})
	acked := map[string]int{}
	var worst time.Duration
	for _, m := range x.readStream(pipeline.AcksStream) {
		var a enforce.Ack
		require.NoError(t, json.Unmarshal(m.Data, &a))
		acked[a.CommandID+" by "+a.Enforcer]++
		worst = max(worst, a.AppliedAt.Sub(a.IssuedAt))
	}
	for _, cmd := range bySession {
		for i := range enfs {
			require.Equal(t, 1, acked[fmt.Sprintf("%s by enforcer-%d", cmd.ID, i+1)], "acks of %s by enforcer-%d", cmd.ID, i+1)
		}
	}
	for i, enf := range enfs {
		require.False(t, enf.Stale(), "enforcer-%d is current", i+1)
	}
	t.Logf("%d attacks revoked, applied and acknowledged by both enforcers (%d issued after the crash; slowest issue-to-apply %s), %s after the crash",
		len(plan.attacks), afterCrash, worst.Round(time.Millisecond), since(crashedAt))

	// The crashed node comes back and catches up: healthy (current with the
	// meta leader and every replica it holds), and its own replicas of the
	// streams hold what the leaders hold.
	restartedAt := time.Now()
	c.Restart(victim)
	c.WaitHealthy(victim)
	x.retry(c.Name(victim)+"'s replicas caught up with the leaders", func(ctx context.Context) error {
		info, err := c.Jsz(victim)
		if err != nil {
			return err
		}
		local := map[string]uint64{}
		for _, acc := range info.AccountDetails {
			if acc.Name == natscluster.Account {
				for _, sd := range acc.Streams {
					local[sd.Name] = sd.State.LastSeq
				}
			}
		}
		for _, s := range assets {
			st, err := x.js.Stream(ctx, s)
			if err != nil {
				return err
			}
			si, err := st.Info(ctx)
			if err != nil {
				return err
			}
			if local[s] != si.State.LastSeq {
				return fmt.Errorf("%s: last sequence %d here, %d on the leader", s, local[s], si.State.LastSeq)
			}
		}
		return nil
	})
	t.Logf("%s caught up %s after its restart", c.Name(victim), since(restartedAt))

	// And it is a working member: with another node stopped cleanly, it and
	// the third hold quorum, and a new attack is revoked and applied.
	c.Stop(others[0])
	js, err := jetstream.New(x.connect(natscluster.ProducerAcme, victim))
	require.NoError(t, err)
	last := attack(len(plan.attacks), time.Duration(len(plan.events))*eventGap)
	for _, ev := range last {
		_, _, err := publish(pubCtx, js, x.topo.Partitions, ev)
		require.NoError(t, err)
	}
	call := &enforce.Call{Tenant: last[0].Tenant, Agent: last[0].Agent, Session: last[0].Session, Tool: "http.post", Action: "send"}
	for i, enf := range enfs {
		require.Eventually(t, func() bool { return enf.Check(call).Decision == enforce.Deny },
			waitLong, poll, "enforcer-%d applies an attack revoked after the restart", i+1)
	}
	x.retry("the new revocation is acknowledged", func(ctx context.Context) error {
		return x.wantMsgs(ctx, pipeline.AcksStream, len(enfs)*(len(plan.attacks)+1))
	})
	t.Logf("total %s", since(start))
}

// chaos is the pipeline of TestNodeLossUnderLoad on a cluster.
type chaos struct {
	t      *testing.T
	c      *natscluster.Cluster
	nc     *nats.Conn          // the engine's, for setup and checks
	js     jetstream.JetStream // on nc
	topo   topology.Config
	set    *rules.Set
	signer *enforce.Signer
}

// connect opens a connection as id that tries node first (it fails over to
// the others), so the test decides who is cut off when a node goes.
func (x *chaos) connect(id natscluster.Identity, first int, opts ...nats.Option) *nats.Conn {
	x.t.Helper()
	urls := []string{x.c.URL(first)}
	for i := range natscluster.Size {
		if i != first {
			urls = append(urls, x.c.URL(i))
		}
	}
	opts = append(append(x.c.ConnectOptions(id), nats.DontRandomize()), opts...)
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	require.NoError(x.t, err)
	x.t.Cleanup(nc.Close)
	return nc
}

func (x *chaos) startWorker(id string, first int) {
	nc := x.connect(natscluster.Engine, first)
	w, err := detect.New(context.Background(), nc, detect.Config{
		WorkerID: id, Topology: x.topo, Rules: x.set, Signer: x.signer,
		AckWait: 3 * time.Second, Logger: testLogger(x.t, id),
	})
	require.NoError(x.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	x.t.Cleanup(func() { cancel(); <-done })
}

// startEnforcer starts an enforcer connected to node first (fail-open:
// the test checks what it applies, not its outage policy). With watchOn
// not -1 it is restarted until the consumer behind its watch of the bucket
// (an ephemeral R1 consumer, which the server places on any replica) lives
// on node watchOn.
func (x *chaos) startEnforcer(id string, first, watchOn int, keys enforce.Keyring) *enforce.Enforcer {
	x.t.Helper()
	// Its own inbox prefix (within what auth.conf grants enforcers) tells
	// its watch consumer from the others by deliver subject.
	inbox := natscluster.EnforcerInboxPrefix + "." + id
	for range 50 {
		nc := x.connect(natscluster.Enforcer, first, nats.CustomInboxPrefix(inbox))
		e, err := enforce.New(nc, enforce.Config{ID: id, Keyring: keys, FailPolicy: enforce.FailOpen, Logger: testLogger(x.t, id)})
		require.NoError(x.t, err)
		require.NoError(x.t, e.Start(ctxFor(x.t, 30*time.Second)))
		if watchOn == -1 {
			x.t.Cleanup(e.Close)
			return e
		}
		var on string
		x.retry(id+"'s watch consumer", func(ctx context.Context) error {
			st, err := x.js.Stream(ctx, "KV_"+pipeline.RevocationsBucket)
			if err != nil {
				return err
			}
			l := st.ListConsumers(ctx)
			for info := range l.Info() {
				if strings.HasPrefix(info.Config.DeliverSubject, inbox+".") && info.Cluster != nil {
					on = info.Cluster.Leader
				}
			}
			if err := l.Err(); err != nil {
				return err
			}
			if on == "" {
				return errors.New("not found")
			}
			return nil
		})
		if on == x.c.Name(watchOn) {
			x.t.Cleanup(e.Close)
			return e
		}
		e.Close()
		nc.Close()
	}
	x.t.Fatalf("%s: the watch consumer never landed on %s", id, x.c.Name(watchOn))
	return nil
}

// retry runs f until it succeeds, each attempt with its own deadline, and
// fails the test with f's last error after waitLong.
func (x *chaos) retry(what string, f func(ctx context.Context) error) {
	x.t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), attempt)
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("%s: still failing after %s: %v", what, waitLong, err)
		}
		time.Sleep(poll) // polling interval
	}
}

// raftGroup is a stream, or a consumer of it.
type raftGroup struct{ stream, consumer string }

func (g raftGroup) String() string { return strings.TrimSpace(g.stream + " " + g.consumer) }

// leader is the server leading g.
func (x *chaos) leader(ctx context.Context, g raftGroup) (string, error) {
	var cluster *jetstream.ClusterInfo
	if g.consumer == "" {
		st, err := x.js.Stream(ctx, g.stream)
		if err != nil {
			return "", err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return "", err
		}
		cluster = info.Cluster
	} else {
		cons, err := x.js.Consumer(ctx, g.stream, g.consumer)
		if err != nil {
			return "", err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return "", err
		}
		cluster = info.Cluster
	}
	if cluster == nil || cluster.Leader == "" {
		return "", errors.New("no leader")
	}
	return cluster.Leader, nil
}

// moveLeaders makes server the leader of every group: in rounds, it asks
// each group led elsewhere to step down in server's favour, then waits for
// the elections that started before asking again.
func (x *chaos) moveLeaders(groups []raftGroup, server string) {
	x.t.Helper()
	req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": server}})
	x.retry("move every leader to "+server, func(ctx context.Context) error {
		asked := map[raftGroup]string{} // group → leader asked to step down
		var errs []error
		for _, g := range groups {
			// Short attempts: a request that lands during an election gets
			// no answer.
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			was, err := x.leader(rctx, g)
			if err == nil && was != server {
				subject := "$JS.API.STREAM.LEADER.STEPDOWN." + g.stream
				if g.consumer != "" {
					subject = "$JS.API.CONSUMER.LEADER.STEPDOWN." + g.stream + "." + g.consumer
				}
				if _, err = x.nc.RequestWithContext(rctx, subject, req); err == nil {
					asked[g] = was
					err = fmt.Errorf("%s led", was)
				}
			}
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", g, err))
			}
		}
		// Wait for the elections the step-downs started.
		for g, was := range asked {
			for ctx.Err() == nil {
				if now, err := x.leader(ctx, g); err == nil && now != was {
					break
				}
				time.Sleep(poll) // polling interval
			}
		}
		return errors.Join(errs...)
	})
}

// wantMsgs checks a stream holds n messages, as its leader says.
func (x *chaos) wantMsgs(ctx context.Context, stream string, n int) error {
	st, err := x.js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs != uint64(n) {
		return fmt.Errorf("%s holds %d messages, want %d", stream, info.State.Msgs, n)
	}
	return nil
}

// readStream returns every message of a stream, in order.
func (x *chaos) readStream(stream string) []*jetstream.RawStreamMsg {
	x.t.Helper()
	var out []*jetstream.RawStreamMsg
	x.retry("read "+stream, func(ctx context.Context) error {
		out = out[:0]
		st, err := x.js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			mctx, cancel := context.WithTimeout(context.Background(), attempt) // per message: ctx bounds one request
			m, err := st.GetMsg(mctx, seq)
			cancel()
			if err != nil {
				return fmt.Errorf("message %d: %w", seq, err)
			}
			out = append(out, m)
		}
		return nil
	})
	return out
}

// requireUniqueIDs checks a stream of JSON messages with an "id" holds n,
// none twice.
func (x *chaos) requireUniqueIDs(stream string, n int) {
	x.t.Helper()
	x.retry(fmt.Sprintf("%s holds %d messages", stream, n), func(ctx context.Context) error {
		return x.wantMsgs(ctx, stream, n)
	})
	seen := map[string]bool{}
	for _, m := range x.readStream(stream) {
		var v struct {
			ID string `json:"id"`
		}
		require.NoError(x.t, json.Unmarshal(m.Data, &v))
		require.False(x.t, seen[v.ID], "%s: %s twice", stream, v.ID)
		seen[v.ID] = true
	}
	require.Len(x.t, seen, n, stream)
}

// publish publishes ev until the stream acknowledges it, as a proxy that
// must not lose a call would: every attempt carries the event id, so an
// attempt that landed but whose ack was lost is dropped as a duplicate.
// It returns the retries and whether the final ack said duplicate.
func publish(ctx context.Context, js jetstream.JetStream, partitions int, ev *pipeline.Event) (int, bool, error) {
	subject := pipeline.EventSubject(ev.Tenant, ev.Agent, partitions)
	data := ev.AppendJSON(nil)
	backoff := 50 * time.Millisecond
	for retries := 0; ; retries++ {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ack, err := js.Publish(actx, subject, data, jetstream.WithMsgID(ev.ID))
		cancel()
		if err == nil {
			return retries, ack.Duplicate, nil
		}
		select {
		case <-ctx.Done():
			return retries, false, fmt.Errorf("event %s not published: %w (last error: %v)", ev.ID, ctx.Err(), err)
		case <-time.After(backoff): // retry policy, not synchronisation
		}
		backoff = min(2*backoff, time.Second)
	}
}

// plan is the load: events in publishing order.
type plan struct {
	events     []*pipeline.Event
	attacks    []*pipeline.Event // the first event of each attack
	agentIndex map[string]int
}

// eventGap spaces event times: sessions stay far below the rules' rate
// limits, and event time follows publishing order.
const eventGap = 100 * time.Millisecond

var base = time.Now().UTC().Truncate(time.Second)

// newPlan interleaves rounds of one benign call per agent with attacks,
// each by an agent of its own, spread evenly.
func newPlan(agents, rounds, attacks int) *plan {
	p := &plan{agentIndex: map[string]int{}}
	every := agents * rounds / attacks
	add := func(evs ...*pipeline.Event) {
		for _, ev := range evs {
			ev.Time = base.Add(time.Duration(len(p.events)) * eventGap)
			if _, ok := p.agentIndex[ev.Agent]; !ok {
				p.agentIndex[ev.Agent] = len(p.agentIndex)
			}
			p.events = append(p.events, ev)
		}
	}
	n := 0
	for r := range rounds {
		for a := range agents {
			add(&pipeline.Event{ID: fmt.Sprintf("b%d-%d", a, r), Tenant: "acme",
				Agent: fmt.Sprintf("spiffe://acme.dev/agent/b%d", a), Session: fmt.Sprintf("sb-%d", a),
				Tool: "kb.search", Action: pipeline.ActionRead, Resource: "kb/faq", Outcome: "ok"})
			n++
			if n%every == 0 && len(p.attacks) < attacks {
				evs := attack(len(p.attacks), 0)
				p.attacks = append(p.attacks, evs[0])
				add(evs...)
			}
		}
	}
	return p
}

// attack is exfiltration by agent x<k>: a restricted read, then a send to
// a destination never seen before (rule exfil-after-sensitive-read). at
// sets the event times when the attack is not part of a plan.
func attack(k int, at time.Duration) []*pipeline.Event {
	agent, session := fmt.Sprintf("spiffe://acme.dev/agent/x%d", k), fmt.Sprintf("sx-%d", k)
	return []*pipeline.Event{
		{ID: session + "-read", Time: base.Add(at), Tenant: "acme", Agent: agent, Session: session,
			Tool: "crm.lookup", Action: pipeline.ActionRead, Sensitivity: "restricted", Resource: "crm/customers", Outcome: "ok"},
		{ID: session + "-send", Time: base.Add(at + eventGap), Tenant: "acme", Agent: agent, Session: session,
			Tool: "http.post", Action: pipeline.ActionSend, Destination: "https://paste.example/" + session, Outcome: "ok"},
	}
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t *testing.T, id string) zerolog.Logger {
	if testing.Verbose() {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Timestamp().Str("c", id).Logger()
	}
	return zerolog.Nop()
}

// TestQuorumLoss: with two of the three nodes down there is no quorum.
// What holds: producers get errors (nothing is stored, so they must retry
// or buffer), no revocation can be issued, every enforcer keeps the state
// it has, and an enforcer whose node died — it reconnects to the survivor
// but cannot reload the bucket there — goes stale after StaleAfter and
// applies its fail policy. When a second node is back, revocations flow
// again to every enforcer.
//
// KNOWN GAP (pinned below): an enforcer connected to the surviving node
// does not notice. Its connection is up and its watch subscription open,
// so it never counts as stale and FailClosed never applies, however long
// the outage. (No revocation can be issued meanwhile, so it misses none;
// but no event is evaluated either.) If this starts failing, the enforcer
// now notices: turn the Never into an Eventually and update
// docs/cluster.md.
func TestQuorumLoss(t *testing.T) {
	c := natscluster.Start(t)
	survivor, down := 0, []int{1, 2}
	_, priv, err := enforce.GenerateKey()
	require.NoError(t, err)
	signer := enforce.NewSigner(priv)
	keys := enforce.Keyring{}
	keys.Add(signer.Public())
	x := &chaos{t: t, c: c, topo: topology.Config{Replicas: 3, Partitions: 4}, signer: signer}
	x.nc = x.connect(natscluster.Engine, survivor)
	x.js, err = jetstream.New(x.nc)
	require.NoError(t, err)
	x.retry("provision the topology", func(ctx context.Context) error { return topology.Provision(ctx, x.js, x.topo) })

	// revoke issues a signed revocation of a session, as the engine does.
	revoke := func(ctx context.Context, session string) error {
		now := time.Now().UTC()
		cmd := &enforce.Command{ID: enforce.CommandID("d-"+session, enforce.ScopeSession), Kind: enforce.KindRevoke,
			Tenant: "acme", Scope: enforce.ScopeSession, Value: session, Reason: "test", Rule: "test",
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "analyst/test"}
		signer.Sign(cmd)
		b, _ := json.Marshal(cmd)
		kv, err := x.js.KeyValue(ctx, pipeline.RevocationsBucket)
		if err != nil {
			return err
		}
		if _, err = kv.Create(ctx, cmd.ID, b); errors.Is(err, jetstream.ErrKeyExists) {
			return nil // an earlier attempt landed
		}
		return err
	}
	const staleAfter = 2 * time.Second
	enforcer := func(id string, first int) *enforce.Enforcer {
		e, err := enforce.New(x.connect(natscluster.Enforcer, first), enforce.Config{ID: id, Keyring: keys,
			FailPolicy: enforce.FailClosed, StaleAfter: staleAfter, Logger: testLogger(t, id)})
		require.NoError(t, err)
		require.NoError(t, e.Start(ctxFor(t, 30*time.Second)))
		t.Cleanup(e.Close)
		return e
	}
	onSurvivor, onLost := enforcer("on-survivor", survivor), enforcer("on-lost", down[0])
	enfs := []*enforce.Enforcer{onSurvivor, onLost}
	call := func(session string) *enforce.Call {
		return &enforce.Call{Tenant: "acme", Agent: "spiffe://acme.dev/agent/a", Session: session, Tool: "http.post", Action: "send"}
	}
	x.retry("revoke s-1", func(ctx context.Context) error { return revoke(ctx, "s-1") })
	for _, e := range enfs {
		require.Eventually(t, func() bool { return e.Check(call("s-1")).Decision == enforce.Deny }, waitLong, poll)
	}

	c.Kill(down[0])
	c.Kill(down[1])
	lostAt := time.Now()
	js, err := jetstream.New(x.connect(natscluster.ProducerAcme, survivor))
	require.NoError(t, err)
	ev := attack(0, 0)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err = js.Publish(ctx, pipeline.EventSubject(ev.Tenant, ev.Agent, x.topo.Partitions), ev.AppendJSON(nil), jetstream.WithMsgID(ev.ID))
	cancel()
	require.Error(t, err, "no quorum: the event is not stored")
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	require.Error(t, revoke(ctx, "s-2"), "no quorum: no revocation can be issued")
	cancel()

	require.Eventually(t, onLost.Stale, waitLong, poll, "the enforcer whose node died goes stale")
	t.Logf("on-lost stale %s after the quorum loss", since(lostAt))
	require.Equal(t, enforce.Verdict{Decision: enforce.Deny, Reason: enforce.ReasonStale}, onLost.Check(call("s-3")),
		"and applies its fail policy (fail-closed: everything is denied)")
	require.Equal(t, enforce.Deny, onSurvivor.Check(call("s-1")).Decision, "the survivor's enforcer keeps its state")
	require.Equal(t, enforce.Allow, onSurvivor.Check(call("s-3")).Decision)
	require.Never(t, onSurvivor.Stale, 3*staleAfter, poll, "KNOWN GAP: the enforcer on the surviving node never counts as stale")

	// A second node back: quorum, and everything resumes.
	c.Restart(down[0])
	c.WaitHealthy(down[0])
	recoveredAt := time.Now()
	_, _, err = publish(ctxFor(t, waitLong), js, x.topo.Partitions, ev)
	require.NoError(t, err, "events are stored again")
	x.retry("revoke s-2", func(ctx context.Context) error { return revoke(ctx, "s-2") })
	for _, e := range enfs {
		require.Eventually(t, func() bool { return !e.Stale() && e.Check(call("s-2")).Decision == enforce.Deny }, waitLong, poll,
			"every enforcer is current again and applies a revocation issued after the recovery")
		require.Equal(t, enforce.Allow, e.Check(call("s-3")).Decision)
	}
	t.Logf("every enforcer applies new revocations %s after quorum came back", since(recoveredAt))
}
