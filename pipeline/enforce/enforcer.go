package enforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tripline/tripline/pipeline"
)

// FailPolicy says what Check does when the enforcer cannot vouch for its
// view of the revocation state.
type FailPolicy int

// Fail policies. There is no default: an enforcer must choose.
const (
	// FailOpen keeps enforcing the revocations it knows and allows the
	// rest: agents keep working through a NATS outage, but a revocation
	// issued during the outage is not enforced until it ends.
	FailOpen FailPolicy = iota + 1
	// FailClosed denies every call: nothing revoked can slip through, but
	// a NATS outage longer than StaleAfter stops every agent behind this
	// enforcer.
	FailClosed
)

func (p FailPolicy) String() string {
	switch p {
	case FailOpen:
		return "fail-open"
	case FailClosed:
		return "fail-closed"
	}
	return fmt.Sprintf("FailPolicy(%d)", int(p))
}

// Config configures an Enforcer. Zero durations get the defaults noted.
type Config struct {
	// ID names this enforcer in acks, heartbeats and metrics: unique per
	// process (e.g. "proxy-eu1-7f9c"). A NATS subject token: no '.', '*',
	// '>' or whitespace.
	ID string
	// Keyring holds the public keys whose commands are trusted.
	Keyring Keyring
	// FailPolicy applies while the state is stale; required.
	FailPolicy FailPolicy
	// StaleAfter is how long the enforcer may be disconnected from NATS
	// (or without a working watch of the bucket) before its state counts
	// as stale. Default 30s.
	StaleAfter time.Duration
	// HeartbeatEvery is the heartbeat period. Default 5s.
	HeartbeatEvery time.Duration
	// MaxClockSkew is how far in the future a command's IssuedAt may be
	// (issuer and enforcer clocks differ). Default 1m.
	MaxClockSkew time.Duration
	// LoadTimeout bounds one reload of the bucket after a reconnect.
	// Default 30s. (Start's load is bounded by its context.)
	LoadTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives lifecycle events and applied/rejected commands.
	Logger zerolog.Logger
	// Registerer receives the enforcer's metrics (labelled enforcer=ID);
	// nil keeps them private.
	Registerer prometheus.Registerer
}

// Internal periods.
const (
	clockEvery     = 100 * time.Millisecond // cached "now" and staleness
	sweepEvery     = 5 * time.Second        // forget expired commands
	pollEvery      = 250 * time.Millisecond // connection check (backs up status events)
	maxRetryWait   = 5 * time.Second        // reload retry backoff cap
	closeAckWait   = 2 * time.Second        // Close waits this long for pending acks
	ackRetries     = 30                     // ~13 minutes of backoff before an ack is given up
	ackMaxPending  = 1024
	ackRetryWait   = 250 * time.Millisecond
	ackTimeout     = 5 * time.Second
	defaultStale   = 30 * time.Second
	defaultBeat    = 5 * time.Second
	defaultSkew    = time.Minute
	defaultLoadFor = 30 * time.Second
)

// Health of the enforcer's state.
const (
	healthNotReady int32 = iota
	healthOK
	healthStale
)

// Enforcer keeps an in-memory index of the revocations and holds in the
// revocations KV bucket and answers Check from it. Every command is
// verified against the Keyring before it has any effect; a KV delete or
// purge lifts nothing. Applied commands are acknowledged once on the acks
// stream; a heartbeat tells the engine the enforcer is alive and current.
//
// Lifecycle: New, Start (loads the bucket, then watches it), Check from
// any number of goroutines, Close.
type Enforcer struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream
	log zerolog.Logger
	rej zerolog.Logger // sampled: rejections can be provoked from outside
	m   *enforcerMetrics
	pub *asyncPublisher

	// state, read by Check under a read lock; written only by the run
	// goroutine (which therefore reads it without locking).
	mu shardedRWMutex
	st *state

	now        atomic.Int64 // cached clock, unix ns
	health     atomic.Int32
	downSince  atomic.Int64 // unix ns on cfg.Now's clock; 0 when connected and watching
	lastUpdate atomic.Int64 // unix ns
	active     atomic.Int64
	hmu        sync.Mutex // serialises health transitions

	ackMu      sync.Mutex
	ackQueue   []Ack
	ackWake    chan struct{}
	ackQueued  atomic.Int64 // acks handed to the ack goroutine
	ackSettled atomic.Int64 // acks published or given up on

	// owned by the run goroutine
	kv         jetstream.KeyValue
	watch      *watch
	maxRev     uint64
	reconnects uint64 // nc's reconnect count the state is known to cover
	status     chan nats.Status
	started    atomic.Bool // Start was called
	running    atomic.Bool // Start succeeded

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // run and clock goroutines
	ackWG     sync.WaitGroup
	ackCancel context.CancelFunc
	closeOnce sync.Once
}

// New makes an enforcer on nc. Configure nc to reconnect forever
// (nats.MaxReconnects(-1)): the enforcer reloads the bucket after every
// reconnect, and counts as stale while disconnected.
func New(nc *nats.Conn, cfg Config) (*Enforcer, error) {
	if nc == nil {
		return nil, errors.New("enforce: a NATS connection is required")
	}
	if !validToken(cfg.ID) {
		return nil, fmt.Errorf("enforce: Config.ID %q must be a non-empty NATS subject token (no '.', '*', '>' or whitespace)", cfg.ID)
	}
	if len(cfg.Keyring) == 0 {
		return nil, errors.New("enforce: Config.Keyring is empty, so every command would be rejected; add the engine's public key (enforce.LoadPublicKey)")
	}
	if cfg.FailPolicy != FailOpen && cfg.FailPolicy != FailClosed {
		return nil, errors.New("enforce: Config.FailPolicy must be FailOpen or FailClosed (see docs/enforcer.md for the trade-off)")
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = defaultStale
	}
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = defaultBeat
	}
	if cfg.MaxClockSkew <= 0 {
		cfg.MaxClockSkew = defaultSkew
	}
	if cfg.LoadTimeout <= 0 {
		cfg.LoadTimeout = defaultLoadFor
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	m, err := newEnforcerMetrics(cfg.Registerer, cfg.ID)
	if err != nil {
		return nil, fmt.Errorf("enforce: metrics: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("enforce: %w", err)
	}
	log := cfg.Logger.With().Str("enforcer", cfg.ID).Logger()
	e := &Enforcer{
		cfg:     cfg,
		nc:      nc,
		js:      js,
		log:     log,
		rej:     log.Sample(&zerolog.BurstSampler{Burst: 20, Period: time.Minute}),
		m:       m,
		st:      newState(),
		ackWake: make(chan struct{}, 1),
	}
	e.now.Store(cfg.Now().UnixNano())
	e.m.stale.Set(1)
	e.pub = newAsyncPublisher(js, publisherConfig{
		maxPending: ackMaxPending, retries: ackRetries, backoff: ackRetryWait, ackTimeout: ackTimeout,
	})
	e.pub.onAck = func(*jetstream.PubAck) {
		e.m.acks.WithLabelValues("published").Inc()
		e.ackSettled.Add(1)
	}
	e.pub.onFail = func(msg *nats.Msg, err error) {
		e.m.acks.WithLabelValues("failed").Inc()
		e.ackSettled.Add(1)
		e.log.Error().Err(err).Str("ack", msg.Header.Get(jetstream.MsgIDHeader)).Msg("ack not published after every retry")
	}
	return e, nil
}

// Start loads the current revocation state from the bucket, blocking until
// every stored command is applied (ctx bounds this load only), then keeps
// it current in background goroutines until Close.
func (e *Enforcer) Start(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("enforce: Start called twice")
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	kv, err := e.js.KeyValue(ctx, pipeline.RevocationsBucket)
	if err != nil {
		e.cancel()
		e.started.Store(false) // may be retried
		return fmt.Errorf("enforce: revocations bucket %s (provision it with `tripline nats init`): %w", pipeline.RevocationsBucket, err)
	}
	e.kv = kv
	// Listen before loading so a disconnect during the load is not missed.
	e.status = e.nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CONNECTED, nats.CLOSED)
	e.reconnects = e.nc.Stats().Reconnects
	t0 := time.Now()
	w, st, acks, n, err := e.load(ctx, newState(), modeStart)
	if err != nil {
		e.nc.RemoveStatusListener(e.status)
		e.cancel()
		e.started.Store(false) // may be retried
		return fmt.Errorf("enforce: load %s: %w", pipeline.RevocationsBucket, err)
	}
	e.mu.lock()
	e.st = st
	e.setActive()
	e.mu.unlock()
	e.watch = w
	e.lastUpdate.Store(e.cfg.Now().UnixNano())
	e.now.Store(e.cfg.Now().UnixNano())
	e.setHealth(healthOK)
	e.log.Info().Int("entries", n).Int("active", len(st.byID)).Dur("took", time.Since(t0)).
		Str("fail_policy", e.cfg.FailPolicy.String()).Msg("enforcer started")

	ackCtx, ackCancel := context.WithCancel(context.Background())
	e.ackCancel = ackCancel
	e.ackWG.Add(1)
	go e.ackLoop(ackCtx)
	e.queueAcks(acks)
	e.wg.Add(2)
	go e.run()
	go e.clock()
	e.running.Store(true)
	return nil
}

// Close stops the enforcer, waiting briefly for pending acks. Check keeps
// answering from the last state (stale, so FailClosed denies).
func (e *Enforcer) Close() {
	e.closeOnce.Do(func() {
		if !e.running.Load() {
			e.pub.close()
			return
		}
		e.cancel()
		e.wg.Wait()
		e.nc.RemoveStatusListener(e.status)
		e.setHealth(healthStale)
		// Publish what is queued, then give the acks a moment to land.
		ctx, cancel := context.WithTimeout(context.Background(), closeAckWait)
		defer cancel()
		e.ackCancel()
		e.ackWG.Wait()
		e.publishAcks(ctx, e.takeAcks())
		_ = e.pub.wait(ctx)
		e.pub.close()
		e.log.Info().Msg("enforcer closed")
	})
}

// Active returns the number of revocations and holds in force.
func (e *Enforcer) Active() int { return int(e.active.Load()) }

// Stale reports whether Check is currently applying the FailPolicy.
func (e *Enforcer) Stale() bool { return e.health.Load() != healthOK }

// load modes
const (
	modeStart     = iota // Start: count everything, no time-to-apply
	modeReconcile        // reload: count what is new since the last update seen
	modeLive             // watch update
)

// watch is a running watch of the bucket.
type watch struct {
	kw     jetstream.KeyWatcher
	cancel context.CancelFunc
}

func (w *watch) stop() {
	if w == nil {
		return
	}
	// Ending the context unsubscribes in the background; the synchronous
	// Stop would wait for a consumer deletion that hangs while NATS is
	// unreachable. Drain until the watcher closes its channel: its delivery
	// callback blocks on a full channel and would never see the unsubscribe.
	w.cancel()
	go func() {
		for range w.kw.Updates() {
		}
	}()
}

// load watches the bucket and applies its current values to st (private
// to the caller), returning the running watch once the initial values are
// in, the commands to acknowledge and the number of values read. The
// values are verified in parallel (Ed25519 costs ~50µs a command) and
// applied in bucket order.
func (e *Enforcer) load(ctx context.Context, st *state, mode int) (*watch, *state, []Ack, int, error) {
	wctx, cancel := context.WithCancel(e.ctx)
	kw, err := e.kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, nil, nil, 0, err
	}
	w := &watch{kw: kw, cancel: cancel}
	var ents []jetstream.KeyValueEntry
collect:
	for {
		select {
		case <-ctx.Done():
			w.stop()
			return nil, nil, nil, 0, ctx.Err()
		case ent, ok := <-kw.Updates():
			if !ok {
				w.stop()
				return nil, nil, nil, 0, errors.New("watch of the bucket ended during the load")
			}
			if ent == nil { // initial values delivered
				break collect
			}
			ents = append(ents, ent)
		}
	}
	// Each key appears once among the initial values, so parsing them all
	// against st before applying any gives the same result as one by one.
	now := e.cfg.Now()
	ps := make([]parsed, len(ents))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(ents)/64+1) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(ents); i = int(next.Add(1)) - 1 {
				ent := ents[i]
				ps[i] = st.parse(ent.Key(), ent.Operation(), ent.Value(), e.cfg.Keyring, now, e.cfg.MaxClockSkew)
			}
		})
	}
	wg.Wait()
	var acks []Ack
	for i, ent := range ents {
		if a, ok := e.applyParsed(st, ent, ps[i], mode, false); ok {
			acks = append(acks, a)
		}
	}
	return w, st, acks, len(ents), nil
}

// applyParsed applies one parsed KV update to st, counting and logging
// it, and returns the ack to publish if the command was applied for the
// first time. locked says st is the live state (take the write lock to
// change it); otherwise st is private to the caller.
func (e *Enforcer) applyParsed(st *state, ent jetstream.KeyValueEntry, p parsed, mode int, locked bool) (Ack, bool) {
	// A reload re-reads updates the live watch already handled: they are
	// not counted twice, and seeing a command it applied is not a replay.
	count := mode != modeReconcile || ent.Revision() > e.maxRev
	e.maxRev = max(e.maxRev, ent.Revision())
	if p.noop {
		return Ack{}, false
	}
	if p.reject != "" {
		if count && !(p.known && mode != modeLive) {
			e.reject(ent, p.reject, p.err)
		}
		return Ack{}, false
	}
	c := p.cmd
	now := e.cfg.Now()
	if locked {
		e.mu.lock()
	}
	ch := st.apply(c, now)
	if locked {
		e.setActive() // in step with what Check sees
		e.mu.unlock()
	}
	if ch.reject != "" {
		if count {
			e.reject(ent, ch.reject, fmt.Errorf("%s command %s: %s", c.Kind, c.ID, ch.reject))
		}
		return Ack{}, false
	}
	e.lastUpdate.Store(now.UnixNano())
	e.m.applied.WithLabelValues(c.Kind).Inc()
	if mode != modeStart {
		e.m.timeToApply.Observe(max(now.Sub(c.IssuedAt), 0).Seconds())
	}
	lvl := zerolog.InfoLevel
	if mode == modeStart {
		lvl = zerolog.DebugLevel
	}
	e.log.WithLevel(lvl).Str("command", c.ID).Str("kind", c.Kind).Str("tenant", c.Tenant).Str("scope", c.Scope).
		Str("lifts", c.Lifts).Str("issuer", c.Issuer).Dur("after", now.Sub(c.IssuedAt)).Msg("command applied")
	if !ch.ack {
		return Ack{}, false
	}
	return Ack{CommandID: c.ID, Kind: c.Kind, Tenant: ch.tenant, Enforcer: e.cfg.ID, AppliedAt: now.UTC(), IssuedAt: c.IssuedAt}, true
}

func (e *Enforcer) reject(ent jetstream.KeyValueEntry, reason string, err error) {
	e.m.rejected.WithLabelValues(reason).Inc()
	e.rej.Warn().Err(err).Str("key", ent.Key()).Uint64("revision", ent.Revision()).Str("reason", reason).Msg("command rejected")
}

func (e *Enforcer) setActive() {
	n := len(e.st.byID)
	e.active.Store(int64(n))
	e.m.active.Set(float64(n))
}

// run owns the watch: it applies live updates, reloads after a reconnect
// or a failed watch, and sweeps expired commands.
func (e *Enforcer) run() {
	defer e.wg.Done()
	defer func() { e.watch.stop(); e.watch = nil }()
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()

	needReload := false
	closed := false
	// Status events are dropped when their channel is full (while a reload
	// runs, say): the reconnect count backs them up.
	reconnects := e.reconnects
	backoff := 250 * time.Millisecond
	var nextTry time.Time

	tryReload := func(why string) {
		if !needReload || closed || !e.nc.IsConnected() || time.Now().Before(nextTry) {
			return
		}
		r := e.nc.Stats().Reconnects // this reload covers reconnects up to here
		if err := e.reconcile(why); err != nil {
			if e.ctx.Err() != nil {
				return
			}
			e.m.reconciles.WithLabelValues("failed").Inc()
			e.log.Warn().Err(err).Dur("retry_in", backoff).Msg("reloading the revocation state failed")
			nextTry = time.Now().Add(backoff)
			backoff = min(2*backoff, maxRetryWait)
			return
		}
		needReload, backoff, nextTry, reconnects = false, 250*time.Millisecond, time.Time{}, r
	}

	for {
		var updates <-chan jetstream.KeyValueEntry
		if e.watch != nil {
			updates = e.watch.kw.Updates()
		}
		select {
		case <-e.ctx.Done():
			return
		case s, ok := <-e.status:
			if !ok {
				e.status = nil
				continue
			}
			switch s {
			case nats.DISCONNECTED, nats.RECONNECTING:
				e.markDown("disconnected from NATS")
				needReload = true
			case nats.CONNECTED:
				tryReload("reconnected")
			case nats.CLOSED:
				e.markDown("NATS connection closed")
				e.log.Error().Msg("NATS connection closed: the enforcer stays stale until restarted")
				closed = true
				e.watch.stop()
				e.watch = nil
			}
		case ent, ok := <-updates:
			if !ok {
				e.watch.stop()
				e.watch = nil
				e.markDown("watch of the revocations bucket ended")
				needReload = true
				continue
			}
			if ent == nil {
				continue
			}
			p := e.st.parse(ent.Key(), ent.Operation(), ent.Value(), e.cfg.Keyring, e.cfg.Now(), e.cfg.MaxClockSkew)
			if a, ok := e.applyParsed(e.st, ent, p, modeLive, true); ok {
				e.queueAcks([]Ack{a})
			}
		case <-poll.C:
			if !e.nc.IsConnected() {
				e.markDown("disconnected from NATS")
				needReload = true
				continue
			}
			if r := e.nc.Stats().Reconnects; r != reconnects {
				reconnects = r
				needReload = true
			}
			tryReload("reconnected")
		case <-sweep.C:
			e.sweep()
		}
	}
}

// reconcile reloads the bucket into a copy of the state and swaps it in:
// commands issued while the enforcer was away are applied, lifted ones
// lifted. What the bucket no longer holds stays in force until it expires
// (only a signed lift ends a command early).
func (e *Enforcer) reconcile(why string) error {
	e.watch.stop()
	e.watch = nil
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.LoadTimeout)
	defer cancel()
	t0 := time.Now()
	before := len(e.st.byID)
	w, st, acks, n, err := e.load(ctx, e.st.clone(), modeReconcile)
	if err != nil {
		return err
	}
	e.mu.lock()
	e.st = st
	e.setActive()
	e.mu.unlock()
	e.watch = w
	e.lastUpdate.Store(e.cfg.Now().UnixNano())
	down := time.Duration(0)
	if d := e.downSince.Load(); d != 0 {
		down = time.Duration(e.cfg.Now().UnixNano() - d)
	}
	e.markUp()
	e.m.reconciles.WithLabelValues("ok").Inc()
	e.log.Info().Str("why", why).Int("entries", n).Int("active_before", before).Int("active", len(st.byID)).
		Int("newly_applied", len(acks)).Dur("was_down", down).Dur("took", time.Since(t0)).Msg("revocation state reloaded")
	e.queueAcks(acks)
	return nil
}

func (e *Enforcer) sweep() {
	now := e.cfg.Now().UnixNano()
	ents, recs, lifted := e.st.expired(now)
	if len(ents)+len(recs)+len(lifted) == 0 {
		return
	}
	e.mu.lock()
	e.st.sweep(ents, recs, lifted)
	e.setActive()
	e.mu.unlock()
}

// clock refreshes the cached time and the health, and sends heartbeats.
func (e *Enforcer) clock() {
	defer e.wg.Done()
	tick := time.NewTicker(clockEvery)
	defer tick.Stop()
	beat := time.NewTicker(e.cfg.HeartbeatEvery)
	defer beat.Stop()
	e.heartbeat()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-tick.C:
			e.tick()
		case <-beat.C:
			e.heartbeat()
		}
	}
}

func (e *Enforcer) tick() {
	now := e.cfg.Now().UnixNano()
	e.now.Store(now)
	e.hmu.Lock()
	defer e.hmu.Unlock()
	d := e.downSince.Load()
	if d != 0 && now-d > int64(e.cfg.StaleAfter) && e.health.Load() == healthOK {
		e.setHealthLocked(healthStale)
		e.log.Error().Dur("down", time.Duration(now-d)).Str("fail_policy", e.cfg.FailPolicy.String()).
			Msg("enforcer stale: cut off from the revocation state for longer than StaleAfter")
	}
}

func (e *Enforcer) markDown(why string) {
	e.hmu.Lock()
	defer e.hmu.Unlock()
	if e.downSince.Load() != 0 {
		return
	}
	e.downSince.Store(e.cfg.Now().UnixNano())
	e.log.Warn().Str("why", why).Dur("stale_after", e.cfg.StaleAfter).Msg("cut off from the revocation state")
}

func (e *Enforcer) markUp() {
	e.hmu.Lock()
	defer e.hmu.Unlock()
	e.downSince.Store(0)
	if e.health.Load() != healthOK {
		e.setHealthLocked(healthOK)
		e.log.Info().Msg("enforcer current again")
	}
}

func (e *Enforcer) setHealth(h int32) {
	e.hmu.Lock()
	defer e.hmu.Unlock()
	e.setHealthLocked(h)
}

func (e *Enforcer) setHealthLocked(h int32) {
	e.health.Store(h)
	if h == healthOK {
		e.m.stale.Set(0)
	} else {
		e.m.stale.Set(1)
	}
}

func (e *Enforcer) heartbeat() {
	hb := Heartbeat{
		Enforcer: e.cfg.ID,
		At:       e.cfg.Now().UTC(),
		Active:   e.Active(),
		State:    StateOK,
	}
	if e.Stale() {
		hb.State = StateStale
	}
	if lu := e.lastUpdate.Load(); lu != 0 {
		hb.LastUpdate = time.Unix(0, lu).UTC()
	}
	b, _ := json.Marshal(&hb)
	// Core NATS: a heartbeat lost in an outage is replaced by the next.
	_ = e.nc.Publish(pipeline.HeartbeatSubjectPrefix+e.cfg.ID, b)
}

// queueAcks hands acks to the ack goroutine; the run goroutine never
// waits on JetStream.
func (e *Enforcer) queueAcks(acks []Ack) {
	if len(acks) == 0 {
		return
	}
	e.ackQueued.Add(int64(len(acks)))
	e.ackMu.Lock()
	e.ackQueue = append(e.ackQueue, acks...)
	e.ackMu.Unlock()
	select {
	case e.ackWake <- struct{}{}:
	default:
	}
}

func (e *Enforcer) takeAcks() []Ack {
	e.ackMu.Lock()
	defer e.ackMu.Unlock()
	q := e.ackQueue
	e.ackQueue = nil
	return q
}

func (e *Enforcer) ackLoop(ctx context.Context) {
	defer e.ackWG.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.ackWake:
			if q := e.takeAcks(); len(q) > 0 {
				if rest := e.publishAcks(ctx, q); len(rest) > 0 {
					// Interrupted by Close: put them back for it.
					e.ackMu.Lock()
					e.ackQueue = append(rest, e.ackQueue...)
					e.ackMu.Unlock()
					return
				}
			}
		}
	}
}

// publishAcks publishes acks, blocking while too many are pending, and
// returns those it could not hand over before ctx ended.
func (e *Enforcer) publishAcks(ctx context.Context, q []Ack) []Ack {
	for i := range q {
		a := &q[i]
		b, _ := json.Marshal(a)
		if err := e.pub.publish(ctx, ackMsg(ackSubject(a.Tenant), b, AckMsgID(a.CommandID, e.cfg.ID))); err != nil {
			if ctx.Err() != nil {
				return q[i:]
			}
			e.m.acks.WithLabelValues("failed").Inc()
			e.ackSettled.Add(1)
			e.log.Error().Err(err).Str("command", a.CommandID).Msg("ack not published")
		}
	}
	return nil
}
