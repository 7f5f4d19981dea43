package enforce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxBackoff caps the wait between two attempts.
const maxBackoff = 30 * time.Second

// errPublisherClosed is returned by publish after close.
var errPublisherClosed = errors.New("enforce: publisher closed")

// asyncPublisher publishes JetStream messages asynchronously with a bounded
// number in flight, retries failed or timed-out acknowledgements with
// backoff, and lets a caller wait until everything is acknowledged. Every
// message must carry a Nats-Msg-Id so a retry of a message that did land is
// dropped by the stream's duplicate window.
//
// One reaper goroutine waits for acknowledgements in publish order (later
// ones are usually ready by the time it reaches them); retries run in their
// own short-lived goroutines and re-enter the queue.
type asyncPublisher struct {
	js         jetstream.Publisher
	retries    int
	backoff    time.Duration
	ackTimeout time.Duration

	// hooks, called from the reaper or retry goroutines
	onAck   func(ack *jetstream.PubAck)
	onRetry func(m *nats.Msg, err error)
	onFail  func(m *nats.Msg, err error)

	slots chan struct{}  // one per message in flight: bounds pending
	queue chan *inFlight // awaiting an ack, in publish order
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once

	mu       sync.Mutex
	inflight int
	idle     chan struct{} // closed when inflight drops to 0
	firstErr error
}

type inFlight struct {
	msg      *nats.Msg
	fut      jetstream.PubAckFuture
	deadline time.Time
	attempt  int
}

type publisherConfig struct {
	maxPending int
	retries    int
	backoff    time.Duration
	ackTimeout time.Duration
}

func newAsyncPublisher(js jetstream.Publisher, c publisherConfig) *asyncPublisher {
	p := &asyncPublisher{
		js:         js,
		retries:    c.retries,
		backoff:    c.backoff,
		ackTimeout: c.ackTimeout,
		onAck:      func(*jetstream.PubAck) {},
		onRetry:    func(*nats.Msg, error) {},
		onFail:     func(*nats.Msg, error) {},
		slots:      make(chan struct{}, c.maxPending),
		queue:      make(chan *inFlight, c.maxPending),
		done:       make(chan struct{}),
	}
	p.wg.Add(1)
	go p.reap()
	return p
}

// publish sends m, blocking while maxPending messages are in flight. A nil
// error means m is in flight: its fate is reported by wait. ctx bounds
// only the wait for a free slot.
func (p *asyncPublisher) publish(ctx context.Context, m *nats.Msg) error {
	select {
	case <-p.done:
		return errPublisherClosed
	default:
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-p.done:
		return errPublisherClosed
	}
	p.mu.Lock()
	p.inflight++
	p.mu.Unlock()

	for {
		fut, err := p.js.PublishMsgAsync(m)
		switch {
		case err == nil:
			p.enqueue(&inFlight{msg: m, fut: fut, deadline: time.Now().Add(p.ackTimeout)})
			return nil
		case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
			// The JetStream context's own limit is lower than ours: wait.
			if ctx.Err() != nil {
				p.release()
				return ctx.Err()
			}
			continue
		case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrBadSubject):
			p.release()
			return err
		default:
			// Disconnected with a full reconnect buffer, and the like: retry
			// in the background like a failed acknowledgement.
			p.failed(&inFlight{msg: m}, err)
			return nil
		}
	}
}

func (p *asyncPublisher) enqueue(f *inFlight) {
	select {
	case p.queue <- f: // never blocks: the queue holds at most maxPending
	case <-p.done:
		p.release()
	}
}

func (p *asyncPublisher) reap() {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var f *inFlight
		select {
		case f = <-p.queue:
		case <-p.done:
			return
		}
		timer.Reset(time.Until(f.deadline))
		select {
		case ack := <-f.fut.Ok():
			p.onAck(ack)
			p.release()
		case err := <-f.fut.Err():
			p.failed(f, err)
		case <-timer.C:
			p.failed(f, jetstream.ErrAsyncPublishTimeout)
		case <-p.done:
			timer.Stop()
			return
		}
		timer.Stop()
	}
}

// failed retries f after a backoff, or gives up once its retries are spent.
func (p *asyncPublisher) failed(f *inFlight, err error) {
	if f.attempt >= p.retries {
		p.onFail(f.msg, err)
		p.mu.Lock()
		if p.firstErr == nil {
			p.firstErr = fmt.Errorf("publish %s (msg id %s) failed after %d attempts: %w",
				f.msg.Subject, f.msg.Header.Get(jetstream.MsgIDHeader), f.attempt+1, err)
		}
		p.mu.Unlock()
		p.release()
		return
	}
	f.attempt++
	p.onRetry(f.msg, err)
	wait := min(p.backoff<<min(f.attempt-1, 16), maxBackoff)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.done:
			p.release()
			return
		}
		fut, err := p.js.PublishMsgAsync(f.msg)
		if err != nil {
			p.failed(f, err)
			return
		}
		f.fut = fut
		f.deadline = time.Now().Add(p.ackTimeout)
		p.enqueue(f)
	}()
}

func (p *asyncPublisher) release() {
	<-p.slots
	p.mu.Lock()
	p.inflight--
	if p.inflight == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
	p.mu.Unlock()
}

// wait blocks until nothing is in flight, then returns (and forgets) the
// first permanent failure since the previous wait.
func (p *asyncPublisher) wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		if p.inflight == 0 {
			err := p.firstErr
			p.firstErr = nil
			p.mu.Unlock()
			return err
		}
		if p.idle == nil {
			p.idle = make(chan struct{})
		}
		idle := p.idle
		p.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// close stops the reaper and any retries; messages still in flight are
// abandoned (call wait first).
func (p *asyncPublisher) close() {
	p.once.Do(func() { close(p.done) })
	p.wg.Wait()
}
