package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// The reload tests' rule sets. "nth-call" fires exactly once per session,
// on its 120th call: only if the session's count survives the swap.
const reloadV1 = `
rules:
  - id: nth-call
    description: a session's 120th call
    condition: count(1h) == 120
    cooldown: 0s
  - id: tuned
    description: changed by the push
    condition: count(1h) == 1000
`

const reloadV2 = `
rules:
  - id: nth-call
    description: a session's 120th call
    condition: count(1h) == 120
    cooldown: 0s
  - id: tuned
    description: changed by the push
    condition: count(1h) == 2000
  - id: added
    description: added by the push
    match: action == "send"
    condition: count(1h, action == "send") >= 1
    cooldown: 0s
`

func bundleOf(t *testing.T, name, text, comment string) (*Bundle, *rules.Set) {
	t.Helper()
	src := rules.Source{Name: name, Data: []byte(text)}
	set, err := rules.Compile(src)
	require.NoError(t, err)
	return NewBundle([]rules.Source{src}, set, "analyst@test", comment), set
}

type liveWorker struct {
	w   *Worker
	reg *prometheus.Registry
}

func (e *env) startReloadWorker(id string, set *rules.Set) *liveWorker {
	nc, _ := e.srv.Connect(e.t)
	reg := prometheus.NewRegistry()
	w, err := New(context.Background(), nc, Config{
		WorkerID: id, Topology: e.topo, Rules: set, Signer: e.signer,
		AckWait: 2 * time.Second, Batch: 64, Logger: testLogger(e.t, id), Registerer: reg,
	})
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
	return &liveWorker{w: w, reg: reg}
}

func (e *env) waitMembers(n int) {
	owners, err := e.js.KeyValue(context.Background(), pipeline.OwnersBucket)
	require.NoError(e.t, err)
	require.Eventually(e.t, func() bool {
		m, err := members(context.Background(), owners)
		return err == nil && len(m) == n
	}, 10*time.Second, 20*time.Millisecond)
}

// TestHotReloadUnderLoad pushes a new rule set to two workers while events
// stream in. Nothing is lost (every event evaluated and acked), the state of
// the unchanged rule survives the swap (each session's 120th call is seen
// once, though the swap fell in the middle of its calls), the added rule
// runs, both workers report the new hash, and the change is in the log.
func TestHotReloadUnderLoad(t *testing.T) {
	e := setup(t)
	b1, s1 := bundleOf(t, "v1.yaml", reloadV1, "")
	w1 := e.startReloadWorker("w1", s1)
	w2 := e.startReloadWorker("w2", s1)
	e.waitMembers(2)

	const sessions, calls = 16, 200
	var published atomic.Int64
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := range calls {
			for s := range sessions {
				ev := event(fmt.Sprintf("e-%d-%d", s, i), time.Duration(i)*time.Second,
					fmt.Sprintf("spiffe://acme.dev/agent/%d", s%5), fmt.Sprintf("s-%d", s))
				if i%50 == 49 {
					ev.Tool, ev.Action, ev.Destination = "mail.send", pipeline.ActionSend, "crm.acme.dev"
				}
				e.publish(ev)
				published.Add(1)
			}
		}
	}()
	// push once some sessions are past their 60th call: the swap falls
	// between their first and their 120th
	require.Eventually(t, func() bool { return published.Load() >= sessions*60 }, 30*time.Second, 5*time.Millisecond)
	b2, s2 := bundleOf(t, "v2.yaml", reloadV2, "raise tuned, add added")
	var steps []string
	res, err := PushRules(context.Background(), e.js, b2, PushOptions{Timeout: 20 * time.Second,
		Progress: func(f string, a ...any) { steps = append(steps, fmt.Sprintf(f, a...)) }})
	require.NoError(t, err)
	require.False(t, res.Unchanged)
	require.Equal(t, []string{"w1", "w2"}, res.Workers)
	require.Len(t, steps, 2)
	pushedAt := published.Load()
	require.Less(t, pushedAt, int64(sessions*120), "the swap must fall before the sessions' 120th calls")
	<-pubDone

	for _, lw := range []*liveWorker{w1, w2} {
		require.Equal(t, s2.Hash, lw.w.Rules().Hash)
		require.Equal(t, 1.0, testutil.ToFloat64(lw.w.m.rulesInfo.WithLabelValues(s2.Hash)))
		require.Equal(t, 0.0, testutil.ToFloat64(lw.w.m.rulesInfo.WithLabelValues(s1.Hash)))
		require.Equal(t, float64(res.Revision), testutil.ToFloat64(lw.w.m.rulesRevision))
		require.Equal(t, 1.0, testutil.ToFloat64(lw.w.m.reloads.WithLabelValues("applied")))
	}

	// every event evaluated and acked
	ctx := context.Background()
	require.Eventually(t, func() bool {
		for p := range e.topo.Partitions {
			c, err := e.js.Consumer(ctx, pipeline.EventsStream, ConsumerName(p))
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond)

	byRule := map[string]map[string]int{}
	for _, m := range e.streamMsgs(pipeline.DecisionsStream) {
		var d detectors.Decision
		require.NoError(t, json.Unmarshal(m.Data, &d))
		if byRule[d.Rule] == nil {
			byRule[d.Rule] = map[string]int{}
		}
		byRule[d.Rule][d.Subject.Session+"/"+d.EventID]++
	}
	require.Len(t, byRule["nth-call"], sessions, "each session's 120th call, once: %v", byRule["nth-call"])
	for s := range sessions {
		require.Equal(t, 1, byRule["nth-call"][fmt.Sprintf("s-%d/e-%d-119", s, s)])
	}
	require.NotEmpty(t, byRule["added"], "the added rule runs after the swap")
	for k := range byRule["added"] {
		var s, i int
		_, err := fmt.Sscanf(k, "s-%d/e-%d-%d", &s, &s, &i)
		require.NoError(t, err)
		require.Greater(t, i, 49, "no send before the push could fire the added rule")
	}

	// the change log
	hist, err := RuleHistory(ctx, e.js)
	require.NoError(t, err)
	require.Len(t, hist, 1)
	require.Equal(t, res.Revision, hist[0].Revision)
	require.Equal(t, "analyst@test", hist[0].Bundle.Author)
	require.Equal(t, "raise tuned, add added", hist[0].Bundle.Comment)
	require.Empty(t, hist[0].Bundle.Previous, "the first push replaces the configured files")
	st, err := RuleStatuses(ctx, e.js)
	require.NoError(t, err)
	require.Len(t, st, 2)
	for _, s := range st {
		require.Equal(t, s2.Hash, s.Hash)
		require.Equal(t, res.Revision, s.Active)
		require.True(t, s.Live)
	}
	_ = b1

	// pushing the same set again changes nothing
	again, err := PushRules(ctx, e.js, b2, PushOptions{})
	require.NoError(t, err)
	require.True(t, again.Unchanged)
}

// A set that a worker cannot compile is refused by every worker before any
// of them swaps: the active set stays, and the pusher learns why.
func TestPushRejectedChangesNothing(t *testing.T) {
	e := setup(t)
	_, s1 := bundleOf(t, "v1.yaml", reloadV1, "")
	e.startReloadWorker("w1", s1)
	w2 := e.startReloadWorker("w2", s1)
	e.waitMembers(2)
	good, s2 := bundleOf(t, "v2.yaml", reloadV2, "first")
	_, err := PushRules(context.Background(), e.js, good, PushOptions{Timeout: 10 * time.Second})
	require.NoError(t, err)

	// as a worker of another version would see it: the hash does not match
	bad, _ := bundleOf(t, "v1.yaml", reloadV1, "second")
	bad.Hash = "0123456789ab"
	_, err = PushRules(context.Background(), e.js, bad, PushOptions{Timeout: 10 * time.Second})
	var perr *PushError
	require.ErrorAs(t, err, &perr)
	require.Equal(t, "validate", perr.Stage)
	require.Len(t, perr.Rejected, 2)
	require.Contains(t, perr.Rejected["w1"], "differs from the bundle's")
	require.Equal(t, s2.Hash, w2.w.Rules().Hash)
	require.Equal(t, 1.0, testutil.ToFloat64(w2.w.m.reloads.WithLabelValues("rejected")))
	hist, err := RuleHistory(context.Background(), e.js)
	require.NoError(t, err)
	require.Len(t, hist, 1, "nothing committed")

	// a syntax error is refused by the pusher's own compile, before NATS
	_, err = rules.Compile(rules.Source{Name: "x.yaml", Data: []byte("rules: [{id: x}]")})
	require.Error(t, err)

	// the proposal key is gone: a worker starting now loads the active set
	kv, err := RulesBucket(context.Background(), e.js)
	require.NoError(t, err)
	_, err = kv.Get(context.Background(), RulesKeyProposed)
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
	w3 := e.startReloadWorker("w3", s1)
	require.Eventually(t, func() bool { return w3.w.Rules().Hash == s2.Hash }, 5*time.Second, 10*time.Millisecond)
}
