package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tripline/tripline/internal/detect"
	"github.com/tripline/tripline/internal/embednats"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

// maxPending bounds the asynchronous publishes in flight, as a producer
// would (the detector's own publisher uses the same bound).
const maxPending = 4096

// enforcerID names the benchmark's enforcer in acks.
const enforcerID = "bench-enforcer"

// env is the running system: an embedded server, the topology, a detector
// worker, and the client connections of a producer, a requester, an echo
// responder and an enforcer, each its own, as in a deployment.
type env struct {
	cfg    Config
	p      progress
	log    zerolog.Logger
	dir    string
	srv    *server.Server
	topo   topology.Config
	signer *enforce.Signer
	keys   enforce.Keyring
	reg    *prometheus.Registry

	workerNC *nats.Conn
	stopW    context.CancelFunc
	workerOK chan struct{}

	pubNC  *nats.Conn // producer: events, raw reference streams
	js     jetstream.JetStream
	pubErr *errCount
	cliNC  *nats.Conn // fresh-decision and echo requests; reference consumers
	cliJS  jetstream.JetStream
	echoNC *nats.Conn
	obsNC  *nats.Conn // KV watch and ack subscription

	enfNC *nats.Conn
	enf   *enforce.Enforcer

	// hist is ClickHouse and the writer figure's NATS (nil without
	// history); live is the pipeline phase's history writer.
	hist *histEnv
	live *liveHistory

	traffic *traffic
	bgN     atomic.Int64 // next benign event number of the live traffic
	seen    *observed
	fill    []fillSpec

	closeOnce sync.Once
}

// errCount counts failed asynchronous publishes.
type errCount struct {
	mu    sync.Mutex
	n     int
	first error
}

func (c *errCount) add(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	if c.first == nil {
		c.first = err
	}
}

func (c *errCount) take() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.n, c.first
	c.n, c.first = 0, nil
	return n, err
}

func startEnv(ctx context.Context, cfg Config, p progress) (_ *env, err error) {
	dir, err := os.MkdirTemp(cfg.Dir, "tripline-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: data directory: %w", err)
	}
	e := &env{
		cfg: cfg, p: p, log: cfg.Logger, dir: dir, reg: prometheus.NewRegistry(),
		topo:    topology.Config{Partitions: cfg.Partitions}.WithDefaults(),
		pubErr:  &errCount{},
		traffic: newTraffic(cfg.Agents, cfg.Sessions, cfg.Partitions),
		seen:    newObserved(),
	}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	p.printf("bench: embedded NATS with JetStream file storage in %s, %d partitions", dir, e.topo.Partitions)
	e.srv, err = embednats.Start(embednats.Options{StoreDir: dir, ServerName: "bench"})
	if err != nil {
		return nil, err
	}
	connect := func(name string) (*nats.Conn, error) {
		nc, err := nats.Connect(e.srv.ClientURL(), nats.Name("bench-"+name), nats.MaxReconnects(-1))
		if err != nil {
			return nil, fmt.Errorf("bench: connect %s: %w", name, err)
		}
		return nc, nil
	}
	for _, c := range []struct {
		name string
		nc   **nats.Conn
	}{{"worker", &e.workerNC}, {"producer", &e.pubNC}, {"client", &e.cliNC}, {"echo", &e.echoNC}, {"observer", &e.obsNC}, {"enforcer", &e.enfNC}} {
		if *c.nc, err = connect(c.name); err != nil {
			return nil, err
		}
	}
	e.js, err = jetstream.New(e.pubNC, jetstream.WithPublishAsyncMaxPending(maxPending),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) { e.pubErr.add(err) }))
	if err != nil {
		return nil, err
	}
	if e.cliJS, err = jetstream.New(e.cliNC); err != nil {
		return nil, err
	}
	if err := topology.Provision(ctx, e.js, e.topo); err != nil {
		return nil, err
	}
	_, priv, err := enforce.GenerateKey()
	if err != nil {
		return nil, err
	}
	e.signer = enforce.NewSigner(priv)
	e.keys = enforce.Keyring{}
	e.keys.Add(e.signer.Public())

	w, err := detect.New(ctx, e.workerNC, detect.Config{
		WorkerID: "bench", Topology: e.topo, Rules: cfg.Rules, Signer: e.signer,
		// The attacks revoke several sessions a second by design; the
		// guard rail (default 50 a minute per rule) would demote the rule.
		RevokeLimit: 1 << 30,
		Logger:      cfg.Logger, Registerer: e.reg,
	})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	e.stopW, e.workerOK = cancel, make(chan struct{})
	go func() {
		defer close(e.workerOK)
		if err := w.Run(wctx); err != nil {
			e.log.Error().Err(err).Msg("bench: detector worker stopped")
		}
	}()
	if err := e.waitWorker(ctx); err != nil {
		return nil, err
	}
	if _, err := e.echoNC.Subscribe(echoSubject, func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		return nil, err
	}
	if err := e.echoNC.Flush(); err != nil {
		return nil, err
	}
	return e, nil
}

const echoSubject = "bench.echo"

// waitWorker waits until the worker owns every partition: its consumer
// exists and it answers fresh-decision requests.
func (e *env) waitWorker(ctx context.Context) error {
	t0 := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for p := range e.topo.Partitions {
		for {
			_, cerr := e.js.Consumer(ctx, pipeline.EventsStream, detect.ConsumerName(p))
			var rerr error
			if cerr == nil {
				_, rerr = e.cliNC.Request(pipeline.DecideSubjectPrefix+strconv.Itoa(p), []byte("{}"), time.Second)
			}
			if cerr == nil && rerr == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("bench: detector did not take partition %d within 30s: %w", p, errors.Join(cerr, rerr))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	e.p.printf("bench: detector worker owns %d partitions (%s)", e.topo.Partitions, time.Since(t0).Round(time.Millisecond))
	return nil
}

func (e *env) close() {
	e.closeOnce.Do(func() {
		if e.enf != nil {
			e.enf.Close()
		}
		e.stopLive()
		if e.stopW != nil {
			e.stopW()
			select {
			case <-e.workerOK:
			case <-time.After(10 * time.Second):
				e.log.Warn().Msg("bench: detector worker did not stop within 10s")
			}
		}
		for _, nc := range []*nats.Conn{e.enfNC, e.obsNC, e.echoNC, e.cliNC, e.pubNC, e.workerNC} {
			if nc != nil {
				nc.Close()
			}
		}
		if e.srv != nil {
			e.srv.Shutdown()
			e.srv.WaitForShutdown()
		}
		e.closeHistory()
		_ = os.RemoveAll(e.dir)
	})
}

// publish publishes m asynchronously, waiting while maxPending are in
// flight.
func (e *env) publish(m *nats.Msg) error {
	_, err := e.js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute))
	return err
}

// flush waits until every asynchronous publish is acknowledged and
// reports the failed ones.
func (e *env) flush(ctx context.Context) error { return flushAsync(ctx, e.js, e.pubErr) }

// flushAsync waits until every asynchronous publish of js is acknowledged
// and reports the failed ones, counted by errs.
func flushAsync(ctx context.Context, js jetstream.JetStream, errs *errCount) error {
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Minute):
		return errors.New("publishes not acknowledged within 2 minutes")
	}
	if n, err := errs.take(); n > 0 {
		return fmt.Errorf("%d publishes failed: %w", n, err)
	}
	return nil
}

func eventMsg(subject, id string, data []byte) *nats.Msg {
	return &nats.Msg{Subject: subject, Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{id}}}
}

// observed records what the observers saw: the revocations in the KV
// bucket (by a watcher, as a proxy without the enforcer package would see
// them) and the enforcer's acknowledgements with their applied time.
type observed struct {
	mu       sync.Mutex
	kvAt     map[string]time.Time // session → first seen in the bucket
	issued   map[string]time.Time // session → the command's issued_at (detector clock, ms)
	session  map[string]string    // command id → session
	applied  map[string]time.Time // command id → applied by the enforcer
	ackCount int
}

func newObserved() *observed {
	return &observed{kvAt: map[string]time.Time{}, issued: map[string]time.Time{}, session: map[string]string{}, applied: map[string]time.Time{}}
}

// observe starts the KV watcher and the ack subscription.
func (e *env) observe(ctx context.Context) error {
	js, err := jetstream.New(e.obsNC)
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, pipeline.RevocationsBucket)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(context.Background(), jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("bench: watch %s: %w", pipeline.RevocationsBucket, err)
	}
	go func() {
		for ent := range w.Updates() {
			if ent == nil || ent.Operation() != jetstream.KeyValuePut {
				continue
			}
			now := time.Now()
			var c struct {
				ID       string    `json:"id"`
				Scope    string    `json:"scope"`
				Value    string    `json:"value"`
				IssuedAt time.Time `json:"issued_at"`
			}
			if json.Unmarshal(ent.Value(), &c) != nil || c.Scope != enforce.ScopeSession {
				continue
			}
			e.seen.mu.Lock()
			if _, ok := e.seen.kvAt[c.Value]; !ok {
				e.seen.kvAt[c.Value] = now
				e.seen.issued[c.Value] = c.IssuedAt
			}
			e.seen.session[c.ID] = c.Value
			e.seen.mu.Unlock()
		}
	}()
	_, err = e.obsNC.Subscribe(pipeline.AcksSubjectPrefix+">", func(m *nats.Msg) {
		var a enforce.Ack
		if json.Unmarshal(m.Data, &a) != nil || a.Enforcer != enforcerID {
			return
		}
		e.seen.mu.Lock()
		e.seen.ackCount++
		if _, ok := e.seen.applied[a.CommandID]; !ok {
			e.seen.applied[a.CommandID] = a.AppliedAt
		}
		e.seen.mu.Unlock()
	})
	if err != nil {
		return err
	}
	return e.obsNC.Flush()
}
