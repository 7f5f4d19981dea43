package enforce

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/natstest"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline"
)

// Waits for require.Eventually: generous bounds, short ticks.
const (
	waitFor = 5 * time.Second
	tick    = time.Millisecond
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is the injected clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: epoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a real embedded JetStream with Tripline's topology, an admin
// connection playing the engine, and a signing key.
type env struct {
	t      *testing.T
	srv    *natstest.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	signer *Signer
	keys   Keyring
	clock  *fakeClock
	seq    atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	ctx := context.Background()
	require.NoError(t, topology.Provision(ctx, js, topology.Config{Memory: true}))
	kv, err := js.KeyValue(ctx, pipeline.RevocationsBucket)
	require.NoError(t, err)
	_, priv, err := GenerateKey()
	require.NoError(t, err)
	s := NewSigner(priv)
	keys := Keyring{}
	keys.Add(s.Public())
	return &env{t: t, srv: srv, nc: nc, js: js, kv: kv, signer: s, keys: keys, clock: newClock()}
}

// enforcer starts an enforcer on its own connection; mod adjusts the config.
func (v *env) enforcer(mod func(*Config), opts ...nats.Option) *Enforcer {
	v.t.Helper()
	opts = append([]nats.Option{
		nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond), nats.ReconnectJitter(0, 0),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}), // partitions are on purpose
	}, opts...)
	nc, _ := v.srv.Connect(v.t, opts...)
	cfg := Config{
		ID:         "proxy-1",
		Keyring:    v.keys,
		FailPolicy: FailOpen,
		Now:        v.clock.Now,
		Logger:     zerolog.New(zerolog.NewTestWriter(v.t)).Level(zerolog.WarnLevel),
		Registerer: prometheus.NewRegistry(),
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(nc, cfg)
	require.NoError(v.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(v.t, e.Start(ctx))
	v.t.Cleanup(e.Close)
	return e
}

// command makes a signed revoke or hold issued now on the fake clock.
func (v *env) command(kind, tenant, scope, value string) *Command {
	c := &Command{
		ID:        CommandID(fmt.Sprintf("decision-%d", v.seq.Add(1)), scope),
		Kind:      kind,
		Tenant:    tenant,
		Scope:     scope,
		Value:     value,
		Reason:    "test " + kind + " of " + scope + " " + value,
		Rule:      "test-rule",
		IssuedAt:  v.clock.Now(),
		ExpiresAt: v.clock.Now().Add(time.Hour),
		Issuer:    "analyst/test",
	}
	if scope == ScopeTool {
		c.Tool = "mail.send"
	}
	v.signer.Sign(c)
	return c
}

// liftOf makes a signed lift of c.
func (v *env) liftOf(c *Command) *Command {
	l := &Command{
		ID:        fmt.Sprintf("lf-%d", v.seq.Add(1)),
		Kind:      KindLift,
		Tenant:    c.Tenant,
		Lifts:     c.ID,
		Reason:    "false positive",
		IssuedAt:  v.clock.Now(),
		ExpiresAt: c.ExpiresAt,
		Issuer:    "analyst/test",
	}
	v.signer.Sign(l)
	return l
}

// put stores c in the bucket under the key an issuer would use.
func (v *env) put(c *Command) {
	v.t.Helper()
	key := c.ID
	if c.Kind == KindLift {
		key = c.Lifts
	}
	v.putRaw(key, mustJSON(v.t, c))
}

func (v *env) putRaw(key string, data []byte) {
	v.t.Helper()
	_, err := v.kv.Put(context.Background(), key, data)
	require.NoError(v.t, err)
}

func mustJSON(t testing.TB, x any) []byte {
	b, err := json.Marshal(x)
	require.NoError(t, err)
	return b
}

// acks reads every ack in the acks stream with its Nats-Msg-Id.
func (v *env) acks() map[string]Ack {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := v.js.Stream(ctx, pipeline.AcksStream)
	require.NoError(v.t, err)
	info, err := st.Info(ctx)
	require.NoError(v.t, err)
	out := map[string]Ack{}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		require.NoError(v.t, err)
		var a Ack
		require.NoError(v.t, json.Unmarshal(m.Data, &a))
		id := m.Header.Get(jetstream.MsgIDHeader)
		_, dup := out[id]
		require.False(v.t, dup, "ack %s stored twice", id)
		require.Equal(v.t, pipeline.AcksSubjectPrefix+a.Tenant, m.Subject)
		out[id] = a
	}
	return out
}

// settledAcks waits until every ack the enforcer queued has been
// published (or given up on) and returns how many it queued.
func settledAcks(t *testing.T, e *Enforcer) int {
	t.Helper()
	require.Eventually(t, func() bool { return e.ackSettled.Load() == e.ackQueued.Load() }, waitFor, tick)
	require.Zero(t, counterValue(t, e.m.acks.WithLabelValues("failed")))
	return int(e.ackQueued.Load())
}

func counterValue(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	require.NoError(t, (<-ch).Write(&m))
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("not a counter or gauge")
	return 0
}

func rejected(t testing.TB, e *Enforcer, reason string) float64 {
	return counterValue(t, e.m.rejected.WithLabelValues(reason))
}

func applied(t testing.TB, e *Enforcer, kind string) float64 {
	return counterValue(t, e.m.applied.WithLabelValues(kind))
}

// gateDialer lets a test cut an enforcer's connection (a real TCP close)
// and keep it from reconnecting: a network partition between the enforcer
// and NATS.
type gateDialer struct {
	mu      sync.Mutex
	blocked bool
	conns   []net.Conn
}

func (d *gateDialer) Dial(network, address string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.blocked {
		return nil, fmt.Errorf("partitioned")
	}
	c, err := net.Dial(network, address)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

// partition closes every connection and refuses new ones.
func (d *gateDialer) partition() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.blocked = true
	for _, c := range d.conns {
		_ = c.Close()
	}
	d.conns = nil
}

func (d *gateDialer) heal() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.blocked = false
}

// callFor is a call matching c's scope value.
func callFor(c *Command) *Call {
	call := &Call{Tenant: c.Tenant, Agent: "spiffe://acme.example/agents/other", Tool: "crm.search", Action: "write"}
	switch c.Scope {
	case ScopeSession:
		call.Session = c.Value
	case ScopeInstance:
		call.Instance = c.Value
	case ScopeAgent:
		call.Agent = c.Value
	case ScopeTask:
		call.Task = c.Value
	case ScopePrincipal:
		call.Principal = c.Value
	case ScopeCredential:
		call.Credential = c.Value
	case ScopeTool:
		call.Agent, call.Tool = c.Value, c.Tool
	}
	return call
}

func portOf(t testing.TB, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return n
}
